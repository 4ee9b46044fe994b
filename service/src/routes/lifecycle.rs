//! The request lifecycle beyond filing: approval (by an admin or by policy), the erasure
//! cooling-off period, cancellation, and legal holds (GDPR Art. 12, 17(3)).

use actix_web::{HttpResponse, get, post, web};
use lethe_core::audit::NewAuditEntry;
use lethe_core::config::ApprovalPolicy;
use lethe_core::domain::{RequestStatus, RequestType, Role, SubjectId};
use lethe_core::jobs::destroy_subject_key;
use lethe_core::store::{JobKind, LegalHold, NewJob, NewLegalHold, PrivacyRequest, Transition};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::requests::{auditor_text, view};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::startup::AppState;

/// The approval policy configured for `request_type` (`requests.*_approval`).
pub(crate) fn policy_for(state: &AppState, request_type: RequestType) -> ApprovalPolicy {
    match request_type {
        RequestType::Access => state.settings.requests.access_approval,
        RequestType::Portability => state.settings.requests.portability_approval,
        RequestType::Rectification => state.settings.requests.rectification_approval,
        RequestType::Erasure => state.settings.requests.erasure_approval,
        RequestType::Restriction | RequestType::RestrictionLift => {
            state.settings.requests.restriction_approval
        }
    }
}

/// Applies the approval policy to a request just filed: `review` moves it to
/// `pending_approval`; `auto` approves it at once (`decided_by = policy:auto`).
///
/// # Errors
/// Store errors.
pub(crate) async fn apply_policy(
    state: &AppState,
    request: PrivacyRequest,
) -> Result<PrivacyRequest, ApiError> {
    match policy_for(state, request.request_type) {
        ApprovalPolicy::Auto => approve_now(state, request, "policy:auto").await,
        ApprovalPolicy::Review => {
            let audit = NewAuditEntry::new("policy:review", "request.pending_approval")
                .request(&request.id)
                .subject(&request.subject_pseudonym)
                .details(json!({ "type": request.request_type }));
            let pending = Transition::new(RequestStatus::PendingApproval, "policy:review", audit);
            Ok(state.store.transition_request(&request.id, pending).await?)
        }
    }
}

/// Approves `request` as `actor` and queues its job. An erasure with a cooling-off period
/// (`requests.erasure_cooling_off_s`) waits it out before its plan may run, and its data key
/// is destroyed when the plan runs; otherwise the key is destroyed now (first phase), unless a
/// legal hold applies.
///
/// # Errors
/// 409 when the request is not awaiting a decision; store errors.
pub(crate) async fn approve_now(
    state: &AppState,
    request: PrivacyRequest,
    actor: &str,
) -> Result<PrivacyRequest, ApiError> {
    let kind = match request.request_type {
        RequestType::Access => JobKind::Access,
        RequestType::Portability => JobKind::Portability,
        RequestType::Rectification => JobKind::Rectification,
        RequestType::Erasure => JobKind::Erasure,
        RequestType::Restriction | RequestType::RestrictionLift => JobKind::Restriction,
    };
    let now = chrono::Utc::now();
    let seconds = |s: u64| chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 2));
    let cooling_off = state.settings.requests.erasure_cooling_off_s;
    let cooling_off_until =
        (kind == JobKind::Erasure && cooling_off > 0).then(|| now + seconds(cooling_off));
    let audit = NewAuditEntry::new(actor, "request.approved")
        .request(&request.id)
        .subject(&request.subject_pseudonym)
        .details(json!({ "type": request.request_type, "cooling_off_until": cooling_off_until }));
    let mut transition = Transition::new(RequestStatus::Approved, actor, audit);
    transition.decision = true;
    transition.cooling_off_until = cooling_off_until;
    // Erasures wait out the batching window (one pass per file serves them all) and the
    // cooling-off period, whichever ends later.
    let run_at = (kind == JobKind::Erasure).then(|| {
        let batch = now + seconds(state.settings.worker.erasure_batch_window_s);
        cooling_off_until.map_or(batch, |c| c.max(batch))
    });
    transition.enqueue = Some(NewJob {
        kind,
        request_id: Some(request.id.clone()),
        payload: json!({}),
        max_attempts: state.settings.worker.max_attempts,
        run_at,
    });
    let mut updated = state
        .store
        .transition_request(&request.id, transition)
        .await?;
    if updated.request_type == RequestType::Erasure && cooling_off_until.is_none() {
        let held = !state
            .store
            .active_holds_for(&updated.subject_pseudonym)
            .await?
            .is_empty();
        if !held {
            // First phase of the erasure: destroy the data key now, so every copy of the
            // encrypted PII is unreadable at once. On failure the plan destroys it.
            match destroy_subject_key(state.store.as_ref(), &state.keyring, &updated, actor).await {
                Ok(_) => updated = state.store.request(&updated.id).await?,
                Err(e) => tracing::error!(
                    error = %e,
                    request_id = %updated.id,
                    "destroying the data key failed; the worker will retry"
                ),
            }
        }
    }
    Ok(updated)
}

