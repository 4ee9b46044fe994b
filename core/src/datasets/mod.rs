//! Datasets as the lifecycle and the API see them: where their files are, and how long Lethe
//! waits for a root to answer. Registration and removal are the store's
//! ([`crate::store::Store::create_dataset`], [`crate::store::Store::delete_dataset`]).

use std::time::Duration;

use crate::lake::{DataFile, LakeError, LakeRoot};

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
