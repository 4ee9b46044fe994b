//! Where an original keeps its bloom filters, so the new file keeps them in the same place and
//! an untouched run of row groups stays one byte range of the original, bloom filters
//! included (parquet-format "Bloom Filter": each filter is a Thrift `BloomFilterHeader`
//! followed by its bitset, at the column chunk's `bloom_filter_offset`).
//!
//! parquet-mr and Arrow C++ write every bloom filter after the last row group; the parquet
//! crate, by default, after each row group. The rewrite writes them where the original has
//! them ([`between_row_groups`]), and a copied row group whose filters follow its column
//! chunks as one block ([`block`]) is copied with that block.

use std::ops::Range;

use parquet::file::metadata::{ParquetMetaData, RowGroupMetaData};

/// The bloom filters of `rg` as one block of the file, when they follow each other in column
/// order with their lengths known; `None` when it has none or they are scattered.
pub(crate) fn block(rg: &RowGroupMetaData) -> Option<Range<u64>> {
    let mut block: Option<Range<u64>> = None;
    for col in rg.columns() {
        let Some(offset) = col.bloom_filter_offset() else {
            continue;
        };
        let start = u64::try_from(offset).ok()?;
        let len = u64::try_from(col.bloom_filter_length()?).ok()?;
        block = match block {
            None => Some(start..start.checked_add(len)?),
            Some(b) if b.end == start => Some(b.start..start.checked_add(len)?),
            Some(_) => return None,
        };
    }
    block
}

/// Whether `md`'s file holds bloom filters between its row groups (a row group's filters
/// before the next row group's first column chunk), as the parquet crate writes them by
/// default.
pub(crate) fn between_row_groups(md: &ParquetMetaData) -> bool {
    let starts: Vec<Option<i64>> = md
        .row_groups()
        .iter()
        .map(|rg| {
            rg.columns()
                .iter()
                .map(|c| c.dictionary_page_offset().unwrap_or(c.data_page_offset()))
                .min()
        })
        .collect();
    md.row_groups().iter().enumerate().any(|(i, rg)| {
        let Some(Some(next)) = starts.get(i + 1) else {
            return false;
        };
        rg.columns()
            .iter()
            .filter_map(|c| c.bloom_filter_offset())
            .any(|o| o < *next)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::ParquetMetaDataReader;
    use parquet::file::properties::{BloomFilterPosition, WriterProperties};

    use super::*;

    fn file(position: BloomFilterPosition) -> ParquetMetaData {
        let batch = RecordBatch::try_from_iter([
            (
                "a",
                Arc::new(StringArray::from_iter_values(
                    (0..100).map(|i| format!("a{i}")),
                )) as ArrayRef,
            ),
            ("b", Arc::new(Int64Array::from_iter_values(0..100))),
        ])
        .unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(40))
            .set_bloom_filter_enabled(true)
            .set_bloom_filter_position(position)
            .build();
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        ParquetMetaDataReader::new()
            .parse_and_finish(&bytes::Bytes::from(out))
            .unwrap()
    }

    #[test]
    fn filters_after_each_row_group_are_found_between_them_as_one_block_each() {
        let md = file(BloomFilterPosition::AfterRowGroup);
        assert_eq!(md.num_row_groups(), 3);
        assert!(between_row_groups(&md));
        for rg in md.row_groups() {
            let b = block(rg).unwrap();
            let chunks_end = rg
                .columns()
                .iter()
                .map(|c| {
                    (c.dictionary_page_offset().unwrap_or(c.data_page_offset())
                        + c.compressed_size()) as u64
                })
                .max()
                .unwrap();
            assert_eq!(b.start, chunks_end, "right after the row group");
            let lens: u64 = rg
                .columns()
                .iter()
                .map(|c| c.bloom_filter_length().unwrap() as u64)
                .sum();
            assert_eq!(b.end - b.start, lens);
        }
    }

    #[test]
    fn filters_after_the_last_row_group_are_not_between_them() {
        let md = file(BloomFilterPosition::End);
        assert!(!between_row_groups(&md));
        assert!(block(md.row_group(0)).is_some());
    }
}
