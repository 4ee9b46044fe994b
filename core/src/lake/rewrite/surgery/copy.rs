//! Row groups the surgery copies as encoded bytes: column chunks with their dictionary pages,
//! bloom filters and page index, offsets rewritten in the new footer, never decoded; on S3
//! without being fetched at all ([`Surgeon::copy_unfetched`]).

use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::properties::BloomFilterPosition;
use parquet::file::reader::{ChunkReader, Length};
use parquet::schema::types::ColumnDescPtr;

use super::splice::Unfetched;
use super::{Piece, SourceRowGroup, Surgeon, chunk_range};
use crate::lake::error::LakeError;
use crate::lake::trust::stats_trusted;

impl Surgeon {
    /// Copies `source` as encoded bytes; returns the bytes written since the last call.
    ///
    /// # Errors
    /// [`LakeError::Writer`] naming the row group.
    pub fn copy(&mut self, source: &SourceRowGroup) -> Result<Vec<u8>, LakeError> {
        self.append_copy(source, &source.data)?;
        self.take(source.index)
    }

    /// Copies `source` as encoded bytes without its column chunks having been fetched
    /// (`source.data` may be empty; its bloom filters and page index are needed): the footer
    /// gets its metadata with offsets shifted, and the pieces returned (everything written
    /// since the last call) hold its column chunks as [`Piece::Source`] ranges of the input,
    /// for the upload to copy.
    ///
    /// # Errors
    /// [`LakeError::Corrupt`] when a chunk's offsets are impossible; [`LakeError::Writer`].
    pub fn copy_unfetched(&mut self, source: &SourceRowGroup) -> Result<Vec<Piece>, LakeError> {
        let file_len = Length::len(&source.data);
        let mut at = self.writer.bytes_written() as u64;
        for col in source.meta.columns() {
            let range = chunk_range(col, file_len).map_err(|reason| LakeError::Corrupt {
                file: self.relative.clone(),
                reason: format!("row group {}: {reason}", source.index),
                source: None,
            })?;
            let len = range.end - range.start;
            self.writer.inner_mut().skip(at, len, range.start);
            at += len;
        }
        // Bloom filters written right after the row group are the original's block, byte for
        // byte: taken from the original too, so a run stays one range of it.
        if self.props.bloom_filter_position() == BloomFilterPosition::AfterRowGroup
            && let Some((start, raw)) = &source.bloom_bytes
            && serialized_blooms(source).is_some_and(|b| b == raw[..])
        {
            self.writer.inner_mut().skip(at, raw.len() as u64, *start);
        }
        self.append_copy(source, &Unfetched { file_len })?;
        self.flush(source.index)?;
        self.writer
            .inner_mut()
            .take_pieces()
            .map_err(|reason| LakeError::Unsupported {
                file: self.relative.clone(),
                reason: format!("copying row group {}: {reason}", source.index),
            })
    }

    /// Appends `source`'s column chunks, read from `chunks`, with their metadata.
    fn append_copy<R: ChunkReader>(
        &mut self,
        source: &SourceRowGroup,
        chunks: &R,
    ) -> Result<(), LakeError> {
        let wrap = |e: ParquetError| {
            LakeError::writer(
                &self.relative,
                format_args!("copying row group {}", source.index),
                e,
            )
        };
        let page_index = &source.page_index;
        let mut rg = self.writer.next_row_group().map_err(wrap)?;
        let rows = u64::try_from(source.meta.num_rows()).unwrap_or(0);
        for (i, col) in source.meta.columns().iter().enumerate() {
            let (mut metadata, mut column_index) =
                (col.clone(), page_index.column_index(i).cloned());
            if !stats_trusted(col, self.created_by.as_deref()) {
                metadata = metadata
                    .into_builder()
                    .clear_statistics()
                    .build()
                    .map_err(wrap)?;
                column_index = None;
            }
            if !self.unknown.is_empty() {
                metadata = with_descr(&metadata, self.writer_descr.column(i)).map_err(wrap)?;
            }
            let close = ColumnCloseResult {
                bytes_written: u64::try_from(col.compressed_size()).unwrap_or(0),
                rows_written: rows,
                metadata,
                bloom_filter: source.blooms.get(i).cloned().flatten(),
                column_index,
                offset_index: page_index.offset_index(i).cloned(),
            };
            rg.append_column(chunks, close).map_err(wrap)?;
        }
        rg.close().map_err(wrap)?;
        self.metrics.row_groups_copied += 1;
        self.metrics.bytes_copied += source.compressed_bytes();
        Ok(())
    }
}

/// The bytes the writer writes for `source`'s bloom filters after the row group (each
/// column's filter in order, `Sbbf::write`); `None` when one does not serialize.
fn serialized_blooms(source: &SourceRowGroup) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for bloom in source.blooms.iter().flatten() {
        bloom.write(&mut out).ok()?;
    }
    Some(out)
}

/// `col` described by `descr` (the writer's column, the same but for a logical type it cannot
/// write), every other field kept.
///
/// # Errors
/// The parquet crate's error when the metadata cannot be rebuilt.
fn with_descr(
    col: &ColumnChunkMetaData,
    descr: ColumnDescPtr,
) -> Result<ColumnChunkMetaData, ParquetError> {
    let mut b = ColumnChunkMetaData::builder(descr)
        .set_encodings_mask(*col.encodings_mask())
        .set_num_values(col.num_values())
        .set_compression_codec(col.compression_codec())
        .set_total_compressed_size(col.compressed_size())
        .set_total_uncompressed_size(col.uncompressed_size())
        .set_data_page_offset(col.data_page_offset())
        .set_dictionary_page_offset(col.dictionary_page_offset())
        .set_index_page_offset(col.index_page_offset())
        .set_bloom_filter_offset(col.bloom_filter_offset())
        .set_bloom_filter_length(col.bloom_filter_length())
        .set_offset_index_offset(col.offset_index_offset())
        .set_offset_index_length(col.offset_index_length())
        .set_column_index_offset(col.column_index_offset())
        .set_column_index_length(col.column_index_length())
        .set_unencoded_byte_array_data_bytes(col.unencoded_byte_array_data_bytes())
        .set_repetition_level_histogram(col.repetition_level_histogram().cloned())
        .set_definition_level_histogram(col.definition_level_histogram().cloned());
    if let Some(stats) = col.statistics() {
        b = b.set_statistics(stats.clone());
    }
    if let Some(stats) = col.page_encoding_stats() {
        b = b.set_page_encoding_stats(stats.clone());
    }
    if let Some(path) = col.file_path() {
        b = b.set_file_path(path.to_string());
    }
    b.build()
}
