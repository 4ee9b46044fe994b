//! What each kind of job works on — its `payload` column — typed. The column holds the JSON
//! of these values (the API shows it as it is); everything Lethe enqueues is built from a
//! [`JobPayload`] and everything it runs reads one back.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Job, JobKind, NewJob, StoreError, StoreResult};
use crate::domain::Timestamp;

/// Parameters of an [`JobKind::EraseFile`] task. Subjects come from the request rows named in
/// `request_ids`, so the queue holds no personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Parameters of an [`JobKind::EraseTable`] task: the whole table, one commit. Subjects come
/// from the request rows named in `request_ids`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EraseTableTask {
    /// Dataset id.
    pub dataset_id: String,
    /// Dataset name.
    pub dataset: String,
    /// The erasure requests whose subjects have rows in the table.
    #[serde(default)]
    pub request_ids: Vec<String>,
}

/// A job's parameters, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobPayload {
    /// Access (Art. 15): the request says everything (`{}`).
    Access,
    /// Portability (Art. 20): `{}`.
    Portability,
    /// Rectification (Art. 16): `{}` (the changes are in the request).
    Rectification,
    /// Restriction or its lifting (Art. 18): `{}`.
    Restriction,
    /// An erasure plan: the ids of the requests of its batch once it absorbed them
    /// (`{"batch": [...]}`; empty before).
    Erasure {
        /// Request ids, the plan's own first.
        batch: Vec<String>,
    },
    /// One file of an erasure plan.
    EraseFile(EraseFileTask),
    /// One table of an erasure plan.
    EraseTable(EraseTableTask),
    /// Compaction of one managed dataset (`{"dataset_id": …}`).
    Compact {
        /// The dataset.
        dataset_id: String,
    },
    /// A residency scan of one dataset, or of every dataset (`{"dataset_id": null}`).
    ResidencyScan {
        /// The dataset, or `None`: all.
        dataset_id: Option<String>,
    },
    /// A residency remediation of one dataset, or of every dataset.
    ResidencyRemediate {
        /// The dataset, or `None`: all.
        dataset_id: Option<String>,
    },
}

/// The `{"dataset_id": …}` of compaction and residency jobs.
#[derive(Deserialize)]
struct OnDataset {
    dataset_id: Option<String>,
}

/// The `{"batch": [...]}` of an erasure plan.
#[derive(Deserialize)]
struct Batch {
    #[serde(default)]
    batch: Vec<String>,
}

impl JobPayload {
    /// The kind of job this payload belongs to.
    pub fn kind(&self) -> JobKind {
        match self {
            Self::Access => JobKind::Access,
            Self::Portability => JobKind::Portability,
            Self::Rectification => JobKind::Rectification,
            Self::Restriction => JobKind::Restriction,
            Self::Erasure { .. } => JobKind::Erasure,
            Self::EraseFile(_) => JobKind::EraseFile,
            Self::EraseTable(_) => JobKind::EraseTable,
            Self::Compact { .. } => JobKind::Compact,
            Self::ResidencyScan { .. } => JobKind::ResidencyScan,
            Self::ResidencyRemediate { .. } => JobKind::ResidencyRemediate,
        }
    }

