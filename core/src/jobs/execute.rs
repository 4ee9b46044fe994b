//! What each kind of job does: access and portability exports (GDPR Art. 15, 20), and erasure
//! (Art. 17) as a plan that fans out one task per affected file so that many workers share one
//! erasure. Rectification (Art. 16) and restriction (Art. 18) live in their own modules.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use object_store::ObjectStoreExt;
use serde_json::{Value, json};

use super::holds::{ActiveHolds, kept_entry};
use crate::audit::NewAuditEntry;
use crate::domain::{RequestStatus, RequestType};
use crate::ingest::cells::decrypt_column;
use crate::keyring::Keyring;
use crate::keyring::KeyringError;
use crate::lake::{
    self, AllGuards, CommitGuard, Erase, ErasePolicy, FileStatus, LakeError, LakeRoot, Locate,
    LocatorHint,
};
use crate::store::{
    Dataset, Job, JobKind, LeaseMode, NewJob, PrivacyRequest, Store, StoreError, Transition,
    with_dataset_lease,
};

/// Why a job did not complete.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt later (storage or database unreachable, I/O hiccup, lost lease).
    #[error("{0}")]
    Transient(String),
    /// Will fail the same way again (corrupt file, missing column, bad root): abort.
    #[error("{0}")]
    Permanent(String),
    /// Another holder's lease on the dataset's files is in the way (a compaction, say): not a
    /// failure; the job runs again a little later without spending an attempt.
    #[error("{0}")]
    Busy(String),
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Database { .. } => JobError::Transient(e.to_string()),
            StoreError::DatasetBusy(_) | StoreError::DatasetLeaseLost { .. } => {
                JobError::Busy(e.to_string())
            }
            other => JobError::Permanent(other.to_string()),
        }
    }
}

pub(super) fn lake_error(dataset: &str, e: LakeError) -> JobError {
    let message = format!("dataset {dataset}: {e}");
    match e {
        LakeError::ObjectStore { .. } | LakeError::Io(_) | LakeError::Changed { .. } => {
            JobError::Transient(message)
        }
        _ => JobError::Permanent(message),
    }
}

/// Everything a job needs besides the store.
#[derive(Debug, Clone)]
pub struct ExecuteContext {
    /// Where access-request export archives are stored: an absolute folder, a `file://` URL
    /// or an object store URL such as `s3://bucket/exports`.
    pub exports_url: String,
    /// Files read in parallel while locating.
    pub file_concurrency: usize,
    /// The keyring, to destroy erased subjects' data keys before the rewrite (if the approval
    /// did not already).
    pub keyring: Option<Arc<Keyring>>,
}

/// What a job produced.
#[derive(Debug)]
pub enum Execution {
    /// The request is answered (access): its result and export archive.
    Completed {
        /// Result document of the request.
        result: Value,
        /// Export archive path.
        export_path: Option<String>,
    },
    /// An erasure plan: one task per affected file (none: nothing to erase).
    Planned {
        /// Per-dataset locate figures, kept as the plan's result.
        plan: Value,
        /// Tasks to enqueue.
        tasks: Vec<NewJob>,
    },
    /// One file task is done.
    Task {
        /// Per-file figures.
        result: Value,
    },
}

/// Parameters of an [`JobKind::EraseFile`] task. Subjects come from the request rows named in
/// `request_ids`, so the queue holds no personal data.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EraseFileTask {
    /// Dataset id.
    pub dataset_id: String,
    /// Dataset name.
    pub dataset: String,
    /// Root URL of the dataset.
    pub root_url: String,
    /// Subject column.
    pub subject_column: String,
    /// File path relative to the root.
    pub file: String,
    /// The erasure requests whose subjects have rows in this file.
    #[serde(default)]
    pub request_ids: Vec<String>,
}

