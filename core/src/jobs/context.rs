//! What a job gets besides the store ([`ExecuteContext`]), what it produces ([`Execution`])
//! and why it did not complete ([`JobError`]).

use std::sync::Arc;

use super::results::{ErasurePlan, TaskResult};
use crate::requests::results::RequestResult;

use crate::keyring::Keyring;
use crate::lake::LakeError;
use crate::store::{NewJob, StoreError};

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
    /// The job's task panicked (a bug): the job fails with the panic's message and is not
    /// retried; the worker goes on with other jobs.
    #[error("the job panicked: {0}")]
    Panicked(String),
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

impl From<crate::exports::ExportError> for JobError {
    fn from(e: crate::exports::ExportError) -> Self {
        match e {
            crate::exports::ExportError::Store(e) => e.into(),
            storage @ crate::exports::ExportError::Storage(_) => {
                JobError::Transient(storage.to_string())
            }
        }
    }
}

impl From<crate::requests::RequestError> for JobError {
    fn from(e: crate::requests::RequestError) -> Self {
        use crate::requests::RequestError;
        match e {
            RequestError::Store(e) => e.into(),
            RequestError::Exports(e) => e.into(),
            transient @ RequestError::Keyring(_) => JobError::Transient(transient.to_string()),
            other => JobError::Permanent(other.to_string()),
        }
    }
}

impl From<crate::exports::ArchiveError> for JobError {
    fn from(e: crate::exports::ArchiveError) -> Self {
        use crate::exports::ArchiveError;
        match e {
            ArchiveError::Rows(e) => e.into(),
            unavailable @ ArchiveError::Unavailable(_) => {
                JobError::Transient(unavailable.to_string())
            }
            unexportable @ ArchiveError::Unexportable(_) => {
                JobError::Permanent(unexportable.to_string())
            }
        }
    }
}

impl From<crate::datasets::RowsError> for JobError {
    fn from(e: crate::datasets::RowsError) -> Self {
        use crate::datasets::RowsError;
        match e {
            RowsError::Lake { dataset, source } => lake_error(&dataset, source),
            RowsError::Store(e) => e.into(),
            unreadable_or_mixed => JobError::Permanent(unreadable_or_mixed.to_string()),
        }
    }
}

pub(super) fn lake_error(dataset: &str, e: LakeError) -> JobError {
    let message = format!("dataset {dataset}: {e}");
    match e {
        LakeError::ObjectStore { .. }
        | LakeError::Io(_)
        | LakeError::Changed { .. }
        | LakeError::CommitConflict { .. } => JobError::Transient(message),
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
    /// The settings: Iceberg catalogs and where tables may lie.
    pub settings: Arc<crate::config::Settings>,
}

/// What a job produced.
#[derive(Debug)]
pub enum Execution {
    /// The request is answered (access): its result and export archive.
    Completed {
        /// The request's result.
        result: RequestResult,
        /// Export archive path.
        export_path: Option<String>,
    },
    /// An erasure plan: one task per affected file (none: nothing to erase).
    Planned {
        /// Per-dataset locate figures and per-request files, kept as the plan's result.
        plan: ErasurePlan,
        /// Tasks to enqueue.
        tasks: Vec<NewJob>,
    },
    /// One file task is done.
    Task {
        /// Per-file figures.
        result: TaskResult,
    },
}
