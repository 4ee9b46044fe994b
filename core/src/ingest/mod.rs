//! Ingest: data enters the lake through Lethe, validated, encrypted per subject, routed to its
//! region, laid out so one subject's rows are found fast, and indexed.
//!
//! ```text
//! input (CSV / JSON Lines / Parquet)
//!   → read + validate every row (input)          nothing is written if one row is wrong
//!   → route to a region (routing)                the one place residency rules apply
//!                                                 (GDPR Chapter V: policies per jurisdiction)
//!   → drop rows of erased subjects (tombstones)  the resurrection guard
//!   → DEK per subject, seal PII cells (keyring::columns)
//!   → Hive partitions, sorted by subject, files of the target size, bloom filters (write)
//!   → locator index: which files hold which subjects (store)
//! ```
//!
//! Compaction (`crate::compaction`) reuses the layout to merge small files and apply pending
//! erasures.

mod input;
pub mod routing;
pub mod write;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;

pub use input::{InputFormat, logical_schema, read_input};

use crate::audit::NewAuditEntry;
use crate::domain::{DatasetSchema, SubjectId};
use crate::keyring::columns::{BatchKeys, encrypt_column};
use crate::keyring::{Keyring, KeyringError};
use crate::lake::rewrite::{ErasePolicy, erase_rows, subject_values};
use crate::lake::{LakeError, LakeRoot};
use crate::store::{Dataset, DatasetRoot, IndexedFile, Store, StoreError};
use write::{WrittenFile, encode_files, partition_rows, take_stored, upload};

/// Why an ingest was refused or failed. Nothing of the input is in the lake afterwards.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The dataset was registered without a schema (written by others): Lethe does not write
    /// into it.
    #[error(
        "dataset {dataset} has no declared schema; register it with a schema to ingest into it"
    )]
    NotManaged {
        /// Dataset name.
        dataset: String,
    },
    /// A row does not match the schema (or has no allowed region).
    #[error("row {row}{}: {reason}", column.as_ref().map(|c| format!(", column {c}")).unwrap_or_default())]
    Invalid {
        /// 1-based row (the line for CSV and JSON Lines).
        row: u64,
        /// The column, when one is to blame.
        column: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// The input is not in the format given.
    #[error("unreadable input: {0}")]
    Unreadable(String),
    /// The input holds no rows.
    #[error("the input holds no rows")]
    Empty,
    /// Encoding a Parquet file failed.
    #[error("writing Parquet: {0}")]
    Write(String),
    /// The keyring failed.
    #[error("keyring: {0}")]
    Keyring(#[from] KeyringError),
    /// The lake (object store) failed.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IngestError {
    /// Whether the caller sent something wrong (4xx), as opposed to an infrastructure failure.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Self::NotManaged { .. } | Self::Invalid { .. } | Self::Unreadable(_) | Self::Empty
        )
    }
}

/// What an ingest did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"dataset": "running_events", "rows_read": 10000, "rows_written": 9990,
    "rows_dropped_erased": 10, "subjects": 500, "files": [{"path": "date=2025-01-07/region=EU/part-3f2a9c1b-00000.parquet", "rows": 3300, "bytes": 401223}],
    "bytes_read": 2200000, "bytes_written": 1203669, "elapsed_s": 0.42, "rows_per_s": 23785.0, "mb_per_s": 5.2}))]
pub struct IngestReport {
    /// Dataset name.
    pub dataset: String,
    /// Rows in the input.
    pub rows_read: u64,
    /// Rows written to the lake.
    pub rows_written: u64,
    /// Rows dropped because their subject was erased (crypto-shredded): the resurrection
    /// guard (GDPR Art. 17).
    pub rows_dropped_erased: u64,
    /// Rows kept with an erased subject's columns nulled (multi-subject rows).
    pub rows_nulled_erased: u64,
    /// Distinct subjects written.
    pub subjects: u64,
    /// Files written.
    #[schema(value_type = Vec<Object>)]
    pub files: Vec<WrittenFile>,
    /// Input size in bytes.
    pub bytes_read: u64,
    /// Bytes written to the lake.
    pub bytes_written: u64,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
    /// Of which recording the locator index.
    pub index_s: f64,
    /// Input rows per second.
    pub rows_per_s: f64,
    /// Input megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
}

