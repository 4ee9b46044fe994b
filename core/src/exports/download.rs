//! Handing an export archive to the subject or an admin (GDPR Art. 15, 20): the checks that it
//! is theirs to have now, the archive opened from its seal, and the download audited.

use object_store::ObjectStoreExt;
use serde_json::json;

use super::export_context;
use crate::audit::NewAuditEntry;
use crate::domain::{RequestStatus, to_db};
use crate::keyring::Keyring;
use crate::keyring::blob::is_sealed_blob;
use crate::lake::object_store_for_url;
use crate::store::{PrivacyRequest, Store, StoreError};

/// Why an export cannot be downloaded. Each says what an HTTP API answers.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Not an access or portability request (409 `no_export`).
    #[error("only access and portability requests have an export")]
    NoExport,
    /// Deleted when its subject was erased, before it expired (410 `export_erased`).
    #[error("the export was deleted when its subject was erased")]
    Erased,
    /// Past its expiry; the sweep deletes it (410 `export_expired`).
    #[error("the export expired at {at}; file a new request for a fresh copy")]
    Expired {
        /// When it expired (RFC 3339), empty when unknown.
        at: String,
    },
    /// The request is not completed yet (409 `export_not_ready`).
    #[error("the request is {status}; the export is ready once it is completed")]
    NotReady {
        /// The request's status.
        status: &'static str,
    },
    /// The archive could not be read or opened (500).
    #[error("reading export {file}: {reason}")]
    Unreadable {
        /// Where the archive is.
        file: String,
        /// Why.
        reason: String,
    },
    /// The database failed while auditing the download.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An archive ready to hand over.
#[derive(Debug)]
pub struct Download {
    /// The zip archive, opened from its seal.
    pub archive: Vec<u8>,
    /// The file name to offer: `lethe-export-<request id>.zip`.
    pub file_name: String,
}

/// The export archive of `request` for `actor`, audited as `export.downloaded` (with its size
/// in bytes). Archives are sealed at rest ([`crate::keyring::blob`]); one subject's export is
/// opened in memory. Archives written before sealing existed are served as they are.
///
/// # Errors
/// [`DownloadError`]: not an export request, erased, expired, not completed yet, unreadable;
/// store errors.
pub async fn download(
    store: &Store,
    keyring: &Keyring,
    request: &PrivacyRequest,
    actor: &str,
) -> Result<Download, DownloadError> {
    if !request.request_type.has_export() {
        return Err(DownloadError::NoExport);
    }
    // Deleted before it expired: the subject was erased since (an erasure deletes the
    // subject's earlier exports with the data key).
    if let Some(deleted) = request.export_deleted_at
        && request.export_expires_at.is_none_or(|at| deleted < at)
    {
        return Err(DownloadError::Erased);
    }
    let expired = request.export_deleted_at.is_some()
        || request
            .export_expires_at
            .is_some_and(|at| at <= chrono::Utc::now());
    if expired {
        return Err(DownloadError::Expired {
            at: request.export_expires_at.map(to_db).unwrap_or_default(),
        });
    }
    let Some(file) = request
        .export_path
        .clone()
        .filter(|_| request.status == RequestStatus::Completed)
    else {
        return Err(DownloadError::NotReady {
            status: request.status.as_str(),
        });
    };
    let unreadable = |e: &dyn std::fmt::Display| DownloadError::Unreadable {
        file: file.clone(),
        reason: e.to_string(),
    };
    let (dir, name) = file.rsplit_once('/').unwrap_or((".", file.as_str()));
    let (objects, prefix) = object_store_for_url(dir).map_err(|e| unreadable(&e))?;
    let object = objects
        .get(&prefix.join(name))
        .await
        .map_err(|e| unreadable(&e))?;
    let stored = object.bytes().await.map_err(|e| unreadable(&e))?;
    let archive = if is_sealed_blob(&stored) {
        keyring
            .open_blob(&export_context(&request.id), &stored)
            .map_err(|e| unreadable(&e))?
    } else {
        stored.to_vec()
    };
    store
        .append_audit(
            NewAuditEntry::new(actor, "export.downloaded")
                .request(&request.id)
                .subject(&request.subject_pseudonym)
                .details(json!({ "bytes": archive.len() })),
        )
        .await?;
    Ok(Download {
        archive,
        file_name: format!("lethe-export-{}.zip", request.id),
    })
}
