//! Laying rows out in the lake: Hive partitions, sorted by subject, split into files of the
//! target size, bloom filters on the subject columns. Shared by ingest and compaction.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow_schema::DataType;
use arrow_select::take::take_record_batch;
use chrono::{DateTime, NaiveDate};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{BloomFilterPosition, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::IngestError;
use crate::domain::{DatasetSchema, PartitionTransform};
use crate::lake::LakeRoot;
use crate::lake::rewrite::subject_values;

/// False-positive probability of the bloom filters on subject columns.
const BLOOM_FPP: f64 = 0.01;

/// A file written into the lake.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WrittenFile {
    /// Path relative to the dataset root (of its region's root, when `region` is set).
    pub path: String,
    /// The region whose root holds the file (data residency: `region_roots`); absent for
    /// the dataset's `root_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Rows.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Subject id → rows in this file (over every subject column).
    #[serde(skip)]
    pub subjects: HashMap<String, u64>,
}

/// Groups the rows of `batch` (logical schema) by their Hive partition path
/// (`date=2025-01-07/region=EU`); each group's row indices are sorted by the primary subject
/// column (stable, so input order is kept within a subject).
///
/// # Errors
/// [`IngestError::Invalid`] for a partition value that cannot be a path segment.
pub fn partition_rows(
    schema: &DatasetSchema,
    batch: &RecordBatch,
) -> Result<Vec<(String, UInt32Array)>, IngestError> {
    let rows = batch.num_rows();
    let mut keys: Vec<Vec<String>> = Vec::with_capacity(schema.partition_by.len());
    for p in &schema.partition_by {
        let col = batch.column_by_name(&p.source).ok_or_else(|| {
            IngestError::Unreadable(format!("partition source {} missing", p.source))
        })?;
        keys.push(partition_values(&p.name, p.transform, col)?);
    }
    let mut groups: HashMap<String, Vec<u32>> = HashMap::new();
    let mut key = String::new();
    for row in 0..rows {
        key.clear();
        for (p, values) in schema.partition_by.iter().zip(&keys) {
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(&p.name);
            key.push('=');
            key.push_str(&values[row]);
        }
        groups
            .entry(key.clone())
            .or_default()
            .push(u32::try_from(row).expect("batches hold fewer than 2^32 rows"));
    }
    let primary = subject_values(batch, schema.primary_subject())
        .map_err(|e| IngestError::Unreadable(e.to_string()))?
        .ok_or_else(|| IngestError::Unreadable("primary subject column missing".into()))?;
    let mut out: Vec<(String, UInt32Array)> = groups
        .into_iter()
        .map(|(k, mut idx)| {
            sort_rows_by(&primary, &mut idx);
            (k, UInt32Array::from(idx))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Sorts row indices by the subject id each row holds in `subjects` (nulls first), stably:
/// the layout rule of every file Lethe writes (ingest, compaction, remediation).
pub(crate) fn sort_rows_by(subjects: &StringArray, rows: &mut [u32]) {
    rows.sort_by(|a, b| {
        let (a, b) = (*a as usize, *b as usize);
        let va = subjects.is_valid(a).then(|| subjects.value(a));
        let vb = subjects.is_valid(b).then(|| subjects.value(b));
        va.cmp(&vb)
    });
}

fn partition_values(
    name: &str,
    transform: PartitionTransform,
    col: &ArrayRef,
) -> Result<Vec<String>, IngestError> {
    let bad = |row: usize, reason: String| IngestError::Invalid {
        row: row as u64 + 1,
        column: Some(name.to_string()),
        reason,
    };
    let mut out = Vec::with_capacity(col.len());
    match transform {
        PartitionTransform::Day => {
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
            match col.data_type() {
                DataType::Timestamp(_, _) => {
                    let micros = arrow_cast::cast(
                        col,
                        &DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None),
                    )
                    .and_then(|c| arrow_cast::cast(&c, &DataType::Int64))
                    .map_err(|e| IngestError::Unreadable(e.to_string()))?;
                    let micros = micros
                        .as_any()
                        .downcast_ref::<arrow_array::Int64Array>()
                        .expect("cast to Int64")
                        .clone();
                    for row in 0..micros.len() {
                        if micros.is_null(row) {
                            return Err(bad(row, "null, and a partition needs a value".into()));
                        }
                        let day = DateTime::from_timestamp_micros(micros.value(row))
                            .ok_or_else(|| bad(row, "timestamp out of range".into()))?
                            .date_naive();
                        out.push(day.format("%Y-%m-%d").to_string());
                    }
                }
                _ => {
                    let days = arrow_cast::cast(col, &DataType::Int32)
                        .map_err(|e| IngestError::Unreadable(e.to_string()))?;
                    let days = days
                        .as_any()
                        .downcast_ref::<arrow_array::Int32Array>()
                        .expect("cast to Int32")
                        .clone();
                    for row in 0..days.len() {
                        if days.is_null(row) {
                            return Err(bad(row, "null, and a partition needs a value".into()));
                        }
                        let day =
                            epoch + chrono::Days::new(u64::try_from(days.value(row)).unwrap_or(0));
                        out.push(day.format("%Y-%m-%d").to_string());
                    }
                }
            }
        }
        PartitionTransform::Identity => {
            let text = arrow_cast::cast(col, &DataType::Utf8)
                .map_err(|e| IngestError::Unreadable(e.to_string()))?;
            let text = text
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("cast to Utf8");
            for row in 0..text.len() {
                if text.is_null(row) {
                    return Err(bad(row, "null, and a partition needs a value".into()));
                }
                let v = text.value(row);
                if v.is_empty()
                    || v.starts_with(['.', '_'])
                    || v.contains(['/', '\\', '=', '%', '\n', '\r'])
                {
                    return Err(bad(row, format!("{v:?} cannot be a partition folder name")));
                }
                out.push(v.to_string());
            }
        }
    }
    Ok(out)
}

/// Writer settings of files Lethe writes: zstd, row groups of the layout's size, sorted by the
/// primary subject, bloom filters on every subject column, no dictionary for encrypted columns
/// (random bytes), and `lethe.*` key-value metadata naming the dataset and encrypted columns.
fn writer_properties(dataset: &str, schema: &DatasetSchema) -> WriterProperties {
    let file_schema = schema.file_schema();
    let encrypted: Vec<serde_json::Value> = schema
        .stored_columns()
        .filter(|c| schema.is_encrypted(&c.name))
        .map(|c| serde_json::json!({"column": c.name, "subject": schema.owner_of(c)}))
        .collect();
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid level"),
        ))
        .set_max_row_group_row_count(Some(schema.layout.row_group_rows))
        .set_key_value_metadata(Some(vec![
            KeyValue::new("lethe.dataset".into(), dataset.to_string()),
            KeyValue::new("lethe.cell_format".into(), "1".to_string()),
            KeyValue::new(
                "lethe.encrypted_columns".into(),
                serde_json::Value::Array(encrypted).to_string(),
            ),
        ]));
    if let Ok(idx) = file_schema.index_of(schema.primary_subject()) {
        b = b.set_sorting_columns(Some(vec![SortingColumn {
            column_idx: i32::try_from(idx).unwrap_or(0),
            descending: false,
            nulls_first: false,
        }]));
    }
    // Bloom filters after the last row group, as parquet-mr and Arrow C++ place them: the
    // untouched row groups of a later erasure then form one range an S3 rewrite copies
    // server-side.
    b = b.set_bloom_filter_position(BloomFilterPosition::End);
    for s in &schema.subject_columns {
        let path = ColumnPath::from(s.as_str());
        b = b
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), BLOOM_FPP)
            .set_column_bloom_filter_max_ndv(path, schema.layout.row_group_rows as u64);
    }
    for c in schema
        .stored_columns()
        .filter(|c| schema.is_encrypted(&c.name))
    {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c.name.as_str()), false);
    }
    b.build()
}

