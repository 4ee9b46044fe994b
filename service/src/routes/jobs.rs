//! The job queue, for admins: watch work, retry dead-lettered jobs, cancel queued ones.

use actix_web::{HttpResponse, get, post, web};
use lethe_core::audit::NewAuditEntry;
use lethe_core::domain::Role;
use lethe_core::store::{Job, JobStatus, StoreError};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Query of `GET /v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct JobsQuery {
    /// Only jobs in this status (`failed` lists the dead letters).
    pub status: Option<JobStatus>,
    /// At most this many, newest first (1–1000, default 100).
    pub limit: Option<i64>,
}

/// Checks the caller is an admin, loads the job and prepares the audit entry of `action` on it
/// (naming its request and subject pseudonym, if any).
async fn admin_action(
    state: &AppState,
    caller: &Caller,
    job_id: &str,
    action: &str,
) -> Result<(Job, NewAuditEntry), ApiError> {
    caller.require(&[Role::Admin])?;
    let job = state.store.job(job_id).await?;
    let mut audit = NewAuditEntry::new(caller.actor(), action)
        .details(json!({ "job_id": job.id, "kind": job.kind, "last_error": job.last_error }));
    if let Some(request_id) = &job.request_id {
        let request = state.store.request(request_id).await?;
        audit = audit
            .request(&request.id)
            .subject(&request.subject_pseudonym);
    }
    Ok((job, audit))
}

fn state_error(e: StoreError) -> ApiError {
    match e {
        StoreError::InvalidJobState { .. } => ApiError::Conflict {
            code: "invalid_job_state",
            detail: e.to_string(),
        },
        other => other.into(),
    }
}

/// Jobs, newest first (admin). An erasure is a plan (`erasure`) and one `erase_file` task per
/// affected file; a job that failed after its retries stays `failed` (dead-lettered) with its
/// last error until an admin retries or cancels it.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", security(("bearer" = [])), params(JobsQuery),
    responses((status = 200, body = [Job]), (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/jobs")]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<JobsQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let jobs = state
        .store
        .list_jobs(query.status, query.limit.unwrap_or(100))
        .await?;
    Ok(HttpResponse::Ok().json(jobs))
}

/// One job (admin).
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/jobs/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    Ok(HttpResponse::Ok().json(state.store.job(&path).await?))
}

/// Puts a `failed` or `cancelled` job back in the queue with fresh attempts (admin); its
/// request, if failed, runs again.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs", security(("bearer" = [])),
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = Job),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is queued, running or done", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/jobs/{id}/retry")]
pub async fn retry(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (job, audit) = admin_action(&state, &caller, &path, "job.retried").await?;
    let job = state
        .store
        .retry_job(&job.id, audit)
        .await
        .map_err(state_error)?;
    Ok(HttpResponse::Ok().json(job))
}

/// Cancels a `queued` or `failed` job (admin); its request fails with a note saying so.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", security(("bearer" = [])),
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = Job),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is running or done", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/jobs/{id}/cancel")]
pub async fn cancel(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (job, audit) = admin_action(&state, &caller, &path, "job.cancelled").await?;
    let job = state
        .store
        .cancel_job(&job.id, audit)
        .await
        .map_err(state_error)?;
    Ok(HttpResponse::Ok().json(job))
}
