//! The export sweep: deletes access-request exports once they expire (`requests.export_ttl_s`,
//! default 7 days), so copies of a subject's data do not outlive their purpose (GDPR Art. 5(1)(e),
//! storage limitation).

use object_store::ObjectStoreExt;
use serde_json::json;

use super::ExportError;
use crate::audit::NewAuditEntry;
use crate::lake::object_store_for_url;
use crate::store::Store;

/// Exports deleted per sweep at most (the next sweep takes the rest).
const SWEEP_BATCH: i64 = 100;

/// Deletes every expired export not deleted yet (at most 100 per call) and records each
/// deletion (`export.deleted` in the audit log). A file already gone counts as deleted.
/// Returns how many were deleted.
///
/// # Errors
/// [`ExportError`] when the database or the export store fails (nothing is recorded
/// for an export whose deletion failed; the next sweep tries again).
pub async fn sweep_expired_exports(store: &Store, actor: &str) -> Result<u64, ExportError> {
    let mut deleted = 0;
    for request in store.expired_exports(SWEEP_BATCH).await? {
        let Some(path) = &request.export_path else {
            continue;
        };
        if let Err(e) = delete_export_file(path).await {
            tracing::warn!(request_id = %request.id, error = %e, "expired export not deleted");
            continue;
        }
        let audit = NewAuditEntry::new(actor, "export.deleted")
            .request(&request.id)
            .subject(&request.subject_pseudonym)
            .details(json!({ "reason": "expired", "expired_at": request.export_expires_at }));
        if store.mark_export_deleted(&request.id, audit).await? {
            deleted += 1;
        }
    }
    if deleted > 0 {
        tracing::info!(deleted, "expired exports deleted");
    }
    Ok(deleted)
}

/// Deletes one export archive (`<dir>/<name>`, a local path or object store URL); a file
/// already gone counts as deleted.
async fn delete_export_file(path: &str) -> Result<(), ExportError> {
    let (dir, name) = path.rsplit_once('/').unwrap_or((".", path));
    let (objects, prefix) = object_store_for_url(dir)
        .map_err(|e| ExportError::Storage(format!("export store for {path}: {e}")))?;
    match objects.delete(&prefix.join(name)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(ExportError::Storage(format!("deleting export {path}: {e}"))),
    }
}

/// Deletes every export of the subject of erasure `request` still on file (access and
/// portability archives of earlier requests), each audited as `export.deleted` with reason
/// `erased`: an export is sealed under the KEK, not under the subject's data key, so it would
/// otherwise stay downloadable, with the subject's PII, until it expired. Downloads answer
/// 410 afterwards. Returns how many were deleted.
///
/// # Errors
/// [`ExportError`] when the database or the export store fails (the erasure's plan
/// calls this again).
pub async fn destroy_subject_exports(
    store: &Store,
    request: &crate::store::PrivacyRequest,
    actor: &str,
) -> Result<u64, ExportError> {
    let mut deleted = 0;
    for export in store.live_exports_of(&request.subject_pseudonym).await? {
        let Some(path) = &export.export_path else {
            continue;
        };
        delete_export_file(path).await?;
        let audit = NewAuditEntry::new(actor, "export.deleted")
            .request(&export.id)
            .subject(&export.subject_pseudonym)
            .details(json!({ "reason": "erased", "erasure_request_id": request.id }));
        if store.mark_export_deleted(&export.id, audit).await? {
            deleted += 1;
        }
    }
    Ok(deleted)
}
