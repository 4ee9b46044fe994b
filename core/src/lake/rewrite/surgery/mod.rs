//! Row-group surgery: the new file is written at Parquet's physical level, row group by row
//! group. A row group holding none of the rows to change is **copied** as encoded bytes —
//! column chunks with their dictionary pages, bloom filters and page index, offsets rewritten
//! in the new footer — never decoded. A row group that holds such rows is **filtered**: each
//! leaf column is read with the parquet crate's typed column reader and written back with the
//! typed column writer of its own physical type ([`levels`]), so every column keeps its
//! physical, logical and converted type, repetition, levels, field id and type length.
//!
//! The schema written is the input's own (`SchemaDescriptor::root_schema_ptr`), the writer
//! settings keep each column's layout ([`props`]), and statistics the input's writer is known
//! to get wrong (PARQUET-251) are dropped from copied chunks rather than vouched for under
//! Lethe's `created_by`.

mod bloom_layout;
mod chunk_job;
mod chunks;
mod codec;
mod copy;
mod levels;
mod order;
mod page_parts;
mod page_read;
mod page_write;
mod pages;
mod props;
mod rle;
mod source;
mod splice;
mod thrift;
mod values;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::basic::Type as PhysicalType;
use parquet::bloom_filter::Sbbf;
use parquet::data_type::{
    BoolType, ByteArrayType, DoubleType, FixedLenByteArrayType, FloatType, Int32Type, Int64Type,
    Int96Type,
};
use parquet::errors::ParquetError;
use parquet::file::metadata::page_index::RowGroupPageIndex;
use parquet::file::metadata::{ParquetMetaData, RowGroupMetaData};
use parquet::file::properties::{ReaderProperties, WriterPropertiesPtr};
use parquet::file::reader::RowGroupReader;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::serialized_reader::SerializedRowGroupReader;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{SchemaDescPtr, SchemaDescriptor};
use serde::{Deserialize, Serialize};

pub(crate) use bloom_layout::{
    between_row_groups as blooms_between_row_groups, block as bloom_block,
};
use chunks::FetchedRanges;
pub(crate) use chunks::chunk_range;
#[cfg(test)]
pub(crate) use props::ORIGINAL_CREATED_BY;
pub(crate) use props::key_value_metadata;
pub(crate) use source::{fetch_row_group, load_page_index, plan_candidates};
pub(crate) use splice::Piece;
use splice::Spliced;
#[cfg(test)]
pub(crate) use thrift::split_pages;

use super::RowFilter;
use crate::lake::error::LakeError;
use crate::lake::footer::{Unknown, restore, writable_schema};
use crate::lake::trust::stats_trusted;
use levels::{ColumnPlan, filter_column};
use pages::{ChunkJob, filter_chunk};
use values::{PhysValue, physical_value};

/// Rows decoded per batch when a filter reads its input columns.
const PLAN_BATCH_ROWS: usize = 8192;

/// Counters of the row groups of a rewrite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SurgeryMetrics {
    /// Row groups decoded, filtered and encoded again.
    pub row_groups_rewritten: u64,
    /// Row groups copied as encoded bytes.
    pub row_groups_copied: u64,
    /// Compressed bytes of the row groups decoded and encoded again (as in the input).
    pub bytes_reencoded: u64,
    /// Compressed bytes of the row groups copied.
    pub bytes_copied: u64,
    /// Of `bytes_copied`, the bytes S3 copied from the original into the new object itself
    /// (multipart `UploadPartCopy`): never downloaded nor uploaded by the worker. 0 off S3.
    pub bytes_copied_server_side: u64,
    /// Data pages of rewritten row groups copied as encoded bytes (they lost no row).
    pub pages_copied: u64,
    /// Data pages of rewritten row groups encoded again.
    pub pages_reencoded: u64,
}

impl SurgeryMetrics {
    /// Adds `other` to these counters.
    pub fn add(&mut self, other: &SurgeryMetrics) {
        self.row_groups_rewritten += other.row_groups_rewritten;
        self.row_groups_copied += other.row_groups_copied;
        self.bytes_reencoded += other.bytes_reencoded;
        self.bytes_copied += other.bytes_copied;
        self.bytes_copied_server_side += other.bytes_copied_server_side;
        self.pages_copied += other.pages_copied;
        self.pages_reencoded += other.pages_reencoded;
    }
}

