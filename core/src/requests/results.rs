//! What a completed request's result says, typed per request type ([`RequestResult`]): an
//! erasure's ([`ErasureResult`], GDPR Art. 17), an export's
//! ([`crate::exports::ExportResult`], Art. 15/20), a rectification's ([`RectificationResult`],
//! Art. 16) and a restriction's ([`RestrictionResult`], Art. 18). Stored as JSON in the
//! request's row, served by the API and read by the erasure certificate; the field names are
//! that JSON's.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::exports::ExportResult;
use crate::store::LegalHold;

/// A completed request's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RequestResult {
    /// Erasure (Art. 17).
    Erasure(ErasureResult),
    /// Access or portability (Art. 15, 20).
    Export(ExportResult),
    /// Rectification (Art. 16).
    Rectification(RectificationResult),
    /// Restriction or its lifting (Art. 18).
    Restriction(RestrictionResult),
}

impl RequestResult {
    /// Whether a legal hold kept some of the subject's data (the request is then partially
    /// completed, Art. 17(3)).
    pub fn kept_any(&self) -> bool {
        matches!(self, Self::Erasure(r) if !r.kept.is_empty())
    }

    /// The result as stored.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a result serialises")
    }

    /// The result as the `request.completed` audit entry records it: the counts, without the
    /// per-dataset lists of rewritten files (file names are not the log's business).
    pub fn audit_counts(&self) -> Value {
        let mut counts = self.to_value();
        if let Some(datasets) = counts["datasets"].as_array_mut() {
            for d in datasets {
                d.as_object_mut().map(|o| o.remove("rewritten"));
            }
        }
        counts
    }
}

/// Size and ETag of an object, as the store reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectVersion {
    /// Bytes.
    pub size: u64,
    /// The store's ETag, when it gives one.
    pub e_tag: Option<String>,
}

/// What a legal hold kept (GDPR Art. 17(3)); never the hold's free-text reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    /// `dataset` or `subject`.
    pub scope: String,
    /// The held dataset, for a dataset hold.
    pub dataset_id: Option<String>,
    /// The hold.
    pub hold_id: String,
    /// Its legal basis.
    pub legal_basis: String,
    /// When it lapses by itself.
    pub ends_at: Option<chrono::DateTime<chrono::Utc>>,
    /// In a task's result: the request whose rows the hold kept in the task's file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The file kept, when a hold placed after the plan kept a file of a task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// In a request's result: the hold was placed after the erasure was planned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub placed_after_plan: bool,
    /// Rows the erased subject shares with the held subject (a message between them), kept
    /// whole in `file` while the subject's other rows there were removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_rows: Option<u64>,
}

impl Kept {
    /// What `hold` keeps.
    pub fn of(hold: &LegalHold) -> Self {
        Self {
            scope: if hold.dataset_id.is_some() {
                "dataset"
            } else {
                "subject"
            }
            .into(),
            dataset_id: hold.dataset_id.clone(),
            hold_id: hold.id.clone(),
            legal_basis: hold.legal_basis.clone(),
            ends_at: hold.ends_at,
            request_id: None,
            file: None,
            placed_after_plan: false,
            shared_rows: None,
        }
    }
}

/// Row-group surgery counts of a task's rewrite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurgeryCounts {
    /// Row groups decoded and encoded again.
    pub row_groups_rewritten: u64,
    /// Row groups copied as encoded bytes.
    pub row_groups_copied: u64,
    /// Compressed bytes of the row groups encoded again.
    pub bytes_reencoded: u64,
    /// Bytes copied as they were.
    pub bytes_copied: u64,
    /// Of those, bytes the object store copied server-side (S3 `UploadPartCopy`): never
    /// downloaded or uploaded by the worker. Absent from results written before it existed.
    #[serde(default)]
    pub bytes_copied_server_side: u64,
}

/// A file an erasure rewrote, with its size and ETag before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewrittenFile {
    /// The file, relative to its root.
    pub file: String,
    /// Before the rewrite.
    pub before: Option<ObjectVersion>,
    /// After it.
    pub after: Option<ObjectVersion>,
    /// A table's file is rewritten beside itself (copy-on-write): the new file, relative to
    /// the table root (absent for Parquet datasets, whose files are replaced in place, and
    /// when every row of the file was removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
}

/// What an erasure committed to a Delta or Iceberg table, and what its purge made
/// unreadable (the erasure is complete only when no snapshot can read the rows).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TableCommit {
    /// `delta` or `iceberg`.
    pub format: String,
    /// The version (Delta) or snapshot id (Iceberg) the erasure read.
    pub read_version: Option<i64>,
    /// Lethe's commit: the Delta version, or the id of the Iceberg `overwrite` snapshot;
    /// `None` when no file held a subject row any more.
    pub commit: Option<i64>,
    /// Commits attempted (more than 1 after losing races to other writers).
    pub commit_attempts: u32,
    /// Older versions (Delta) or snapshots (Iceberg) that can no longer be read because
    /// they could read the erased rows (time travel to them fails).
    pub snapshots_expired: u64,
    /// Data files deleted from storage after the commit, relative to the table root.
    pub files_purged: Vec<String>,
}

