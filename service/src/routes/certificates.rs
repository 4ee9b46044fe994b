//! Erasure certificates: a signed statement of what an erasure did, which the data subject
//! and auditors can verify offline with the audit public keys (docs/audit.md).

use actix_web::{HttpResponse, get, web};
use lethe_core::audit::{Checkpoint, sign_document};
use lethe_core::domain::{RequestStatus, RequestType, Role, to_db};
use lethe_core::requests::results::ErasureResult;
use lethe_core::store::{AuditFilter, PrivacyRequest};
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The `kind` of every erasure certificate.
pub const CERTIFICATE_KIND: &str = "lethe.erasure_certificate.v1";

/// The signed erasure certificate of a completed (or partially completed, under a legal hold)
/// erasure (the subject of the request, or an auditor). It names the subject by pseudonym only
/// and holds no personal data: times, per-dataset files rewritten and rows removed, legal holds
/// respected, and the audit entries of the erasure with the signed checkpoint covering them.
/// Verify it with `tools/verify_audit.py --certificate` or `lethe-service audit
/// verify-certificate` and the keys of `GET /v1/audit/public-keys`.
#[utoipa::path(get, path = "/v1/requests/{id}/certificate", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")),
    responses(
        (status = 200, description = "The signed certificate", body = Object, example = json!({
            "kind": "lethe.erasure_certificate.v1",
            "request_id": "0b9e3c52-8a4e-4b8f-9a67-3f1e2d7c9a10",
            "subject_pseudonym": "5e0c8f3f1d2a4b6c8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7",
            "status": "completed",
            "received_at": "2026-01-07T09:00:00.000000Z", "approved_at": "2026-01-07T09:05:00.000000Z",
            "key_destroyed_at": "2026-01-07T09:05:00.120000Z", "completed_at": "2026-01-07T09:06:10.000000Z",
            "issued_at": "2026-01-08T12:00:00.000000Z",
            "datasets": [{"dataset": "running_events", "format": "hive_parquet", "files_scanned": 360,
                "files_rewritten": 2, "rows_removed": 31,
                "files": [{"file": "date=2025-01-07/region=EU/part-0001.parquet",
                    "before": {"size": 134217728, "e_tag": "\"9b2cf535f27731c974343645a3985328\""},
                    "after": {"size": 134201344, "e_tag": "\"5d41402abc4b2a76b9719d911017c592\""}}]}],
            "legal_holds_respected": [],
            "audit": {"first_seq": 812, "last_seq": 819, "entries": 8,
                "checkpoint": {"n": 4, "seq": 820, "hash": "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"}},
            "not_recorded": ["a SHA-256 of each file's content (each file's size and ETag, as the object store reports them, are given instead)"],
            "key_id": "3f2a9c0d1b7e4a55",
            "hash": "9b1f0e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff",
            "signature": "q0b3…base64 of 64 bytes…=="})),
        (status = 403, description = "An admin or an API token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not an erasure, or not (partially) completed yet", body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/requests/{id}/certificate")]
pub async fn certificate(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Subject, Role::Auditor])?;
    let request = super::requests::visible(&state, &caller, &path).await?;
    if request.request_type != RequestType::Erasure
        || !matches!(
            request.status,
            RequestStatus::Completed | RequestStatus::PartiallyCompleted
        )
    {
        return Err(ApiError::Conflict {
            code: "certificate_not_available",
            detail: format!(
                "only a completed or partially completed erasure has a certificate; this is a {} request, {}",
                request.request_type.as_str(),
                request.status.as_str()
            ),
        });
    }
    let entries = state
        .store
        .audit_entries(&AuditFilter {
            request_id: Some(request.id.clone()),
            limit: Some(10_000),
            ..Default::default()
        })
        .await?;
    // The checkpoint covering the erasure's last entry: an existing one, else one made now.
    let last_seq = entries.last().map_or(0, |e| e.seq);
    let mut covering = covering_checkpoint(&state, last_seq).await?;
    if covering.is_none() {
        covering = state
            .audit
            .checkpoint_now(state.store.as_ref())
            .await
            .map_err(ApiError::Internal)?
            .filter(|c| c.seq >= last_seq);
    }
    let document = certificate_body(&request, &entries, covering.as_ref());
    Ok(HttpResponse::Ok()
        .insert_header((
            "Content-Disposition",
            format!(
                "attachment; filename=\"erasure-certificate-{}.json\"",
                request.id
            ),
        ))
        .json(sign_document(state.audit.signer(), document)))
}

async fn covering_checkpoint(
    state: &AppState,
    last_seq: i64,
) -> Result<Option<Checkpoint>, ApiError> {
    let checkpoints = state
        .audit
        .checkpoints()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(checkpoints.into_iter().find(|c| c.seq >= last_seq))
}

/// The certificate's content before it is signed. Holds no subject id: the request's
/// pseudonym, counts, Lethe's own file names (`date=…/region=…/part-….parquet`) and times.
fn certificate_body(
    request: &PrivacyRequest,
    entries: &[lethe_core::audit::AuditEntry],
    checkpoint: Option<&Checkpoint>,
) -> Value {
    // Results written by earlier versions lack some fields: they read as their defaults.
    let result: ErasureResult = request
        .result
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let datasets: Vec<Value> = result
        .datasets
        .iter()
        .map(|d| {
            let mut dataset = json!({
                "dataset": d.dataset,
                // Hive-partitioned Parquet folders are rewritten file by file; a Delta or
                // Iceberg table through one commit of its own, then purged.
                "format": d.table.as_ref().map_or("hive_parquet", |t| t.format.as_str()),
                "files_scanned": d.files_scanned,
                "files_rewritten": d.files_rewritten,
                "rows_removed": d.rows_removed,
                // Each file with its size and ETag before and after the rewrite, where the
                // erasure recorded them (erasures run before this was recorded list names
                // only); a table's file names the new file that replaced it.
                "files": if d.files.is_empty() { json!(d.rewritten) } else { json!(d.files) },
            });
            if let Some(table) = &d.table {
                // The commit (Delta version / Iceberg snapshot id), the older snapshots that
                // can no longer read the rows, and the data files deleted.
                dataset["table_commit"] = json!({
                    "read_version": table.read_version,
                    "commit": table.commit,
                    "snapshots_expired": table.snapshots_expired,
                    "files_purged": table.files_purged,
                });
            }
            dataset
        })
        .collect();
    json!({
        "kind": CERTIFICATE_KIND,
        "request_id": request.id,
        "subject_pseudonym": request.subject_pseudonym,
        "status": request.status.as_str(),
        "received_at": to_db(request.received_at),
        "approved_at": request.decided_at.map(to_db),
        "key_destroyed_at": request.key_destroyed_at.map(to_db),
        "completed_at": request.completed_at.map(to_db),
        "issued_at": to_db(chrono::Utc::now()),
        "rows_removed": result.rows_removed,
        "datasets": datasets,
        "legal_holds_respected": result.kept,
        "audit": {
            "first_seq": entries.first().map(|e| e.seq),
            "last_seq": entries.last().map(|e| e.seq),
            "entries": entries.len(),
            "checkpoint": checkpoint.map(|c| json!({ "n": c.n, "seq": c.seq, "hash": c.hash })),
        },
        "not_recorded": [
            "a SHA-256 of each file's content (each file's size and ETag, as the object store reports them, are given instead)"
        ],
    })
}