/// What a filter decided for one row group, in the physical terms the writer applies.
#[derive(Debug)]
pub(crate) struct RowGroupPlan {
    /// Per record: kept or not.
    keep: Vec<bool>,
    /// Leaf column → record → new value (`None`: null).
    edits: HashMap<usize, HashMap<usize, Option<PhysValue>>>,
    /// Records removed.
    pub removed: u64,
    /// Kept records with a cell set.
    pub changed: u64,
}

impl RowGroupPlan {
    /// True when the plan changes nothing (the row group can be copied).
    pub fn is_noop(&self) -> bool {
        self.removed == 0 && self.edits.values().all(HashMap::is_empty)
    }

    /// True when the plan removes every row.
    pub fn removes_all(&self) -> bool {
        self.removed > 0 && self.removed == self.keep.len() as u64
    }

    /// A plan keeping each of `rows` records as it is.
    pub fn keep_all(rows: usize) -> Self {
        Self {
            keep: vec![true; rows],
            edits: HashMap::new(),
            removed: 0,
            changed: 0,
        }
    }

    /// Also removes `records` (indexes in the row group): rows a table format had already
    /// deleted. Returns how many of them the plan kept until now (records it already removed
    /// are not counted twice).
    ///
    /// # Errors
    /// A message when a record is past the row group's end (the deletes do not fit the file).
    pub fn remove_records(
        &mut self,
        records: impl IntoIterator<Item = usize>,
    ) -> Result<u64, String> {
        let mut newly = 0;
        for record in records {
            let rows = self.keep.len();
            let kept = self.keep.get_mut(record).ok_or_else(|| {
                format!("deleted row {record} is past the row group's {rows} rows")
            })?;
            if *kept {
                *kept = false;
                newly += 1;
                let mut had_edit = false;
                for values in self.edits.values_mut() {
                    had_edit |= values.remove(&record).is_some();
                }
                if had_edit {
                    self.changed = self.changed.saturating_sub(1);
                }
            }
        }
        self.removed += newly;
        Ok(newly)
    }
}

/// One row group of the input: its (mended) metadata and its fetched column chunks.
pub(crate) struct SourceRowGroup {
    /// Index in the input file.
    pub index: usize,
    /// Its metadata, with known footer mistakes mended (`lake::footer`).
    pub meta: RowGroupMetaData,
    /// Its column chunks' bytes.
    pub data: FetchedRanges,
    /// Bloom filters per leaf column (only needed to copy the row group).
    pub blooms: Vec<Option<Sbbf>>,
    /// Its page index in the input (empty when the input has none or it was not loaded).
    pub page_index: RowGroupPageIndex,
    /// Its bloom filters' bytes as one block of the input, with the block's offset, when
    /// they were fetched so ([`bloom_block`]).
    pub bloom_bytes: Option<(u64, bytes::Bytes)>,
}

impl SourceRowGroup {
    /// Compressed bytes of its column chunks.
    fn compressed_bytes(&self) -> u64 {
        self.meta
            .columns()
            .iter()
            .map(|c| u64::try_from(c.compressed_size()).unwrap_or(0))
            .sum()
    }
}