    /// The payload of a job of `kind` stored as `value`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when `value` is not a payload of that kind (a missing
    /// `dataset_id` for a compaction, a malformed task).
    pub fn parse(kind: JobKind, value: &Value) -> StoreResult<Self> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt {
            table: "jobs",
            detail: format!("payload of a {} job: {e}", kind.as_str()),
        };
        let on_dataset = || {
            serde_json::from_value::<OnDataset>(value.clone())
                .map(|d| d.dataset_id)
                .map_err(corrupt)
        };
        Ok(match kind {
            JobKind::Access => Self::Access,
            JobKind::Portability => Self::Portability,
            JobKind::Rectification => Self::Rectification,
            JobKind::Restriction => Self::Restriction,
            JobKind::Erasure => Self::Erasure {
                batch: serde_json::from_value::<Batch>(value.clone())
                    .map(|b| b.batch)
                    .unwrap_or_default(),
            },
            JobKind::EraseFile => {
                Self::EraseFile(serde_json::from_value(value.clone()).map_err(corrupt)?)
            }
            JobKind::EraseTable => {
                Self::EraseTable(serde_json::from_value(value.clone()).map_err(corrupt)?)
            }
            JobKind::Compact => Self::Compact {
                dataset_id: on_dataset()?.ok_or_else(|| StoreError::Corrupt {
                    table: "jobs",
                    detail: "payload of a compact job: dataset_id missing".into(),
                })?,
            },
            JobKind::ResidencyScan => Self::ResidencyScan {
                dataset_id: on_dataset()?,
            },
            JobKind::ResidencyRemediate => Self::ResidencyRemediate {
                dataset_id: on_dataset()?,
            },
        })
    }

    /// The JSON stored in the `payload` column.
    pub fn to_value(&self) -> Value {
        match self {
            Self::Access | Self::Portability | Self::Rectification | Self::Restriction => {
                json!({})
            }
            Self::Erasure { batch } if batch.is_empty() => json!({}),
            Self::Erasure { batch } => json!({ "batch": batch }),
            Self::EraseFile(task) => serde_json::to_value(task).expect("a task serialises"),
            Self::EraseTable(task) => serde_json::to_value(task).expect("a task serialises"),
            Self::Compact { dataset_id } => json!({ "dataset_id": dataset_id }),
            Self::ResidencyScan { dataset_id } | Self::ResidencyRemediate { dataset_id } => {
                json!({ "dataset_id": dataset_id })
            }
        }
    }
}

impl NewJob {
    /// A job that works on `payload` (its kind is the payload's), for `request_id`.
    pub fn new(
        payload: JobPayload,
        request_id: Option<String>,
        max_attempts: u32,
        run_at: Option<Timestamp>,
    ) -> Self {
        Self {
            kind: payload.kind(),
            request_id,
            payload: payload.to_value(),
            max_attempts,
            run_at,
        }
    }
}

impl Job {
    /// This job's payload, typed by its kind.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the stored payload is not one of its kind.
    pub fn typed_payload(&self) -> StoreResult<JobPayload> {
        JobPayload::parse(self.kind, &self.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_payload_reads_back_as_it_was_written() {
        let task = EraseFileTask {
            dataset_id: "d".into(),
            dataset: "events".into(),
            root_url: "s3://lake/events".into(),
            subject_column: "user_id".into(),
            file: "date=2025-01-07/part-0.parquet".into(),
            request_ids: vec!["r1".into(), "r2".into()],
        };
        for payload in [
            JobPayload::Access,
            JobPayload::Portability,
            JobPayload::Rectification,
            JobPayload::Restriction,
            JobPayload::Erasure { batch: vec![] },
            JobPayload::Erasure {
                batch: vec!["r1".into(), "r2".into()],
            },
            JobPayload::EraseFile(task),
            JobPayload::EraseTable(EraseTableTask {
                dataset_id: "d".into(),
                dataset: "events".into(),
                request_ids: vec!["r1".into()],
            }),
            JobPayload::Compact {
                dataset_id: "d".into(),
            },
            JobPayload::ResidencyScan { dataset_id: None },
            JobPayload::ResidencyRemediate {
                dataset_id: Some("d".into()),
            },
        ] {
            let value = payload.to_value();
            assert_eq!(JobPayload::parse(payload.kind(), &value).unwrap(), payload);
        }
    }

    #[test]
    fn a_payload_not_of_its_kind_is_refused_as_corrupt() {
        assert!(matches!(
            JobPayload::parse(JobKind::Compact, &json!({})),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            JobPayload::parse(JobKind::EraseFile, &json!({"file": 3})),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(
            JobPayload::parse(JobKind::ResidencyScan, &json!({})).unwrap(),
            JobPayload::ResidencyScan { dataset_id: None }
        );
    }
}
