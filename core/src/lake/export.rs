//! Export: every row of one data subject across the lake, for the rights of access and
//! portability (GDPR Art. 15, 20), as JSON Lines or CSV.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, new_null_array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use arrow_select::filter::filter_record_batch;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;

use super::error::LakeError;
use super::locate::{LocatorHint, locate_open, subject_strings};
use super::open::open;
use super::rewrite::DeletedRows;
use super::root::{DataFile, LakeRoot};
use super::run_blocking;

/// One subject's rows, all in one schema.
#[derive(Debug, Clone)]
pub struct SubjectRows {
    /// The union of the files' schemas plus the Hive partition columns (Utf8) that are not
    /// already columns of the files.
    pub schema: SchemaRef,
    /// The rows, in file order then row order, all with `schema`.
    pub batches: Vec<RecordBatch>,
    /// Files (relative to the lake root) that hold at least one of the rows.
    pub files: Vec<String>,
    /// Number of rows.
    pub rows: u64,
}

/// Collects every row where one of the subject `columns` (cast to a string) equals
/// `subject`, using the same pruning as [`Locate`](super::Locate); files the locator index
/// (`hint`) knows not to hold the subject are not opened.
///
/// # Errors
/// Any [`LakeError`]: unlike locate and erase, an export that skipped a file would be
/// incomplete, so the first unreadable file (or file without the column) fails the export.
#[tracing::instrument(skip_all, fields(root = %root.url()))]
pub async fn collect_subject_rows(
    root: &LakeRoot,
    columns: &[String],
    subject: &str,
    hint: Option<&LocatorHint>,
) -> Result<SubjectRows, LakeError> {
    let listed = root.list_files().await?;
    collect_subject_rows_in(root, listed, columns, subject, hint, &BTreeMap::new()).await
}

/// [`collect_subject_rows`] over exactly `listed`, files of `root` (a table's current
/// snapshot: [`crate::lake::table::Table::live_files`]), leaving out the rows `deleted`
/// names (by file, relative path: a table's deletion vectors and position deletes).
///
/// # Errors
/// As [`collect_subject_rows`].
pub async fn collect_subject_rows_in(
    root: &LakeRoot,
    listed: Vec<DataFile>,
    columns: &[String],
    subject: &str,
    hint: Option<&LocatorHint>,
    deleted: &BTreeMap<String, Arc<DeletedRows>>,
) -> Result<SubjectRows, LakeError> {
    let subjects: BTreeSet<String> = [subject.to_string()].into();
    let mut per_file: Vec<RecordBatch> = Vec::new();
    let mut files = Vec::new();
    for file in listed {
        if hint
            .and_then(|h| h.answer(&file))
            .is_some_and(|hits| hits.is_empty())
        {
            continue;
        }
        let opened = open(root.store(), &file.location, &file.relative, file.size).await?;
        let mut row_groups = BTreeSet::new();
        for column in columns {
            row_groups.extend(locate_open(&opened, column, &subjects).await?.row_groups);
        }
        if row_groups.is_empty() {
            continue;
        }
        // The first row of each row group read, for the positions of deleted rows.
        let row_groups: Vec<usize> = row_groups.into_iter().collect();
        let firsts: Vec<u64> = {
            let md = opened.metadata.metadata();
            let mut start = 0u64;
            let starts: Vec<u64> = md
                .row_groups()
                .iter()
                .map(|rg| {
                    let s = start;
                    start += u64::try_from(rg.num_rows()).unwrap_or(0);
                    s
                })
                .collect();
            row_groups.iter().map(|&rg| starts[rg]).collect()
        };
        let file_deleted = deleted.get(&file.relative).cloned();
        let mut next_rg = 0usize;
        let mut stream = ParquetRecordBatchStreamBuilder::new_with_metadata(
            opened.reader.clone(),
            opened.metadata.clone(),
        )
        .with_row_groups(row_groups)
        .with_batch_size(8192)
        .build()
        .map_err(|e| LakeError::corrupt(&file.relative, "planning the read", e))?;
        let mut subject_indices = Vec::new();
        for column in columns {
            subject_indices.push(stream.schema().index_of(column).map_err(|_| {
                LakeError::MissingColumn {
                    file: file.relative.clone(),
                    column: column.clone(),
                }
            })?);
        }
        while let Some(reader) = stream
            .next_row_group()
            .await
            .map_err(|e| LakeError::corrupt(&file.relative, "reading a row group", e))?
        {
            let (relative, subject, file_for_job, indices, file_deleted) = (
                file.relative.clone(),
                subject.to_string(),
                file.clone(),
                subject_indices.clone(),
                file_deleted.clone(),
            );
            let mut position = firsts.get(next_rg).copied().unwrap_or(0);
            next_rg += 1;
            let batches = run_blocking(move || {
                let mut out = Vec::new();
                for batch in reader {
                    let batch = batch.map_err(|e| LakeError::arrow(&relative, e))?;
                    let mut mask = vec![false; batch.num_rows()];
                    for &index in &indices {
                        let values = subject_strings(&relative, &batch, index)?;
                        for (m, v) in mask.iter_mut().zip(values.iter()) {
                            *m |= v == Some(subject.as_str());
                        }
                    }
                    let end = position + batch.num_rows() as u64;
                    if let Some(deleted) = &file_deleted {
                        for &p in deleted.within(position, end) {
                            mask[(p - position) as usize] = false;
                        }
                    }
                    position = end;
                    let mask = arrow_array::BooleanArray::from(mask);
                    let rows = filter_record_batch(&batch, &mask)
                        .map_err(|e| LakeError::arrow(&relative, e))?;
                    if rows.num_rows() > 0 {
                        out.push(with_partitions(&file_for_job, rows)?);
                    }
                }
                Ok::<_, LakeError>(out)
            })
            .await??;
            per_file.extend(batches);
        }
        files.push(file.relative.clone());
    }
    let schema = merged_schema(&per_file)?;
    let batches = per_file
        .iter()
        .map(|b| conform(b, &schema))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
    tracing::info!(files = files.len(), rows, "subject rows collected");
    Ok(SubjectRows {
        schema,
        batches,
        files,
        rows,
    })
}

