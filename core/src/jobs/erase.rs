//! Erasure (GDPR Art. 17) as a plan that fans out one task per affected file, so that many
//! workers share one erasure: the plan batches every due erasure and locates the batch's
//! subjects; each [`EraseFileTask`] rewrites one file; `erase_results` sums a request's
//! part once every task succeeded.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::ObjectStoreExt;
use serde_json::json;

use super::context::{ExecuteContext, Execution, JobError, lake_error};
use super::holds::ActiveHolds;
use super::results::{
    ErasurePlan, Kept, ObjectVersion, PlanDataset, RequestFiles, SurgeryCounts, TaskResult,
    TaskStatus, Versions,
};
use crate::audit::NewAuditEntry;
use crate::datasets::{locate_in_roots, shield_held_subjects};
use crate::domain::RequestStatus;
use crate::keyring::Keyring;
use crate::lake::{
    self, AllGuards, CommitGuard, Erase, ErasePolicy, FileStatus, LakeRoot, Shielded,
};
use crate::store::{
    Dataset, EraseFileTask, EraseTableTask, Job, JobPayload, LeaseMode, NewJob, PrivacyRequest,
    Store, StoreError, Transition, with_dataset_lease,
};

/// Batches every due erasure into this plan, locates the batch's subjects in every dataset
/// (one pass over each file's footer and subject column for all of them), and plans one task
/// per affected file.
pub(super) async fn plan_erasure(
    store: &Arc<Store>,
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
    let mut kept_by_request: BTreeMap<String, Vec<Kept>> = BTreeMap::new();
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
            kept_by_request.insert(request.id.clone(), vec![Kept::of(hold)]);
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

    // Data keys: destroyed unless a hold keeps rows the key makes readable. Without a hold on
    // any dataset no located row can keep a key, so the keys go while the files are searched.
    let keys_now = !holds.on_any_dataset();
    let to_destroy: Vec<&PrivacyRequest> = requests
        .iter()
        .filter(|r| !held_subjects.contains(&r.id))
        .collect();
    let early_keys = async {
        if keys_now {
            destroy_keys(store, ctx, job, &to_destroy).await?;
        }
        Ok::<_, JobError>(())
    };
    let located = async {
        let mut per_dataset = Vec::new();
        let mut per_request: BTreeMap<String, BTreeMap<String, RequestFiles>> = BTreeMap::new();
        // Subjects with rows in a held dataset, and the holds that keep those rows.
        let mut in_held: BTreeMap<String, Vec<Kept>> = BTreeMap::new();
        let mut tasks = Vec::new();
        for dataset in store.list_datasets().await? {
            if subjects.is_empty() {
                per_dataset.push(PlanDataset {
                    dataset: dataset.name.clone(),
                    held: Some(false),
                    ..PlanDataset::default()
                });
                continue;
            }
            let wanted: Vec<&str> = subjects.keys().copied().collect();
            let reports = locate_in_roots(
                store,
                &ctx.settings,
                ctx.keyring.as_deref(),
                ctx.file_concurrency,
                &dataset,
                &dataset.subject_columns(),
                &wanted,
            )
            .await?;
            if let Some(hold) = holds.on_dataset(&dataset.id) {
                // Located, never rewritten: only to learn whose keys the hold keeps.
                for file in reports.iter().flat_map(|(_, r)| &r.files) {
                    for subject in file.rows_by_subject.keys() {
                        let entry = in_held.entry(subject.clone()).or_default();
                        if !entry.iter().any(|k| k.hold_id == hold.id) {
                            entry.push(Kept::of(hold));
                        }
                    }
                }
                per_dataset.push(PlanDataset {
                    dataset: dataset.name.clone(),
                    held: Some(true),
                    ..PlanDataset::default()
                });
                continue;
            }
            let sum = |f: fn(&lake::LocateMetrics) -> u64| -> u64 {
                reports.iter().map(|(_, r)| f(&r.metrics)).sum()
            };
            per_dataset.push(PlanDataset {
                dataset: dataset.name.clone(),
                held: None,
                files_scanned: sum(|m| m.files_scanned),
                files_affected: reports.iter().map(|(_, r)| r.files.len() as u64).sum(),
                rows_located: reports
                    .iter()
                    .flat_map(|(_, r)| &r.files)
                    .map(|f| f.rows)
                    .sum(),
                bytes_read: sum(|m| m.bytes_read),
                row_groups_pruned_by_statistics: Some(sum(|m| m.row_groups_pruned_by_statistics)),
                row_groups_pruned_by_bloom_filter: Some(sum(|m| {
                    m.row_groups_pruned_by_bloom_filter
                })),
                files_answered_by_index: Some(sum(|m| m.files_answered_by_index)),
                files_skipped_by_index: Some(sum(|m| m.files_skipped_by_index)),
                versions: dataset.format.is_table().then(|| {
                    reports
                        .iter()
                        .flat_map(|(_, r)| &r.files)
                        .map(|f| {
                            let version = ObjectVersion {
                                size: f.file.size,
                                e_tag: f.file.e_tag.clone(),
                            };
                            (f.file.relative.clone(), version)
                        })
                        .collect()
                }),
            });
            // A table: one task for the whole table, so that the batch makes one commit.
            let mut table_requests: Vec<String> = Vec::new();
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
                                .or_default();
                            entry.rows += rows;
                            entry.file_rows.insert(file.file.relative.clone(), *rows);
                            entry.files.push(file.file.relative.clone());
                        }
                    }
                    if dataset.format.is_table() {
                        for id in request_ids {
                            if !table_requests.contains(&id) {
                                table_requests.push(id);
                            }
                        }
                        continue;
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
            if !table_requests.is_empty() {
                tasks.push(erase_table_task(job, &dataset, table_requests));
            }
        }
        Ok::<_, JobError>((per_dataset, per_request, in_held, tasks))
    };
    let (early_keys, located) = tokio::join!(early_keys, located);
    early_keys?;
    let (per_dataset, per_request, in_held, tasks) = located?;
    if !keys_now {
        let mut destroy = Vec::new();
        for request in to_destroy {
            match in_held.get(request.subject_id.as_str()) {
                Some(kept) => {
                    kept_by_request.insert(request.id.clone(), kept.clone());
                }
                None => destroy.push(request),
            }
        }
        destroy_keys(store, ctx, job, &destroy).await?;
    }
    Ok(Execution::Planned {
        plan: ErasurePlan {
            batch,
            datasets: per_dataset,
            requests: per_request,
            kept: kept_by_request,
        },
        tasks,
    })
}