/// Reads the filter's input columns of `source` and turns its decision into a
/// [`RowGroupPlan`] (runs on the blocking pool).
///
/// # Errors
/// [`LakeError`] naming the file when the columns do not decode, the filter fails, or a new
/// value has no encoding in its column's physical type.
pub(crate) fn plan_row_group(
    relative: &str,
    metadata: &ArrowReaderMetadata,
    source: &SourceRowGroup,
    filter: &Arc<dyn RowFilter>,
) -> Result<RowGroupPlan, LakeError> {
    let schema = metadata.schema();
    let descr = metadata.parquet_schema();
    let inputs: Vec<usize> = filter
        .input_columns()
        .iter()
        .filter_map(|c| schema.index_of(c).ok())
        .collect();
    let mask = ProjectionMask::roots(descr, inputs);
    let reader =
        ParquetRecordBatchReaderBuilder::new_with_metadata(source.data.clone(), metadata.clone())
            .with_row_groups(vec![source.index])
            .with_projection(mask)
            .with_batch_size(PLAN_BATCH_ROWS)
            .build()
            .map_err(|e| LakeError::corrupt(relative, "planning the read", e))?;
    let rows = usize::try_from(source.meta.num_rows()).unwrap_or(0);
    let mut plan = RowGroupPlan {
        keep: Vec::with_capacity(rows),
        edits: HashMap::new(),
        removed: 0,
        changed: 0,
    };
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|e| LakeError::Corrupt {
            file: relative.to_string(),
            reason: format!("decoding row group {}: {e}", source.index),
            source: None,
        })?;
        let base = plan.keep.len();
        let edits = filter.plan(relative, &batch)?;
        plan.removed += edits.rows_removed();
        plan.changed += edits.rows_changed();
        plan.keep.extend(edits.keep.values().iter());
        for cell in &edits.cells {
            let Some(leaf) = top_level_leaf(descr, &cell.column) else {
                if schema.index_of(&cell.column).is_err() {
                    // Not in this file (an older file of the dataset): nothing to set.
                    continue;
                }
                return Err(LakeError::InvalidValue {
                    file: relative.to_string(),
                    column: cell.column.clone(),
                    reason: "only top-level primitive columns can be set".into(),
                });
            };
            let col = descr.column(leaf);
            let slot = plan.edits.entry(leaf).or_default();
            for row in (0..cell.rows.len()).filter(|&r| cell.rows.value(r)) {
                let value = physical_value(&cell.values, row, &col).map_err(|reason| {
                    LakeError::InvalidValue {
                        file: relative.to_string(),
                        column: cell.column.clone(),
                        reason,
                    }
                })?;
                slot.insert(base + row, value);
            }
        }
    }
    if plan.keep.len() != rows {
        return Err(LakeError::Corrupt {
            file: relative.to_string(),
            reason: format!(
                "row group {} says {rows} rows but its columns decode to {}",
                source.index,
                plan.keep.len()
            ),
            source: None,
        });
    }
    Ok(plan)
}

/// The leaf index of top-level primitive column `name`.
fn top_level_leaf(descr: &SchemaDescriptor, name: &str) -> Option<usize> {
    descr
        .columns()
        .iter()
        .position(|c| c.path().parts().len() == 1 && c.path().parts()[0] == name)
}

/// Writes the new file row group by row group; the bytes of each row group are taken out as
/// soon as it is closed, so they can be uploaded while the next one is prepared.
pub(crate) struct Surgeon {
    writer: SerializedFileWriter<Spliced>,
    /// The input's schema (the page filter's column metadata is built from it).
    descr: SchemaDescPtr,
    /// Logical types the writer cannot write, removed from its schema and put back into the
    /// footer it writes; with the writer's schema, which copied chunks are given.
    unknown: Vec<Unknown>,
    writer_descr: SchemaDescPtr,
    props: WriterPropertiesPtr,
    created_by: Option<String>,
    relative: String,
    /// What was done so far.
    pub metrics: SurgeryMetrics,
}

impl Surgeon {
    /// A writer of the rewrite of the file whose footer (with its page index, if loaded) is
    /// `md`, taking each column's layout from row group `reference`.
    ///
    /// # Errors
    /// [`LakeError::Unsupported`] when the writer refuses the file's schema.
    pub fn new(relative: &str, md: &ParquetMetaData, reference: usize) -> Result<Self, LakeError> {
        let refused = |e: ParquetError| LakeError::Unsupported {
            file: relative.to_string(),
            reason: format!("the Parquet writer refused its schema: {e}"),
        };
        let descr = md.file_metadata().schema_descr_ptr();
        let (schema, unknown) = writable_schema(&descr.root_schema_ptr()).map_err(refused)?;
        let writer_descr = if unknown.is_empty() {
            Arc::clone(&descr)
        } else {
            Arc::new(SchemaDescriptor::new(Arc::clone(&schema)))
        };
        let props = Arc::new(props::writer_properties(md, reference));
        let writer = SerializedFileWriter::new(Spliced::default(), schema, Arc::clone(&props))
            .map_err(refused)?;
        Ok(Self {
            writer,
            descr,
            unknown,
            writer_descr,
            props,
            created_by: md.file_metadata().created_by().map(str::to_string),
            relative: relative.to_string(),
            metrics: SurgeryMetrics::default(),
        })
    }