/// One encoded file: its bytes, its rows, and its subject ids with their row counts.
pub type EncodedFile = (Vec<u8>, u64, HashMap<String, u64>);

/// Encodes one partition's rows (file schema, already sorted and encrypted) into Parquet files
/// of about the layout's target size. Returns `(file bytes, rows, subject counts)` per file.
///
/// # Errors
/// [`IngestError::Write`] when the Parquet writer fails.
pub fn encode_files(
    dataset: &str,
    schema: &DatasetSchema,
    batch: &RecordBatch,
) -> Result<Vec<EncodedFile>, IngestError> {
    let props = writer_properties(dataset, schema);
    let target = schema.layout.target_file_bytes as usize;
    let group = schema.layout.row_group_rows;
    let werr = |e: parquet::errors::ParquetError| IngestError::Write(e.to_string());
    let mut files = Vec::new();
    let mut writer: Option<ArrowWriter<Vec<u8>>> = None;
    let mut rows_in_file = 0u64;
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut offset = 0usize;
    while offset < batch.num_rows() {
        let len = group.min(batch.num_rows() - offset);
        let slice = batch.slice(offset, len);
        offset += len;
        let w = match &mut writer {
            Some(w) => w,
            None => writer.insert(
                ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props.clone()))
                    .map_err(werr)?,
            ),
        };
        w.write(&slice).map_err(werr)?;
        w.flush().map_err(werr)?;
        rows_in_file += len as u64;
        for s in &schema.subject_columns {
            if let Some(values) =
                subject_values(&slice, s).map_err(|e| IngestError::Write(e.to_string()))?
            {
                for v in values.iter().flatten() {
                    match counts.get_mut(v) {
                        Some(n) => *n += 1,
                        None => {
                            counts.insert(v.to_string(), 1);
                        }
                    }
                }
            }
        }
        if w.bytes_written() >= target {
            let done = writer.take().expect("writer exists");
            files.push((
                done.into_inner().map_err(werr)?,
                std::mem::take(&mut rows_in_file),
                std::mem::take(&mut counts),
            ));
        }
    }
    if let Some(done) = writer {
        files.push((done.into_inner().map_err(werr)?, rows_in_file, counts));
    }
    Ok(files)
}

