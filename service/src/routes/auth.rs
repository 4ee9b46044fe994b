//! Account registration and login.

use actix_web::{HttpResponse, post, web};
use lethe_core::audit::NewAuditEntry;
use lethe_core::domain::{Email, Role};
use lethe_core::store::NewUser;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::{PasswordError, hash_password, verify_password};
use crate::error::ApiError;
use crate::routes::users::UserView;
use crate::startup::AppState;

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"email": "ana@example.com", "password": "correct horse battery"}))]
pub struct Credentials {
    /// Login e-mail.
    pub email: String,
    /// Password: 12 characters or more.
    pub password: String,
}

/// An access token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"access_token": "eyJhbGciOiJIUzI1NiJ9…", "token_type": "Bearer", "expires_in": 900}))]
pub struct TokenResponse {
    /// The JWT (HS256) to send as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

/// Creates a data-subject account and returns it.
///
/// The account is not linked to a data subject: an admin links it
/// (`PUT /v1/users/{id}/subject`) after verifying the person's identity. Admin and auditor
/// accounts are created from the command line only.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = Credentials,
    responses(
        (status = 201, description = "Account created", body = UserView),
        (status = 400, description = "Invalid e-mail or weak password", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "E-mail already registered", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/auth/register")]
pub async fn register(
    state: web::Data<AppState>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let email = Email::parse(body.email)?;
    let password_hash = hash_password(body.password).await.map_err(|e| match e {
        PasswordError::Policy(m) => ApiError::validation(m),
        other => ApiError::Internal(other.into()),
    })?;
    let audit =
        NewAuditEntry::new("system", "account.registered").details(json!({ "role": "subject" }));
    let user = state
        .store
        .create_user(
            NewUser {
                email,
                password_hash,
                role: Role::Subject,
            },
            audit,
        )
        .await
        .map_err(|e| match e {
            lethe_core::store::StoreError::Conflict(_) => ApiError::Conflict {
                code: "email_taken",
                detail: "an account with this e-mail already exists".into(),
            },
            other => other.into(),
        })?;
    Ok(HttpResponse::Created().json(UserView::from(user)))
}

/// Exchanges e-mail and password for a short-lived access token.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "Wrong e-mail or password", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let wrong = || ApiError::Unauthorized("wrong e-mail or password".into());
    let user = match Email::parse(body.email) {
        Ok(email) => state.store.user_by_email(&email).await?,
        Err(_) => None,
    };
    let ok = verify_password(
        body.password,
        user.as_ref().map(|u| u.password_hash.clone()),
    )
    .await;
    let user = match (ok, user) {
        (true, Some(user)) => user,
        _ => return Err(wrong()),
    };
    let token = state
        .tokens
        .issue(&user.id, user.role)
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(HttpResponse::Ok().json(TokenResponse {
        access_token: token,
        token_type: "Bearer".into(),
        expires_in: state.tokens.ttl_s(),
    }))
}