    /// Writes `source` filtered by `plan`; returns the bytes written since the last call.
    ///
    /// # Errors
    /// [`LakeError::Corrupt`] when a column does not decode or holds another number of
    /// records than the row group says; [`LakeError::Writer`] when encoding fails.
    pub fn filter(
        &mut self,
        source: &SourceRowGroup,
        plan: &RowGroupPlan,
    ) -> Result<Vec<u8>, LakeError> {
        let relative = self.relative.clone();
        let corrupt = |what: String, e: ParquetError| LakeError::corrupt(&relative, what, e);
        let props = Arc::new(
            ReaderProperties::builder()
                .set_read_bloom_filter(false)
                .build(),
        );
        let reader = SerializedRowGroupReader::new(
            Arc::new(source.data.clone()),
            &source.meta,
            RowGroupPageIndex::new(source.index, None),
            props,
        )
        .map_err(|e| corrupt(format!("reading row group {}", source.index), e))?;
        let descr = Arc::clone(&self.descr);
        let expected = usize::try_from(source.meta.num_rows()).unwrap_or(0);
        let context = PageContext {
            relative: &relative,
            descr: &descr,
            props: &Arc::clone(&self.props),
            created_by: self.created_by.clone(),
        };
        let mut rg = self.writer.next_row_group().map_err(|e| {
            LakeError::writer(&relative, format_args!("on row group {}", source.index), e)
        })?;
        for i in 0..descr.num_columns() {
            let col = descr.column(i);
            let path = col.path().string();
            if plan.edits.get(&i).is_none_or(HashMap::is_empty)
                && let Some(chunk) = filter_pages(&context, &reader, source, plan, i)?
            {
                if chunk.records != expected {
                    return Err(LakeError::Corrupt {
                        file: relative.clone(),
                        reason: format!(
                            "row group {}: column {path:?} holds {} records, the footer says {expected}",
                            source.index, chunk.records
                        ),
                        source: None,
                    });
                }
                self.metrics.pages_copied += chunk.pages_copied as u64;
                self.metrics.pages_reencoded += chunk.pages_encoded as u64;
                rg.append_column(&chunk.bytes, chunk.close).map_err(|e| {
                    LakeError::writer(&relative, format_args!("on column {path:?}"), e)
                })?;
                continue;
            }
            let column_reader = reader
                .get_column_reader(i)
                .map_err(|e| corrupt(format!("row group {}, column {path:?}", source.index), e))?;
            let mut column_writer = rg
                .next_column()
                .and_then(|c| {
                    c.ok_or_else(|| ParquetError::General("fewer columns than the schema".into()))
                })
                .map_err(|e| LakeError::writer(&relative, format_args!("on column {path:?}"), e))?;
            let column_plan = ColumnPlan {
                keep: &plan.keep,
                edits: plan.edits.get(&i),
            };
            let w = &mut column_writer;
            macro_rules! filter_as {
                ($t:ty) => {
                    filter_column::<$t>(column_reader, w.typed(), &col, &column_plan)
                };
            }
            let records = match col.physical_type() {
                PhysicalType::BOOLEAN => filter_as!(BoolType),
                PhysicalType::INT32 => filter_as!(Int32Type),
                PhysicalType::INT64 => filter_as!(Int64Type),
                PhysicalType::INT96 => filter_as!(Int96Type),
                PhysicalType::FLOAT => filter_as!(FloatType),
                PhysicalType::DOUBLE => filter_as!(DoubleType),
                PhysicalType::BYTE_ARRAY => filter_as!(ByteArrayType),
                PhysicalType::FIXED_LEN_BYTE_ARRAY => filter_as!(FixedLenByteArrayType),
            }
            .map_err(|e| corrupt(format!("row group {}, column {path:?}", source.index), e))?;
            if records != expected {
                return Err(LakeError::Corrupt {
                    file: relative.clone(),
                    reason: format!(
                        "row group {}: column {path:?} holds {records} records, the footer says {expected}",
                        source.index
                    ),
                    source: None,
                });
            }
            column_writer
                .close()
                .map_err(|e| LakeError::writer(&relative, format_args!("on column {path:?}"), e))?;
        }
        rg.close().map_err(|e| {
            LakeError::writer(&relative, format_args!("on row group {}", source.index), e)
        })?;
        self.metrics.row_groups_rewritten += 1;
        self.metrics.bytes_reencoded += source.compressed_bytes();
        self.take(source.index)
    }