/// Adds the Hive partition values of `file` as Utf8 columns the batch does not already have.
fn with_partitions(file: &DataFile, batch: RecordBatch) -> Result<RecordBatch, LakeError> {
    let schema = batch.schema();
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for (key, value) in &file.partition {
        if schema.field_with_name(key).is_ok() || fields.iter().any(|f| f.name() == key) {
            continue;
        }
        fields.push(Arc::new(Field::new(key, DataType::Utf8, false)));
        columns.push(Arc::new(StringArray::from(vec![
            value.as_str();
            batch.num_rows()
        ])));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| LakeError::arrow(&file.relative, e))
}

/// The union of the batches' schemas (fields made nullable, metadata dropped).
fn merged_schema(batches: &[RecordBatch]) -> Result<SchemaRef, LakeError> {
    // One writer's files may store strings as `Utf8` and its later files as `Utf8View` (a
    // table appended to by several versions of delta-rs, say): the export has one type each.
    let plain = |t: &DataType| match t {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        other => other.clone(),
    };
    let schemas = batches.iter().map(|b| {
        let fields: Vec<Field> = b
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let data_type = plain(f.data_type());
                f.as_ref()
                    .clone()
                    .with_nullable(true)
                    .with_data_type(data_type)
            })
            .collect();
        Schema::new(fields)
    });
    Schema::try_merge(schemas)
        .map(Arc::new)
        .map_err(|e| LakeError::arrow("export", e))
}

/// `batch` with exactly the columns of `schema` (missing ones null, others cast).
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, LakeError> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(col) if col.data_type() == field.data_type() => Ok(Arc::clone(col)),
            Some(col) => arrow_cast::cast(col, field.data_type()),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LakeError::arrow("export", e))?;
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| LakeError::arrow("export", e))
}

