//! Accounts: who am I, list accounts, link an account to a data subject.

use actix_web::{HttpResponse, get, post, put, web};
use lethe_core::audit::NewAuditEntry;
use lethe_core::domain::{Role, SubjectId};
use lethe_core::store::User;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// An account as shown by the API (never the password hash).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "7b0e…", "email": "ana@example.com", "role": "subject", "subject_id": null, "created_at": "2025-01-07T10:00:00Z", "disabled_at": null, "email_verified": true}))]
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
    /// When an admin disabled the account (it cannot sign in); `null` when enabled.
    pub disabled_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether the account proved it controls its e-mail (a code sent to it); admins and
    /// auditors are verified at creation.
    pub email_verified: bool,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            email: u.email,
            role: u.role,
            subject_id: u.subject_id.map(String::from),
            created_at: u.created_at,
            disabled_at: u.disabled_at,
            email_verified: u.email_verified_at.is_some(),
        }
    }
}

/// Link to a data subject.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"subject_id": "0b3e3f4c-…", "verification_note": "matched passport and app account e-mail"}))]
pub struct LinkSubject {
    /// The subject's id in the lake's subject column (e.g. `user_id`).
    pub subject_id: String,
    /// How the person's identity was verified (kept in the audit log).
    pub verification_note: String,
}

/// A data subject identified by a trusted issuer's JWT (the company's own app): there is no
/// Lethe account behind it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "external:https://login.example.com/#9f86d081884c7d65", "role": "subject", "subject_id": "u-42", "issuer": "https://login.example.com/", "verification": "jwt:https://login.example.com/"}))]
pub struct ExternalIdentityView {
    /// `external:<issuer>#<pseudonym prefix>`: how the caller appears in history and the
    /// audit log.
    pub id: String,
    /// Always `subject`.
    pub role: Role,
    /// The subject id: the value of the issuer's subject claim (`sub` by default).
    pub subject_id: String,
    /// The trusted issuer that signed the token (its `iss`).
    pub issuer: String,
    /// How identity was verified, as recorded on requests filed with the token:
    /// `jwt:<issuer>`.
    pub verification: String,
}

/// Who is calling: a Lethe account, or a subject identified by a trusted issuer's token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum MeView {
    /// A Lethe account.
    Account(UserView),
    /// A subject identified by a trusted issuer's JWT.
    External(ExternalIdentityView),
}

/// The caller's own account; for a subject identified by a trusted issuer's JWT (no account),
/// who the token says they are.
#[utoipa::path(get, path = "/v1/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = MeView), (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "An API token (producer): it has no account", body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/me")]
pub async fn me(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Subject, Role::Admin, Role::Auditor])?;
    if let (Some(issuer), Some(verification), Some(subject)) =
        (&caller.issuer, caller.verification(), &caller.subject_id)
    {
        return Ok(
            HttpResponse::Ok().json(MeView::External(ExternalIdentityView {
                id: caller.actor(),
                role: caller.role,
                subject_id: subject.as_str().to_string(),
                issuer: issuer.clone(),
                verification,
            })),
        );
    }
    Ok(HttpResponse::Ok().json(MeView::Account(UserView::from(
        state.store.user(&caller.user_id).await?,
    ))))
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
/// identity. A user can never link themselves, and an account is linked only once it proved
/// it controls its e-mail address (`POST /v1/auth/email/verify`).
#[utoipa::path(put, path = "/v1/users/{id}/subject", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path, description = "Account id")), request_body = LinkSubject,
    responses((status = 200, body = UserView),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not_a_subject_account`; `email_not_verified`: the account has not verified its e-mail", body = crate::error::Problem, content_type = "application/problem+json")))]
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
    if target.email_verified_at.is_none() {
        // Whoever registered an address first would otherwise get its owner's data.
        return Err(ApiError::Conflict {
            code: "email_not_verified",
            detail: "the account has not proved it controls its e-mail address yet (POST /v1/auth/email/verify)".into(),
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

/// Disables an account (admin): it cannot sign in, and every token issued to it is refused at
/// once. Audited as `account.disabled`. An admin cannot disable their own account.
#[utoipa::path(post, path = "/v1/users/{id}/disable", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, body = UserView),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`own_account`: an admin cannot disable their own account", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/users/{id}/disable")]
pub async fn disable(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_disabled(&state, &caller, &path, true).await
}

/// Enables a disabled account again (admin); tokens issued before it was disabled stay
/// refused. Audited as `account.enabled`.
#[utoipa::path(post, path = "/v1/users/{id}/enable", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, body = UserView),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/users/{id}/enable")]
pub async fn enable(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_disabled(&state, &caller, &path, false).await
}

async fn set_disabled(
    state: &AppState,
    caller: &Caller,
    id: &str,
    disabled: bool,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let target = state.store.user(id).await?;
    if disabled && target.id == caller.user_id {
        return Err(ApiError::Conflict {
            code: "own_account",
            detail: "an admin cannot disable their own account".into(),
        });
    }
    let action = if disabled {
        "account.disabled"
    } else {
        "account.enabled"
    };
    let audit = NewAuditEntry::new(caller.actor(), action).details(json!({ "user_id": target.id }));
    let user = state
        .store
        .set_disabled(&target.id, disabled, audit)
        .await?;
    Ok(HttpResponse::Ok().json(UserView::from(user)))
}
