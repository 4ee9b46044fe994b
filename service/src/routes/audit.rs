//! The audit log for auditors: list with filters, stream as JSON Lines, verify the chain.

use actix_web::{HttpResponse, get, web};
use bytes::Bytes;
use futures::stream;
use lethe_core::audit::{AuditEntry, PublicKeyInfo, VerifyReport};
use lethe_core::domain::Role;
use lethe_core::store::{AuditFilter, Store};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Filters of the audit endpoints.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Entries at or after this instant (RFC 3339).
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Entries before this instant (RFC 3339).
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// Only this action, e.g. `request.approved`.
    pub action: Option<String>,
    /// Only entries about this request.
    pub request_id: Option<String>,
    /// Only entries with a greater sequence number (pagination).
    pub after_seq: Option<i64>,
    /// Page size for `GET /v1/audit` (1–10000, default 1000).
    pub limit: Option<i64>,
}

impl AuditQuery {
    /// Whether the query selects the whole log (no filter at all).
    fn is_whole_log(&self) -> bool {
        self.from.is_none()
            && self.to.is_none()
            && self.action.is_none()
            && self.request_id.is_none()
            && self.after_seq.is_none()
    }

    fn filter(&self) -> AuditFilter {
        AuditFilter {
            after_seq: self.after_seq,
            until_seq: None,
            from: self.from,
            to: self.to,
            action: self.action.clone(),
            request_id: self.request_id.clone(),
            limit: self.limit,
        }
    }
}

/// Audit entries matching the filters, in chain order (auditor).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, body = [AuditEntry]), (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/audit")]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Auditor])?;
    Ok(HttpResponse::Ok().json(state.store.audit_entries(&query.filter()).await?))
}

/// Streams matching entries as JSON Lines (auditor), page by page so memory stays flat.
/// Without filters the export is the whole chain and `lethe-service audit verify --file`
/// verifies it offline.
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit", security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, description = "One AuditEntry per line", content_type = "application/x-ndjson", body = String),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/audit/export")]
pub async fn export(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Auditor])?;
    let store: Arc<Store> = state.store.clone();
    let mut filter = query.filter();
    filter.limit = Some(1000);
    // Sign the head first, so the export ends at a checkpoint: nothing in it is unsigned, and
    // a whole-log export verifies offline with `--checkpoints` down to its last entry.
    let whole = query.is_whole_log();
    match state.audit.checkpoint_now(store.as_ref()).await {
        Ok(Some(checkpoint)) if whole => filter.until_seq = Some(checkpoint.seq),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "no checkpoint before the audit export")
        }
    }
    let pages = stream::unfold(Some(filter), move |filter| {
        let store = store.clone();
        async move {
            let mut filter = filter?;
            match store.audit_entries(&filter).await {
                Ok(entries) if entries.is_empty() => None,
                Ok(entries) => {
                    filter.after_seq = entries.last().map(|e| e.seq);
                    let mut body = Vec::with_capacity(entries.len() * 400);
                    for entry in &entries {
                        serde_json::to_writer(&mut body, entry).expect("entry serialises");
                        body.push(b'\n');
                    }
                    Some((Ok::<_, actix_web::Error>(Bytes::from(body)), Some(filter)))
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit export failed mid-stream");
                    Some((
                        Err(actix_web::error::ErrorInternalServerError(
                            "audit export failed",
                        )),
                        None,
                    ))
                }
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            "Content-Disposition",
            "attachment; filename=\"lethe-audit.jsonl\"",
        ))
        .streaming(pages))
}

/// Verifies the whole chain in the database against its recorded head and against every
/// signed checkpoint kept outside the database (auditor). A mismatch with the checkpoints is
/// also audited (`audit.checkpoint_mismatch`), logged and shown in `/readyz`.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = VerifyReport, example = json!({"entries_checked": 5231,
            "head_hash": "5e0c8f3f1d2a4b6c8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7",
            "problem": null, "checkpoints_checked": 6, "anchored_through_seq": 5200})),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/audit/verify")]
pub async fn verify(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Auditor])?;
    Ok(HttpResponse::Ok().json(state.audit.verify_store(state.store.as_ref()).await?))
}

/// Every signed checkpoint, from the sink outside the database, as JSON Lines (auditor): save
/// it as `checkpoints.jsonl` for `lethe-service audit verify --checkpoints` or
/// `tools/verify_audit.py`. Download it right after the export it should verify.
#[utoipa::path(get, path = "/v1/audit/checkpoints", tag = "audit", security(("bearer" = [])),
    responses((status = 200, description = "One Checkpoint per line, in order of `n`",
            content_type = "application/x-ndjson", body = String,
            example = "{\"kind\":\"lethe.audit.checkpoint.v1\",\"n\":1,\"seq\":1000,\"entry_hash\":\"5e0c…\",\"prev_checkpoint_hash\":\"0000…\",\"at\":\"2026-01-07T10:00:00.000000Z\",\"key_id\":\"3f2a9c0d1b7e4a55\",\"hash\":\"0a1b…\",\"signature\":\"q0b3…\"}\n"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/audit/checkpoints")]
pub async fn checkpoints(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Auditor])?;
    let checkpoints = state
        .audit
        .checkpoints()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let mut body = String::with_capacity(checkpoints.len() * 420);
    for checkpoint in &checkpoints {
        body.push_str(&checkpoint.to_line());
        body.push('\n');
    }
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            "Content-Disposition",
            "attachment; filename=\"lethe-audit-checkpoints.jsonl\"",
        ))
        .body(body))
}

/// The public keys of the audit signing keys (auditor): the current one and those kept from
/// before a rotation. Save the body as `audit.pub` for `--public-key`. An auditor should
/// compare the key ids with ones obtained through another channel (e.g. from the DPO).
#[utoipa::path(get, path = "/v1/audit/public-keys", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = PublicKeyList, example = json!({"keys": [{"key_id": "3f2a9c0d1b7e4a55",
            "algorithm": "Ed25519", "public_key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
            "public_key_pem": "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n",
            "current": true}]})),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/audit/public-keys")]
pub async fn public_keys(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Auditor])?;
    Ok(HttpResponse::Ok().json(PublicKeyList {
        keys: state.audit.public_keys().list(),
    }))
}

/// The audit public keys.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublicKeyList {
    /// Current key first.
    pub keys: Vec<PublicKeyInfo>,
}
