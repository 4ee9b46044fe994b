//! Delete files (Iceberg spec, "Position Delete Files", "Equality Delete Files"): the rows of a
//! data file that the table has already deleted, which a copy-on-write rewrite must leave out
//! of the new file. The new file gets the new snapshot's sequence number, so neither kind of
//! delete applies to it any more: position deletes name the old file, and equality deletes
//! apply only to data files of a smaller sequence number. Both are therefore turned into the
//! old file's deleted positions ([`DeletedRows`]) and applied by the rewrite.
//!
//! Equality: a data row is deleted when, for every equality field of a delete row, its value
//! equals the delete row's, a null matching a null (spec, "Equality Delete Files"). Values are
//! compared by their text form once the delete file's column is cast to the data file's type
//! (so an `int` promoted to `long` still matches). Columns are found by field id
//! (`PARQUET:field_id`), by the current schema's name when a file carries no ids.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
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

/// The first delete file applying to `entry` that Lethe cannot apply: one not in Parquet.
pub(crate) fn unsupported_delete<'a>(
    files: &'a SnapshotFiles,
    entry: &'a Entry,
) -> Option<&'a Entry> {
    applicable_deletes(files, entry).find(|d| !is_parquet(d))
}

/// The positions in data file `entry` that the live delete files of `files` delete: those
/// position delete files name, and those of the rows equality delete files match.
///
/// # Errors
/// [`LakeError::TableFeature`] for a delete file Lethe cannot apply ([`unsupported_delete`]);
/// [`LakeError::Table`] when a position delete file has no `file_path` / `pos` columns or a
/// negative position, or an equality delete file names a field a file lacks; store and
/// Parquet errors of reading them.
pub(crate) async fn deleted_rows(
    table: &LoadedTable,
    files: &SnapshotFiles,
    entry: &Entry,
) -> Result<DeletedRows, LakeError> {
    let mut rows = Vec::new();
    let mut equality = Vec::new();
    for delete in applicable_deletes(files, entry) {
        if !is_parquet(delete) {
            return Err(refuse_delete_file(table, &entry.file_path, delete));
        }
        match delete.content {
            1 => rows.extend(positions_in(table, delete, &entry.file_path).await?),
            _ => equality.push(delete),
        }
    }
    if !equality.is_empty() {
        rows.extend(equality_matches(table, entry, &equality).await?);
    }
    Ok(DeletedRows::new(rows))
}

/// The `equality_ids` of an equality delete file's entry.
fn equality_ids(delete: &Entry) -> Vec<i32> {
    use apache_avro::types::Value;
    match delete
        .data_file()
        .and_then(|f| super::avro::field(f, "equality_ids"))
    {
        Some(Value::Array(ids)) => ids
            .iter()
            .filter_map(|v| match super::avro::plain(v) {
                Value::Int(i) => Some(*i),
                Value::Long(i) => i32::try_from(*i).ok(),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The index of the top-level field of `schema` for Iceberg field `id`: by
/// `PARQUET:field_id`, or by the table schema's `name` in a file whose columns carry no field
/// ids.
fn root_index(schema: &arrow_schema::Schema, id: i32, name: Option<&str>) -> Option<usize> {
    let field_id = |f: &arrow_schema::Field| {
        f.metadata()
            .get("PARQUET:field_id")
            .and_then(|v| v.parse::<i32>().ok())
    };
    match schema.fields().iter().position(|f| field_id(f) == Some(id)) {
        Some(i) => Some(i),
        None if schema.fields().iter().all(|f| field_id(f).is_none()) => {
            name.and_then(|n| schema.index_of(n).ok())
        }
        None => None,
    }
}

/// The top-level column of `batch` for Iceberg field `id` (see [`root_index`]).
fn column_of<'a>(batch: &'a RecordBatch, id: i32, name: Option<&str>) -> Option<&'a ArrayRef> {
    root_index(batch.schema_ref(), id, name).map(|i| batch.column(i))
}

/// Text formatters of `arrays`.
fn formatters<'a>(arrays: &[&'a ArrayRef]) -> Result<Vec<ArrayFormatter<'a>>, String> {
    arrays
        .iter()
        .map(|a| {
            let a: &'a ArrayRef = a;
            ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default())
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// The key equality deletes compare: the text of row `row` of each array (`None`: null).
fn key_of(
    formatters: &[ArrayFormatter<'_>],
    arrays: &[&ArrayRef],
    row: usize,
) -> Vec<Option<String>> {
    formatters
        .iter()
        .zip(arrays)
        .map(|(f, a)| a.is_valid(row).then(|| f.value(row).to_string()))
        .collect()
}

/// Which top-level columns [`read`] returns.
enum Columns<'a> {
    /// These, by name (each must be there).
    Named(&'a [&'a str]),
    /// The Iceberg fields `ids` the file has ([`root_index`]; `names`: the table schema's).
    Fields(&'a [i32], &'a HashMap<i32, String>),
}

