//! Access and portability exports (GDPR Art. 15, 20): writing the archive ([`write_export`]),
//! the sealing context it opens under, its download, the expiry sweep (Art. 5(1)(e), storage
//! limitation), the deletion of a subject's exports when the subject is erased, and the
//! re-wrapping of their keys after a KEK rotation.

mod archive;
mod download;
mod rewrap;
mod sweep;

pub use archive::{ArchiveError, ArchiveTarget, ExportResult, ExportedDataset, write_export};
pub use download::{Download, DownloadError, download};
pub use rewrap::{ExportRewrapReport, rewrap_exports};
pub use sweep::{destroy_subject_exports, sweep_expired_exports};

use crate::store::StoreError;

/// Why an operation on stored exports failed. Each is worth another attempt later: nothing
/// is recorded for an export whose deletion or re-wrap failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The export store (a folder or an object store) failed.
    #[error("{0}")]
    Storage(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The sealing context of request `request_id`'s export: a sealed archive opens only as that
/// request's export.
pub fn export_context(request_id: &str) -> String {
    format!("export:{request_id}")
}
