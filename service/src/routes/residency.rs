//! Data residency (GDPR Chapter V): subjects' jurisdictions, residency policies, the residency
//! scan and its remediation (see `lethe_core::residency`).

use actix_web::{HttpResponse, delete, get, post, put, web};
use lethe_core::audit::NewAuditEntry;
use lethe_core::domain::{Jurisdiction, Region, Role, SubjectId};
use lethe_core::store::{
    Job, JobKind, JobPayload, JobStatus, NewJob, ResidencyPolicy, ResidencyScan, ResidencyViolation,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// A subject's jurisdiction to record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"jurisdiction": "EU"}))]
pub struct SetJurisdiction {
    /// Jurisdiction code: 2–16 letters, digits, `-`, `_` (upper-cased), e.g. `EU`, `US`, `BR`.
    pub jurisdiction: String,
}

/// A subject's recorded jurisdiction. The subject appears by pseudonym only.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"subject_pseudonym": "9f86d0…", "jurisdiction": "EU", "source": "admin",
    "updated_by": "user:1b2c…", "updated_at": "2025-02-01T09:00:00Z"}))]
pub struct JurisdictionView {
    /// The subject's pseudonym (as in the audit log).
    pub subject_pseudonym: String,
    /// Jurisdiction code.
    pub jurisdiction: String,
    /// `admin`, or `ingest:<dataset>` when it was learned from a dataset's jurisdiction column.
    pub source: String,
    /// Who set it.
    pub updated_by: String,
    /// When.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Sets a data subject's jurisdiction (admin), replacing any recorded one. From then on, ingest
/// refuses that subject's rows in regions the jurisdiction's residency policy does not allow,
/// and the residency scan reports their rows stored elsewhere. The subject is stored and
/// audited (`subject.jurisdiction_set`) by keyed reference and pseudonym, never by id; the id in
/// the path does not reach the logs (they record the route pattern).
#[utoipa::path(put, path = "/v1/subjects/{subject_id}/jurisdiction", tag = "residency",
    security(("bearer" = [])),
    params(("subject_id" = String, Path, description = "The subject's id, as in the lake's subject column")),
    request_body = SetJurisdiction,
    responses((status = 200, body = JurisdictionView),
        (status = 400, description = "`validation`: invalid subject id or jurisdiction", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[put("/subjects/{subject_id}/jurisdiction")]
pub async fn set_jurisdiction(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<SetJurisdiction>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let subject = SubjectId::parse(path.into_inner())?;
    let jurisdiction = Jurisdiction::parse(&body.jurisdiction)?;
    let subject_ref = state.keyring.subject_ref(&subject);
    let pseudonym = state.pseudonyms.pseudonym(&subject);
    let previous = state.store.subject_jurisdiction(&subject_ref).await?;
    let audit = NewAuditEntry::new(caller.actor(), "subject.jurisdiction_set")
        .subject(&pseudonym)
        .details(json!({
            "jurisdiction": jurisdiction.as_str(),
            "previous": previous.map(|p| p.jurisdiction),
        }));
    let set = state
        .store
        .set_subject_jurisdiction(&subject_ref, jurisdiction.as_str(), &caller.actor(), audit)
        .await?;
    Ok(HttpResponse::Ok().json(JurisdictionView {
        subject_pseudonym: pseudonym,
        jurisdiction: set.jurisdiction,
        source: set.source,
        updated_by: set.updated_by,
        updated_at: set.updated_at,
    }))
}

/// A data subject's recorded jurisdiction (admin; a subject for their own id).
#[utoipa::path(get, path = "/v1/subjects/{subject_id}/jurisdiction", tag = "residency",
    security(("bearer" = [])),
    params(("subject_id" = String, Path, description = "The subject's id")),
    responses((status = 200, body = JurisdictionView),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No jurisdiction recorded: the subject is not restricted", body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/subjects/{subject_id}/jurisdiction")]
pub async fn get_jurisdiction(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin, Role::Subject])?;
    let subject = SubjectId::parse(path.into_inner())?;
    if caller.role == Role::Subject && caller.subject_id.as_ref() != Some(&subject) {
        return Err(ApiError::Forbidden(
            "a data subject may read their own jurisdiction only".into(),
        ));
    }
    let set = state
        .store
        .subject_jurisdiction(&state.keyring.subject_ref(&subject))
        .await?
        .ok_or_else(|| ApiError::NotFound("no jurisdiction is recorded for this subject".into()))?;
    Ok(HttpResponse::Ok().json(JurisdictionView {
        subject_pseudonym: state.pseudonyms.pseudonym(&subject),
        jurisdiction: set.jurisdiction,
        source: set.source,
        updated_by: set.updated_by,
        updated_at: set.updated_at,
    }))
}

