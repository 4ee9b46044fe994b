//! Privacy requests (DSRs): file, list, read, approve, reject, download the export.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use lethe_core::domain::{Rectification, RequestStatus, RequestType, Role};
use lethe_core::exports;
use lethe_core::requests::{self, FileRequest, Filer, Policies};
use lethe_core::store::{PrivacyRequest, RequestEvent, RequestFilter};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// A request to file. Every type takes `type` (and, from an admin, `subject_id` and
/// `verification_note`); a rectification also names the dataset and the new values.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"type": "rectification", "dataset_id": "5f1c…",
    "changes": {"email": "ana.new@example.com", "notes": null}}))]
pub struct CreateRequest {
    /// The right exercised: `access` (GDPR Art. 15), `rectification` (Art. 16), `erasure`
    /// (Art. 17), `restriction` or `restriction_lift` (Art. 18), `portability` (Art. 20).
    #[serde(rename = "type")]
    pub request_type: RequestType,
    /// The data subject. Subjects omit it (their linked id is used); admins must give it.
    pub subject_id: Option<String>,
    /// Admins filing for a subject: how the person's identity was verified (required). Subjects
    /// omit it; for a subject identified by a trusted issuer's JWT, `jwt:<issuer>` is recorded.
    pub verification_note: Option<String>,
    /// Rectification only (required there): the id of the dataset whose rows are corrected.
    pub dataset_id: Option<String>,
    /// Rectification only (required there): column → new value, set on every row of the
    /// subject in the dataset. Values are JSON scalars of the column's type (text, dates and
    /// RFC 3339 timestamps as strings; `null` for nullable columns). Subject columns and
    /// partition columns cannot be changed. Checked when filed against the declared schema of
    /// a Lethe-managed dataset; for a dataset written by others, against each file's column
    /// types when the request runs (a mismatch fails it with nothing written). Encrypted
    /// columns are sealed again with the subject's key.
    #[schema(value_type = Option<Object>)]
    pub changes: Option<serde_json::Map<String, Value>>,
}

/// A rejection.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "The identity of the requester could not be verified."}))]
pub struct RejectRequest {
    /// Why; shown to the subject (GDPR Art. 12(4)).
    pub reason: String,
}

