//! Position delete files (Iceberg spec, "Position Delete Files"): the rows of a data file that
//! the table has already deleted, which a copy-on-write rewrite must leave out of the new
//! file. Equality delete files are refused (their rows are found by value, not position:
//! not implemented).

use std::collections::BTreeMap;

use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use futures::TryStreamExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;

use super::features::refuse_delete_file;
use super::manifest::Entry;
use super::metadata::LoadedTable;
use super::purge::data_file;
use super::scan::{SnapshotFiles, applicable_deletes};
use crate::lake::error::LakeError;
use crate::lake::open::open;
use crate::lake::rewrite::DeletedRows;

/// The first delete file applying to `entry` that Lethe cannot apply: an equality delete
/// file, or position deletes in a format other than Parquet.
pub(crate) fn unsupported_delete<'a>(
    files: &'a SnapshotFiles,
    entry: &'a Entry,
) -> Option<&'a Entry> {
    applicable_deletes(files, entry).find(|d| !(d.content == 1 && is_parquet(d)))
}

/// The positions in data file `entry` that the live position delete files of `files` delete.
///
/// # Errors
/// [`LakeError::TableFeature`] for a delete file Lethe cannot apply ([`unsupported_delete`]);
/// [`LakeError::Table`] when a position delete file has no `file_path` / `pos` columns or a
/// negative position; store and Parquet errors of reading it.
pub(crate) async fn deleted_rows(
    table: &LoadedTable,
    files: &SnapshotFiles,
    entry: &Entry,
) -> Result<DeletedRows, LakeError> {
    let mut rows = Vec::new();
    for delete in applicable_deletes(files, entry) {
        if delete.content != 1 || !is_parquet(delete) {
            return Err(refuse_delete_file(table, &entry.file_path, delete));
        }
        rows.extend(positions_in(table, delete, &entry.file_path).await?);
    }
    Ok(DeletedRows::new(rows))
}

/// The rows deleted in each data file of `files` that a live delete file applies to, by the
/// data file's URI (files without deletes are not listed).
///
/// # Errors
/// As [`deleted_rows`].
pub(crate) async fn deleted_in(
    table: &LoadedTable,
    files: &SnapshotFiles,
) -> Result<BTreeMap<String, DeletedRows>, LakeError> {
    let mut out = BTreeMap::new();
    for (_, entry) in files.data_files() {
        if applicable_deletes(files, entry).next().is_some() {
            out.insert(
                entry.file_path.clone(),
                deleted_rows(table, files, entry).await?,
            );
        }
    }
    Ok(out)
}

fn is_parquet(delete: &Entry) -> bool {
    delete
        .data_file()
        .and_then(|f| super::avro::text(f, "file_format"))
        .is_some_and(|f| f.eq_ignore_ascii_case("parquet"))
}

/// The `pos` of the rows of position delete file `delete` whose `file_path` is `data_uri`.
async fn positions_in(
    table: &LoadedTable,
    delete: &Entry,
    data_uri: &str,
) -> Result<Vec<u64>, LakeError> {
    let file = data_file(table, &delete.file_path).await?;
    let opened = open(
        table.root.store(),
        &file.location,
        &file.relative,
        file.size,
    )
    .await?;
    let bad = |reason: String| LakeError::Table {
        root: table.root.url().to_string(),
        reason: format!("position delete file {}: {reason}", delete.file_path),
    };
    let schema = opened.metadata.schema();
    let (Ok(path_col), Ok(pos_col)) = (schema.index_of("file_path"), schema.index_of("pos")) else {
        return Err(bad("no file_path and pos columns".into()));
    };
    let mask = ProjectionMask::roots(opened.parquet_schema(), [path_col, pos_col]);
    let stream = ParquetRecordBatchStreamBuilder::new_with_metadata(
        opened.reader.clone(),
        opened.metadata.clone(),
    )
    .with_projection(mask)
    .build()
    .map_err(|e| LakeError::corrupt(&file.relative, "reading position deletes", e))?;
    let batches: Vec<RecordBatch> = stream
        .try_collect()
        .await
        .map_err(|e| LakeError::corrupt(&file.relative, "reading position deletes", e))?;
    let mut out = Vec::new();
    for batch in &batches {
        let paths = batch
            .column_by_name("file_path")
            .and_then(|c| arrow_cast::cast(c, &arrow_schema::DataType::Utf8).ok());
        let paths = paths
            .as_ref()
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| bad("file_path is not a string column".into()))?;
        let pos = batch
            .column_by_name("pos")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| bad("pos is not a long column".into()))?;
        for row in 0..batch.num_rows() {
            if paths.is_valid(row) && paths.value(row) == data_uri && pos.is_valid(row) {
                let p = u64::try_from(pos.value(row))
                    .map_err(|_| bad(format!("negative position {}", pos.value(row))))?;
                out.push(p);
            }
        }
    }
    Ok(out)
}
