//! The list of restricted subjects (GDPR Art. 18) that pipelines honour.

use actix_web::{HttpResponse, get, web};
use lethe_core::domain::Role;
use lethe_core::store::RestrictedSubject;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Query of `GET /v1/subjects/restricted`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RestrictedQuery {
    /// Page size (1–1000, default 1000).
    pub limit: Option<i64>,
    /// Keyset cursor: only subjects whose id sorts after this one (the `next_after` of the
    /// previous page).
    pub after: Option<String>,
}

/// One page of restricted subjects.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"subjects": [{"subject_id": "u-1042", "restricted_since": "2025-02-01T09:00:05Z", "request_id": "1e7c…"}],
    "next_after": "u-1042"}))]
pub struct RestrictedPage {
    /// Restricted subjects, by subject id.
    pub subjects: Vec<RestrictedSubject>,
    /// Pass as `after` to read the next page; `null` on the last page.
    pub next_after: Option<String>,
}

/// The subjects whose processing is restricted (GDPR Art. 18), for pipelines to honour: keep
/// their rows stored, do not process them. A subject appears once a `restriction` request
/// completes and disappears once a `restriction_lift` request does. Ordered by subject id and
/// paginated with a keyset cursor, so a page never skips a subject when others are added or
/// lifted meanwhile. Admins and producer (pipeline) tokens granted `list_restricted` only: the
/// list holds subject ids.
#[utoipa::path(get, path = "/v1/subjects/restricted", tag = "requests", security(("bearer" = [])),
    params(RestrictedQuery),
    responses((status = 200, body = RestrictedPage),
        (status = 400, description = "`validation`: limit out of 1–1000", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither an admin nor a producer token granted `list_restricted`", body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/subjects/restricted")]
pub async fn list_restricted(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<RestrictedQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin, Role::Producer])?;
    caller.require_restricted_list()?;
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(1000);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation("limit must be between 1 and 1000"));
    }
    let subjects = state
        .store
        .restricted_subjects(query.after.as_deref(), limit)
        .await?;
    let next_after = (subjects.len() as i64 == limit)
        .then(|| subjects.last().map(|s| s.subject_id.clone()))
        .flatten();
    Ok(HttpResponse::Ok().json(RestrictedPage {
        subjects,
        next_after,
    }))
}