    /// Leaves `source` out of the new file: the plan removes all its rows (a row group left
    /// empty is dropped, not written with 0 rows).
    pub fn drop_row_group(&mut self, source: &SourceRowGroup) {
        self.metrics.row_groups_rewritten += 1;
        self.metrics.bytes_reencoded += source.compressed_bytes();
    }

    /// Writes the footer; returns the last bytes of the file.
    ///
    /// # Errors
    /// [`LakeError::Writer`].
    pub fn finish(mut self) -> Result<Vec<u8>, LakeError> {
        self.writer
            .finish()
            .map_err(|e| LakeError::writer(&self.relative, "writing the footer", e))?;
        let tail = self.take(usize::MAX)?;
        restore(tail, &self.unknown).map_err(|reason| LakeError::Unsupported {
            file: self.relative.clone(),
            reason: format!("restoring its logical types in the new footer: {reason}"),
        })
    }

    fn flush(&mut self, row_group: usize) -> Result<(), LakeError> {
        self.writer.flush().map_err(|e| {
            LakeError::writer(
                &self.relative,
                format_args!("flushing row group {row_group}"),
                ParquetError::from(e),
            )
        })
    }

    fn take(&mut self, row_group: usize) -> Result<Vec<u8>, LakeError> {
        self.flush(row_group)?;
        self.writer
            .inner_mut()
            .take_bytes()
            .map_err(|reason| LakeError::Unsupported {
                file: self.relative.clone(),
                reason: format!("writing row group {row_group}: {reason}"),
            })
    }
}

/// What [`filter_pages`] needs of the [`Surgeon`] while its row group writer is open.
struct PageContext<'a> {
    relative: &'a str,
    descr: &'a SchemaDescPtr,
    props: &'a WriterPropertiesPtr,
    created_by: Option<String>,
}

/// Filters leaf column `i` of `source` page by page ([`pages`]); `None` when the chunk is
/// one that path leaves to the typed writer.
///
/// # Errors
/// [`LakeError::Corrupt`] when its pages do not decode.
fn filter_pages(
    this: &PageContext<'_>,
    reader: &SerializedRowGroupReader<'_, FetchedRanges>,
    source: &SourceRowGroup,
    plan: &RowGroupPlan,
    i: usize,
) -> Result<Option<pages::FilteredChunk>, LakeError> {
    let col = source.meta.column(i);
    let path = col.column_path().string();
    let corrupt = |e: ParquetError| {
        LakeError::corrupt(
            this.relative,
            format!("row group {}, column {path:?}", source.index),
            e,
        )
    };
    let range =
        chunk_range(col, Length::len(&source.data)).map_err(|reason| LakeError::Corrupt {
            file: this.relative.to_string(),
            reason,
            source: None,
        })?;
    let raw = source
        .data
        .get_bytes(range.start, (range.end - range.start) as usize)
        .map_err(corrupt)?;
    let mut page_reader = reader.get_column_page_reader(i).map_err(corrupt)?;
    let bloom = col.bloom_filter_offset().and_then(|_| {
        this.props
            .bloom_filter_properties(col.column_path())
            .map(|b| (b.ndv(), b.fpp()))
    });
    let descr = this.descr.column(i);
    let job = ChunkJob {
        descr: &descr,
        source: col,
        raw,
        keep: &plan.keep,
        column_index: source.page_index.column_index(i).is_some(),
        offset_index: source.page_index.offset_index(i).is_some(),
        bloom,
        copy_unchanged: stats_trusted(col, this.created_by.as_deref()),
        created_by: this.created_by.as_deref(),
    };
    filter_chunk(page_reader.as_mut(), &job).map_err(corrupt)
}