/// A privacy request as shown by the API.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "1e7c…", "type": "erasure", "status": "completed", "subject_id": "0b3e…",
    "subject_pseudonym": "9f86d0…", "filed_by": "user:7b0e…", "verification_note": null,
    "received_at": "2025-01-31T09:00:00Z", "due_at": "2025-04-30T09:00:00Z", "days_left": null,
    "original_due_at": "2025-02-28T09:00:00Z", "extended_at": "2025-02-03T08:00:00Z",
    "extended_by": "user:1b2c…", "extension_months": 2,
    "extension_reason": "Your data is held in twelve systems across three regions; searching them all takes longer.",
    "decided_by": "user:1b2c…", "decided_at": "2025-01-31T10:00:00Z", "decision_reason": null,
    "completed_at": "2025-01-31T10:00:05Z",
    "result": {"rows_removed": 31, "datasets": [{"dataset": "running_events", "files_scanned": 90, "files_rewritten": 30, "rows_removed": 31, "bytes_read": 1234567, "bytes_written": 1200000}]},
    "error": null, "export_available": false, "dataset_id": null, "changes": null, "history": []
}))]
pub struct RequestView {
    /// Id.
    pub id: String,
    /// Right exercised.
    #[serde(rename = "type")]
    pub request_type: RequestType,
    /// Status.
    pub status: RequestStatus,
    /// The subject id (hidden from auditors, who see the pseudonym).
    pub subject_id: Option<String>,
    /// Keyed pseudonym of the subject, as in the audit log.
    pub subject_pseudonym: String,
    /// Who filed it.
    pub filed_by: String,
    /// How identity was verified: the admin's note when an admin filed it, `jwt:<issuer>` when
    /// the subject filed it with a trusted issuer's token, `null` for a linked Lethe account.
    pub verification_note: Option<String>,
    /// Received.
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// Due: one calendar month after receipt (GDPR Art. 12(3)), or the extended deadline.
    pub due_at: chrono::DateTime<chrono::Utc>,
    /// Whole days until `due_at` (negative when overdue); `null` once final.
    pub days_left: Option<i64>,
    /// The one-month deadline an extension replaced; `null` unless extended.
    pub original_due_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the deadline was extended (`POST /v1/requests/{id}/extend`); `null` unless extended.
    pub extended_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Admin who extended it.
    pub extended_by: Option<String>,
    /// Further months granted: 1 or 2.
    pub extension_months: Option<u32>,
    /// Why the deadline was extended; the subject sees it (GDPR Art. 12(3)).
    pub extension_reason: Option<String>,
    /// Admin who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Rejection reason.
    pub decision_reason: Option<String>,
    /// Completed or failed at.
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Outcome. Erasure: per-dataset counts (files scanned and rewritten, rows removed,
    /// bytes). Access, portability: rows and files exported per dataset. Rectification:
    /// `rows_changed`, `columns`, and per dataset files scanned and rewritten. Restriction:
    /// `restricted` and `restricted_since`.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Last error when failed.
    pub error: Option<String>,
    /// Whether `GET /v1/requests/{id}/export` has an archive.
    pub export_available: bool,
    /// Erasure, first phase: when the subject's data key was destroyed (crypto-shredding).
    /// The request completes when the lake's files have also been rewritten.
    pub key_destroyed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Erasure: until when the subject can still cancel it (`POST /v1/requests/{id}/cancel`).
    pub cooling_off_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Access, portability: when the export stops being downloadable (then it is deleted).
    pub export_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Rectification: the dataset whose rows are corrected.
    pub dataset_id: Option<String>,
    /// Rectification: column → new value (hidden from auditors: the values are personal data).
    #[schema(value_type = Option<Object>)]
    pub changes: Option<Value>,
    /// Status history, oldest first (only on `GET /v1/requests/{id}`).
    pub history: Vec<RequestEvent>,
}

/// The API view of `r` for `caller` (auditors do not see the subject id).
pub(crate) fn view(r: PrivacyRequest, caller: &Caller, history: Vec<RequestEvent>) -> RequestView {
    let days_left = (!r.status.is_final()).then(|| (r.due_at - chrono::Utc::now()).num_days());
    let extension = r.extension;
    let rectification = r
        .details
        .filter(|_| r.request_type == RequestType::Rectification)
        .and_then(|d| serde_json::from_value::<Rectification>(d).ok());
    let shown = Shown { caller };
    RequestView {
        id: r.id,
        request_type: r.request_type,
        status: r.status,
        subject_id: (caller.role != Role::Auditor).then(|| r.subject_id.into()),
        subject_pseudonym: r.subject_pseudonym,
        filed_by: shown.actor(r.filed_by),
        verification_note: shown.free_text(r.verification_note, true),
        received_at: r.received_at,
        due_at: r.due_at,
        days_left,
        original_due_at: extension.as_ref().map(|e| e.original_due_at),
        extended_at: extension.as_ref().map(|e| e.at),
        extended_by: extension.as_ref().map(|e| shown.actor(e.by.clone())),
        extension_months: extension.as_ref().map(|e| e.months),
        extension_reason: shown.free_text(extension.map(|e| e.reason), false),
        decided_by: r.decided_by.map(|a| shown.actor(a)),
        decided_at: r.decided_at,
        decision_reason: shown.free_text(r.decision_reason, false),
        completed_at: r.completed_at,
        result: r.result,
        error: shown.free_text(r.error, false),
        export_available: r.export_path.is_some()
            && r.export_deleted_at.is_none()
            && r.export_expires_at.is_none_or(|at| at > chrono::Utc::now()),
        key_destroyed_at: r.key_destroyed_at,
        cooling_off_until: r.cooling_off_until,
        export_expires_at: r.export_expires_at,
        dataset_id: rectification.as_ref().map(|d| d.dataset_id.clone()),
        changes: rectification
            .filter(|_| caller.role != Role::Auditor)
            .map(|d| json!(d.changes)),
        history: history
            .into_iter()
            .map(|e| RequestEvent {
                actor: shown.actor(e.actor),
                note: shown.free_text(e.note, true),
                ..e
            })
            .collect(),
    }
}

/// Longest free text (a reason, a note, an error) shown to an auditor, in characters.
const AUDITOR_TEXT_CHARS: usize = 200;

/// What of a request each role is shown (least privilege): a subject sees who acted as
/// `admin` or `system` (or the approval `policy:…`), never an admin's account id or a
/// worker's host name; an auditor sees reasons and errors cut to 200 characters and no
/// free-text notes (verification notes, cancellation reasons: they may name people).
struct Shown<'a> {
    caller: &'a Caller,
}

impl Shown<'_> {
    /// An actor (`user:<id>`, `worker:<host>#…`, `policy:auto`, …) as the caller may see it.
    fn actor(&self, actor: String) -> String {
        if self.caller.role != Role::Subject || actor == self.caller.actor() {
            return actor;
        }
        match actor.split_once(':').map(|(kind, _)| kind) {
            Some("user") => "admin".into(),
            // `policy:auto` / `policy:review` say how, not who.
            Some("policy") => actor,
            _ => "system".into(),
        }
    }

    /// A free text: whole for admins and subjects; for auditors, notes (`redact`) are replaced
    /// by their length and reasons cut to 200 characters.
    fn free_text(&self, text: Option<String>, redact: bool) -> Option<String> {
        let text = text?;
        if self.caller.role != Role::Auditor {
            return Some(text);
        }
        Some(auditor_text(text, redact))
    }
}

