//! Writing an access or portability export (GDPR Art. 15, 20): the subject's rows from every
//! dataset, decrypted with their own data key only, in one sealed zip archive in the export
//! store.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::export_context;
use crate::datasets::{RowsError, collect_in_roots};
use crate::domain::RequestType;
use crate::keyring::columns::decrypt_column;
use crate::keyring::{Keyring, KeyringError};
use crate::lake;
use crate::store::{Dataset, PrivacyRequest, Store};

/// Why an export archive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The subject's rows could not be read.
    #[error(transparent)]
    Rows(#[from] RowsError),
    /// The rows cannot be exported as they are (an encrypted dataset without a keyring, a
    /// destroyed key, a cell that does not open): will fail the same way again.
    #[error("{0}")]
    Unexportable(String),
    /// The staging folder, the export store or the keyring failed: worth another attempt.
    #[error("{0}")]
    Unavailable(String),
}

/// Where an archive goes and what opens the subject's cells.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveTarget<'a> {
    /// The export store: an absolute folder, a `file://` URL or an object store URL such as
    /// `s3://bucket/exports`.
    pub exports_url: &'a str,
    /// The keyring: opens encrypted cells and seals the archive at rest (none: plain data).
    pub keyring: Option<&'a Keyring>,
    /// The settings: Iceberg catalogs and where tables may lie (datasets of format `delta`
    /// and `iceberg`).
    pub settings: &'a crate::config::Settings,
}

/// One dataset in an export's result and manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedDataset {
    /// Dataset name.
    pub dataset: String,
    /// The subject's rows.
    pub rows: u64,
    /// Files they came from.
    pub files: u64,
    /// The archive's files for this dataset (`<name>.<ext>`).
    pub formats: Vec<String>,
}

/// What an access or portability request's result says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportResult {
    /// The subject's rows, all datasets.
    pub rows: u64,
    /// Bytes of the stored archive (sealed, when a keyring is configured).
    pub export_bytes: u64,
    /// The subject was erased: the archive says so and holds no rows.
    pub erased: bool,
    /// Per dataset.
    pub datasets: Vec<ExportedDataset>,
}

/// The files an export archive holds for each dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArchiveFormat {
    /// Access (GDPR Art. 15): `<name>.jsonl` (JSON Lines) and `<name>.csv`.
    Access,
    /// Portability (GDPR Art. 20), machine-readable: `<name>.parquet`, `<name>.csv` and
    /// `<name>.json` (one JSON array of row objects).
    Portability,
}

impl ArchiveFormat {
    fn of(request_type: RequestType) -> Self {
        match request_type {
            RequestType::Portability => ArchiveFormat::Portability,
            _ => ArchiveFormat::Access,
        }
    }

    /// File extensions per dataset, in archive order.
    fn extensions(self) -> &'static [&'static str] {
        match self {
            ArchiveFormat::Access => &["jsonl", "csv"],
            ArchiveFormat::Portability => &["parquet", "csv", "json"],
        }
    }
}

/// Exports the subject's rows from every dataset into one zip archive holding
/// `manifest.json` and, per dataset, the files of the request's archive format: access
/// (Art. 15) `<name>.jsonl` and `<name>.csv`; portability (Art. 20) `<name>.parquet`,
/// `<name>.csv` and `<name>.json`. Stores it at `<exports_url>/<request id>.zip`; returns the
/// result and that location.
///
/// # Errors
/// [`ArchiveError`].
pub async fn write_export(
    store: &Arc<Store>,
    target: ArchiveTarget<'_>,
    datasets: &[Dataset],
    request: &PrivacyRequest,
) -> Result<(ExportResult, String), ArchiveError> {
    let subject = request.subject_id.as_str();
    // An erased subject (key destroyed) gets an answer saying so, and nothing of the lake: no
    // code path returns their data any more, not even rows the rewrite has yet to remove.
    let erased = match target.keyring {
        Some(keyring) => !keyring
            .shredded_among([subject])
            .await
            .map_err(|e| ArchiveError::Unavailable(format!("checking the subject's key: {e}")))?
            .is_empty(),
        None => false,
    };
    let datasets: &[Dataset] = if erased { &[] } else { datasets };
    let format = ArchiveFormat::of(request.request_type);
    let mut collected = Vec::new();
    for dataset in datasets {
        let rows =
            collect_in_roots(store, target.settings, target.keyring, dataset, subject).await?;
        let rows = decrypt_rows(target.keyring, dataset, request, rows).await?;
        collected.push((dataset.name.clone(), rows));
    }
    let exported: Vec<ExportedDataset> = collected
        .iter()
        .map(|(name, rows)| ExportedDataset {
            dataset: name.clone(),
            rows: rows.rows,
            files: rows.files.len() as u64,
            formats: format
                .extensions()
                .iter()
                .map(|ext| format!("{name}.{ext}"))
                .collect(),
        })
        .collect();
    let mut manifest = json!({
        "request_id": request.id,
        "request_type": request.request_type,
        "generated_at": crate::domain::to_db(chrono::Utc::now()),
        "gdpr_article": request.request_type.gdpr_article(),
        "erased": erased,
        "datasets": exported,
    });
    if format == ArchiveFormat::Portability {
        manifest["json_format"] = json!("array");
    }
    let staging = std::env::temp_dir().join(format!(
        "lethe-export-{}-{}.zip",
        request.id,
        uuid::Uuid::new_v4().simple()
    ));
    let manifest_for_zip = manifest.clone();
    let file = staging.clone();
    tokio::task::spawn_blocking(move || {
        write_archive(&file, &manifest_for_zip, &collected, format)
    })
    .await
    .map_err(|e| ArchiveError::Unavailable(format!("export task failed: {e}")))??;
    let stored = store_export(target, &request.id, &staging).await;
    let _ = tokio::fs::remove_file(&staging).await;
    let (path, bytes) = stored?;
    let result = ExportResult {
        rows: exported.iter().map(|d| d.rows).sum(),
        export_bytes: bytes,
        erased,
        datasets: exported,
    };
    Ok((result, path))
}