/// `batch` with top-level timestamps in named time zones (`"UTC"`, `"Europe/Paris"`) relabelled
/// `+00:00`: the instants are unchanged, they are printed in UTC with an explicit offset
/// (the Arrow formatters only know offset zones without the `chrono-tz` database).
fn utc_offsets(batch: &RecordBatch) -> Result<RecordBatch, LakeError> {
    let named = |tz: &str| !tz.starts_with('+') && !tz.starts_with('-');
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
        match field.data_type() {
            DataType::Timestamp(unit, Some(tz)) if named(tz) => {
                let utc = DataType::Timestamp(*unit, Some("+00:00".into()));
                columns
                    .push(arrow_cast::cast(col, &utc).map_err(|e| LakeError::arrow("export", e))?);
                fields.push(Arc::new(field.as_ref().clone().with_data_type(utc)));
            }
            _ => {
                columns.push(Arc::clone(col));
                fields.push(Arc::clone(field));
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| LakeError::arrow("export", e))
}

/// Writes the rows as JSON Lines (one object per row; timestamps as ISO-8601 strings).
///
/// # Errors
/// [`LakeError::Arrow`] when a value cannot be encoded or `w` fails.
pub fn write_json_lines(rows: &SubjectRows, w: impl std::io::Write) -> Result<(), LakeError> {
    let mut writer = arrow_json::LineDelimitedWriter::new(w);
    for batch in &rows.batches {
        writer
            .write(&utc_offsets(batch)?)
            .map_err(|e| LakeError::arrow("JSON export", e))?;
    }
    writer
        .finish()
        .map_err(|e| LakeError::arrow("JSON export", e))
}

/// Writes the rows as one JSON array of objects (`[]` when there are none; timestamps as
/// ISO-8601 strings): the `.json` of a portability export (GDPR Art. 20).
///
/// # Errors
/// [`LakeError::Arrow`] when a value cannot be encoded or `w` fails.
pub fn write_json_array(rows: &SubjectRows, w: impl std::io::Write) -> Result<(), LakeError> {
    let mut writer = arrow_json::ArrayWriter::new(w);
    for batch in &rows.batches {
        writer
            .write(&utc_offsets(batch)?)
            .map_err(|e| LakeError::arrow("JSON export", e))?;
    }
    writer
        .finish()
        .map_err(|e| LakeError::arrow("JSON export", e))
}

/// Writes the rows as one Parquet file (Snappy-compressed, the Arrow schema embedded) with
/// their types as exported: decrypted PII typed again, partition values as strings. Without
/// rows the file still holds the schema. The `.parquet` of a portability export (GDPR Art. 20).
///
/// # Errors
/// [`LakeError::Unsupported`] when the writer refuses the schema or a batch; `w` failures.
pub fn write_parquet(rows: &SubjectRows, w: impl std::io::Write + Send) -> Result<(), LakeError> {
    let failed = |e: parquet::errors::ParquetError| {
        LakeError::writer("Parquet export", "writing the export", e)
    };
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(w, Arc::clone(&rows.schema), Some(properties))
            .map_err(failed)?;
    for batch in &rows.batches {
        writer.write(batch).map_err(failed)?;
    }
    writer.close().map_err(failed)?;
    Ok(())
}

/// Writes the rows as CSV with a header line (nested columns are not representable in CSV and
/// give an error).
///
/// # Errors
/// [`LakeError::Arrow`] when a value cannot be encoded or `w` fails.
pub fn write_csv(rows: &SubjectRows, w: impl std::io::Write) -> Result<(), LakeError> {
    let mut writer = arrow_csv::WriterBuilder::new().with_header(true).build(w);
    if rows.batches.is_empty() {
        // Still write the header so the file says which columns there would be.
        let empty = RecordBatch::new_empty(Arc::clone(&rows.schema));
        return writer
            .write(&empty)
            .map_err(|e| LakeError::arrow("CSV export", e));
    }
    for batch in &rows.batches {
        writer
            .write(&utc_offsets(batch)?)
            .map_err(|e| LakeError::arrow("CSV export", e))?;
    }
    Ok(())
}

/// Every row of `file`, with its Arrow schema (compaction reads small files whole).
///
/// # Errors
/// Any [`LakeError`] about the file.
pub(crate) async fn read_whole_file(
    root: &LakeRoot,
    file: &DataFile,
) -> Result<(SchemaRef, Vec<RecordBatch>), LakeError> {
    let opened = open(root.store(), &file.location, &file.relative, file.size).await?;
    let schema = Arc::clone(opened.metadata.schema());
    let mut stream = ParquetRecordBatchStreamBuilder::new_with_metadata(
        opened.reader.clone(),
        opened.metadata.clone(),
    )
    .with_batch_size(64 * 1024)
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
    Ok((schema, batches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::testlake::*;

    #[tokio::test]
    async fn a_subjects_rows_come_from_every_file_with_partition_columns() {
        let dir = tempfile::tempdir().unwrap();
        three_file_lake(dir.path());
        let root = LakeRoot::parse(&dir.path().display().to_string()).unwrap();
        let rows = collect_subject_rows(&root, &["user_id".to_string()], "u1", None)
            .await
            .unwrap();
        assert_eq!(rows.rows, 20);
        assert_eq!(
            rows.files,
            [
                "date=2025-01-07/region=EU/part-0.parquet",
                "date=2025-01-08/region=APAC/part-0.parquet"
            ]
        );
        let names: Vec<_> = rows
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            [
                "user_id",
                "id",
                "ts",
                "distance_km",
                "notes",
                "date",
                "region"
            ]
        );

        let mut json = Vec::new();
        write_json_lines(&rows, &mut json).unwrap();
        let json = String::from_utf8(json).unwrap();
        assert_eq!(json.lines().count(), 20);
        let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
        assert_eq!(first["user_id"], "u1");
        assert_eq!(first["region"], "EU");
        assert_eq!(first["date"], "2025-01-07");
        assert!(
            first["ts"]
                .as_str()
                .unwrap()
                .starts_with("2025-01-07T00:00:00"),
            "{first}"
        );
        assert!(json.lines().all(|l| l.contains("\"user_id\":\"u1\"")));

        let mut csv = Vec::new();
        write_csv(&rows, &mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(
            csv.lines().next().unwrap(),
            "user_id,id,ts,distance_km,notes,date,region"
        );
        assert_eq!(csv.lines().count(), 21);
    }

    #[tokio::test]
    async fn portability_formats_hold_the_same_rows_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        three_file_lake(dir.path());
        let root = LakeRoot::parse(&dir.path().display().to_string()).unwrap();
        let rows = collect_subject_rows(&root, &["user_id".to_string()], "u1", None)
            .await
            .unwrap();
        let mut parquet = Vec::new();
        write_parquet(&rows, &mut parquet).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(parquet),
        )
        .unwrap()
        .build()
        .unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 20);
        assert_eq!(batches[0].schema().fields(), rows.schema.fields());

        let mut json = Vec::new();
        write_json_array(&rows, &mut json).unwrap();
        let array: Vec<serde_json::Value> = serde_json::from_slice(&json).unwrap();
        let mut lines = Vec::new();
        write_json_lines(&rows, &mut lines).unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(lines)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(array, lines);
    }

    #[tokio::test]
    async fn an_unknown_subject_gives_an_empty_export_with_a_header() {
        let dir = tempfile::tempdir().unwrap();
        three_file_lake(dir.path());
        let root = LakeRoot::parse(&dir.path().display().to_string()).unwrap();
        let rows = collect_subject_rows(&root, &["user_id".to_string()], "nobody", None)
            .await
            .unwrap();
        assert_eq!(rows.rows, 0);
        assert!(rows.files.is_empty());
        assert!(rows.batches.is_empty());
        let mut json = Vec::new();
        write_json_lines(&rows, &mut json).unwrap();
        assert!(json.is_empty());
        let mut array = Vec::new();
        write_json_array(&rows, &mut array).unwrap();
        assert_eq!(array, b"[]");
        let mut parquet = Vec::new();
        write_parquet(&rows, &mut parquet).unwrap();
        assert!(
            parquet.starts_with(b"PAR1"),
            "a valid file even without columns"
        );
    }
}
