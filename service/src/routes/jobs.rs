//! The job queue, for admins watching work.

use actix_web::{HttpResponse, get, web};
use lethe_core::domain::Role;
use lethe_core::store::Job;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::startup::AppState;

/// Query of `GET /v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct JobsQuery {
    /// At most this many, newest first (1–1000, default 100).
    pub limit: Option<i64>,
}

/// Jobs, newest first (admin).
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", security(("bearer" = [])), params(JobsQuery),
    responses((status = 200, body = [Job]), (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/jobs")]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<JobsQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    Ok(HttpResponse::Ok().json(state.store.list_jobs(query.limit.unwrap_or(100)).await?))
}
