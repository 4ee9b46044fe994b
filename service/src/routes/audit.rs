//! The audit log for auditors: list with filters, stream as JSON Lines, verify the chain.

use actix_web::{HttpResponse, get, web};
use bytes::Bytes;
use futures::stream;
use lethe_core::audit::{AuditEntry, VerifyReport, verify_entries};
use lethe_core::domain::Role;
use lethe_core::store::{AuditFilter, Store};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::startup::AppState;

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
    fn filter(&self) -> AuditFilter {
        AuditFilter {
            after_seq: self.after_seq,
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
    let store: Arc<dyn Store> = state.store.clone();
    let mut filter = query.filter();
    filter.limit = Some(1000);
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

/// Verifies the whole chain in the database against its recorded head (auditor).
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = VerifyReport), (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/audit/verify")]
pub async fn verify(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Auditor])?;
    Ok(HttpResponse::Ok().json(verify_store(state.store.as_ref()).await?))
}

/// Reads the chain page by page and verifies it against the recorded head.
///
/// # Errors
/// Store errors.
pub async fn verify_store(
    store: &dyn Store,
) -> Result<VerifyReport, lethe_core::store::StoreError> {
    let (head_seq, head_hash) = store.audit_head().await?;
    let mut entries = Vec::new();
    let mut filter = AuditFilter {
        limit: Some(10_000),
        ..Default::default()
    };
    loop {
        let page = store.audit_entries(&filter).await?;
        let Some(last) = page.last() else { break };
        filter.after_seq = Some(last.seq);
        entries.extend(page);
    }
    Ok(verify_entries(
        entries,
        Some((head_seq, head_hash.as_str())),
    ))
}