/// The subject's rows with their encrypted cells opened with their DEK only (GDPR Art. 15);
/// cells of other subjects in the same rows (a message's receiver) stay null.
async fn decrypt_rows(
    keyring: Option<&Keyring>,
    dataset: &Dataset,
    request: &PrivacyRequest,
    rows: lake::SubjectRows,
) -> Result<lake::SubjectRows, ArchiveError> {
    let Some(schema) = &dataset.schema else {
        return Ok(rows);
    };
    let encrypted: Vec<&crate::domain::ColumnSpec> = schema
        .stored_columns()
        .filter(|c| schema.is_encrypted(&c.name))
        .collect();
    if encrypted.is_empty() || rows.rows == 0 {
        return Ok(rows);
    }
    let keyring = keyring.ok_or_else(|| {
        ArchiveError::Unexportable(format!(
            "dataset {} is encrypted and no keyring is configured",
            dataset.name
        ))
    })?;
    let dek = match keyring.dek_for_read(&request.subject_id).await {
        Ok(dek) => Some(dek),
        Err(KeyringError::NotFound) => None,
        Err(KeyringError::Shredded) => {
            return Err(ArchiveError::Unexportable(
                "the subject's data was erased (their key is destroyed)".into(),
            ));
        }
        Err(e) => {
            return Err(ArchiveError::Unavailable(format!(
                "reading the subject's key: {e}"
            )));
        }
    };
    let mut batches = Vec::with_capacity(rows.batches.len());
    for batch in &rows.batches {
        let mut fields: Vec<arrow_schema::FieldRef> =
            batch.schema().fields().iter().cloned().collect();
        let mut columns = batch.columns().to_vec();
        for spec in &encrypted {
            let Ok(i) = batch.schema().index_of(&spec.name) else {
                continue;
            };
            let to = spec.column_type.arrow();
            let envelopes = arrow_cast::cast(&columns[i], &arrow_schema::DataType::Binary)
                .map_err(|e| {
                    ArchiveError::Unexportable(format!("dataset {}: {e}", dataset.name))
                })?;
            let envelopes = envelopes
                .as_any()
                .downcast_ref::<arrow_array::BinaryArray>()
                .expect("cast to Binary")
                .clone();
            let owners = lake::subject_values(batch, schema.owner_of(spec))
                .map_err(|e| ArchiveError::Unexportable(format!("dataset {}: {e}", dataset.name)))?
                .unwrap_or_else(|| arrow_array::StringArray::new_null(batch.num_rows()));
            let opened = match &dek {
                Some(dek) => decrypt_column(
                    &dataset.name,
                    &spec.name,
                    &envelopes,
                    &owners,
                    &request.subject_id,
                    dek,
                    &to,
                ),
                None => Ok(arrow_array::new_null_array(&to, batch.num_rows())),
            }
            .map_err(|e| {
                ArchiveError::Unexportable(format!(
                    "dataset {}, column {}: {e}",
                    dataset.name, spec.name
                ))
            })?;
            columns[i] = opened;
            fields[i] = Arc::new(
                fields[i]
                    .as_ref()
                    .clone()
                    .with_data_type(to)
                    .with_nullable(true),
            );
        }
        batches.push(
            arrow_array::RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns)
                .map_err(|e| {
                    ArchiveError::Unexportable(format!("dataset {}: {e}", dataset.name))
                })?,
        );
    }
    let schema = batches
        .first()
        .map(arrow_array::RecordBatch::schema)
        .unwrap_or_else(|| Arc::clone(&rows.schema));
    Ok(lake::SubjectRows {
        schema,
        batches,
        ..rows
    })
}

