//! Cancelling a request, and legal holds (GDPR Art. 17(3)). The lifecycle itself is
//! [`lethe_core::requests`]'s.

use actix_web::{HttpResponse, get, post, web};
use lethe_core::audit::NewAuditEntry;
use lethe_core::domain::{Role, SubjectId};
use lethe_core::requests::{self, Cancel};
use lethe_core::store::{LegalHold, NewLegalHold};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::requests::{auditor_text, view};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

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
    let cancel = Cancel {
        actor: caller.actor(),
        by_subject: caller.role == Role::Subject,
        reason: body.into_inner().and_then(|b| b.reason),
    };
    let updated = requests::cancel(&state.store, &request, cancel)
        .await?
        .request;
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
    let HoldTarget {
        dataset_id,
        subject_pseudonym,
        subject_ref,
    } = hold_target(&state, body.dataset_id, body.subject_id).await?;
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
                subject_ref,
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

/// What a hold names: a dataset, or a subject by pseudonym and keyed reference.
struct HoldTarget {
    dataset_id: Option<String>,
    subject_pseudonym: Option<String>,
    subject_ref: Option<String>,
}

/// The target of a hold on `dataset` (which must exist) or on `subject`; exactly one.
async fn hold_target(
    state: &AppState,
    dataset: Option<String>,
    subject: Option<String>,
) -> Result<HoldTarget, ApiError> {
    match (dataset, subject) {
        (Some(dataset), None) => Ok(HoldTarget {
            dataset_id: Some(state.store.dataset(&dataset).await?.id),
            subject_pseudonym: None,
            subject_ref: None,
        }),
        (None, Some(subject)) => {
            let subject = SubjectId::parse(subject)?;
            Ok(HoldTarget {
                dataset_id: None,
                subject_pseudonym: Some(state.pseudonyms.pseudonym(&subject)),
                subject_ref: Some(state.keyring.subject_ref_str(subject.as_str())),
            })
        }
        _ => Err(ApiError::validation(
            "give exactly one of dataset_id and subject_id",
        )),
    }
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
