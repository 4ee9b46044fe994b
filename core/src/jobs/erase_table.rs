//! Erasure (GDPR Art. 17) from a Delta Lake or Apache Iceberg table: one [`EraseTableTask`]
//! per table per batch, so that the batch makes one commit through the format's protocol
//! (an Iceberg `overwrite` snapshot, a Delta `DELETE` commit), followed by the purge of every
//! older snapshot and file that could still read the erased rows ([`crate::lake::table`]).
//! The task holds the dataset exclusively: two workers on one table serialise through the
//! dataset lease, and the format's own compare-and-swap guards against other writers.

use std::sync::Arc;

use object_store::ObjectStoreExt;

use super::context::{ExecuteContext, Execution, JobError, lake_error};
use super::erase::{TaskSubjects, shared_rows_kept, shield_for, task_subjects};
use super::results::{
    ObjectVersion, RewrittenFile, SurgeryCounts, TableCommit, TaskResult, TaskStatus,
};
use crate::datasets::{TableError, open_table};
use crate::lake::table::{Table, TableEraseOutcome};
use crate::lake::{AllGuards, CommitGuard, ErasePolicy, FileStatus, LakeRoot};
use crate::store::{
    EraseTableTask, Job, JobPayload, LeaseMode, PrivacyRequest, Store, StoreError,
    with_dataset_lease,
};

/// Erases the subjects of the task's requests from its table, holding the dataset
/// exclusively.
pub(super) async fn erase_table(
    store: &Arc<Store>,
    ctx: &ExecuteContext,
    job: &Job,
    request: &PrivacyRequest,
    guard: Arc<dyn CommitGuard>,
) -> Result<Execution, JobError> {
    let JobPayload::EraseTable(task) = job.typed_payload()? else {
        return Err(JobError::Permanent(format!(
            "job {} is not an erase_table task",
            job.id
        )));
    };
    with_dataset_lease(
        store,
        &task.dataset_id,
        &format!("job:{}", job.id),
        LeaseMode::Exclusive,
        "erasure",
        |lease| {
            let guard: Arc<dyn CommitGuard> = Arc::new(AllGuards(vec![guard, lease]));
            erase_table_leased(store, ctx, &task, request, guard)
        },
    )
    .await
}

/// [`erase_table`] once the dataset lease is held.
async fn erase_table_leased(
    store: &Arc<Store>,
    ctx: &ExecuteContext,
    task: &EraseTableTask,
    request: &PrivacyRequest,
    guard: Arc<dyn CommitGuard>,
) -> Result<Execution, JobError> {
    // Holds placed since the plan are honoured here: a held subject is left out of the
    // table's erasure altogether (no `file`: every file of theirs in the table is kept).
    let TaskSubjects {
        others,
        holds,
        mut held,
        subjects,
    } = task_subjects(store, request, &task.request_ids, &task.dataset_id, None).await?;
    let requests: Vec<&PrivacyRequest> = std::iter::once(request).chain(&others).collect();
    let dataset = match store.dataset(&task.dataset_id).await {
        Ok(d) => d,
        Err(StoreError::NotFound { .. }) => {
            return Err(JobError::Permanent(format!(
                "dataset {} was deleted before its erasure ran",
                task.dataset
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let label = dataset.root_url.clone();
    if subjects.is_empty() {
        return Ok(Execution::Task {
            result: TaskResult {
                dataset: task.dataset.clone(),
                file: label,
                status: TaskStatus::Held,
                held: Some(held),
                subjects: Some(task.request_ids.len().max(1) as u64),
                ..TaskResult::default()
            },
        });
    }
    let table = open_table(&ctx.settings, &dataset)
        .await
        .map_err(|e| match e {
            TableError::Lake(e) => lake_error(&task.dataset, e),
            other => JobError::Permanent(format!("dataset {}: {other}", task.dataset)),
        })?;
    let mut policy = ErasePolicy::single(dataset.subject_column.clone());
    // Rows shared with a held subject (a message between the two) are kept whole.
    let shielded = shield_for(ctx, &holds, &policy);
    if let Some(shielded) = &shielded {
        policy = policy.shielding(shielded.clone());
    }
    let outcome = table
        .erase(
            policy,
            subjects.into_iter().collect(),
            ctx.file_concurrency.max(1),
            Some(guard),
        )
        .await
        .map_err(|e| lake_error(&task.dataset, e))?;
    if let (Some(shielded), Some(keyring)) = (&shielded, &ctx.keyring) {
        held.extend(shared_rows_kept(
            shielded, keyring, &holds, &requests, &label,
        ));
    }
    if let Some(error) = failed_file(&task.dataset, &outcome) {
        return Err(error);
    }
    // Each new file's size and ETag (one HEAD each), for the certificate.
    let root = LakeRoot::parse(&dataset.root_url).map_err(|e| lake_error(&task.dataset, e))?;
    let mut replaced = Vec::new();
    for file in outcome
        .files
        .iter()
        .filter(|f| f.status == FileStatus::Rewritten)
    {
        let after = match &file.replaced_by {
            Some(new) => root
                .store()
                .head(&root.location(new))
                .await
                .ok()
                .map(|m| ObjectVersion {
                    size: m.size,
                    e_tag: m.e_tag,
                }),
            None => None,
        };
        replaced.push(RewrittenFile {
            file: file.relative.clone(),
            before: None,
            after,
            replaced_by: file.replaced_by.clone(),
        });
    }
    let m = outcome.metrics.clone();
    Ok(Execution::Task {
        result: TaskResult {
            dataset: task.dataset.clone(),
            file: label,
            versions: None,
            status: if outcome.commit.is_some() {
                TaskStatus::Rewritten
            } else {
                TaskStatus::Unchanged
            },
            held: Some(held),
            subjects: Some(task.request_ids.len().max(1) as u64),
            rows_removed: m.rows_removed,
            bytes_read: m.bytes_read,
            bytes_written: m.bytes_written,
            surgery: Some(SurgeryCounts {
                row_groups_rewritten: m.surgery.row_groups_rewritten,
                row_groups_copied: m.surgery.row_groups_copied,
                bytes_reencoded: m.surgery.bytes_reencoded,
                bytes_copied: m.surgery.bytes_copied,
                bytes_copied_server_side: m.surgery.bytes_copied_server_side,
            }),
            table: Some(Box::new(table_commit(&table, outcome))),
            replaced: Some(replaced),
        },
    })
}

/// What `outcome` committed to `table` and purged, for results and audit entries.
pub(super) fn table_commit(table: &Table, outcome: TableEraseOutcome) -> TableCommit {
    TableCommit {
        format: table.format().to_string(),
        read_version: outcome.read_version,
        commit: outcome.commit,
        commit_attempts: outcome.commit_attempts,
        snapshots_expired: outcome.snapshots_expired,
        files_purged: outcome.files_purged,
    }
}

/// The error of a table's file that could not be rewritten: it still holds whatever it held
/// (the commit holds the others; the next attempt plans this one again, or the request fails
/// for good).
pub(super) fn failed_file(dataset: &str, outcome: &TableEraseOutcome) -> Option<JobError> {
    outcome.files.iter().find_map(|f| match &f.status {
        FileStatus::Failed { error } => {
            let message = format!(
                "dataset {dataset}: {}: {error} (left as it was)",
                f.relative
            );
            Some(if f.retryable {
                JobError::Transient(message)
            } else {
                JobError::Permanent(message)
            })
        }
        _ => None,
    })
}