/// The batches of a Parquet file of the table, with only `columns`.
///
/// # Errors
/// [`LakeError::Table`] when a named column is missing; store and Parquet errors.
async fn read(
    table: &LoadedTable,
    uri: &str,
    columns: Columns<'_>,
) -> Result<Vec<RecordBatch>, LakeError> {
    let file = data_file(table, uri).await?;
    let opened = open(
        table.root.store(),
        &file.location,
        &file.relative,
        file.size,
    )
    .await?;
    let schema = opened.metadata.schema();
    let roots: Vec<usize> = match columns {
        Columns::Named(names) => names
            .iter()
            .map(|c| {
                schema.index_of(c).map_err(|_| LakeError::Table {
                    root: table.root.url().to_string(),
                    reason: format!("{uri}: no column {c:?}"),
                })
            })
            .collect::<Result<_, _>>()?,
        Columns::Fields(ids, names) => ids
            .iter()
            .filter_map(|id| root_index(schema, *id, names.get(id).map(String::as_str)))
            .collect(),
    };
    let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(
        opened.reader.clone(),
        opened.metadata.clone(),
    )
    .with_projection(ProjectionMask::roots(opened.parquet_schema(), roots));
    builder
        .build()
        .map_err(|e| LakeError::corrupt(&file.relative, "reading", e))?
        .try_collect()
        .await
        .map_err(|e| LakeError::corrupt(&file.relative, "reading", e))
}

/// The positions of the rows of data file `entry` that one of the equality delete files
/// `deletes` matches.
async fn equality_matches(
    table: &LoadedTable,
    entry: &Entry,
    deletes: &[&Entry],
) -> Result<Vec<u64>, LakeError> {
    let names: HashMap<i32, String> = table
        .metadata
        .columns()
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect();
    let name = |id: &i32| names.get(id).map(String::as_str);
    // Only the data file's equality columns are read (every delete file's, once).
    let mut all_ids: Vec<i32> = deletes.iter().flat_map(|d| equality_ids(d)).collect();
    all_ids.sort_unstable();
    all_ids.dedup();
    let data = read(table, &entry.file_path, Columns::Fields(&all_ids, &names)).await?;
    let Some(first) = data.first() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for delete in deletes {
        let bad = |reason: String| LakeError::Table {
            root: table.root.url().to_string(),
            reason: format!("equality delete file {}: {reason}", delete.file_path),
        };
        let ids = equality_ids(delete);
        if ids.is_empty() {
            return Err(bad("no equality_ids".into()));
        }
        let mut data_types = Vec::with_capacity(ids.len());
        for id in &ids {
            let column = column_of(first, *id, name(id))
                .ok_or_else(|| bad(format!("data file {} has no field {id}", entry.file_path)))?;
            data_types.push(column.data_type().clone());
        }
        // The delete rows' keys, each column cast to the data file's type first.
        let mut keys: HashSet<Vec<Option<String>>> = HashSet::new();
        for batch in read(table, &delete.file_path, Columns::Fields(&ids, &names)).await? {
            let mut arrays = Vec::with_capacity(ids.len());
            for (id, data_type) in ids.iter().zip(&data_types) {
                let column = column_of(&batch, *id, name(id))
                    .ok_or_else(|| bad(format!("no column for field {id}")))?;
                arrays.push(
                    arrow_cast::cast(column, data_type)
                        .map_err(|e| bad(format!("field {id}: {e}")))?,
                );
            }
            let refs: Vec<&ArrayRef> = arrays.iter().collect();
            let formatters = formatters(&refs).map_err(bad)?;
            for row in 0..batch.num_rows() {
                keys.insert(key_of(&formatters, &refs, row));
            }
        }
        let mut position = 0u64;
        for batch in &data {
            let mut arrays = Vec::with_capacity(ids.len());
            for id in &ids {
                arrays.push(
                    column_of(batch, *id, name(id))
                        .ok_or_else(|| bad(format!("data file has no field {id}")))?,
                );
            }
            let formatters = formatters(&arrays).map_err(bad)?;
            for row in 0..batch.num_rows() {
                if keys.contains(&key_of(&formatters, &arrays, row)) {
                    out.push(position + row as u64);
                }
            }
            position += batch.num_rows() as u64;
        }
    }
    Ok(out)
}

/// The rows deleted in each data file of `files` that a live delete file applies to, by the
/// data file's URI (files without a deleted row are not listed).
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
            let rows = deleted_rows(table, files, entry).await?;
            if !rows.is_empty() {
                out.insert(entry.file_path.clone(), rows);
            }
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
    let bad = |reason: String| LakeError::Table {
        root: table.root.url().to_string(),
        reason: format!("position delete file {}: {reason}", delete.file_path),
    };
    let batches = read(
        table,
        &delete.file_path,
        Columns::Named(&["file_path", "pos"]),
    )
    .await?;
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
