//! Rectification jobs (GDPR Art. 16): the files of one dataset holding the subject are
//! rewritten with the request's corrected values; encrypted columns are sealed again with the
//! subject's data key, so the subject's next access export shows the new values decrypted.
//!
//! One job does the whole dataset, file after file: a subject's rows sit in few files, and one
//! job keeps the request's outcome in one place. A retry rewrites the files again, which sets
//! the same values again.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, StringArray};

use super::context::{ExecuteContext, Execution, JobError, lake_error};
use super::erase_table::{failed_file, table_commit};
use crate::datasets::{TableError, locate_in_roots, open_table};
use crate::domain::{Rectification, SubjectId};
use crate::keyring::KeyringError;
use crate::keyring::columns::{BatchKeys, encrypt_column};
use crate::lake::{
    self, AllGuards, CellSealer, ColumnChange, CommitGuard, FileStatus, LakeRoot, Rectify,
};
use crate::requests::results::{RectificationResult, RectifiedDataset, RequestResult};
use crate::store::{Dataset, LeaseMode, PrivacyRequest, Store, with_dataset_lease};

/// Seals new values with the subject's key, bound to the dataset and column like ingest does.
struct SubjectSealer {
    dataset: String,
    keys: BatchKeys,
}

impl std::fmt::Debug for SubjectSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectSealer")
            .field("dataset", &self.dataset)
            .finish_non_exhaustive()
    }
}

impl CellSealer for SubjectSealer {
    fn seal(
        &self,
        column: &str,
        values: &ArrayRef,
        owners: &StringArray,
    ) -> Result<BinaryArray, String> {
        encrypt_column(&self.dataset, column, values, owners, &self.keys).map_err(|e| e.to_string())
    }
}

/// The lake changes of `rectification` in `dataset`: per column, the subject column selecting
/// the rows (a PII column's owner, else the primary subject column) and, for encrypted columns,
/// the declared type the value is sealed as.
fn column_changes(dataset: &Dataset, rectification: &Rectification) -> Vec<ColumnChange> {
    rectification
        .changes
        .iter()
        .map(|(column, value)| {
            let (owner, sealed_as) = match &dataset.schema {
                Some(schema) => {
                    let spec = schema.column(column);
                    let owner = match spec {
                        Some(spec) if spec.pii.is_some() => schema.owner_of(spec),
                        _ => schema.primary_subject(),
                    };
                    let sealed_as = spec
                        .filter(|_| schema.is_encrypted(column))
                        .map(|spec| spec.column_type.arrow());
                    (owner.to_string(), sealed_as)
                }
                None => (dataset.subject_column.clone(), None),
            };
            ColumnChange {
                column: column.clone(),
                owner,
                value: value.clone(),
                sealed_as,
            }
        })
        .collect()
}

