//! Extending a request's deadline (GDPR Art. 12(3)): once, by one or two further months, with
//! a reason the subject sees, within the first month after receipt.

use actix_web::{HttpResponse, post, web};
use lethe_core::domain::Role;
use lethe_core::requests::{self, Extend};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::requests::view;
use crate::state::AppState;

/// An extension of a request's deadline.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "months": 2,
    "reason": "Your data is held in twelve systems across three regions; searching them all takes longer."
}))]
pub struct ExtendRequest {
    /// Further months: 1 or 2 (required).
    pub months: Option<i64>,
    /// Why the deadline is extended (required, 1–2000 characters); shown to the subject, who
    /// must be told the reasons (GDPR Art. 12(3)).
    pub reason: Option<String>,
}

/// Extends the deadline of a request (admin), once, by one or two further months (GDPR Art.
/// 12(3): "where necessary, taking into account the complexity and number of the requests").
///
/// The new `due_at` is the receipt plus 1 + `months` calendar months (a request received on
/// 31 January and extended by two months is due on 30 April). The extension must be decided
/// before the original due date, and the request must still be open. The subject sees the
/// extension and its reason on their request. Audited as `request.deadline_extended`
/// (details: months, the new and the original due date).
#[utoipa::path(post, path = "/v1/requests/{id}/extend", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")),
    request_body = ExtendRequest,
    responses(
        (status = 200, description = "Extended; `due_at` is the new deadline", body = crate::routes::requests::RequestView),
        (status = 400, description = "`validation`: months not 1 or 2, or the reason missing or blank", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`already_extended`: extended before (once only); `extension_too_late`: the first month after receipt is over; `request_final`: completed, rejected or failed",
            body = crate::error::Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:lethe:problem:already_extended", "title": "Conflict", "status": 409,
                "detail": "the deadline was already extended at 2025-02-03 08:00:00 UTC; GDPR Art. 12(3) allows one extension of at most two months",
                "code": "already_extended"}))))]
#[post("/requests/{id}/extend")]
pub async fn extend(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<ExtendRequest>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let body = body.into_inner();
    let command = Extend {
        actor: caller.actor(),
        months: body.months,
        reason: body.reason,
    };
    let updated = requests::extend(&state.store, &path, command)
        .await?
        .request;
    let history = state.store.request_history(&updated.id).await?;
    Ok(HttpResponse::Ok().json(view(updated, &caller, history)))
}
