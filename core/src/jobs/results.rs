//! What an erasure's jobs record, typed: the plan's result ([`ErasurePlan`]) and each file
//! task's ([`TaskResult`]). What a request's result says of them ([`ErasureResult`] and the
//! types it holds) is the lifecycle's, in [`crate::requests::results`]. They are stored as
//! JSON in the job rows; the field names are that JSON's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::requests::results::{
    BatchCounts, ErasureResult, Kept, ObjectVersion, ResultDataset, RewrittenFile, SurgeryCounts,
    TableCommit,
};

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
    /// A table's files holding the batch's subjects, with their size and ETag when located
    /// (the table task replaces them with new files; the certificate names both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<BTreeMap<String, ObjectVersion>>,
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
    /// A table task: its commit and purge (boxed: file tasks, the many, have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<Box<TableCommit>>,
    /// A table task: the files it replaced, each with its successor and the successor's
    /// size and ETag (`after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<Vec<RewrittenFile>>,
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
            table: None,
            replaced: None,
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
}
