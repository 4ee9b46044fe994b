//! The column chunks of one row group, fetched from the store and served to the parquet
//! crate's synchronous readers and to [`append_column`] as a [`ChunkReader`].
//!
//! [`append_column`]: parquet::file::writer::SerializedRowGroupWriter::append_column

use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use parquet::errors::ParquetError;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::reader::{ChunkReader, Length};

/// Byte ranges of one file that were fetched, by offset in the file. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct FetchedRanges {
    file_len: u64,
    /// `(offset, bytes)`, sorted by offset, not overlapping.
    ranges: Arc<Vec<(u64, Bytes)>>,
}

impl FetchedRanges {
    /// `parts[i]` holds the bytes of `ranges[i]` of a file of `file_len` bytes.
    pub(crate) fn new(file_len: u64, ranges: &[Range<u64>], parts: Vec<Bytes>) -> Self {
        let mut pairs: Vec<(u64, Bytes)> = ranges.iter().map(|r| r.start).zip(parts).collect();
        pairs.sort_by_key(|(start, _)| *start);
        Self {
            file_len,
            ranges: Arc::new(pairs),
        }
    }

    /// The fetched bytes from `start` to the end of the range holding it.
    fn from(&self, start: u64) -> parquet::errors::Result<Bytes> {
        let i = self.ranges.partition_point(|(s, _)| *s <= start);
        let (s, bytes) = i
            .checked_sub(1)
            .and_then(|i| self.ranges.get(i))
            .filter(|(s, b)| start < s + b.len() as u64)
            .ok_or_else(|| {
                ParquetError::General(format!("byte {start} of the file was not fetched"))
            })?;
        Ok(bytes.slice((start - s) as usize..))
    }
}

impl Length for FetchedRanges {
    fn len(&self) -> u64 {
        self.file_len
    }
}

impl ChunkReader for FetchedRanges {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(self.from(start)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let bytes = self.from(start)?;
        if bytes.len() < length {
            return Err(ParquetError::General(format!(
                "bytes {start}..{} of the file were not fetched",
                start + length as u64
            )));
        }
        Ok(bytes.slice(..length))
    }
}

/// The byte range of a column chunk (dictionary page, if any, to the end of its data pages),
/// checked against the file: a negative or out-of-file offset or length is an error, not a
/// panic.
///
/// # Errors
/// A sentence naming the offsets when they are impossible.
pub(crate) fn chunk_range(col: &ColumnChunkMetaData, file_len: u64) -> Result<Range<u64>, String> {
    let start = col
        .dictionary_page_offset()
        .unwrap_or_else(|| col.data_page_offset());
    let len = col.compressed_size();
    let (Ok(start), Ok(len)) = (u64::try_from(start), u64::try_from(len)) else {
        return Err(format!(
            "column chunk {:?} has offset {start} and length {len}",
            col.column_path().string()
        ));
    };
    if start < 4 || start.saturating_add(len) > file_len.saturating_sub(8) {
        return Err(format!(
            "column chunk {:?} spans bytes {start}..{} of a {file_len}-byte file",
            col.column_path().string(),
            start.saturating_add(len)
        ));
    }
    Ok(start..start + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_served_from_the_fetched_ranges_only() {
        let f = FetchedRanges::new(
            100,
            &[40..50, 10..20],
            vec![Bytes::from(vec![4u8; 10]), Bytes::from(vec![1u8; 10])],
        );
        assert_eq!(f.get_bytes(12, 8).unwrap(), Bytes::from(vec![1u8; 8]));
        assert_eq!(f.get_bytes(45, 5).unwrap(), Bytes::from(vec![4u8; 5]));
        assert!(f.get_bytes(15, 10).is_err(), "runs past the fetched range");
        assert!(f.get_bytes(25, 1).is_err(), "between ranges");
        assert!(f.get_bytes(5, 1).is_err(), "before the first range");
    }
}
