//! A decoded footer with the mistakes of known writers mended, as parquet-mr and Arrow C++
//! forgive them: a file-level row count that disagrees with the row groups, a dictionary page
//! offset of `0`, and column chunk sizes that leave the dictionary page header out
//! (PARQUET-816).

use std::ops::Range;
use std::sync::Arc;

use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    ColumnChunkMetaData, FileMetaData, ParquetMetaData, ParquetMetaDataBuilder, RowGroupMetaData,
};

use super::compact::{Value, read_struct};
use crate::lake::trust::{dictionary_header_uncounted, row_counts_agree};

/// Bytes read past a chunk's stated end when its size may leave the dictionary page header
/// out (Arrow C++'s `kMaxDictHeaderSize`).
const MAX_DICTIONARY_HEADER: u64 = 100;

/// `footer` with the mistakes readers forgive mended, and whether its file-level row count
/// agreed with its row groups.
///
/// - A file-level `num_rows` that disagrees with the sum of the row groups' is replaced by that
///   sum (the Arrow reader sizes its batches by the file-level count, so a footer saying 0 rows
///   would read as empty).
/// - Row groups are mended as [`mended_row_group`] says.
/// - For writers that left the dictionary page header out of a chunk's sizes
///   ([`dictionary_header_uncounted`]), each chunk's end is found by walking its page headers
///   (`data_end` is where the footer begins): the data, not the footer, says where a chunk ends.
///
/// # Errors
/// The parquet crate's error when the metadata cannot be rebuilt, or a chunk not be fetched.
pub(crate) async fn mend<R: AsyncFileReader>(
    footer: Arc<ParquetMetaData>,
    reader: &mut R,
    data_end: u64,
) -> Result<(Arc<ParquetMetaData>, bool, Vec<String>), ParquetError> {
    let rows_agree = row_counts_agree(&footer);
    let offsets_ok = !footer
        .row_groups()
        .iter()
        .flat_map(|rg| rg.columns())
        .any(|c| c.dictionary_page_offset().is_some_and(|o| o < 4));
    let walk = dictionary_header_uncounted(footer.file_metadata().created_by());
    if rows_agree && offsets_ok && !walk {
        return Ok((footer, true, Vec::new()));
    }
    let mut notes = Vec::new();
    let fm = footer.file_metadata();
    let rows: i64 = footer.row_groups().iter().map(|rg| rg.num_rows()).sum();
    let file_metadata = FileMetaData::new(
        fm.version(),
        rows,
        fm.created_by().map(str::to_string),
        fm.key_value_metadata().cloned(),
        fm.schema_descr_ptr(),
        fm.column_orders().cloned(),
    );
    let mut row_groups = footer
        .row_groups()
        .iter()
        .map(mended_row_group)
        .collect::<Result<Vec<_>, _>>()?;
    if walk {
        row_groups = counted_dictionary_headers(row_groups, reader, data_end, &mut notes).await?;
    }
    let mended = ParquetMetaDataBuilder::new(file_metadata)
        .set_row_groups(row_groups)
        .build();
    Ok((Arc::new(mended), rows_agree, notes))
}

/// `rg` with the footer mistakes readers are known to forgive mended: a dictionary page
/// offset inside the file's magic (`0`, as some writers put for "none"; parquet-mr and Arrow
/// C++ ignore such offsets) is dropped, so the chunk starts at its first data page.
///
/// # Errors
/// The parquet crate's error when the metadata cannot be rebuilt.
fn mended_row_group(rg: &RowGroupMetaData) -> parquet::errors::Result<RowGroupMetaData> {
    if !rg
        .columns()
        .iter()
        .any(|c| c.dictionary_page_offset().is_some_and(|o| o < 4))
    {
        return Ok(rg.clone());
    }
    let columns = rg
        .columns()
        .iter()
        .map(|c| {
            if c.dictionary_page_offset().is_some_and(|o| o < 4) {
                c.clone()
                    .into_builder()
                    .set_dictionary_page_offset(None)
                    .build()
            } else {
                Ok(c.clone())
            }
        })
        .collect::<parquet::errors::Result<Vec<_>>>()?;
    rg.clone()
        .into_builder()
        .set_column_metadata(columns)
        .build()
}

/// Where a chunk starts and the bytes its footer entry gives it.
fn stated(col: &ColumnChunkMetaData) -> Option<Range<u64>> {
    let start = col
        .dictionary_page_offset()
        .filter(|&o| o >= 4)
        .unwrap_or_else(|| col.data_page_offset());
    let start = u64::try_from(start).ok()?;
    let len = u64::try_from(col.compressed_size()).ok()?;
    Some(start..start.checked_add(len)?)
}

