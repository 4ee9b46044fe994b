//! Accounts: who am I, list accounts, link an account to a data subject.

use actix_web::{HttpResponse, get, put, web};
use lethe_core::audit::NewAuditEntry;
use lethe_core::domain::{Role, SubjectId};
use lethe_core::store::User;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::startup::AppState;

/// An account as shown by the API (never the password hash).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "7b0e…", "email": "ana@example.com", "role": "subject", "subject_id": null, "created_at": "2025-01-07T10:00:00Z"}))]
pub struct UserView {
    /// Account id.
    pub id: String,
    /// Login e-mail.
    pub email: String,
    /// Role.
    pub role: Role,
    /// Linked data subject id, if an admin linked one.
    pub subject_id: Option<String>,
    /// Created.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            email: u.email,
            role: u.role,
            subject_id: u.subject_id.map(String::from),
            created_at: u.created_at,
        }
    }
}

/// Link to a data subject.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"subject_id": "0b3e3f4c-…", "verification_note": "matched passport and app account e-mail"}))]
pub struct LinkSubject {
    /// The subject's id in the lake's subject column (e.g. `user_id`).
    pub subject_id: String,
    /// How the person's identity was verified (kept in the audit log).
    pub verification_note: String,
}

/// The caller's own account.
#[utoipa::path(get, path = "/v1/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "An API token (producer): it has no account", body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/me")]
pub async fn me(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Subject, Role::Admin, Role::Auditor])?;
    Ok(HttpResponse::Ok().json(UserView::from(state.store.user(&caller.user_id).await?)))
}

/// Every account (admin).
#[utoipa::path(get, path = "/v1/users", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = [UserView]), (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/users")]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let users: Vec<UserView> = state
        .store
        .list_users()
        .await?
        .into_iter()
        .map(UserView::from)
        .collect();
    Ok(HttpResponse::Ok().json(users))
}

/// Links a subject account to a data subject id (admin), after verifying the person's
/// identity. A user can never link themselves.
#[utoipa::path(put, path = "/v1/users/{id}/subject", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path, description = "Account id")), request_body = LinkSubject,
    responses((status = 200, body = UserView),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
#[put("/users/{id}/subject")]
pub async fn link_subject(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<LinkSubject>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let body = body.into_inner();
    let subject = SubjectId::parse(body.subject_id)?;
    if body.verification_note.trim().is_empty() {
        return Err(ApiError::validation(
            "verification_note must say how identity was verified",
        ));
    }
    let target = state.store.user(&path).await?;
    if target.role != Role::Subject {
        return Err(ApiError::Conflict {
            code: "not_a_subject_account",
            detail: "only subject accounts can be linked to a data subject".into(),
        });
    }
    let audit = NewAuditEntry::new(caller.actor(), "account.subject_linked")
        .subject(state.pseudonyms.pseudonym(&subject))
        .details(json!({ "user_id": target.id, "verification_note": body.verification_note }));
    let user = state
        .store
        .link_subject(&target.id, &subject, audit)
        .await?;
    Ok(HttpResponse::Ok().json(UserView::from(user)))
}