/// Ingests `input` (in `format`) into `dataset`, as `actor` (audited as `dataset.ingested`).
///
/// # Errors
/// See [`IngestError`]; client errors leave the lake and the index untouched, and so does a
/// failure while writing (files already written by this ingest are deleted).
#[tracing::instrument(skip_all, fields(dataset = %dataset.name, bytes = input.len()))]
pub async fn ingest(
    store: &Arc<Store>,
    keyring: &Arc<Keyring>,
    dataset: &Dataset,
    format: InputFormat,
    input: Bytes,
    actor: &str,
) -> Result<IngestReport, IngestError> {
    let started = Instant::now();
    let schema = Arc::new(
        dataset
            .schema
            .clone()
            .ok_or_else(|| IngestError::NotManaged {
                dataset: dataset.name.clone(),
            })?,
    );
    let bytes_read = input.len() as u64;
    let table = {
        let schema = Arc::clone(&schema);
        crate::lake::run_blocking(move || read_input(&schema, format, input)).await??
    };
    if table.num_rows() == 0 {
        return Err(IngestError::Empty);
    }
    let routed = routing::route(store.as_ref(), keyring, &schema, &table).await?;
    let rows_read = table.num_rows() as u64;

    // The resurrection guard: never write rows of a subject whose key was destroyed. Asked of
    // the store for the whole batch (not of any cache).
    let subjects = distinct_subjects(&schema, &table)?;
    let mut erased = keyring
        .shredded_among(subjects.iter().map(String::as_str))
        .await?;
    let keys = batch_keys(keyring, &schema, &subjects, &mut erased).await?;
    let policy = ErasePolicy::from_schema(&schema);
    let kept = erase_rows(&table, &policy, &|s| erased.contains(s))
        .map_err(|e| IngestError::Write(e.to_string()))?;
    if kept.rows_removed > 0 {
        tracing::warn!(
            rows = kept.rows_removed,
            "rows of erased subjects dropped at ingest"
        );
    }
    let table = kept.batch;
    // Jurisdictions the batch declares for subjects who had none (erased subjects aside).
    let learned: Vec<(String, String)> = routed
        .learned
        .iter()
        .filter(|(subject, _)| !erased.contains(subject))
        .map(|(subject, j)| (keyring.subject_ref_str(subject), j.clone()))
        .collect();
    store
        .record_subject_jurisdictions(&learned, &format!("ingest:{}", dataset.name), actor)
        .await?;

    let keys = Arc::new(keys);
    let mut by_root: Vec<(LakeRoot, Vec<WrittenFile>)> = Vec::new();
    for (target, rows) in split_by_root(dataset, &schema, &table)? {
        let written = match LakeRoot::parse(&target.url) {
            Ok(root) => write_partitions(
                &root,
                &dataset.name,
                &schema,
                &rows,
                Arc::clone(&keys),
                &uuid::Uuid::new_v4().simple().to_string()[..12],
            )
            .await
            .map(|files| (root, files)),
            Err(e) => Err(e.into()),
        };
        match written {
            Ok((root, mut files)) => {
                for f in &mut files {
                    f.region.clone_from(&target.region);
                }
                by_root.push((root, files));
            }
            Err(e) => {
                for (root, files) in &by_root {
                    remove_written(root, files).await;
                }
                return Err(e);
            }
        }
    }
    let written: Vec<WrittenFile> = by_root.iter().flat_map(|(_, f)| f.clone()).collect();
    let indexed: Vec<IndexedFile> = written.iter().map(|f| index_entry(keyring, f)).collect();
    let index_started = Instant::now();
    let indexed_result = store.index_files(&dataset.id, &indexed, &[]).await;
    let index_s = index_started.elapsed().as_secs_f64();
    if let Err(e) = indexed_result {
        for (root, files) in &by_root {
            remove_written(root, files).await;
        }
        return Err(e.into());
    }

    let elapsed = started.elapsed().as_secs_f64();
    let report = IngestReport {
        dataset: dataset.name.clone(),
        rows_read,
        rows_written: written.iter().map(|f| f.rows).sum(),
        rows_dropped_erased: kept.rows_removed,
        rows_nulled_erased: kept.rows_nulled,
        subjects: (subjects.len() - erased.len()) as u64,
        bytes_written: written.iter().map(|f| f.bytes).sum(),
        files: written,
        bytes_read,
        elapsed_s: elapsed,
        index_s,
        rows_per_s: rows_read as f64 / elapsed.max(1e-9),
        mb_per_s: bytes_read as f64 / 1e6 / elapsed.max(1e-9),
    };
    let audit = NewAuditEntry::new(actor, "dataset.ingested").details(json!({
        "dataset_id": dataset.id,
        "dataset": dataset.name,
        "rows_read": report.rows_read,
        "rows_written": report.rows_written,
        "rows_dropped_erased": report.rows_dropped_erased,
        "files": report.files.len(),
        "bytes_written": report.bytes_written,
    }));
    store.append_audit(audit).await?;
    tracing::info!(
        rows = report.rows_written,
        files = report.files.len(),
        dropped = report.rows_dropped_erased,
        "ingest finished"
    );
    Ok(report)
}