/// The row groups with each chunk's sizes grown to where its pages really end (PARQUET-816).
/// A chunk whose pages cannot be walked is left as stated; reading it will say what is wrong.
async fn counted_dictionary_headers<R: AsyncFileReader>(
    row_groups: Vec<RowGroupMetaData>,
    reader: &mut R,
    data_end: u64,
    notes: &mut Vec<String>,
) -> Result<Vec<RowGroupMetaData>, ParquetError> {
    let ranges: Vec<Range<u64>> = row_groups
        .iter()
        .flat_map(|rg| rg.columns())
        .map(|c| match stated(c) {
            Some(r) if r.end <= data_end => r.start..(r.end + MAX_DICTIONARY_HEADER).min(data_end),
            _ => 0..0,
        })
        .collect();
    let fetched = reader.get_byte_ranges(ranges).await?;
    let mut fetched = fetched.into_iter();
    let mut out = Vec::with_capacity(row_groups.len());
    for (g, rg) in row_groups.into_iter().enumerate() {
        let mut columns = Vec::with_capacity(rg.num_columns());
        let mut changed = false;
        for col in rg.columns() {
            let bytes = fetched.next().unwrap_or_default();
            let stated_len = col.compressed_size();
            match pages_end(&bytes, col.num_values()) {
                Some(end) if i64::try_from(end).is_ok_and(|e| e > stated_len) => {
                    let grow = i64::try_from(end).unwrap_or(stated_len) - stated_len;
                    notes.push(format!(
                        "row group {g}, column {}: {grow} bytes of pages past the stated size \
                         (the dictionary page header, PARQUET-816)",
                        col.column_path()
                    ));
                    columns.push(
                        col.clone()
                            .into_builder()
                            .set_total_compressed_size(stated_len + grow)
                            .set_total_uncompressed_size(col.uncompressed_size() + grow)
                            .build()?,
                    );
                    changed = true;
                }
                _ => columns.push(col.clone()),
            }
        }
        out.push(if changed {
            rg.into_builder().set_column_metadata(columns).build()?
        } else {
            rg
        });
    }
    Ok(out)
}

/// Where the pages of a chunk (`bytes` from its start) end: after the data page that brings the
/// values counted to `num_values`. `None` when a page header does not decode first.
fn pages_end(bytes: &[u8], num_values: i64) -> Option<usize> {
    let mut at = 0usize;
    let mut values = 0i64;
    while values < num_values {
        let (header, len) = read_struct(bytes.get(at..)?).ok()?;
        let compressed = usize::try_from(header.get(3)?.as_int()?).ok()?;
        // PageHeader: 1 type (0 DATA_PAGE, 2 DICTIONARY_PAGE, 3 DATA_PAGE_V2); the data page
        // headers (fields 5 and 8) start with num_values.
        let count = match header.get(1)?.as_int()? {
            0 => header.get(5),
            3 => header.get(8),
            _ => None,
        };
        if let Some(Value::Struct(h)) = count {
            values += h.get(1)?.as_int()?;
        }
        at = at.checked_add(len)?.checked_add(compressed)?;
        if at > bytes.len() {
            return None;
        }
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::super::compact::{Struct, wire, write_struct};
    use super::*;

    fn page(kind: i64, values: Option<i64>, body: usize) -> Vec<u8> {
        let mut h = Struct::default();
        h.set(1, Value::Int(wire::I32, kind));
        h.set(2, Value::Int(wire::I32, body as i64));
        h.set(3, Value::Int(wire::I32, body as i64));
        if let Some(n) = values {
            let mut d = Struct::default();
            d.set(1, Value::Int(wire::I32, n));
            h.set(if kind == 3 { 8 } else { 5 }, Value::Struct(d));
        }
        let mut out = write_struct(&h);
        out.extend(std::iter::repeat_n(0xab, body));
        out
    }

    #[test]
    fn the_pages_end_after_the_data_page_that_completes_the_values() {
        let dict = page(2, None, 30);
        let data1 = page(0, Some(20), 50);
        let data2 = page(3, Some(5), 10);
        let mut bytes = [dict.clone(), data1.clone(), data2.clone()].concat();
        let end = dict.len() + data1.len() + data2.len();
        bytes.extend([1, 2, 3]); // the next chunk
        assert_eq!(pages_end(&bytes, 25), Some(end));
        assert_eq!(pages_end(&bytes, 20), Some(dict.len() + data1.len()));
        // Fewer values than the chunk says: cannot tell.
        assert_eq!(pages_end(&bytes[..end], 26), None);
        assert_eq!(pages_end(&bytes[..end - 1], 25), None);
    }
}