/// Takes `indices` of `batch` (logical schema) as a batch in the dataset's file schema
/// (identity partition sources dropped; encrypted columns still plain).
///
/// # Errors
/// Arrow errors.
pub fn take_stored(
    schema: &DatasetSchema,
    batch: &RecordBatch,
    indices: &UInt32Array,
) -> Result<RecordBatch, IngestError> {
    let keep: Vec<usize> = schema
        .stored_columns()
        .filter_map(|c| batch.schema().index_of(&c.name).ok())
        .collect();
    let projected = batch
        .project(&keep)
        .map_err(|e| IngestError::Write(e.to_string()))?;
    take_record_batch(&projected, indices).map_err(|e| IngestError::Write(e.to_string()))
}

/// Uploads `bytes` as `root/<relative>`. Object stores make a PUT visible all at once, so a
/// crash leaves no half file (on local disks `object_store` writes a temporary file and
/// renames it).
///
/// # Errors
/// [`IngestError::Lake`] when the store refuses.
pub async fn upload(root: &LakeRoot, relative: &str, bytes: Vec<u8>) -> Result<u64, IngestError> {
    let location = root.location(relative);
    let size = bytes.len() as u64;
    let store: &Arc<dyn ObjectStore> = root.store();
    store
        .put(&location, PutPayload::from(bytes))
        .await
        .map_err(|e| IngestError::Lake(crate::lake::LakeError::store(&location, e)))?;
    Ok(size)
}

/// `batch` sorted by the primary subject column (stable).
pub(crate) fn sort_by_subject(
    schema: &DatasetSchema,
    batch: &RecordBatch,
) -> Result<RecordBatch, IngestError> {
    let values = subject_values(batch, schema.primary_subject())
        .map_err(|e| IngestError::Write(e.to_string()))?
        .ok_or_else(|| IngestError::Write("primary subject column missing".into()))?;
    let mut idx: Vec<u32> = (0..u32::try_from(batch.num_rows()).unwrap_or(u32::MAX)).collect();
    sort_rows_by(&values, &mut idx);
    take_record_batch(batch, &UInt32Array::from(idx)).map_err(|e| IngestError::Write(e.to_string()))
}
