//! What each kind of job does: erasure (GDPR Art. 17) and access (GDPR Art. 15).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::domain::SubjectId;
use crate::lake::{self, Erase, FileStatus, LakeError, LakeRoot};
use crate::store::{Dataset, Job, JobKind, PrivacyRequest, Store, StoreError};

/// Why a job did not complete.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt later (storage or database unreachable, I/O hiccup).
    #[error("{0}")]
    Transient(String),
    /// Will fail the same way again (corrupt file, missing column, bad root): abort.
    #[error("{0}")]
    Permanent(String),
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Database { .. } => JobError::Transient(e.to_string()),
            other => JobError::Permanent(other.to_string()),
        }
    }
}

fn lake_error(dataset: &Dataset, e: LakeError) -> JobError {
    let message = format!("dataset {}: {e}", dataset.name);
    match e {
        LakeError::ObjectStore { .. } | LakeError::Io(_) => JobError::Transient(message),
        _ => JobError::Permanent(message),
    }
}

/// Everything a job needs besides the store.
#[derive(Debug, Clone)]
pub struct ExecuteContext {
    /// Folder for access-request export archives.
    pub exports_dir: PathBuf,
    /// Files rewritten in parallel by one erasure.
    pub file_concurrency: usize,
}

/// Runs one job to completion and returns the request's result document and, for access, the
/// export archive's path.
///
/// # Errors
/// [`JobError::Transient`] or [`JobError::Permanent`]; the caller decides on retries.
pub async fn execute_job(
    store: &Arc<dyn Store>,
    ctx: &ExecuteContext,
    job: &Job,
    request: &PrivacyRequest,
) -> Result<(Value, Option<String>), JobError> {
    let datasets = store.list_datasets().await?;
    match job.kind {
        JobKind::Erasure => Ok((erase(ctx, &datasets, &request.subject_id).await?, None)),
        JobKind::Access => {
            let (result, path) = export(ctx, &datasets, request).await?;
            Ok((result, Some(path.display().to_string())))
        }
    }
}

/// Erases the subject from every dataset, one pass over each affected file.
async fn erase(
    ctx: &ExecuteContext,
    datasets: &[Dataset],
    subject: &SubjectId,
) -> Result<Value, JobError> {
    let mut per_dataset = Vec::new();
    for dataset in datasets {
        let root = LakeRoot::parse(&dataset.root_url).map_err(|e| lake_error(dataset, e))?;
        let outcome = Erase::new(root, dataset.subject_column.clone())
            .subjects([subject.as_str().to_string()])
            .concurrency(ctx.file_concurrency.max(1))
            .execute()
            .await
            .map_err(|e| lake_error(dataset, e))?;
        let failed: Vec<String> = outcome
            .files
            .iter()
            .filter_map(|f| match &f.status {
                FileStatus::Failed { error } => Some(format!("{}: {error}", f.relative)),
                _ => None,
            })
            .collect();
        if !failed.is_empty() {
            return Err(JobError::Permanent(format!(
                "dataset {}: {} file(s) could not be processed and were left untouched: {}",
                dataset.name,
                failed.len(),
                failed.join("; ")
            )));
        }
        let rewritten: Vec<&str> = outcome
            .files
            .iter()
            .filter(|f| matches!(f.status, FileStatus::Rewritten))
            .map(|f| f.relative.as_str())
            .collect();
        let m = &outcome.metrics;
        per_dataset.push(json!({
            "dataset": dataset.name,
            "files_scanned": m.files_scanned,
            "files_rewritten": m.files_rewritten,
            "rows_removed": m.rows_removed,
            "bytes_read": m.bytes_read,
            "bytes_written": m.bytes_written,
            "elapsed_s": m.elapsed_s,
            "rewritten": rewritten,
        }));
    }
    let rows_removed: u64 = per_dataset
        .iter()
        .map(|d| d["rows_removed"].as_u64().unwrap_or(0))
        .sum();
    Ok(json!({ "rows_removed": rows_removed, "datasets": per_dataset }))
}

/// Exports the subject's rows from every dataset into one zip archive holding, per dataset,
/// `<name>.jsonl` and `<name>.csv`, plus `manifest.json`.
async fn export(
    ctx: &ExecuteContext,
    datasets: &[Dataset],
    request: &PrivacyRequest,
) -> Result<(Value, PathBuf), JobError> {
    let mut collected = Vec::new();
    for dataset in datasets {
        let root = LakeRoot::parse(&dataset.root_url).map_err(|e| lake_error(dataset, e))?;
        let rows =
            lake::collect_subject_rows(&root, &dataset.subject_column, request.subject_id.as_str())
                .await
                .map_err(|e| lake_error(dataset, e))?;
        collected.push((dataset.name.clone(), rows));
    }
    let manifest = json!({
        "request_id": request.id,
        "request_type": request.request_type,
        "generated_at": crate::domain::to_db(chrono::Utc::now()),
        "gdpr_article": "15",
        "datasets": collected.iter().map(|(name, rows)| json!({
            "dataset": name,
            "rows": rows.rows,
            "files": rows.files.len(),
            "formats": [format!("{name}.jsonl"), format!("{name}.csv")],
        })).collect::<Vec<_>>(),
    });
    let dir = ctx.exports_dir.clone();
    let request_id = request.id.clone();
    let manifest_for_zip = manifest.clone();
    let path = tokio::task::spawn_blocking(move || {
        write_archive(&dir, &request_id, &manifest_for_zip, &collected)
    })
    .await
    .map_err(|e| JobError::Transient(format!("export task failed: {e}")))??;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let total_rows: u64 = manifest["datasets"]
        .as_array()
        .map(|a| a.iter().map(|d| d["rows"].as_u64().unwrap_or(0)).sum())
        .unwrap_or(0);
    Ok((
        json!({ "rows": total_rows, "export_bytes": bytes, "datasets": manifest["datasets"] }),
        path,
    ))
}

fn write_archive(
    dir: &Path,
    request_id: &str,
    manifest: &Value,
    collected: &[(String, lake::SubjectRows)],
) -> Result<PathBuf, JobError> {
    let io = |what: &str, e: &dyn std::fmt::Display| {
        JobError::Transient(format!("writing export {what} in {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| io("folder", &e))?;
    let final_path = dir.join(format!("{request_id}.zip"));
    let tmp_path = dir.join(format!(".{request_id}.zip.tmp"));
    let file = std::fs::File::create(&tmp_path).map_err(|e| io("archive", &e))?;
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
        zip.start_file(format!("{name}.jsonl"), options)
            .map_err(|e| io("jsonl", &e))?;
        lake::write_json_lines(rows, &mut zip).map_err(|e| io("jsonl", &e))?;
        zip.start_file(format!("{name}.csv"), options)
            .map_err(|e| io("csv", &e))?;
        lake::write_csv(rows, &mut zip).map_err(|e| io("csv", &e))?;
    }
    let mut inner = zip.finish().map_err(|e| io("archive", &e))?;
    inner.flush().map_err(|e| io("archive", &e))?;
    inner
        .into_inner()
        .map_err(|e| io("archive", &e.error().to_string()))?
        .sync_all()
        .map_err(|e| io("archive", &e))?;
    std::fs::rename(&tmp_path, &final_path).map_err(|e| io("archive", &e))?;
    Ok(final_path)
}
