//! What an erasure's jobs record, typed: the plan's result ([`ErasurePlan`]), each file
//! task's ([`TaskResult`]) and what a request's result says of it ([`ErasureResult`]). They
//! are stored as JSON in the job and request rows; the field names are that JSON's (the
//! erasure certificate and the API read it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::LegalHold;

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
        }
    }
}

/// One dataset as an erasure plan located the batch's subjects in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanDataset {
    /// Dataset name.
    pub dataset: String,
    /// Set when the dataset was not searched: `true` under a dataset hold, `false` when the
    /// batch had no subject to look for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<bool>,
    /// Files searched.
    pub files_scanned: u64,
    /// Files holding a row of a subject of the batch.
    pub files_affected: u64,
    /// Rows of the batch's subjects found.
    pub rows_located: u64,
    /// Bytes read while locating.
    pub bytes_read: u64,
    /// Row groups ruled out by trusted statistics (searched datasets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_groups_pruned_by_statistics: Option<u64>,
    /// Row groups ruled out by bloom filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_groups_pruned_by_bloom_filter: Option<u64>,
    /// Files the locator index answered for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_answered_by_index: Option<u64>,
    /// Files the locator index ruled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_skipped_by_index: Option<u64>,
}

/// What one request of a batch has in one dataset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestFiles {
    /// The files holding the subject's rows.
    pub files: Vec<String>,
    /// The subject's rows in them.
    pub rows: u64,
    /// The subject's rows per file.
    pub file_rows: BTreeMap<String, u64>,
}

/// The result of an erasure plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErasurePlan {
    /// The ids of the batch's requests (the plan's own first).
    pub batch: Vec<String>,
    /// Per dataset, what the locate found.
    pub datasets: Vec<PlanDataset>,
    /// Per request id, per dataset name: the subject's files and rows.
    pub requests: BTreeMap<String, BTreeMap<String, RequestFiles>>,
    /// Per request id: what legal holds keep of it.
    pub kept: BTreeMap<String, Vec<Kept>>,
}

/// What became of a task's file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Rewritten without the subjects' rows.
    Rewritten,
    /// Held none of them after all.
    #[default]
    Unchanged,
    /// Every subject of the task is under a hold placed since the plan: not touched.
    Held,
    /// The file is gone (compacted or deleted since the plan).
    Missing,
}

/// The file before and after a task's rewrite (`null` when the store did not answer).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    /// Before.
    pub before: Option<ObjectVersion>,
    /// After (the same as before when unchanged).
    pub after: Option<ObjectVersion>,
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

/// The result of one file task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// Dataset name.
    pub dataset: String,
    /// The file, relative to its root.
    pub file: String,
    /// Before and after (files that were searched only).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<Versions>,
    /// What became of the file.
    pub status: TaskStatus,
    /// Rows kept under holds placed since the plan, per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Vec<Kept>>,
    /// Requests the task served (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects: Option<u64>,
    /// Rows removed.
    pub rows_removed: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes of the new file.
    pub bytes_written: u64,
    /// Row-group surgery (files that were searched only).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub surgery: Option<SurgeryCounts>,
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
}

/// One dataset in a request's erasure result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// The batch an erasure ran in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCounts {
    /// Requests in the batch.
    pub requests: u64,
    /// File tasks.
    pub tasks: u64,
    /// Rows removed by the whole batch.
    pub rows_removed: u64,
}

/// What a completed erasure request's result says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The JSON is the one the certificate, the API and results stored before these types read:
    /// a task whose file was searched carries its versions and surgery counts; a missing file
    /// carries neither; both read back the same.
    #[test]
    fn task_results_keep_their_json_shape_and_read_back() {
        let rewritten = TaskResult {
            dataset: "events".into(),
            file: "date=2025-01-07/part-0.parquet".into(),
            versions: Some(Versions {
                before: Some(ObjectVersion {
                    size: 100,
                    e_tag: Some("\"a\"".into()),
                }),
                after: None,
            }),
            status: TaskStatus::Rewritten,
            held: Some(Vec::new()),
            subjects: Some(2),
            rows_removed: 3,
            bytes_read: 40,
            bytes_written: 90,
            surgery: Some(SurgeryCounts {
                row_groups_rewritten: 1,
                row_groups_copied: 2,
                bytes_reencoded: 30,
                bytes_copied: 60,
                bytes_copied_server_side: 0,
            }),
        };
        let value = serde_json::to_value(&rewritten).unwrap();
        assert_eq!(
            value,
            json!({
                "dataset": "events", "file": "date=2025-01-07/part-0.parquet",
                "before": {"size": 100, "e_tag": "\"a\""}, "after": null,
                "status": "rewritten", "held": [], "subjects": 2,
                "rows_removed": 3, "bytes_read": 40, "bytes_written": 90,
                "row_groups_rewritten": 1, "row_groups_copied": 2,
                "bytes_reencoded": 30, "bytes_copied": 60, "bytes_copied_server_side": 0,
            })
        );
        assert_eq!(
            serde_json::from_value::<TaskResult>(value).unwrap(),
            rewritten
        );
        let missing = TaskResult {
            dataset: "events".into(),
            file: "gone.parquet".into(),
            status: TaskStatus::Missing,
            ..TaskResult::default()
        };
        let value = serde_json::to_value(&missing).unwrap();
        assert_eq!(
            value,
            json!({ "dataset": "events", "file": "gone.parquet", "status": "missing",
                    "rows_removed": 0, "bytes_read": 0, "bytes_written": 0 })
        );
        let read: TaskResult = serde_json::from_value(value).unwrap();
        assert_eq!(read.status, TaskStatus::Missing);
        assert_eq!(read.surgery, None);
    }

    #[test]
    fn a_kept_entry_names_the_hold_and_never_its_reason() {
        let hold = LegalHold {
            id: "h1".into(),
            dataset_id: None,
            subject_pseudonym: Some("p".into()),
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
}