/// A free text as an auditor sees it: a note that may name people (`redact`) is replaced by
/// its length, anything else cut to 200 characters (least privilege; free text may hold
/// personal data an auditor has no need for).
pub(crate) fn auditor_text(text: String, redact: bool) -> String {
    if redact {
        return format!("[redacted: {} characters]", text.chars().count());
    }
    match text.char_indices().nth(AUDITOR_TEXT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Loads a request the caller may see; others' requests are 404 to a subject.
pub(crate) async fn visible(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<PrivacyRequest, ApiError> {
    let request = state.store.request(id).await?;
    match caller.role {
        Role::Admin | Role::Auditor => Ok(request),
        Role::Subject if caller.subject_id.as_ref() == Some(&request.subject_id) => Ok(request),
        Role::Subject => Err(ApiError::NotFound(format!("request {id} not found"))),
        Role::Producer => Err(ApiError::Forbidden(
            "API tokens may only ingest; privacy requests are not theirs to read".into(),
        )),
    }
}

/// Files a privacy request.
///
/// A subject files for themselves (their account must have been linked to a subject id by an
/// admin, or their JWT comes from a trusted issuer, which names the subject id; the request then
/// records `jwt:<issuer>` as its verification). An admin files for any subject and must say how
/// identity was verified. Send an `Idempotency-Key` header to make retries safe: a repeat
/// returns the first request with status 200.
///
/// The rights: `access` (GDPR Art. 15: a zip of JSON Lines and CSV), `portability` (Art. 20: a
/// zip of Parquet, CSV and JSON), `rectification` (Art. 16: `dataset_id` and `changes`, applied
/// by rewriting the subject's files), `erasure` (Art. 17), `restriction` and
/// `restriction_lift` (Art. 18: the subject is listed in, or removed from,
/// `GET /v1/subjects/restricted` once the request completes).
#[utoipa::path(post, path = "/v1/requests", tag = "requests", security(("bearer" = [])),
    request_body(content = CreateRequest, examples(
        ("access" = (summary = "Right of access (Art. 15), filed by the subject", value = json!({"type": "access"}))),
        ("portability" = (summary = "Right to data portability (Art. 20): Parquet, CSV and JSON", value = json!({"type": "portability"}))),
        ("rectification" = (summary = "Right to rectification (Art. 16): new values for columns of one dataset", value = json!({"type": "rectification", "dataset_id": "5f1c…", "changes": {"email": "ana.new@example.com", "full_name": "Ana Lima", "notes": null}}))),
        ("erasure_by_admin" = (summary = "Right to erasure (Art. 17), filed by an admin for a subject", value = json!({"type": "erasure", "subject_id": "u-1042", "verification_note": "Passport checked at the front desk"}))),
        ("restriction" = (summary = "Right to restriction of processing (Art. 18)", value = json!({"type": "restriction"}))),
        ("restriction_lift" = (summary = "Lifting a restriction (Art. 18(3))", value = json!({"type": "restriction_lift"}))),
    )),
    params(("Idempotency-Key" = Option<String>, Header, description = "Client key making retries safe (≤ 255 characters)")),
    responses(
        (status = 201, description = "Filed", body = RequestView),
        (status = 200, description = "Replay of an earlier request with the same Idempotency-Key", body = RequestView),
        (status = 400, description = "`validation`: a missing field, an invalid subject id, or a rectification whose dataset is unknown or whose changes break a rule (subject or partition column, undeclared column, value not of the column's type)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Account not linked to a subject, or an auditor", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`idempotency_key_reused`: Idempotency-Key reused for a different request. `excessive_requests`: the subject already has `requests.max_open_per_type` open requests of this type (GDPR Art. 12(5); the refusal is audited)", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/requests")]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    http: HttpRequest,
    body: web::Json<CreateRequest>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Subject, Role::Admin])?;
    let body = body.into_inner();
    let idempotency_key = match http.headers().get("Idempotency-Key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::validation("Idempotency-Key must be visible ASCII"))?
                .to_string(),
        ),
    };
    let filer = Filer {
        actor: caller.actor(),
        role: caller.role,
        subject_id: caller.subject_id.clone(),
        issuer: caller.issuer.clone(),
    };
    let command = FileRequest {
        request_type: body.request_type,
        subject_id: body.subject_id,
        verification_note: body.verification_note,
        dataset_id: body.dataset_id,
        changes: body.changes,
        idempotency_key,
    };
    let policies = Policies::from_settings(&state.settings);
    let filed = requests::file(
        &state.store,
        &state.keyring,
        &state.pseudonyms,
        &policies,
        &filer,
        command,
    )
    .await?;
    let history = state.store.request_history(&filed.request.id).await?;
    let replayed = filed.replayed();
    let body = view(filed.request, &caller, history);
    Ok(if !replayed {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok()
            .insert_header(("Idempotent-Replayed", "true"))
            .json(body)
    })
}

