//! Where each page of a column chunk starts and ends, read from its Thrift page headers, so a
//! page the surgery does not change can be copied as its encoded bytes (header and body).
//!
//! Only what that needs is read: a `PageHeader` (parquet-format's `parquet.thrift`) in the
//! Thrift compact protocol, its fields 2 (`uncompressed_page_size`) and 3
//! (`compressed_page_size`), every other field skipped.

use std::ops::Range;

use crate::lake::footer::ThriftReader;

/// One encoded page of a column chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawPage {
    /// Its bytes in the chunk, header included.
    pub range: Range<usize>,
    /// Length of its header.
    pub header_len: usize,
    /// `uncompressed_page_size` of its header (the body, without the header).
    pub uncompressed_size: usize,
}

/// The pages of an encoded column chunk, in order.
///
/// # Errors
/// A sentence when the chunk does not split into whole pages.
pub(crate) fn split_pages(chunk: &[u8]) -> Result<Vec<RawPage>, String> {
    let mut pages = Vec::new();
    let mut at = 0;
    while at < chunk.len() {
        let mut r = ThriftReader::new(&chunk[at..]);
        let (uncompressed, compressed) =
            page_header(&mut r).map_err(|e| format!("the page header at byte {at}: {e}"))?;
        let (Ok(uncompressed), Ok(compressed)) =
            (usize::try_from(uncompressed), usize::try_from(compressed))
        else {
            return Err(format!("a page header at byte {at} has a negative size"));
        };
        let end = at
            .checked_add(r.pos())
            .and_then(|e| e.checked_add(compressed))
            .filter(|&e| e <= chunk.len())
            .ok_or_else(|| format!("the page at byte {at} runs past the column chunk"))?;
        pages.push(RawPage {
            range: at..end,
            header_len: r.pos(),
            uncompressed_size: uncompressed,
        });
        at = end;
    }
    Ok(pages)
}

/// Reads a `PageHeader`; returns `(uncompressed_page_size, compressed_page_size)`.
fn page_header(r: &mut ThriftReader<'_>) -> Result<(i64, i64), String> {
    let (mut uncompressed, mut compressed) = (None, None);
    let mut last = 0;
    while let Some((id, kind)) = r.field_header(&mut last)? {
        match (id, kind) {
            (2, 5) => uncompressed = Some(r.zigzag()?),
            (3, 5) => compressed = Some(r.zigzag()?),
            _ => r.skip_value(kind, 0)?,
        }
    }
    match (uncompressed, compressed) {
        (Some(u), Some(c)) => Ok((u, c)),
        _ => Err("it lacks its sizes".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch, StringArray};
    use bytes::Bytes;
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    /// A file whose chunks hold a dictionary page and several data pages with statistics
    /// in their headers (nested structs, binary fields).
    fn file() -> Bytes {
        let n = 5000;
        let batch = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from_iter_values(0..n)) as arrow_array::ArrayRef,
            ),
            (
                "name",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("name-{}", i % 37)),
                )),
            ),
        ])
        .unwrap();
        let props = WriterProperties::builder()
            .set_data_page_row_count_limit(700)
            .set_write_batch_size(100)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_write_page_header_statistics(true)
            .build();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        Bytes::from(buf)
    }

    #[test]
    fn pages_tile_each_chunk_as_the_parquet_reader_sees_them() {
        let bytes = file();
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        let rg = reader.metadata().row_group(0);
        for (i, col) in rg.columns().iter().enumerate() {
            let start = col
                .dictionary_page_offset()
                .unwrap_or(col.data_page_offset()) as usize;
            let chunk = &bytes[start..start + col.compressed_size() as usize];
            let pages = split_pages(chunk).unwrap();
            let mut page_reader = reader
                .get_row_group(0)
                .unwrap()
                .get_column_page_reader(i)
                .unwrap();
            let mut count = 0;
            while let Some(page) = page_reader.get_next_page().unwrap() {
                let raw = &pages[count];
                // Uncompressed: the body the reader returns is the page's body.
                assert_eq!(
                    raw.range.len() - raw.header_len,
                    page.buffer().len(),
                    "column {i} page {count}"
                );
                assert_eq!(raw.uncompressed_size, page.buffer().len());
                count += 1;
            }
            assert!(count > 2, "column {i} has several pages");
            assert_eq!(pages.len(), count);
            assert_eq!(pages.last().unwrap().range.end, chunk.len());
        }
    }

    #[test]
    fn cut_or_garbled_headers_are_errors_not_panics() {
        let bytes = file();
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        let col = reader.metadata().row_group(0).column(1).clone();
        let start = col.dictionary_page_offset().unwrap() as usize;
        let chunk = &bytes[start..start + col.compressed_size() as usize];
        let first = split_pages(chunk).unwrap()[0].clone();
        for cut in 1..first.header_len {
            assert!(split_pages(&chunk[..cut]).is_err(), "cut at {cut}");
        }
        assert!(split_pages(&chunk[..chunk.len() - 1]).is_err());
        let mut garbled = chunk.to_vec();
        garbled[0] = 0x0f; // field type 15 does not exist
        assert!(split_pages(&garbled).is_err());
    }
}