/// The rows of `table` (logical schema) by the root they are written under: every row under
/// `root_url` when the dataset has no `region_roots`, else each under its region's root.
fn split_by_root(
    dataset: &Dataset,
    schema: &DatasetSchema,
    table: &RecordBatch,
) -> Result<Vec<(DatasetRoot, RecordBatch)>, IngestError> {
    let column = match &schema.region_column {
        Some(c) if !schema.region_roots.is_empty() => c,
        _ => return Ok(vec![(dataset.root_for(None), table.clone())]),
    };
    let regions = table
        .column_by_name(column)
        .ok_or_else(|| IngestError::Unreadable(format!("region column {column} missing")))?;
    let regions = arrow_cast::cast(regions, &arrow_schema::DataType::Utf8)
        .map_err(|e| IngestError::Unreadable(e.to_string()))?;
    let regions = regions
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8");
    let mut groups: BTreeMap<String, (DatasetRoot, Vec<u32>)> = BTreeMap::new();
    for row in 0..regions.len() {
        let region = regions.is_valid(row).then(|| regions.value(row));
        let target = dataset.root_for(region);
        groups
            .entry(target.url.clone())
            .or_insert_with(|| (target, Vec::new()))
            .1
            .push(u32::try_from(row).expect("batches hold fewer than 2^32 rows"));
    }
    groups
        .into_values()
        .map(|(target, rows)| {
            arrow_select::take::take_record_batch(table, &arrow_array::UInt32Array::from(rows))
                .map(|batch| (target, batch))
                .map_err(|e| IngestError::Write(e.to_string()))
        })
        .collect()
}

/// The locator index entry of a written file: its subjects by keyed reference.
pub(crate) fn index_entry(keyring: &Keyring, file: &WrittenFile) -> IndexedFile {
    IndexedFile {
        path: file.path.clone(),
        rows: file.rows,
        bytes: file.bytes,
        subjects: file
            .subjects
            .iter()
            .map(|(s, n)| (keyring.subject_ref_str(s), *n))
            .collect(),
    }
}

/// Every distinct subject id in the batch's subject columns.
fn distinct_subjects(
    schema: &DatasetSchema,
    batch: &RecordBatch,
) -> Result<BTreeSet<String>, IngestError> {
    let mut out = BTreeSet::new();
    for c in &schema.subject_columns {
        if let Some(values) =
            subject_values(batch, c).map_err(|e| IngestError::Write(e.to_string()))?
        {
            out.extend(values.iter().flatten().map(String::from));
        }
    }
    Ok(out)
}

