//! Datasets as the lifecycle and the API see them: registration with the checks of its roots
//! ([`register`]), the table behind a Delta or Iceberg dataset ([`open_table`]), a dataset's rows across all its roots ([`locate_in_roots`],
//! [`collect_in_roots`], with the locator index's [`locator_hint`]), the rows shared with a
//! held subject that every erasing rewrite keeps ([`shield_held_subjects`]), and listing a root
//! within a deadline. The rows are the store's
//! ([`crate::store::Store::create_dataset`], [`crate::store::Store::delete_dataset`]).

mod register;
mod rows;
mod shield;
mod table;

pub use register::{Register, register};
pub use rows::{RowsError, collect_in_roots, locate_in_roots, locator_hint};
pub use shield::shield_held_subjects;
pub use table::{TableError, open_iceberg, open_table};

use std::time::Duration;

use crate::lake::{DataFile, LakeError, LakeRoot};
use crate::store::StoreError;

/// Why a dataset was refused. Each variant says what an HTTP API answers.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// Malformed or not allowed (400; `code` e.g. `validation`, `root_unreachable`,
    /// `root_not_allowed`).
    #[error("{detail}")]
    Invalid {
        /// Machine-readable code.
        code: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// Another dataset has the name or the root (409; `dataset_exists`, `root_taken`).
    #[error("{detail}")]
    Conflict {
        /// Machine-readable code.
        code: &'static str,
        /// Why.
        detail: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DatasetError {
    /// A `validation` refusal.
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::Invalid {
            code: "validation",
            detail: detail.into(),
        }
    }
}

impl From<crate::domain::ParseError> for DatasetError {
    fn from(e: crate::domain::ParseError) -> Self {
        Self::validation(e.to_string())
    }
}

impl From<RootError> for DatasetError {
    fn from(e: RootError) -> Self {
        match e {
            RootError::Invalid(detail) => Self::validation(detail),
            unreachable @ RootError::Unreachable { .. } => Self::Invalid {
                code: "root_unreachable",
                detail: unreachable.to_string(),
            },
        }
    }
}

/// How long listing a dataset's root may take when a caller waits for it (registration, a
/// rectification's column check): an object store without credentials may try the cloud
/// metadata endpoint and retry for much longer. 10 seconds.
pub const ROOT_LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a root could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// The root is not a dataset root Lethe can take (a table format's folder, a bad URL).
    #[error("{0}")]
    Invalid(String),
    /// The root did not answer, or answered with an error (`url` and why, at most 300
    /// characters on one line).
    #[error("the root {url} could not be listed: {reason}")]
    Unreachable {
        /// The root's URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// The data files of `root` (at `url`), listed within [`ROOT_LIST_TIMEOUT`].
///
/// # Errors
/// [`RootError::Invalid`] for a table format's root or an invalid root;
/// [`RootError::Unreachable`] when listing fails or takes too long.
pub async fn list_root(root: &LakeRoot, url: &str) -> Result<Vec<DataFile>, RootError> {
    let unreachable = |reason: String| {
        let mut reason = reason.replace('\n', " ");
        if let Some((cut, _)) = reason.char_indices().nth(300) {
            reason.truncate(cut);
            reason.push('…');
        }
        RootError::Unreachable {
            url: url.to_string(),
            reason,
        }
    };
    let listed = tokio::time::timeout(ROOT_LIST_TIMEOUT, root.list_files())
        .await
        .map_err(|_| {
            unreachable(format!(
                "no answer within {} s",
                ROOT_LIST_TIMEOUT.as_secs()
            ))
        })?;
    listed.map_err(|e| match e {
        LakeError::TableFormat { .. } | LakeError::InvalidRoot { .. } => {
            RootError::Invalid(e.to_string())
        }
        other => {
            tracing::warn!(error = %other, "a dataset root could not be listed");
            unreachable(other.to_string())
        }
    })
}