/// Destroys the data keys of `requests` (crypto-shredding, GDPR Art. 17; see
/// [`crate::requests::destroy_subject_key`]); nothing without a keyring.
async fn destroy_keys(
    store: &Arc<Store>,
    ctx: &ExecuteContext,
    job: &Job,
    requests: &[&PrivacyRequest],
) -> Result<(), JobError> {
    let Some(keyring) = &ctx.keyring else {
        return Ok(());
    };
    let actor = format!("worker:{}", job.lease_owner.clone().unwrap_or_default());
    for request in requests {
        crate::requests::destroy_subject_key(store.as_ref(), keyring, request, &actor).await?;
    }
    Ok(())
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
    NewJob::new(
        JobPayload::EraseFile(task),
        request_ids
            .first()
            .cloned()
            .or_else(|| job.request_id.clone()),
        u32::try_from(job.max_attempts).unwrap_or(5),
        None,
    )
}

fn erase_table_task(job: &Job, dataset: &Dataset, request_ids: Vec<String>) -> NewJob {
    let first = request_ids.first().cloned();
    let task = EraseTableTask {
        dataset_id: dataset.id.clone(),
        dataset: dataset.name.clone(),
        request_ids,
    };
    NewJob::new(
        JobPayload::EraseTable(task),
        first.or_else(|| job.request_id.clone()),
        u32::try_from(job.max_attempts).unwrap_or(5),
        None,
    )
}

