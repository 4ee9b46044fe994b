//! Reading a few top-level columns of a file (the residency scan reads subject and region
//! columns only): a projection, so the other column chunks are never fetched.

use arrow_array::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;

use super::error::LakeError;
use super::open::open;
use super::root::{DataFile, LakeRoot};
use super::run_blocking;

/// Rows decoded per batch.
const BATCH_ROWS: usize = 64 * 1024;

/// The top-level columns `columns` of `file` (those the file has; a missing one is simply not
/// in the batches), as record batches, and the file's row count. Returns bytes fetched too.
///
/// # Errors
/// [`LakeError`] when the file cannot be opened or decoded.
pub(crate) async fn read_columns(
    root: &LakeRoot,
    file: &DataFile,
    columns: &[String],
) -> Result<(Vec<RecordBatch>, u64), LakeError> {
    let opened = open(root.store(), &file.location, &file.relative, file.size).await?;
    let leaves: Vec<usize> = columns
        .iter()
        .filter_map(|c| opened.subject_leaf(c).ok())
        .collect();
    let mask = ProjectionMask::leaves(opened.parquet_schema(), leaves);
    let mut stream = ParquetRecordBatchStreamBuilder::new_with_metadata(
        opened.reader.clone(),
        opened.metadata.clone(),
    )
    .with_projection(mask)
    .with_batch_size(BATCH_ROWS)
    .build()
    .map_err(|e| LakeError::corrupt(&file.relative, "planning the read", e))?;
    let mut batches = Vec::new();
    while let Some(reader) = stream
        .next_row_group()
        .await
        .map_err(|e| LakeError::corrupt(&file.relative, "reading a row group", e))?
    {
        let relative = file.relative.clone();
        let decoded = run_blocking(move || {
            reader
                .map(|b| b.map_err(|e| LakeError::arrow(&relative, e)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await??;
        batches.extend(decoded);
    }
    Ok((batches, opened.reader.bytes_read()))
}

/// The top-level column names of `file` (its footer only; no column chunk is fetched), in
/// schema order. Used to check a rectification of a dataset written by others against the
/// columns its files really have (GDPR Art. 16) before anything is recorded.
///
/// # Errors
/// [`LakeError`] when the file cannot be opened (not Parquet, corrupt or unsupported footer,
/// object store failure).
pub async fn column_names(root: &LakeRoot, file: &DataFile) -> Result<Vec<String>, LakeError> {
    let opened = open(root.store(), &file.location, &file.relative, file.size).await?;
    Ok(opened
        .metadata
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect())
}