/// One dataset in a request's erasure result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResultDataset {
    /// Dataset name.
    pub dataset: String,
    /// Files the plan searched.
    pub files_scanned: u64,
    /// Files that held the subject and were rewritten.
    pub files_rewritten: u64,
    /// The subject's rows removed.
    pub rows_removed: u64,
    /// Bytes read by the whole batch in this dataset.
    pub bytes_read: u64,
    /// Bytes written by the whole batch in this dataset.
    pub bytes_written: u64,
    /// Row-group surgery of the whole batch in this dataset.
    #[serde(flatten)]
    pub surgery: SurgeryCounts,
    /// The rewritten files (dropped from the audit entry; kept in the result).
    pub rewritten: Vec<String>,
    /// The rewritten files with their versions.
    pub files: Vec<RewrittenFile>,
    /// For a Delta or Iceberg dataset: the commit and the purge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<TableCommit>,
}

/// The batch an erasure ran in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCounts {
    /// Requests in the batch.
    pub requests: u64,
    /// File tasks.
    pub tasks: u64,
    /// Rows removed by the whole batch.
    pub rows_removed: u64,
}

/// What a completed erasure request's result says. Reads back results written by earlier
/// versions: a field they lack takes its default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErasureResult {
    /// What legal holds kept (empty: nothing; otherwise the request is partially completed).
    pub kept: Vec<Kept>,
    /// The subject's rows removed, all datasets.
    pub rows_removed: u64,
    /// The batch.
    pub batch: BatchCounts,
    /// Per dataset.
    pub datasets: Vec<ResultDataset>,
}

/// One dataset in a rectification's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RectifiedDataset {
    /// Dataset name.
    pub dataset: String,
    /// Files searched.
    pub files_scanned: u64,
    /// Files rewritten with the new values.
    pub files_rewritten: u64,
    /// Rows whose cells were set.
    pub rows_changed: u64,
    /// Bytes read, locating included.
    pub bytes_read: u64,
    /// Bytes of the new files.
    pub bytes_written: u64,
    /// The rewritten files, relative to their root (dropped from the audit entry).
    pub rewritten: Vec<String>,
    /// For a Delta or Iceberg dataset: the commit and the purge of the old values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<TableCommit>,
}

/// What a completed rectification request's result says (Art. 16).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RectificationResult {
    /// Rows whose cells were set, all datasets.
    pub rows_changed: u64,
    /// The columns changed.
    pub columns: Vec<String>,
    /// Per dataset (one: a rectification names its dataset).
    pub datasets: Vec<RectifiedDataset>,
}

/// What a completed restriction (Art. 18(1)) or restriction-lift request's result says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RestrictionResult {
    /// The subject's processing is restricted.
    Restricted {
        /// Always `true`.
        restricted: bool,
        /// Since when (RFC 3339).
        restricted_since: String,
        /// An earlier request had already restricted it.
        already_restricted: bool,
    },
    /// The restriction is lifted (Art. 18(3)).
    Lifted {
        /// Always `false`.
        restricted: bool,
        /// A restriction was in force.
        was_restricted: bool,
        /// Since when it was (RFC 3339), if it was.
        restricted_since: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_kept_entry_names_the_hold_and_never_its_reason() {
        let hold = LegalHold {
            id: "h1".into(),
            dataset_id: None,
            subject_pseudonym: Some("p".into()),
            subject_ref: None,
            legal_basis: "Art. 17(3)(e)".into(),
            reason: "case 2025-117 against Ana Lima".into(),
            ends_at: None,
            created_by: "user:a".into(),
            created_at: chrono::Utc::now(),
            released_by: None,
            released_at: None,
        };
        let value = serde_json::to_value(Kept::of(&hold)).unwrap();
        assert_eq!(
            value,
            json!({ "scope": "subject", "dataset_id": null, "hold_id": "h1",
                    "legal_basis": "Art. 17(3)(e)", "ends_at": null })
        );
        assert!(!value.to_string().contains("Ana Lima"));
    }

    #[test]
    fn the_audit_counts_leave_out_the_rewritten_files_and_only_an_erasure_keeps_data() {
        let result = RequestResult::Rectification(RectificationResult {
            rows_changed: 2,
            columns: vec!["email".into()],
            datasets: vec![RectifiedDataset {
                dataset: "users".into(),
                files_scanned: 3,
                files_rewritten: 1,
                rows_changed: 2,
                bytes_read: 10,
                bytes_written: 20,
                rewritten: vec!["date=2025-01-07/part-0.parquet".into()],
                table: None,
            }],
        });
        assert_eq!(
            result.audit_counts(),
            json!({ "rows_changed": 2, "columns": ["email"], "datasets": [{
                "dataset": "users", "files_scanned": 3, "files_rewritten": 1,
                "rows_changed": 2, "bytes_read": 10, "bytes_written": 20 }] })
        );
        assert_eq!(
            result.to_value()["datasets"][0]["rewritten"][0],
            "date=2025-01-07/part-0.parquet"
        );
        assert!(!result.kept_any());
        let lifted = RequestResult::Restriction(RestrictionResult::Lifted {
            restricted: false,
            was_restricted: false,
            restricted_since: None,
        });
        assert_eq!(
            lifted.to_value(),
            json!({ "restricted": false, "was_restricted": false, "restricted_since": null })
        );
    }
}