/// Query of `GET /v1/requests`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Only requests in this status.
    pub status: Option<RequestStatus>,
    /// `true`: only open requests (not completed, rejected or failed) whose `due_at` has
    /// passed; `false`: only the others.
    pub overdue: Option<bool>,
    /// Only requests due before this instant (RFC 3339, e.g. `2025-03-01T00:00:00Z`), in any
    /// status; combine with `status` or `overdue` to narrow.
    pub due_before: Option<chrono::DateTime<chrono::Utc>>,
    /// Page size (1–1000, default 100).
    pub limit: Option<i64>,
    /// Skip this many.
    pub offset: Option<i64>,
}

/// Lists requests: a subject sees their own, admins and auditors see all, newest first.
///
/// Deadline tracking (GDPR Art. 12(3)): `?overdue=true` lists the open requests past their
/// due date; `?due_before=<RFC 3339>` those due before an instant.
#[utoipa::path(get, path = "/v1/requests", tag = "requests", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, body = [RequestView]),
        (status = 400, description = "`validation`: a filter is not a status, a boolean or an RFC 3339 instant", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "An API token (producer)", body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/requests")]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Subject, Role::Admin, Role::Auditor])?;
    let query = query.into_inner();
    let subject_id = match caller.role {
        Role::Subject => match &caller.subject_id {
            Some(id) => Some(id.clone()),
            None => return Ok(HttpResponse::Ok().json(Vec::<RequestView>::new())),
        },
        _ => None,
    };
    let filter = RequestFilter {
        subject_id,
        status: query.status,
        overdue: query.overdue,
        due_before: query.due_before,
        limit: query.limit,
        offset: query.offset,
    };
    let requests: Vec<RequestView> = state
        .store
        .list_requests(&filter)
        .await?
        .into_iter()
        .map(|r| view(r, &caller, Vec::new()))
        .collect();
    Ok(HttpResponse::Ok().json(requests))
}

/// One request with its status history.
#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = RequestView), (status = 403, description = "An API token (producer)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/requests/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let request = visible(&state, &caller, &path).await?;
    let history = state.store.request_history(&request.id).await?;
    Ok(HttpResponse::Ok().json(view(request, &caller, history)))
}

/// Approves a received request (admin) and queues its job.
#[utoipa::path(post, path = "/v1/requests/{id}/approve", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = RequestView),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not in status received", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/requests/{id}/approve")]
pub async fn approve(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let request = state.store.request(&path).await?;
    let policies = Policies::from_settings(&state.settings);
    let updated = requests::approve(
        &state.store,
        &state.keyring,
        &policies,
        request,
        &caller.actor(),
    )
    .await?
    .request;
    let history = state.store.request_history(&updated.id).await?;
    Ok(HttpResponse::Ok().json(view(updated, &caller, history)))
}

/// Rejects a received request (admin) with a reason the subject sees (GDPR Art. 12(4)).
#[utoipa::path(post, path = "/v1/requests/{id}/reject", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")), request_body = RejectRequest,
    responses((status = 200, body = RequestView),
        (status = 400, description = "Reason missing", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not in status received", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/requests/{id}/reject")]
pub async fn reject(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<RejectRequest>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let reason = body.into_inner().reason;
    let updated = requests::reject(&state.store, &path, &caller.actor(), reason)
        .await?
        .request;
    let history = state.store.request_history(&updated.id).await?;
    Ok(HttpResponse::Ok().json(view(updated, &caller, history)))
}

/// Downloads the export archive of a completed access or portability request: a zip holding
/// `manifest.json` (with `gdpr_article`) and, per dataset, `<dataset>.jsonl` and
/// `<dataset>.csv` (access, GDPR Art. 15) or `<dataset>.parquet`, `<dataset>.csv` and
/// `<dataset>.json`, one JSON array of row objects (portability, Art. 20). The subject and
/// admins only; every download is audited.
#[utoipa::path(get, path = "/v1/requests/{id}/export", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, description = "The archive", content_type = "application/zip", body = Vec<u8>),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`no_export`: not an access or portability request; `export_not_ready`: not completed yet", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 410, description = "`export_expired`: past `export_expires_at` (`requests.export_ttl_s`, default 7 days); the file is deleted by the sweep. `export_erased`: deleted when the subject was erased", body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/requests/{id}/export")]
pub async fn export(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Subject, Role::Admin])?;
    let request = visible(&state, &caller, &path).await?;
    let download =
        exports::download(&state.store, &state.keyring, &request, &caller.actor()).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{}\"", download.file_name),
        ))
        .body(download.archive))
}
