//! Where each page of a column chunk starts and ends, read from its Thrift page headers, so a
//! page the surgery does not change can be copied as its encoded bytes (header and body).
//!
//! Only what that needs is read: a `PageHeader` (parquet-format's `parquet.thrift`) in the
//! Thrift compact protocol, its fields 2 (`uncompressed_page_size`) and 3
//! (`compressed_page_size`), every other field skipped.

use std::ops::Range;

/// Nesting deeper than this is refused (a page header nests three levels at most).
const MAX_DEPTH: usize = 16;

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
        let mut r = Reader {
            buf: &chunk[at..],
            pos: 0,
        };
        let (uncompressed, compressed) = r.page_header()?;
        let (Ok(uncompressed), Ok(compressed)) =
            (usize::try_from(uncompressed), usize::try_from(compressed))
        else {
            return Err(format!("a page header at byte {at} has a negative size"));
        };
        let end = at
            .checked_add(r.pos)
            .and_then(|e| e.checked_add(compressed))
            .filter(|&e| e <= chunk.len())
            .ok_or_else(|| format!("the page at byte {at} runs past the column chunk"))?;
        pages.push(RawPage {
            range: at..end,
            header_len: r.pos,
            uncompressed_size: uncompressed,
        });
        at = end;
    }
    Ok(pages)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| "a page header is cut short".to_string())?;
        self.pos += 1;
        Ok(b)
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        self.pos = self
            .pos
            .checked_add(n)
            .filter(|&p| p <= self.buf.len())
            .ok_or_else(|| "a page header is cut short".to_string())?;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a page header holds an overlong varint".into())
    }

    fn zigzag(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// Reads a `PageHeader`; returns `(uncompressed_page_size, compressed_page_size)`.
    fn page_header(&mut self) -> Result<(i64, i64), String> {
        let (mut uncompressed, mut compressed) = (None, None);
        let mut last = 0i64;
        loop {
            let head = self.byte()?;
            if head == 0 {
                break;
            }
            let kind = head & 0x0f;
            let delta = i64::from(head >> 4);
            let id = if delta == 0 {
                self.zigzag()?
            } else {
                last + delta
            };
            last = id;
            match (id, kind) {
                (2, 5) => uncompressed = Some(self.zigzag()?),
                (3, 5) => compressed = Some(self.zigzag()?),
                _ => self.skip_value(kind, 0)?,
            }
        }
        match (uncompressed, compressed) {
            (Some(u), Some(c)) => Ok((u, c)),
            _ => Err("a page header lacks its sizes".into()),
        }
    }

    /// Skips one value of compact-protocol type `kind`.
    fn skip_value(&mut self, kind: u8, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("a page header nests too deep".into());
        }
        match kind {
            // Booleans in a field header carry their value.
            1 | 2 => Ok(()),
            3 => self.skip(1),
            4..=6 => self.varint().map(|_| ()),
            7 => self.skip(8),
            8 => {
                let n = usize::try_from(self.varint()?).map_err(|e| e.to_string())?;
                self.skip(n)
            }
            9 | 10 => {
                let head = self.byte()?;
                let elem = head & 0x0f;
                let mut n = u64::from(head >> 4);
                if n == 15 {
                    n = self.varint()?;
                }
                for _ in 0..n {
                    self.skip_element(elem, depth + 1)?;
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let types = self.byte()?;
                for _ in 0..n {
                    self.skip_element(types >> 4, depth + 1)?;
                    self.skip_element(types & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            12 => loop {
                let head = self.byte()?;
                if head == 0 {
                    return Ok(());
                }
                if head >> 4 == 0 {
                    self.zigzag()?;
                }
                self.skip_value(head & 0x0f, depth + 1)?;
            },
            other => Err(format!("a page header holds unknown Thrift type {other}")),
        }
    }

    /// Skips one element of a list, set or map (a boolean element takes a byte).
    fn skip_element(&mut self, kind: u8, depth: usize) -> Result<(), String> {
        if matches!(kind, 1 | 2) {
            self.skip(1)
        } else {
            self.skip_value(kind, depth)
        }
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