/// Runs one job to its end.
///
/// `guard` is asked right before a rewritten file is swapped in (lease fencing).
///
/// # Errors
/// [`JobError::Transient`] or [`JobError::Permanent`]; the caller decides on retries.
pub async fn execute_job(
    store: &Arc<dyn Store>,
    ctx: &ExecuteContext,
    job: &Job,
    request: &PrivacyRequest,
    guard: Arc<dyn CommitGuard>,
) -> Result<Execution, JobError> {
    match job.kind {
        JobKind::Erasure => plan_erasure(store, ctx, job).await,
        JobKind::EraseFile => erase_file(store, ctx, job, request, guard).await,
        JobKind::Compact | JobKind::ResidencyScan | JobKind::ResidencyRemediate => {
            Err(JobError::Permanent(format!(
                "{} jobs serve no request; the worker runs them directly",
                job.kind.as_str()
            )))
        }
        JobKind::Access | JobKind::Portability => {
            let datasets = store.list_datasets().await?;
            let (result, path) = export(store, ctx, &datasets, request).await?;
            Ok(Execution::Completed {
                result,
                export_path: Some(path),
            })
        }
        JobKind::Rectification => super::rectify::rectify(store, ctx, request, guard).await,
        JobKind::Restriction => super::restrict::apply(store, job, request).await,
    }
}