/// The regions of a residency policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"regions": ["EU"]}))]
pub struct SetPolicy {
    /// Regions where rows of the jurisdiction's subjects may be stored, in order of preference
    /// (remediation moves misplaced rows to the first one a dataset has); at least one.
    pub regions: Vec<String>,
}

/// Sets the residency policy of a jurisdiction (admin): the regions where its subjects' rows
/// may be stored (GDPR Chapter V: e.g. EU subjects' data stays in EU storage). Ingest enforces
/// it from the next batch on; rows stored before are found by the residency scan. A
/// jurisdiction without a policy is not restricted. Audited as `residency.policy_set`.
#[utoipa::path(put, path = "/v1/residency/policies/{jurisdiction}", tag = "residency",
    security(("bearer" = [])),
    params(("jurisdiction" = String, Path, description = "Jurisdiction code, e.g. EU")),
    request_body = SetPolicy,
    responses((status = 200, body = ResidencyPolicy),
        (status = 400, description = "`validation`: invalid jurisdiction or region, no region, a region twice", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[put("/residency/policies/{jurisdiction}")]
pub async fn set_policy(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<SetPolicy>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let jurisdiction = Jurisdiction::parse(path.into_inner())?;
    let mut regions: Vec<String> = Vec::new();
    for r in &body.regions {
        let region = Region::parse(r)?;
        if regions.iter().any(|known| known == region.as_str()) {
            return Err(ApiError::validation(format!(
                "region {region} is listed twice"
            )));
        }
        regions.push(region.as_str().to_string());
    }
    if regions.is_empty() {
        return Err(ApiError::validation(
            "a policy lists at least one region; to lift a restriction, delete the policy",
        ));
    }
    let audit = NewAuditEntry::new(caller.actor(), "residency.policy_set")
        .details(json!({ "jurisdiction": jurisdiction.as_str(), "regions": regions }));
    let policy = state
        .store
        .set_residency_policy(jurisdiction.as_str(), &regions, &caller.actor(), audit)
        .await?;
    Ok(HttpResponse::Ok().json(policy))
}

/// Deletes the residency policy of a jurisdiction (admin): its subjects are not restricted any
/// more. Audited as `residency.policy_deleted`.
#[utoipa::path(delete, path = "/v1/residency/policies/{jurisdiction}", tag = "residency",
    security(("bearer" = [])),
    params(("jurisdiction" = String, Path, description = "Jurisdiction code")),
    responses((status = 204, description = "Deleted"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
#[delete("/residency/policies/{jurisdiction}")]
pub async fn delete_policy(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let jurisdiction = Jurisdiction::parse(path.into_inner())?;
    let audit = NewAuditEntry::new(caller.actor(), "residency.policy_deleted")
        .details(json!({ "jurisdiction": jurisdiction.as_str() }));
    state
        .store
        .delete_residency_policy(jurisdiction.as_str(), audit)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Every residency policy (admin, auditor), by jurisdiction.
#[utoipa::path(get, path = "/v1/residency/policies", tag = "residency", security(("bearer" = [])),
    responses((status = 200, body = [ResidencyPolicy]),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/residency/policies")]
pub async fn list_policies(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    Ok(HttpResponse::Ok().json(state.store.residency_policies().await?))
}

/// Which datasets a residency job covers.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"dataset_id": "5f0c…"}))]
pub struct ResidencyJobRequest {
    /// One dataset; absent: every registered dataset.
    pub dataset_id: Option<String>,
}

/// Queues a job of `kind` over the dataset of `body` (or all), audited as `action`.
async fn enqueue(
    state: &AppState,
    caller: &Caller,
    kind: JobKind,
    body: crate::optional_json::OptionalJson<ResidencyJobRequest>,
    action: &str,
) -> Result<Job, ApiError> {
    caller.require(&[Role::Admin])?;
    let dataset_id = body.into_inner().and_then(|b| b.dataset_id);
    let dataset = match &dataset_id {
        Some(id) => Some(state.store.dataset(id).await?),
        None => None,
    };
    let payload = match kind {
        JobKind::ResidencyScan => JobPayload::ResidencyScan {
            dataset_id: dataset_id.clone(),
        },
        _ => JobPayload::ResidencyRemediate {
            dataset_id: dataset_id.clone(),
        },
    };
    Ok(state
        .store
        .enqueue_job(
            NewJob::new(payload, None, state.settings.worker.max_attempts, None),
            NewAuditEntry::new(caller.actor(), action).details(json!({
                "dataset_id": dataset_id,
                "dataset": dataset.map(|d| d.name),
            })),
        )
        .await?)
}

/// Queues a residency scan (admin) of one dataset or of every dataset: each file of each root
/// is read for its subject and region columns, and the rows stored outside the regions their
/// subjects' jurisdictions allow are recorded per dataset, root, partition and file, replacing
/// the previous scan's findings. Datasets without a schema (written by others) or without a
/// region column are recorded as `not_scannable`. Follow the job at `GET /v1/jobs/{id}`; read
/// the findings at `GET /v1/residency/violations`.
#[utoipa::path(post, path = "/v1/residency/scan", tag = "residency", security(("bearer" = [])),
    request_body(content = Option<ResidencyJobRequest>),
    responses((status = 202, description = "Scan queued", body = Job),
        (status = 400, description = "`malformed_json`: a body that is not a `ResidencyJobRequest`, e.g. a misspelt field (an empty body is fine: every dataset)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown dataset", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/residency/scan")]
pub async fn scan(
    state: web::Data<AppState>,
    caller: Caller,
    body: crate::optional_json::OptionalJson<ResidencyJobRequest>,
) -> Result<HttpResponse, ApiError> {
    let job = enqueue(
        &state,
        &caller,
        JobKind::ResidencyScan,
        body,
        "residency.scan_queued",
    )
    .await?;
    Ok(HttpResponse::Accepted().json(job))
}

/// Queues a residency remediation (admin) of one dataset or of every dataset: interrupted
/// remediations are finished first; then, per file holding misplaced rows, those rows are
/// copied into the root of the first region their subjects' policies allow (same partition
/// layout, indexed), and only then is the source rewritten without them (copy-on-write,
/// verified, atomic), each file audited as `residency.remediated`. Rows no region of the
/// dataset may hold stay and are reported. What is left is recorded as the dataset's scan.
#[utoipa::path(post, path = "/v1/residency/remediate", tag = "residency", security(("bearer" = [])),
    request_body(content = Option<ResidencyJobRequest>),
    responses((status = 202, description = "Remediation queued", body = Job),
        (status = 400, description = "`malformed_json`: a body that is not a `ResidencyJobRequest`, e.g. a misspelt field (an empty body is fine: every dataset)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown dataset", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`remediation_in_progress`: a remediation is queued or running", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/residency/remediate")]
pub async fn remediate(
    state: web::Data<AppState>,
    caller: Caller,
    body: crate::optional_json::OptionalJson<ResidencyJobRequest>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    for status in [JobStatus::Queued, JobStatus::Running] {
        let busy = state
            .store
            .list_jobs(Some(status), 1000)
            .await?
            .into_iter()
            .find(|j| j.kind == JobKind::ResidencyRemediate);
        if let Some(job) = busy {
            return Err(ApiError::Conflict {
                code: "remediation_in_progress",
                detail: format!(
                    "residency remediation job {} is {}; wait for it to end",
                    job.id,
                    status.as_str()
                ),
            });
        }
    }
    let job = enqueue(
        &state,
        &caller,
        JobKind::ResidencyRemediate,
        body,
        "residency.remediation_queued",
    )
    .await?;
    Ok(HttpResponse::Accepted().json(job))
}

/// Query of `GET /v1/residency/violations`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ViolationsQuery {
    /// Only this dataset.
    pub dataset_id: Option<String>,
}

/// The findings of the last residency scans.
#[derive(Debug, Serialize, ToSchema)]
pub struct ViolationsView {
    /// The last scan of each scanned dataset: when, what it read, its status.
    pub scans: Vec<ResidencyScan>,
    /// Files holding rows stored outside their allowed regions, per dataset, root, partition
    /// and file (one per region the rows are stored in).
    pub violations: Vec<ResidencyViolation>,
}

/// The rows stored outside their allowed regions, as found by the last residency scan (or
/// left by the last remediation) of each dataset (admin, auditor). Counts only: no subject id.
#[utoipa::path(get, path = "/v1/residency/violations", tag = "residency", security(("bearer" = [])),
    params(ViolationsQuery),
    responses((status = 200, body = ViolationsView),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/residency/violations")]
pub async fn violations(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ViolationsQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    let dataset_id = query.dataset_id.as_deref();
    let scans = state
        .store
        .residency_scans()
        .await?
        .into_iter()
        .filter(|s| dataset_id.is_none_or(|id| s.dataset_id == id))
        .collect();
    let violations = state.store.residency_violations(dataset_id).await?;
    Ok(HttpResponse::Ok().json(ViolationsView { scans, violations }))
}