/// Runs rectification request `request`: checks the changes again against the dataset, fails
/// for an erased subject, locates the subject's files (locator index first), rewrites them
/// (fenced by `guard`) and keeps the index in step (same rows, new sizes).
///
/// # Errors
/// [`JobError::Permanent`] for missing or invalid changes, an erased subject, a value that does
/// not fit a file's column (nothing written), unreadable files; [`JobError::Transient`] for
/// storage and database hiccups and a lost lease.
pub(super) async fn rectify(
    store: &Arc<Store>,
    ctx: &ExecuteContext,
    request: &PrivacyRequest,
    guard: Arc<dyn CommitGuard>,
) -> Result<Execution, JobError> {
    let rectification: Rectification = request
        .details
        .clone()
        .ok_or_else(|| JobError::Permanent("the request holds no changes".into()))
        .and_then(|d| {
            serde_json::from_value(d).map_err(|e| {
                JobError::Permanent(format!("the request's changes are malformed: {e}"))
            })
        })?;
    let subject = &request.subject_id;
    if let Some(keyring) = &ctx.keyring {
        let shredded = keyring
            .shredded_among([subject.as_str()])
            .await
            .map_err(|e| JobError::Transient(format!("checking the subject's key: {e}")))?;
        if !shredded.is_empty() {
            return Err(JobError::Permanent(
                "the subject's data was erased (their key is destroyed): there is nothing left to rectify".into(),
            ));
        }
    }
    let dataset = store.dataset(&rectification.dataset_id).await?;
    rectification
        .check(
            dataset.schema.as_ref(),
            &dataset.subject_columns(),
            &dataset.partition_columns,
        )
        .map_err(|e| JobError::Permanent(format!("dataset {}: {e}", dataset.name)))?;
    // A legal hold (GDPR Art. 17(3)) keeps the data as it is: no rectification rewrites it,
    // whether the hold is on the dataset or on the subject, and whenever it was placed.
    let holds = super::holds::ActiveHolds::load(store.as_ref()).await?;
    if let Some(hold) = holds.any_on(&dataset.id, [request.subject_pseudonym.as_str()]) {
        let scope = if hold.dataset_id.is_some() {
            format!("dataset {}", dataset.name)
        } else {
            "the subject's data".to_string()
        };
        return Err(JobError::Permanent(format!(
            "{scope} is under legal hold {} ({}): it is kept as it is and cannot be rectified until the hold is released",
            hold.id, hold.legal_basis
        )));
    }
    // Shared with other rewrites of a lake; a compaction or a residency remediation
    // (exclusive) would delete the files this rewrites. A table takes one commit at a time:
    // exclusive.
    let mode = if dataset.format.is_table() {
        LeaseMode::Exclusive
    } else {
        LeaseMode::Shared
    };
    with_dataset_lease(
        store,
        &dataset.id,
        &format!("request:{}", request.id),
        mode,
        "rectification",
        |lease| {
            let guard: Arc<dyn CommitGuard> = Arc::new(AllGuards(vec![guard, lease]));
            async {
                if dataset.format.is_table() {
                    rectify_table(ctx, request, guard, &dataset, &rectification).await
                } else {
                    rectify_leased(store, ctx, request, guard, &dataset, &rectification).await
                }
            }
        },
    )
    .await
}

/// [`rectify`] of a Delta or Iceberg table, once the dataset lease is held: one commit
/// through the format ([`crate::lake::table::Table::rectify`]), then the purge of what older
/// snapshots could still read of the old values.
async fn rectify_table(
    ctx: &ExecuteContext,
    request: &PrivacyRequest,
    guard: Arc<dyn CommitGuard>,
    dataset: &Dataset,
    rectification: &Rectification,
) -> Result<Execution, JobError> {
    let table = open_table(&ctx.settings, dataset)
        .await
        .map_err(|e| match e {
            TableError::Lake(e) => lake_error(&dataset.name, e),
            other => JobError::Permanent(format!("dataset {}: {other}", dataset.name)),
        })?;
    let changes = column_changes(dataset, rectification);
    let (outcome, rows_changed) = table
        .rectify(
            request.subject_id.as_str(),
            changes,
            ctx.file_concurrency.max(1),
            Some(guard),
        )
        .await
        .map_err(|e| lake_error(&dataset.name, e))?;
    if let Some(error) = failed_file(&dataset.name, &outcome) {
        return Err(error);
    }
    let rewritten: Vec<String> = outcome
        .files
        .iter()
        .filter(|f| f.status == FileStatus::Rewritten)
        .map(|f| f.relative.clone())
        .collect();
    let m = outcome.metrics.clone();
    Ok(Execution::Completed {
        result: RequestResult::Rectification(RectificationResult {
            rows_changed,
            columns: rectification.columns(),
            datasets: vec![RectifiedDataset {
                dataset: dataset.name.clone(),
                files_scanned: m.files_scanned,
                files_rewritten: m.files_rewritten,
                rows_changed,
                bytes_read: m.bytes_read,
                bytes_written: m.bytes_written,
                rewritten,
                table: Some(table_commit(&table, outcome)),
            }],
        }),
        export_path: None,
    })
}

