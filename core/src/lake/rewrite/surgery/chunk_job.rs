//! What the page filter ([`super::pages`]) is given and gives back for one column chunk, and
//! why it may stop before writing anything; shared by its steps (`page_read`, `page_write`).

use bytes::Bytes;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::schema::types::ColumnDescPtr;

/// What to filter: one column chunk of an affected row group.
pub(crate) struct ChunkJob<'a> {
    /// The column.
    pub descr: &'a ColumnDescPtr,
    /// The chunk's metadata in the input.
    pub source: &'a ColumnChunkMetaData,
    /// The chunk's encoded bytes (dictionary page, if any, to the end of its data pages).
    pub raw: Bytes,
    /// Per record of the row group: kept or not.
    pub keep: &'a [bool],
    /// Write a column index (the input had one for this column).
    pub column_index: bool,
    /// Write an offset index (the input had one: its pages start at record boundaries).
    pub offset_index: bool,
    /// Build a bloom filter of this many distinct values at this false-positive rate.
    pub bloom: Option<(u64, f64)>,
    /// Pages left unchanged may be copied as encoded bytes (false when the input's writer is
    /// known to write wrong statistics, which their headers may carry).
    pub copy_unchanged: bool,
    /// The input's writer (`created_by`), by which compression levels are remembered.
    pub created_by: Option<&'a str>,
}

/// A filtered chunk, ready for `SerializedRowGroupWriter::append_column`.
pub(crate) struct FilteredChunk {
    /// Its encoded bytes (offsets in `close` are relative to them).
    pub bytes: Bytes,
    /// Its metadata, page index and bloom filter.
    pub close: ColumnCloseResult,
    /// Records read from the input chunk.
    pub records: usize,
    /// Data pages copied as encoded bytes.
    pub pages_copied: usize,
    /// Data pages encoded again.
    pub pages_encoded: usize,
}

/// Why the page filter stopped before writing anything.
pub(super) enum Stop {
    /// The chunk is one this path leaves to the typed writer; the reason is logged.
    Declined(&'static str),
    /// The chunk does not decode.
    Failed(ParquetError),
}

impl From<ParquetError> for Stop {
    fn from(e: ParquetError) -> Self {
        Stop::Failed(e)
    }
}