/// Batches every due erasure into this plan, locates the batch's subjects in every dataset
/// (one pass over each file's footer and subject column for all of them), and plans one task
/// per affected file.
async fn plan_erasure(
    store: &Arc<dyn Store>,
    ctx: &ExecuteContext,
    job: &Job,
) -> Result<Execution, JobError> {
    let token = job.lease_token.clone().unwrap_or_default();
    let batch = store
        .absorb_erasure_plans(&job.id, &token)
        .await?
        .ok_or_else(|| JobError::Transient("lease lost before the erasure was planned".into()))?;
    let mut requests = Vec::new();
    // Legal holds (GDPR Art. 17(3)), as they are now: a held subject keeps everything,
    // including their key; a held dataset is skipped for everyone, and keeps the keys of the
    // subjects that have rows in it (decided once they are located, below).
    let holds = ActiveHolds::load(store.as_ref()).await?;
    let mut held_subjects: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut kept_by_request: serde_json::Map<String, Value> = serde_json::Map::new();
    for id in &batch {
        let request = store.request(id).await?;
        if request.status == RequestStatus::Approved {
            let audit = NewAuditEntry::new(
                format!("worker:{}", job.lease_owner.clone().unwrap_or_default()),
                "job.started",
            )
            .request(&request.id)
            .subject(&request.subject_pseudonym)
            .details(json!({ "job_id": job.id, "kind": job.kind, "batch_size": batch.len() }));
            let running = Transition::new(RequestStatus::Running, audit.actor.clone(), audit);
            match store.transition_request(&request.id, running).await {
                Ok(_) | Err(StoreError::InvalidTransition { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(hold) = holds.on_subject(&request.subject_pseudonym) {
            kept_by_request.insert(request.id.clone(), json!([kept_entry(hold)]));
            held_subjects.insert(request.id.clone());
        }
        requests.push(request);
    }
    let mut subjects: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in requests.iter().filter(|r| !held_subjects.contains(&r.id)) {
        subjects
            .entry(r.subject_id.as_str())
            .or_default()
            .push(r.id.as_str());
    }

    let mut per_dataset = Vec::new();
    let mut per_request: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    // Subjects with rows in a held dataset, and the holds that keep those rows.
    let mut in_held: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut tasks = Vec::new();
    for dataset in store.list_datasets().await? {
        if subjects.is_empty() {
            per_dataset.push(json!({ "dataset": dataset.name, "held": false,
                                     "files_scanned": 0, "files_affected": 0, "rows_located": 0, "bytes_read": 0 }));
            continue;
        }
        let wanted: Vec<&str> = subjects.keys().copied().collect();
        let reports =
            locate_in_roots(store, ctx, &dataset, &dataset.subject_columns(), &wanted).await?;
        if let Some(hold) = holds.on_dataset(&dataset.id) {
            // Located, never rewritten: only to learn whose keys the hold keeps.
            for file in reports.iter().flat_map(|(_, r)| &r.files) {
                for subject in file.rows_by_subject.keys() {
                    let entry = in_held.entry(subject.clone()).or_default();
                    if !entry.iter().any(|k| k["hold_id"] == json!(hold.id)) {
                        entry.push(kept_entry(hold));
                    }
                }
            }
            per_dataset.push(json!({ "dataset": dataset.name, "held": true,
                                     "files_scanned": 0, "files_affected": 0, "rows_located": 0, "bytes_read": 0 }));
            continue;
        }
        let sum = |f: fn(&lake::LocateMetrics) -> u64| -> u64 {
            reports.iter().map(|(_, r)| f(&r.metrics)).sum()
        };
        per_dataset.push(json!({
            "dataset": dataset.name,
            "files_scanned": sum(|m| m.files_scanned),
            "files_affected": reports.iter().map(|(_, r)| r.files.len()).sum::<usize>(),
            "rows_located": reports.iter().flat_map(|(_, r)| &r.files).map(|f| f.rows).sum::<u64>(),
            "bytes_read": sum(|m| m.bytes_read),
            "row_groups_pruned_by_statistics": sum(|m| m.row_groups_pruned_by_statistics),
            "row_groups_pruned_by_bloom_filter": sum(|m| m.row_groups_pruned_by_bloom_filter),
            "files_answered_by_index": sum(|m| m.files_answered_by_index),
            "files_skipped_by_index": sum(|m| m.files_skipped_by_index),
        }));
        for (root_url, report) in &reports {
            for file in &report.files {
                let mut request_ids = Vec::new();
                for (subject, rows) in &file.rows_by_subject {
                    for request_id in subjects.get(subject.as_str()).into_iter().flatten() {
                        request_ids.push(request_id.to_string());
                        let entry = per_request
                            .entry(request_id.to_string())
                            .or_default()
                            .entry(dataset.name.clone())
                            .or_insert_with(|| json!({ "files": [], "rows": 0, "file_rows": {} }));
                        entry["rows"] = json!(entry["rows"].as_u64().unwrap_or(0) + rows);
                        entry["file_rows"][&file.file.relative] = json!(rows);
                        if let Some(files) = entry["files"].as_array_mut() {
                            files.push(json!(file.file.relative));
                        }
                    }
                }
                tasks.push(erase_task(
                    job,
                    &dataset,
                    root_url,
                    &file.file.relative,
                    request_ids,
                ));
            }
        }
    }
    // Data keys: destroyed unless a hold keeps rows the key makes readable.
    for request in requests.iter().filter(|r| !held_subjects.contains(&r.id)) {
        if let Some(kept) = in_held.get(request.subject_id.as_str()) {
            kept_by_request.insert(request.id.clone(), Value::Array(kept.clone()));
        } else if let Some(keyring) = &ctx.keyring {
            let actor = format!("worker:{}", job.lease_owner.clone().unwrap_or_default());
            super::destroy_subject_key(store.as_ref(), keyring, request, &actor).await?;
        }
    }
    Ok(Execution::Planned {
        plan: json!({ "batch": batch, "datasets": per_dataset, "requests": per_request,
                      "kept": kept_by_request }),
        tasks,
    })
}

fn erase_task(
    job: &Job,
    dataset: &Dataset,
    root_url: &str,
    file: &str,
    request_ids: Vec<String>,
) -> NewJob {
    let task = EraseFileTask {
        dataset_id: dataset.id.clone(),
        dataset: dataset.name.clone(),
        root_url: root_url.to_string(),
        subject_column: dataset.subject_column.clone(),
        file: file.to_string(),
        request_ids: request_ids.clone(),
    };
    NewJob {
        kind: JobKind::EraseFile,
        request_id: request_ids
            .first()
            .cloned()
            .or_else(|| job.request_id.clone()),
        payload: serde_json::to_value(task).expect("task serialises"),
        max_attempts: u32::try_from(job.max_attempts).unwrap_or(5),
        run_at: None,
    }
}

/// What the locator index knows of `subjects` in `dataset`: `None` for datasets without a
/// schema (written by others), without a keyring, or with nothing indexed.
///
/// # Errors
/// [`JobError::Transient`] when the database fails.
pub async fn locator_hint(
    store: &Arc<dyn Store>,
    keyring: Option<&Keyring>,
    dataset: &Dataset,
    subjects: &[&str],
) -> Result<Option<LocatorHint>, JobError> {
    let (Some(_), Some(keyring)) = (&dataset.schema, keyring) else {
        return Ok(None);
    };
    let known: HashMap<String, u64> = store
        .indexed_files(&dataset.id)
        .await?
        .into_iter()
        .collect();
    if known.is_empty() {
        return Ok(None);
    }
    let by_ref: HashMap<String, &str> = subjects
        .iter()
        .map(|s| (keyring.subject_ref_str(s), *s))
        .collect();
    let refs: Vec<String> = by_ref.keys().cloned().collect();
    let mut hits: HashMap<String, BTreeMap<String, u64>> = HashMap::new();
    for (subject_ref, path, rows) in store.index_lookup(&dataset.id, &refs).await? {
        if let Some(subject) = by_ref.get(&subject_ref) {
            *hits
                .entry(path)
                .or_default()
                .entry((*subject).to_string())
                .or_default() += rows;
        }
    }
    Ok(Some(LocatorHint { known, hits }))
}

/// The erasure policy of the dataset a task names (its schema's, or its one subject column).
async fn task_policy(
    store: &Arc<dyn Store>,
    task: &EraseFileTask,
) -> Result<ErasePolicy, JobError> {
    match store.dataset(&task.dataset_id).await {
        Ok(dataset) => Ok(dataset.schema.as_ref().map_or_else(
            || ErasePolicy::single(task.subject_column.clone()),
            ErasePolicy::from_schema,
        )),
        Err(StoreError::NotFound { .. }) => Ok(ErasePolicy::single(task.subject_column.clone())),
        Err(e) => Err(e.into()),
    }
}

/// Rewrites one file without the rows of its requests' subjects, and keeps the locator index
/// in step.
async fn erase_file(
    store: &Arc<dyn Store>,
    ctx: &ExecuteContext,
    job: &Job,
    request: &PrivacyRequest,
    guard: Arc<dyn CommitGuard>,
) -> Result<Execution, JobError> {
    let task: EraseFileTask = serde_json::from_value(job.payload.clone())
        .map_err(|e| JobError::Permanent(format!("malformed erase_file task: {e}")))?;
    // Shared with other rewrites of the dataset; a compaction or a residency remediation
    // (exclusive) would delete the file this task swaps in.
    with_dataset_lease(
        store,
        &task.dataset_id,
        &format!("job:{}", job.id),
        LeaseMode::Shared,
        "erasure",
        |lease| {
            let guard: Arc<dyn CommitGuard> = Arc::new(AllGuards(vec![guard, lease]));
            erase_file_leased(store, ctx, &task, request, guard)
        },
    )
    .await
}

/// [`erase_file`] once the dataset lease is held.
async fn erase_file_leased(
    store: &Arc<dyn Store>,
    ctx: &ExecuteContext,
    task: &EraseFileTask,
    request: &PrivacyRequest,
    guard: Arc<dyn CommitGuard>,
) -> Result<Execution, JobError> {
    // The batch's other requests, read at the same time (one task carries up to the whole
    // batch; one after the other they were a good part of a task's overhead).
    let other_ids: Vec<String> = task
        .request_ids
        .iter()
        .filter(|id| **id != request.id)
        .cloned()
        .collect();
    let others = store.requests(&other_ids).await?;
    // Holds placed since the plan are honoured here: the task keeps what they hold.
    let holds = ActiveHolds::load(store.as_ref()).await?;
    let mut held = Vec::new();
    let mut subjects: Vec<String> = Vec::new();
    for r in std::iter::once(request).chain(&others) {
        match holds.any_on(&task.dataset_id, [r.subject_pseudonym.as_str()]) {
            Some(hold) => {
                let mut entry = kept_entry(hold);
                entry["request_id"] = json!(r.id);
                entry["file"] = json!(task.file);
                held.push(entry);
            }
            None => subjects.push(r.subject_id.as_str().to_string()),
        }
    }
    if subjects.is_empty() {
        return Ok(Execution::Task {
            result: json!({ "dataset": task.dataset, "file": task.file, "status": "held",
                            "held": held, "subjects": task.request_ids.len().max(1),
                            "rows_removed": 0, "bytes_read": 0, "bytes_written": 0 }),
        });
    }
    let root = LakeRoot::parse(&task.root_url).map_err(|e| lake_error(&task.dataset, e))?;
    let policy = task_policy(store, task).await?;
    // Size and ETag of the file before and after the rewrite, for the erasure certificate
    // (one HEAD each; a digest of the content would mean reading the whole file again).
    let (objects, location) = (root.store().clone(), root.location(&task.file));
    let object_meta = |meta: object_store::Result<object_store::ObjectMeta>| {
        meta.ok()
            .map(|m| json!({ "size": m.size, "e_tag": m.e_tag }))
    };
    let before = object_meta(objects.head(&location).await);
    let outcome = Erase::new(root, task.subject_column.clone())
        .policy(policy)
        .subjects(subjects.iter().cloned())
        .files([task.file.clone()])
        .concurrency(1)
        .commit_guard(guard)
        .execute()
        .await
        .map_err(|e| lake_error(&task.dataset, e))?;
    let Some(file) = outcome.files.first() else {
        // The file is gone (compacted or deleted since the plan): nothing of the subjects is
        // left in it.
        return Ok(Execution::Task {
            result: json!({ "dataset": task.dataset, "file": task.file, "status": "missing",
                            "rows_removed": 0, "bytes_read": 0, "bytes_written": 0 }),
        });
    };
    let status = match &file.status {
        FileStatus::Rewritten => {
            if let Some(keyring) = &ctx.keyring {
                let refs: Vec<String> = subjects
                    .iter()
                    .map(|s| keyring.subject_ref_str(s))
                    .collect();
                store
                    .index_rewritten(
                        &task.dataset_id,
                        &task.file,
                        &refs,
                        file.rows_before - file.rows_removed,
                        file.bytes_written,
                    )
                    .await?;
            }
            "rewritten"
        }
        FileStatus::Unchanged => "unchanged",
        FileStatus::Failed { error } if error.contains("lease") || error.contains("fenced") => {
            return Err(JobError::Transient(format!("{}: {error}", task.file)));
        }
        FileStatus::Failed { error } => {
            return Err(JobError::Permanent(format!(
                "dataset {}: {}: {error} (left untouched)",
                task.dataset, task.file
            )));
        }
    };
    let after = if status == "rewritten" {
        object_meta(objects.head(&location).await)
    } else {
        before.clone()
    };
    Ok(Execution::Task {
        result: json!({
            "dataset": task.dataset,
            "file": task.file,
            "before": before,
            "after": after,
            "status": status,
            "held": held,
            "subjects": task.request_ids.len().max(1),
            "rows_removed": file.rows_removed,
            "bytes_read": file.bytes_read,
            "bytes_written": file.bytes_written,
            "row_groups_rewritten": file.surgery.row_groups_rewritten,
            "row_groups_copied": file.surgery.row_groups_copied,
            "bytes_reencoded": file.surgery.bytes_reencoded,
            "bytes_copied": file.surgery.bytes_copied,
        }),
    })
}

/// The result of erasure request `request_id` once every task of its `plan` succeeded: per
/// dataset, files scanned by the plan, the files that held the subject and were rewritten, the
/// subject's rows removed, and the bytes read and written by the whole batch (shared by every
/// request in it).
pub fn erasure_result(plan: &Job, tasks: &[Job], request_id: &str) -> Value {
    let empty = Value::Null;
    let plan_result = plan.result.as_ref().unwrap_or(&empty);
    let mine = &plan_result["requests"][request_id];
    let mut total_rows = 0u64;
    let per_dataset: Vec<Value> = plan_result["datasets"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|d| {
            let name = d["dataset"].as_str().unwrap_or_default();
            let results: Vec<&Value> = tasks
                .iter()
                .filter_map(|t| t.result.as_ref())
                .filter(|r| r["dataset"] == name)
                .collect();
            let sum = |key: &str| {
                results
                    .iter()
                    .map(|r| r[key].as_u64().unwrap_or(0))
                    .sum::<u64>()
            };
            // Files a hold placed after the plan kept for this request (see `erase_file`).
            let held_files: Vec<&Value> = results
                .iter()
                .flat_map(|r| r["held"].as_array().into_iter().flatten())
                .filter(|h| h["request_id"] == request_id)
                .map(|h| &h["file"])
                .collect();
            let rewritten: Vec<Value> = mine[name]["files"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| !held_files.contains(&f))
                .collect();
            // Per file: its size and ETag before and after the rewrite (from the file's task).
            let files: Vec<Value> = rewritten
                .iter()
                .map(|file| {
                    let task = results.iter().find(|r| r["file"] == *file);
                    json!({
                        "file": file,
                        "before": task.map_or(Value::Null, |r| r["before"].clone()),
                        "after": task.map_or(Value::Null, |r| r["after"].clone()),
                    })
                })
                .collect();
            let rows_kept: u64 = held_files
                .iter()
                .filter_map(|f| f.as_str())
                .map(|f| mine[name]["file_rows"][f].as_u64().unwrap_or(0))
                .sum();
            let rows_removed = mine[name]["rows"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(rows_kept);
            total_rows += rows_removed;
            json!({
                "dataset": name,
                "files_scanned": d["files_scanned"],
                "files_rewritten": rewritten.len(),
                "rows_removed": rows_removed,
                "bytes_read": d["bytes_read"].as_u64().unwrap_or(0) + sum("bytes_read"),
                "bytes_written": sum("bytes_written"),
                "row_groups_rewritten": sum("row_groups_rewritten"),
                "row_groups_copied": sum("row_groups_copied"),
                "bytes_reencoded": sum("bytes_reencoded"),
                "bytes_copied": sum("bytes_copied"),
                "rewritten": rewritten,
                "files": files,
            })
        })
        .collect();
    let batch = plan.batch().len();
    let mut kept: Vec<Value> = plan_result["kept"][request_id]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for entry in tasks
        .iter()
        .filter_map(|t| t.result.as_ref())
        .flat_map(|r| r["held"].as_array().into_iter().flatten())
        .filter(|h| h["request_id"] == request_id)
    {
        kept.push(
            json!({ "scope": entry["scope"], "dataset_id": entry["dataset_id"],
                          "hold_id": entry["hold_id"], "legal_basis": entry["legal_basis"],
                          "ends_at": entry["ends_at"], "file": entry["file"],
                          "placed_after_plan": true }),
        );
    }
    json!({
        "kept": kept,
        "rows_removed": total_rows,
        "batch": { "requests": batch, "tasks": tasks.len(),
                   "rows_removed": tasks.iter().filter_map(|t| t.result.as_ref()).map(|r| r["rows_removed"].as_u64().unwrap_or(0)).sum::<u64>() },
        "datasets": per_dataset,
    })
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
/// `manifest.json` and, per dataset, the files of the request's [`ArchiveFormat`]: access
/// (Art. 15) `<name>.jsonl` and `<name>.csv`; portability (Art. 20) `<name>.parquet`,
/// `<name>.csv` and `<name>.json`.
async fn export(
    store: &Arc<dyn Store>,
    ctx: &ExecuteContext,
    datasets: &[Dataset],
    request: &PrivacyRequest,
) -> Result<(Value, String), JobError> {
    let subject = request.subject_id.as_str();
    // An erased subject (key destroyed) gets an answer saying so, and nothing of the lake: no
    // code path returns their data any more, not even rows the rewrite has yet to remove.
    let erased = match &ctx.keyring {
        Some(keyring) => !keyring
            .shredded_among([subject])
            .await
            .map_err(|e| JobError::Transient(format!("checking the subject's key: {e}")))?
            .is_empty(),
        None => false,
    };
    let datasets: &[Dataset] = if erased { &[] } else { datasets };
    let format = ArchiveFormat::of(request.request_type);
    let mut collected = Vec::new();
    for dataset in datasets {
        let rows = collect_in_roots(store, ctx, dataset, subject).await?;
        let rows = decrypt_rows(ctx, dataset, request, rows).await?;
        collected.push((dataset.name.clone(), rows));
    }
    let mut manifest = json!({
        "request_id": request.id,
        "request_type": request.request_type,
        "generated_at": crate::domain::to_db(chrono::Utc::now()),
        "gdpr_article": request.request_type.gdpr_article(),
        "erased": erased,
        "datasets": collected.iter().map(|(name, rows)| json!({
            "dataset": name,
            "rows": rows.rows,
            "files": rows.files.len(),
            "formats": format.extensions().iter().map(|ext| format!("{name}.{ext}")).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
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
    .map_err(|e| JobError::Transient(format!("export task failed: {e}")))??;
    let stored = store_export(
        &ctx.exports_url,
        &request.id,
        &staging,
        ctx.keyring.as_deref(),
    )
    .await;
    let _ = tokio::fs::remove_file(&staging).await;
    let (path, bytes) = stored?;
    let total_rows: u64 = manifest["datasets"]
        .as_array()
        .map(|a| a.iter().map(|d| d["rows"].as_u64().unwrap_or(0)).sum())
        .unwrap_or(0);
    Ok((
        json!({ "rows": total_rows, "export_bytes": bytes, "erased": erased,
                "datasets": manifest["datasets"] }),
        path,
    ))
}

/// The subject's rows with their encrypted cells opened with their DEK only (GDPR Art. 15);
/// cells of other subjects in the same rows (a message's receiver) stay null.
async fn decrypt_rows(
    ctx: &ExecuteContext,
    dataset: &Dataset,
    request: &PrivacyRequest,
    rows: lake::SubjectRows,
) -> Result<lake::SubjectRows, JobError> {
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
    let keyring = ctx.keyring.as_ref().ok_or_else(|| {
        JobError::Permanent(format!(
            "dataset {} is encrypted and no keyring is configured",
            dataset.name
        ))
    })?;
    let dek = match keyring.dek_for_read(&request.subject_id).await {
        Ok(dek) => Some(dek),
        Err(KeyringError::NotFound) => None,
        Err(KeyringError::Shredded) => {
            return Err(JobError::Permanent(
                "the subject's data was erased (their key is destroyed)".into(),
            ));
        }
        Err(e) => {
            return Err(JobError::Transient(format!(
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
                .map_err(|e| JobError::Permanent(format!("dataset {}: {e}", dataset.name)))?;
            let envelopes = envelopes
                .as_any()
                .downcast_ref::<arrow_array::BinaryArray>()
                .expect("cast to Binary")
                .clone();
            let owners = lake::subject_values(batch, schema.owner_of(spec))
                .map_err(|e| JobError::Permanent(format!("dataset {}: {e}", dataset.name)))?
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
                JobError::Permanent(format!(
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
                .map_err(|e| JobError::Permanent(format!("dataset {}: {e}", dataset.name)))?,
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

/// The sealing context of request `request_id`'s export: a sealed archive opens only as that
/// request's export.
pub fn export_context(request_id: &str) -> String {
    format!("export:{request_id}")
}

/// Uploads the archive at `file` to `<exports_url>/<request_id>.zip` (streamed; multipart on
/// object stores) and returns that location and its size in bytes.
async fn store_export(
    exports_url: &str,
    request_id: &str,
    file: &Path,
    keyring: Option<&Keyring>,
) -> Result<(String, u64), JobError> {
    let transient = |what: &str, e: &dyn std::fmt::Display| {
        JobError::Transient(format!("storing export {what} at {exports_url}: {e}"))
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
) -> Result<(), JobError> {
    let io = |what: &str, e: &dyn std::fmt::Display| {
        JobError::Transient(format!("writing export {what} in {}: {e}", path.display()))
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

/// Locates `subjects` in the subject `columns` of every root of `dataset` (its `root_url` and,
/// with data residency, one root per region), with the locator index's hint; returns each
/// root's URL and report. Erasure looks in every subject column, rectification in the columns
/// owning the changed values.
///
/// # Errors
/// [`JobError::Permanent`] when a file cannot be read (naming every such file); lake and
/// store errors as classified by [`lake_error`].
pub(crate) async fn locate_in_roots(
    store: &Arc<dyn Store>,
    ctx: &ExecuteContext,
    dataset: &Dataset,
    columns: &[String],
    subjects: &[&str],
) -> Result<Vec<(String, lake::LocateReport)>, JobError> {
    let hint = locator_hint(store, ctx.keyring.as_deref(), dataset, subjects).await?;
    let mut reports = Vec::new();
    for dataset_root in dataset.roots() {
        let root = LakeRoot::parse(&dataset_root.url).map_err(|e| lake_error(&dataset.name, e))?;
        let mut locate = Locate::new(root, dataset.subject_column.clone())
            .also_columns(columns.iter().cloned())
            .subjects(subjects.iter().copied())
            .concurrency(ctx.file_concurrency.max(1));
        if let Some(hint) = &hint {
            locate = locate.index(hint.clone());
        }
        let report = locate
            .execute()
            .await
            .map_err(|e| lake_error(&dataset.name, e))?;
        if !report.failures.is_empty() {
            let failed: Vec<String> = report
                .failures
                .iter()
                .map(|f| format!("{}: {}", f.relative, f.error))
                .collect();
            return Err(JobError::Permanent(format!(
                "dataset {}: {} file(s) could not be read and were left untouched: {}",
                dataset.name,
                failed.len(),
                failed.join("; ")
            )));
        }
        reports.push((dataset_root.url, report));
    }
    Ok(reports)
}

/// The rows of `subject` in every root of `dataset`, in root order.
///
/// # Errors
/// Lake and store errors as classified by [`lake_error`]; [`JobError::Permanent`] when two
/// roots of the dataset hold files of different schemas.
async fn collect_in_roots(
    store: &Arc<dyn Store>,
    ctx: &ExecuteContext,
    dataset: &Dataset,
    subject: &str,
) -> Result<lake::SubjectRows, JobError> {
    let hint = locator_hint(store, ctx.keyring.as_deref(), dataset, &[subject]).await?;
    let mut all: Option<lake::SubjectRows> = None;
    for dataset_root in dataset.roots() {
        let root = LakeRoot::parse(&dataset_root.url).map_err(|e| lake_error(&dataset.name, e))?;
        let rows =
            lake::collect_subject_rows(&root, &dataset.subject_columns(), subject, hint.as_ref())
                .await
                .map_err(|e| lake_error(&dataset.name, e))?;
        all = Some(match all {
            None => rows,
            Some(mut acc) if rows.rows == 0 => {
                acc.files.extend(rows.files);
                acc
            }
            Some(acc) if acc.rows == 0 => lake::SubjectRows {
                files: acc.files.into_iter().chain(rows.files).collect(),
                ..rows
            },
            Some(mut acc) if acc.schema == rows.schema => {
                acc.batches.extend(rows.batches);
                acc.files.extend(rows.files);
                acc.rows += rows.rows;
                acc
            }
            Some(_) => {
                return Err(JobError::Permanent(format!(
                    "dataset {}: the files of root {} have another schema than those of the other roots",
                    dataset.name, dataset_root.url
                )));
            }
        });
    }
    Ok(all.expect("a dataset has at least one root"))
}