/// [`rectify`] once the dataset lease is held.
async fn rectify_leased(
    store: &Arc<Store>,
    ctx: &ExecuteContext,
    request: &PrivacyRequest,
    guard: Arc<dyn CommitGuard>,
    dataset: &Dataset,
    rectification: &Rectification,
) -> Result<Execution, JobError> {
    let subject = &request.subject_id;
    let changes = column_changes(dataset, rectification);

    let owners: BTreeSet<&str> = changes.iter().map(|c| c.owner.as_str()).collect();
    let owners: Vec<String> = owners.into_iter().map(String::from).collect();
    let sealer = if changes.iter().any(|c| c.sealed_as.is_some()) {
        Some(sealer_for(ctx, dataset, subject).await?)
    } else {
        None
    };
    // Every root of the dataset (its root_url, and one per region with data residency) is
    // located before any file is rewritten: an unreadable file stops the request unchanged.
    let reports = locate_in_roots(
        store,
        &ctx.settings,
        ctx.keyring.as_deref(),
        ctx.file_concurrency,
        dataset,
        &owners,
        &[subject.as_str()],
    )
    .await?;
    let (mut files_scanned, mut located_bytes) = (0, 0);
    let mut outcome = lake::RectifyOutcome::default();
    for (url, report) in reports {
        files_scanned += report.metrics.files_scanned;
        located_bytes += report.metrics.bytes_read;
        if report.files.is_empty() {
            continue;
        }
        let root = LakeRoot::parse(&url).map_err(|e| lake_error(&dataset.name, e))?;
        let mut rectify = Rectify::new(root, subject.as_str())
            .files(report.files.iter().map(|f| f.file.relative.clone()))
            .commit_guard(Arc::clone(&guard));
        if let Some(sealer) = &sealer {
            rectify = rectify.sealer(Arc::clone(sealer));
        }
        for change in &changes {
            rectify = rectify.change(change.clone());
        }
        let done = rectify
            .execute()
            .await
            .map_err(|e| lake_error(&dataset.name, e))?;
        let (m, n) = (&mut outcome.metrics, done.metrics);
        m.files_scanned += n.files_scanned;
        m.files_rewritten += n.files_rewritten;
        m.files_failed += n.files_failed;
        m.rows_changed += n.rows_changed;
        m.bytes_read += n.bytes_read;
        m.bytes_written += n.bytes_written;
        m.elapsed_s += n.elapsed_s;
        outcome.files.extend(done.files);
    }

    let mut rewritten = Vec::new();
    let mut failed = Vec::new();
    let mut retryable = false;
    for f in &outcome.files {
        match &f.file.status {
            FileStatus::Rewritten => {
                // Same rows, new size: the index keeps answering for this file.
                store
                    .index_rewritten(
                        &dataset.id,
                        &f.file.relative,
                        &[],
                        f.file.rows_before,
                        f.file.bytes_written,
                    )
                    .await?;
                rewritten.push(f.file.relative.clone());
            }
            FileStatus::Unchanged => {}
            FileStatus::Failed { error } => {
                retryable |= f.file.retryable;
                failed.push((f.file.relative.clone(), error.clone()));
            }
        }
    }
    if !failed.is_empty() {
        let message = format!(
            "dataset {}: {} file(s) could not be rectified and were left untouched ({} rewritten): {}",
            dataset.name,
            failed.len(),
            rewritten.len(),
            failed
                .iter()
                .map(|(file, e)| format!("{file}: {e}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
        return Err(if retryable {
            JobError::Transient(message)
        } else {
            JobError::Permanent(message)
        });
    }
    let m = &outcome.metrics;
    Ok(Execution::Completed {
        result: RequestResult::Rectification(RectificationResult {
            rows_changed: m.rows_changed,
            columns: rectification.columns(),
            datasets: vec![RectifiedDataset {
                dataset: dataset.name.clone(),
                files_scanned,
                files_rewritten: m.files_rewritten,
                rows_changed: m.rows_changed,
                bytes_read: located_bytes + m.bytes_read,
                bytes_written: m.bytes_written,
                rewritten,
                table: None,
            }],
        }),
        export_path: None,
    })
}

/// A sealer with the subject's data key.
async fn sealer_for(
    ctx: &ExecuteContext,
    dataset: &Dataset,
    subject: &SubjectId,
) -> Result<Arc<dyn CellSealer>, JobError> {
    let keyring = ctx.keyring.as_ref().ok_or_else(|| {
        JobError::Permanent(format!(
            "dataset {} is encrypted and no keyring is configured",
            dataset.name
        ))
    })?;
    let dek = match keyring.dek_for_write(subject).await {
        Ok(dek) => dek,
        Err(KeyringError::Shredded) => {
            return Err(JobError::Permanent(
                "the subject's data was erased (their key is destroyed): there is nothing left to rectify".into(),
            ));
        }
        Err(e) => {
            return Err(JobError::Transient(format!(
                "reading the subject's key: {e}"
            )));
        }
    };
    let keys: BatchKeys = [(subject.as_str().to_string(), (subject.clone(), dek))].into();
    Ok(Arc::new(SubjectSealer {
        dataset: dataset.name.clone(),
        keys,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn dataset(schema: Option<Value>) -> Dataset {
        Dataset {
            id: "d-1".into(),
            name: "messages".into(),
            root_url: "/lake".into(),
            subject_column: "sender".into(),
            partition_columns: vec!["date".into()],
            created_by: "user:a".into(),
            created_at: chrono::Utc::now(),
            schema: schema.map(|s| serde_json::from_value(s).unwrap()),
            format: Default::default(),
            iceberg: None,
        }
    }

    #[test]
    fn each_column_changes_the_rows_of_its_owner_and_encrypted_ones_are_sealed() {
        let d = dataset(Some(json!({
            "subject_columns": ["sender", "receiver"],
            "columns": [
                {"name": "sender", "type": "string"},
                {"name": "receiver", "type": "string"},
                {"name": "topic", "type": "string"},
                {"name": "sender_email", "type": "string", "pii": "encrypt"},
                {"name": "receiver_phone", "type": "int64", "pii": "encrypt", "subject": "receiver"},
                {"name": "receiver_city", "type": "string", "pii": "plain", "subject": "receiver"}
            ]
        })));
        let r = Rectification {
            dataset_id: "d-1".into(),
            changes: serde_json::from_value(json!({
                "topic": "running", "sender_email": "a@example.com",
                "receiver_phone": 4915112345678i64, "receiver_city": "Lisbon"
            }))
            .unwrap(),
        };
        let changes = column_changes(&d, &r);
        let by = |c: &str| changes.iter().find(|x| x.column == c).unwrap();
        assert_eq!(by("topic").owner, "sender");
        assert_eq!(by("topic").sealed_as, None);
        assert_eq!(by("sender_email").owner, "sender");
        assert_eq!(
            by("sender_email").sealed_as,
            Some(arrow_schema::DataType::Utf8)
        );
        assert_eq!(by("receiver_phone").owner, "receiver");
        assert_eq!(
            by("receiver_phone").sealed_as,
            Some(arrow_schema::DataType::Int64)
        );
        assert_eq!(by("receiver_city").owner, "receiver");
        assert_eq!(by("receiver_city").sealed_as, None);
    }

    #[test]
    fn datasets_without_a_schema_change_plain_columns_of_their_subject_column() {
        let d = dataset(None);
        let r = Rectification {
            dataset_id: "d-1".into(),
            changes: serde_json::from_value(json!({"notes": null})).unwrap(),
        };
        let changes = column_changes(&d, &r);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].owner, "sender");
        assert_eq!(changes[0].sealed_as, None);
        assert_eq!(changes[0].value, Value::Null);
    }
}