/// Uploads the archive at `file` to `<exports_url>/<request_id>.zip` (streamed; multipart on
/// object stores) and returns that location and its size in bytes.
async fn store_export(
    target: ArchiveTarget<'_>,
    request_id: &str,
    file: &Path,
) -> Result<(String, u64), ArchiveError> {
    let ArchiveTarget {
        exports_url,
        keyring,
        ..
    } = target;
    let transient = |what: &str, e: &dyn std::fmt::Display| {
        ArchiveError::Unavailable(format!("storing export {what} at {exports_url}: {e}"))
    };
    if let Some(dir) = lake::local_folder(exports_url) {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| transient("folder", &e))?;
    }
    let (store, prefix) =
        lake::object_store_for_url(exports_url).map_err(|e| transient("location", &e))?;
    let name = format!("{request_id}.zip");
    let location = prefix.join(name.as_str());
    let bytes = match keyring {
        // Encrypted at rest (GDPR Art. 32): sealed under a fresh key wrapped by the KEK,
        // bound to this request (see `keyring::blob`). An export is one subject's rows, so it
        // is sealed in memory.
        Some(keyring) => {
            let zip = tokio::fs::read(file)
                .await
                .map_err(|e| transient("staging file", &e))?;
            let sealed = keyring.seal_blob(&export_context(request_id), &zip);
            let size = sealed.len() as u64;
            let mut sink = object_store::buffered::BufWriter::new(store, location);
            tokio::io::AsyncWriteExt::write_all(&mut sink, &sealed)
                .await
                .map_err(|e| transient("upload", &e))?;
            tokio::io::AsyncWriteExt::shutdown(&mut sink)
                .await
                .map_err(|e| transient("upload", &e))?;
            size
        }
        None => {
            let mut source = tokio::fs::File::open(file)
                .await
                .map_err(|e| transient("staging file", &e))?;
            let mut sink = object_store::buffered::BufWriter::new(store, location);
            let bytes = tokio::io::copy(&mut source, &mut sink)
                .await
                .map_err(|e| transient("upload", &e))?;
            tokio::io::AsyncWriteExt::shutdown(&mut sink)
                .await
                .map_err(|e| transient("upload", &e))?;
            bytes
        }
    };
    Ok((
        format!("{}/{name}", exports_url.trim_end_matches('/')),
        bytes,
    ))
}

/// Writes the zip archive to `path`: `manifest.json`, then per dataset one file per extension
/// of `format`.
fn write_archive(
    path: &Path,
    manifest: &Value,
    collected: &[(String, lake::SubjectRows)],
    format: ArchiveFormat,
) -> Result<(), ArchiveError> {
    let io = |what: &str, e: &dyn std::fmt::Display| {
        ArchiveError::Unavailable(format!("writing export {what} in {}: {e}", path.display()))
    };
    let file = std::fs::File::create(path).map_err(|e| io("archive", &e))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("manifest.json", options)
        .map_err(|e| io("manifest", &e))?;
    zip.write_all(
        serde_json::to_string_pretty(manifest)
            .expect("json")
            .as_bytes(),
    )
    .map_err(|e| io("manifest", &e))?;
    for (name, rows) in collected {
        for &ext in format.extensions() {
            zip.start_file(format!("{name}.{ext}"), options)
                .map_err(|e| io(ext, &e))?;
            match ext {
                "jsonl" => lake::write_json_lines(rows, &mut zip),
                "csv" => lake::write_csv(rows, &mut zip),
                "json" => lake::write_json_array(rows, &mut zip),
                // "parquet", the one extension left
                _ => lake::write_parquet(rows, &mut zip),
            }
            .map_err(|e| io(ext, &e))?;
        }
    }
    let mut inner = zip.finish().map_err(|e| io("archive", &e))?;
    inner.flush().map_err(|e| io("archive", &e))?;
    inner
        .into_inner()
        .map_err(|e| io("archive", &e.error().to_string()))?
        .sync_all()
        .map_err(|e| io("archive", &e))?;
    Ok(())
}