/// A cancellation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "I changed my mind."}))]
pub struct CancelRequest {
    /// Why (optional; kept in the history).
    pub reason: Option<String>,
}

/// Cancels a request that has not started (the subject for their own, or an admin): in
/// `received` or `pending_approval`, or `approved` while its job is still queued — e.g. during
/// an erasure's cooling-off period. Its queued job is cancelled in the same transaction. An
/// approved erasure whose data key is already destroyed (no cooling-off period) cannot be
/// cancelled: 409 `key_destroyed`.
#[utoipa::path(post, path = "/v1/requests/{id}/cancel", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")), request_body(content = Option<CancelRequest>),
    responses((status = 200, body = super::requests::RequestView),
        (status = 400, description = "`malformed_json`: a body that is not a cancellation (an empty body is fine)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: the request's job already started, or it is final. `key_destroyed`: an approved erasure whose data key is already destroyed (the subject is erased whatever happens to the request)", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/requests/{id}/cancel")]
pub async fn cancel(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: crate::optional_json::OptionalJson<CancelRequest>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Subject, Role::Admin])?;
    let request = state.store.request(&path).await?;
    if caller.role == Role::Subject && caller.subject_id.as_ref() != Some(&request.subject_id) {
        return Err(ApiError::NotFound(format!(
            "request {} not found",
            request.id
        )));
    }
    let reason = body
        .into_inner()
        .and_then(|b| b.reason)
        .filter(|r| !r.trim().is_empty());
    let audit = NewAuditEntry::new(caller.actor(), "request.cancelled")
        .request(&request.id)
        .subject(&request.subject_pseudonym)
        .details(json!({ "from": request.status, "by_subject": caller.role == Role::Subject }));
    let mut transition = Transition::new(RequestStatus::Cancelled, caller.actor(), audit);
    transition.note = reason;
    let updated = state
        .store
        .transition_request(&request.id, transition)
        .await?;
    let history = state.store.request_history(&updated.id).await?;
    Ok(HttpResponse::Ok().json(view(updated, &caller, history)))
}

/// A legal hold to place: on a dataset or on a subject (exactly one).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"subject_id": "u-1042", "legal_basis": "Art. 17(3)(e): legal claims",
    "reason": "Litigation hold, case 2025-117", "ends_at": "2026-06-30T00:00:00Z"}))]