/// The erasure policy of the dataset a task names (its schema's, or its one subject column).
async fn task_policy(store: &Arc<Store>, task: &EraseFileTask) -> Result<ErasePolicy, JobError> {
    match store.dataset(&task.dataset_id).await {
        Ok(dataset) => Ok(dataset.schema.as_ref().map_or_else(
            || ErasePolicy::single(task.subject_column.clone()),
            ErasePolicy::from_schema,
        )),
        Err(StoreError::NotFound { .. }) => Ok(ErasePolicy::single(task.subject_column.clone())),
        Err(e) => Err(e.into()),
    }
}

/// What keeps rows shared with a held subject whole ([`shield_held_subjects`]).
pub(super) fn shield_for(
    ctx: &ExecuteContext,
    holds: &ActiveHolds,
    policy: &ErasePolicy,
) -> Option<Shielded> {
    let keyring = ctx.keyring.as_ref()?;
    shield_held_subjects(holds.subject_holds(), keyring.hasher(), policy)
}

/// The rows `shielded` kept in `file`, as one [`Kept`] per request and hold, with the count.
pub(super) fn shared_rows_kept(
    shielded: &Shielded,
    keyring: &Keyring,
    holds: &ActiveHolds,
    requests: &[&PrivacyRequest],
    file: &str,
) -> Vec<Kept> {
    let mut kept: BTreeMap<(String, String), Kept> = BTreeMap::new();
    for ((erased, holder), rows) in shielded.kept() {
        let Some(request) = requests.iter().find(|r| r.subject_id.as_str() == erased) else {
            continue;
        };
        let Some(hold) = holds.on_subject_ref(&keyring.subject_ref_str(&holder)) else {
            continue;
        };
        let entry = kept
            .entry((request.id.clone(), hold.id.clone()))
            .or_insert_with(|| Kept {
                request_id: Some(request.id.clone()),
                file: Some(file.to_string()),
                shared_rows: Some(0),
                ..Kept::of(hold)
            });
        entry.shared_rows = entry.shared_rows.map(|n| n + rows);
    }
    kept.into_values().collect()
}

/// The subjects a task erases, once holds placed since the plan are honoured.
pub(super) struct TaskSubjects {
    /// The task's other requests (besides the one it is filed under).
    pub others: Vec<PrivacyRequest>,
    /// The active legal holds, as now.
    pub holds: ActiveHolds,
    /// What holds keep: one [`Kept`] per held request.
    pub held: Vec<Kept>,
    /// The subject ids to erase (those of requests not held).
    pub subjects: Vec<String>,
}

/// The subjects of `request` and the task's other `request_ids`, without those a hold on the
/// subject or on `dataset_id` keeps (their [`Kept`] names `file`; `None` for a table: the
/// subject's every file in it). The batch's requests are read at once (one task carries up to
/// the whole batch; one after the other they were a good part of a task's overhead).
pub(super) async fn task_subjects(
    store: &Arc<Store>,
    request: &PrivacyRequest,
    request_ids: &[String],
    dataset_id: &str,
    file: Option<&str>,
) -> Result<TaskSubjects, JobError> {
    let other_ids: Vec<String> = request_ids
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
        match holds.any_on(dataset_id, [r.subject_pseudonym.as_str()]) {
            Some(hold) => held.push(Kept {
                request_id: Some(r.id.clone()),
                file: file.map(str::to_string),
                ..Kept::of(hold)
            }),
            None => subjects.push(r.subject_id.as_str().to_string()),
        }
    }
    Ok(TaskSubjects {
        others,
        holds,
        held,
        subjects,
    })
}