/// DEKs of every subject owning an encrypted cell, created for new subjects. A subject
/// shredded meanwhile (the store refuses a key for it) joins `erased`.
async fn batch_keys(
    keyring: &Arc<Keyring>,
    schema: &DatasetSchema,
    subjects: &BTreeSet<String>,
    erased: &mut HashSet<String>,
) -> Result<BatchKeys, IngestError> {
    let encrypts = schema
        .stored_columns()
        .any(|c| schema.is_encrypted(&c.name));
    if !encrypts {
        return Ok(BatchKeys::new());
    }
    let wanted = subjects
        .iter()
        .filter(|s| !erased.contains(*s))
        .map(|s| {
            SubjectId::parse(s.as_str()).map_err(|e| IngestError::Invalid {
                row: 0,
                column: None,
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (found, shredded) = keyring.deks_for_write_many(&wanted).await?;
    erased.extend(shredded.iter().map(|s| s.as_str().to_string()));
    Ok(found
        .into_iter()
        .map(|(id, dek)| (id.as_str().to_string(), (id, dek)))
        .collect())
}

/// Partitions, sorts, encrypts, encodes and uploads `table` (logical schema); on failure
/// deletes what it wrote. File names are `part-<tag>-<n>.parquet`.
pub(crate) async fn write_partitions(
    root: &LakeRoot,
    dataset: &str,
    schema: &Arc<DatasetSchema>,
    table: &RecordBatch,
    keys: Arc<BatchKeys>,
    tag: &str,
) -> Result<Vec<WrittenFile>, IngestError> {
    let groups = {
        let (schema, table) = (Arc::clone(schema), table.clone());
        crate::lake::run_blocking(move || partition_rows(&schema, &table)).await??
    };
    let mut written: Vec<WrittenFile> = Vec::new();
    let mut seq = 0usize;
    for (partition, indices) in groups {
        let encoded = {
            let (schema, table, keys, dataset) = (
                Arc::clone(schema),
                table.clone(),
                Arc::clone(&keys),
                dataset.to_string(),
            );
            crate::lake::run_blocking(move || {
                let stored = take_stored(&schema, &table, &indices)?;
                let sealed = seal(&dataset, &schema, &stored, &keys)?;
                encode_files(&dataset, &schema, &sealed)
            })
            .await
        };
        let encoded = match encoded {
            Ok(Ok(files)) => files,
            Ok(Err(e)) => {
                remove_written(root, &written).await;
                return Err(e);
            }
            Err(e) => {
                remove_written(root, &written).await;
                return Err(e.into());
            }
        };
        for (bytes, rows, subjects) in encoded {
            let path = if partition.is_empty() {
                format!("part-{tag}-{seq:05}.parquet")
            } else {
                format!("{partition}/part-{tag}-{seq:05}.parquet")
            };
            seq += 1;
            match upload(root, &path, bytes).await {
                Ok(size) => written.push(WrittenFile {
                    path,
                    region: None,
                    rows,
                    bytes: size,
                    subjects,
                }),
                Err(e) => {
                    remove_written(root, &written).await;
                    return Err(e);
                }
            }
        }
    }
    Ok(written)
}

/// `batch` (file schema, plain) with its encrypted columns sealed. A batch whose encrypted
/// columns are already `Binary` (compaction) is returned as is.
fn seal(
    dataset: &str,
    schema: &DatasetSchema,
    batch: &RecordBatch,
    keys: &BatchKeys,
) -> Result<RecordBatch, IngestError> {
    let file_schema = schema.file_schema();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for field in file_schema.fields() {
        let col = batch
            .column_by_name(field.name())
            .ok_or_else(|| IngestError::Write(format!("column {} missing", field.name())))?;
        let spec = schema
            .column(field.name())
            .expect("file columns are declared");
        if schema.is_encrypted(&spec.name) && col.data_type() != field.data_type() {
            let owners = subject_values(batch, schema.owner_of(spec))
                .map_err(|e| IngestError::Write(e.to_string()))?
                .unwrap_or_else(|| StringArray::new_null(batch.num_rows()));
            let sealed = encrypt_column(dataset, &spec.name, col, &owners, keys)
                .map_err(|e| IngestError::Write(e.to_string()))?;
            columns.push(Arc::new(sealed));
        } else if col.data_type() != field.data_type() {
            columns.push(
                arrow_cast::cast(col, field.data_type())
                    .map_err(|e| IngestError::Write(e.to_string()))?,
            );
        } else {
            columns.push(Arc::clone(col));
        }
    }
    RecordBatch::try_new(file_schema, columns).map_err(|e| IngestError::Write(e.to_string()))
}

/// Best-effort removal of files this run wrote, after a failure.
pub(crate) async fn remove_written(root: &LakeRoot, written: &[WrittenFile]) {
    for f in written {
        if let Err(e) = root.delete_if_exists(&f.path).await {
            tracing::error!(file = %f.path, error = %e, "could not remove a file of a failed ingest");
        }
    }
}