pub struct CreateHold {
    /// Hold every row of this dataset.
    pub dataset_id: Option<String>,
    /// Hold every row, and the data key, of this subject.
    pub subject_id: Option<String>,
    /// The legal basis (GDPR Art. 17(3) names them: freedom of expression, a legal obligation,
    /// public health, archiving, legal claims).
    pub legal_basis: String,
    /// Why, for the record.
    pub reason: String,
    /// When the hold lapses by itself; absent: until released.
    pub ends_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Places a legal hold (admin). Erasures then keep the held data, complete as
/// `partially_completed`, and say what was kept and why (GDPR Art. 17(3)). A subject hold also
/// keeps the subject's data key; so does any dataset hold, since keys span datasets.
#[utoipa::path(post, path = "/v1/legal-holds", tag = "legal holds", security(("bearer" = [])),
    request_body = CreateHold,
    responses((status = 201, body = LegalHold),
        (status = 400, description = "`validation`: not exactly one of dataset_id and subject_id, empty or too long (200 / 2000 characters) basis or reason, end date in the past", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown dataset", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/legal-holds")]
pub async fn create_hold(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CreateHold>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let body = body.into_inner();
    if body.legal_basis.trim().is_empty() || body.reason.trim().is_empty() {
        return Err(ApiError::validation(
            "a legal hold needs a legal_basis and a reason",
        ));
    }
    if body.legal_basis.chars().count() > MAX_BASIS_CHARS
        || body.reason.chars().count() > MAX_REASON_CHARS
    {
        return Err(ApiError::validation(format!(
            "legal_basis is at most {MAX_BASIS_CHARS} characters and reason at most {MAX_REASON_CHARS}"
        )));
    }
    if body.ends_at.is_some_and(|end| end <= chrono::Utc::now()) {
        return Err(ApiError::validation("ends_at must be in the future"));
    }
    let (dataset_id, subject_pseudonym) = match (body.dataset_id, body.subject_id) {
        (Some(dataset), None) => (Some(state.store.dataset(&dataset).await?.id), None),
        (None, Some(subject)) => {
            let subject = SubjectId::parse(subject)?;
            (None, Some(state.pseudonyms.pseudonym(&subject)))
        }
        _ => {
            return Err(ApiError::validation(
                "give exactly one of dataset_id and subject_id",
            ));
        }
    };
    let audit = NewAuditEntry::new(caller.actor(), "legal_hold.placed").details(json!({
        "dataset_id": dataset_id,
        "legal_basis": body.legal_basis,
        "ends_at": body.ends_at,
    }));
    let audit = match &subject_pseudonym {
        Some(p) => audit.subject(p),
        None => audit,
    };
    let hold = state
        .store
        .create_legal_hold(
            NewLegalHold {
                dataset_id,
                subject_pseudonym,
                legal_basis: body.legal_basis,
                reason: body.reason,
                ends_at: body.ends_at,
                created_by: caller.actor(),
            },
            audit,
        )
        .await?;
    Ok(HttpResponse::Created().json(hold))
}

/// Query of `GET /v1/legal-holds`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct HoldsQuery {
    /// Only holds in force now (default `false`: every hold, released and lapsed too).
    pub active: Option<bool>,
}

/// Longest legal basis of a hold, in characters.
const MAX_BASIS_CHARS: usize = 200;
/// Longest reason of a hold, in characters.
const MAX_REASON_CHARS: usize = 2000;

/// Legal holds (admin, auditor), oldest first. An auditor sees each hold's `reason` as
/// `[redacted: N characters]` (it may name the people concerned) and its `legal_basis` cut to
/// 200 characters.
#[utoipa::path(get, path = "/v1/legal-holds", tag = "legal holds", security(("bearer" = [])),
    params(HoldsQuery),
    responses((status = 200, body = [LegalHold]), (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/legal-holds")]
pub async fn list_holds(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<HoldsQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    let mut holds = state
        .store
        .list_legal_holds(query.active.unwrap_or(false))
        .await?;
    if caller.role == Role::Auditor {
        for hold in &mut holds {
            hold.reason = auditor_text(std::mem::take(&mut hold.reason), true);
            hold.legal_basis = auditor_text(std::mem::take(&mut hold.legal_basis), false);
        }
    }
    Ok(HttpResponse::Ok().json(holds))
}

/// Releases a legal hold (admin); erasures filed from then on erase the data it kept.
#[utoipa::path(post, path = "/v1/legal-holds/{id}/release", tag = "legal holds", security(("bearer" = [])),
    params(("id" = String, Path, description = "Hold id")),
    responses((status = 200, body = LegalHold),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already released", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/legal-holds/{id}/release")]
pub async fn release_hold(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let audit = NewAuditEntry::new(caller.actor(), "legal_hold.released");
    let hold = state
        .store
        .release_legal_hold(&path, &caller.actor(), audit)
        .await?;
    Ok(HttpResponse::Ok().json(hold))
}