/// Rewrites one file without the rows of its requests' subjects, and keeps the locator index
/// in step.
pub(super) async fn erase_file(
    store: &Arc<Store>,
    ctx: &ExecuteContext,
    job: &Job,
    request: &PrivacyRequest,
    guard: Arc<dyn CommitGuard>,
) -> Result<Execution, JobError> {
    let JobPayload::EraseFile(task) = job.typed_payload()? else {
        return Err(JobError::Permanent(format!(
            "job {} is not an erase_file task",
            job.id
        )));
    };
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
    store: &Arc<Store>,
    ctx: &ExecuteContext,
    task: &EraseFileTask,
    request: &PrivacyRequest,
    guard: Arc<dyn CommitGuard>,
) -> Result<Execution, JobError> {
    let TaskSubjects {
        others,
        holds,
        mut held,
        subjects,
    } = task_subjects(
        store,
        request,
        &task.request_ids,
        &task.dataset_id,
        Some(&task.file),
    )
    .await?;
    if subjects.is_empty() {
        return Ok(Execution::Task {
            result: TaskResult {
                dataset: task.dataset.clone(),
                file: task.file.clone(),
                status: TaskStatus::Held,
                held: Some(held),
                subjects: Some(task.request_ids.len().max(1) as u64),
                ..TaskResult::default()
            },
        });
    }
    let root = LakeRoot::parse(&task.root_url).map_err(|e| lake_error(&task.dataset, e))?;
    let mut policy = task_policy(store, task).await?;
    // Rows shared with a held subject (a message between the two) are kept whole.
    let shielded = shield_for(ctx, &holds, &policy);
    if let Some(shielded) = &shielded {
        policy = policy.shielding(shielded.clone());
    }
    // Size and ETag of the file before and after the rewrite, for the erasure certificate
    // (one HEAD each; a digest of the content would mean reading the whole file again).
    let (objects, location) = (root.store().clone(), root.location(&task.file));
    let object_meta = |meta: object_store::Result<object_store::ObjectMeta>| {
        meta.ok().map(|m| ObjectVersion {
            size: m.size,
            e_tag: m.e_tag,
        })
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
    if let (Some(shielded), Some(keyring)) = (&shielded, &ctx.keyring) {
        let requests: Vec<&PrivacyRequest> = std::iter::once(request).chain(&others).collect();
        held.extend(shared_rows_kept(
            shielded, keyring, &holds, &requests, &task.file,
        ));
    }
    let Some(file) = outcome.files.first() else {
        // The file is gone (compacted or deleted since the plan): nothing of the subjects is
        // left in it.
        return Ok(Execution::Task {
            result: TaskResult {
                dataset: task.dataset.clone(),
                file: task.file.clone(),
                status: TaskStatus::Missing,
                ..TaskResult::default()
            },
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
            TaskStatus::Rewritten
        }
        FileStatus::Unchanged => TaskStatus::Unchanged,
        FileStatus::Failed { error } if file.retryable => {
            return Err(JobError::Transient(format!("{}: {error}", task.file)));
        }
        FileStatus::Failed { error } => {
            return Err(JobError::Permanent(format!(
                "dataset {}: {}: {error} (left untouched)",
                task.dataset, task.file
            )));
        }
    };
    let after = if status == TaskStatus::Rewritten {
        object_meta(objects.head(&location).await)
    } else {
        before.clone()
    };
    Ok(Execution::Task {
        result: TaskResult {
            dataset: task.dataset.clone(),
            file: task.file.clone(),
            versions: Some(Versions { before, after }),
            status,
            held: Some(held),
            subjects: Some(task.request_ids.len().max(1) as u64),
            rows_removed: file.rows_removed,
            bytes_read: file.bytes_read,
            bytes_written: file.bytes_written,
            surgery: Some(SurgeryCounts {
                row_groups_rewritten: file.surgery.row_groups_rewritten,
                row_groups_copied: file.surgery.row_groups_copied,
                bytes_reencoded: file.surgery.bytes_reencoded,
                bytes_copied: file.surgery.bytes_copied,
                bytes_copied_server_side: file.surgery.bytes_copied_server_side,
            }),
            table: None,
            replaced: None,
        },
    })
}
