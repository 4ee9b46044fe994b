//! Account registration and login.

use actix_web::{HttpRequest, HttpResponse, post, web};
use lethe_core::audit::NewAuditEntry;
use lethe_core::domain::{Email, Role};
use lethe_core::store::{NewUser, User};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::{
    Caller, PasswordError, client_ip, hash_password_holding, session, verify_password_holding,
};
use crate::error::ApiError;
use crate::state::AppState;

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ana@example.com", "password": "correct horse battery"}))]
pub struct Credentials {
    /// Login e-mail.
    pub email: String,
    /// Password: 12 characters or more.
    pub password: String,
}

pub use crate::auth::TokenResponse;

/// A refresh token to exchange.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"refresh_token": "lethe_rt_Vb0y9Jq3kX2m8TtQ1cWfR7pZ4sL6nH0aD5eG2uI9oYk"}))]
pub struct RefreshRequest {
    /// The refresh token of the last sign-in or refresh (`lethe_rt_…`).
    pub refresh_token: String,
}

/// The answer to every well-formed registration, whether or not the e-mail already had an
/// account: the same status, body and (one argon2id hash either way) timing, so that
/// registration cannot be used to learn who has an account.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"status": "accepted", "detail": "If this e-mail address can be registered, its account now exists and a verification code was sent to it: sign in, then enter the code (POST /v1/auth/email/verify). An admin links the account to your data after verifying your identity."}))]
pub struct RegistrationAccepted {
    /// Always `accepted`.
    pub status: String,
    /// What happens next.
    pub detail: String,
}

const REGISTRATION_ACCEPTED: &str = "If this e-mail address can be registered, its account now exists and a verification code was sent to it: sign in, then enter the code (POST /v1/auth/email/verify). An admin links the account to your data after verifying your identity.";

/// Creates a data-subject account.
///
/// The answer is `202` with the same body whether the e-mail was free or already had an
/// account (in which case nothing changes), so registration reveals nothing about who has an
/// account: sign in to learn your account id (`GET /v1/me`). The account is not linked to a
/// data subject: an admin links it (`PUT /v1/users/{id}/subject`) after verifying the person's
/// identity. Admin and auditor accounts are created from the command line only. Limited per
/// client address and per e-mail (`auth.attempts_per_*_per_minute`).
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = Credentials,
    responses(
        (status = 202, description = "Accepted: the account exists now if the e-mail was free; the same answer when it already had one", body = RegistrationAccepted),
        (status = 400, description = "Invalid e-mail or weak password", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too_many_requests`: too many attempts from this address or on this e-mail; `Retry-After` says when to try again", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`temporarily_unavailable`: every password-hashing slot is busy; `Retry-After: 1`", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/auth/register")]
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    state.throttle.attempt(
        client_ip(&req, state.settings.server.trust_forwarded_for),
        &body.email,
    )?;
    let email = Email::parse(body.email)?;
    // The account of an erased subject keeps the address only as a keyed hash: it is taken.
    let erased_account = state
        .store
        .user_by_stored_email(&state.keyring.erased_email(email.as_str()))
        .await?;
    let permit = state.throttle.hash_permit().await?;
    let password_hash =
        hash_password_holding(body.password, permit)
            .await
            .map_err(|e| match e {
                PasswordError::Policy(m) => ApiError::validation(m),
                other => ApiError::Internal(other.into()),
            })?;
    let audit =
        NewAuditEntry::new("system", "account.registered").details(json!({ "role": "subject" }));
    let created = match erased_account {
        Some(_) => Err(lethe_core::store::StoreError::Conflict(
            "e-mail taken".into(),
        )),
        None => {
            let user = NewUser {
                email,
                password_hash,
                role: Role::Subject,
            };
            state.store.create_user(user, audit).await
        }
    };
    match created {
        // The new account proves it controls the address: a code goes to it.
        Ok(user) => super::email::send_code(&state, &user).await?,
        Err(lethe_core::store::StoreError::Conflict(_)) => {}
        Err(other) => return Err(other.into()),
    }
    Ok(HttpResponse::Accepted().json(RegistrationAccepted {
        status: "accepted".into(),
        detail: REGISTRATION_ACCEPTED.into(),
    }))
}

/// Exchanges e-mail and password for a short-lived access token and a refresh token (a new
/// session).
///
/// Limited per client address and per e-mail; after `auth.lockout_after_failures` failed
/// sign-ins in a row an e-mail is locked for `auth.lockout_base_s`, doubled at each further
/// failure (up to `auth.lockout_max_s`), known and unknown e-mails alike.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "Wrong e-mail or password", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too_many_requests`: too many attempts from this address or on this e-mail, or the e-mail is locked after failed sign-ins; `Retry-After` says when to try again", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`temporarily_unavailable`: every password-hashing slot is busy; `Retry-After: 1`", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let account = body.email.clone();
    state.throttle.attempt(
        client_ip(&req, state.settings.server.trust_forwarded_for),
        &account,
    )?;
    let wrong = || ApiError::Unauthorized("wrong e-mail or password".into());
    let user = match Email::parse(body.email) {
        Ok(email) => account_for(&state, &email).await?,
        Err(_) => None,
    };
    let permit = state.throttle.hash_permit().await?;
    let ok = verify_password_holding(
        body.password,
        user.as_ref().map(|u| u.password_hash.clone()),
        permit,
    )
    .await;
    let user = match (ok, user) {
        // A disabled account is refused like a wrong password (nothing to learn from it).
        (true, Some(user)) if user.disabled_at.is_none() => user,
        _ => {
            state.throttle.failed(&account);
            return Err(wrong());
        }
    };
    state.throttle.succeeded(&account);
    Ok(HttpResponse::Ok().json(session::start(&state, &user).await?))
}

/// Exchanges a refresh token for a new access token and a new refresh token (rotation: the
/// token sent is spent). A refresh token that was already spent is a stolen copy or a replay:
/// the whole session (every token descended from the same sign-in) is revoked, the call is
/// 401, and `account.refresh_token_reused` is audited (RFC 9700 §4.14.2). Signing out,
/// changing the password and disabling the account revoke every session's refresh tokens.
/// Limited per client address (`auth.attempts_per_ip_per_minute`, shared with sign-ins).
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new access token and refresh token; the one sent is spent", body = TokenResponse),
        (status = 400, description = "`malformed_json`: the body is not `{\"refresh_token\": …}`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`: unknown, expired, revoked or already used (then the session is ended) refresh token, or the account is disabled or signed out since", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too_many_requests`: too many attempts from this address; `Retry-After` says when to try again", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/auth/refresh")]
pub async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    state
        .throttle
        .attempt_from(client_ip(&req, state.settings.server.trust_forwarded_for))?;
    let answer = session::refresh(&state, &body.refresh_token).await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// Signs the caller's account out everywhere: every access token issued to it so far is
/// refused from now on (its token epoch moves on) and every refresh-token family of the
/// account is revoked. Audited as `account.signed_out`.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out: every access and refresh token of the account is refused from now on"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an account (an API token, or a trusted issuer's token: end those where they were issued)", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/auth/logout")]
pub async fn logout(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    require_account(&caller)?;
    let audit = NewAuditEntry::new(caller.actor(), "account.signed_out");
    state.store.end_sessions(&caller.user_id, audit).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A password change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"current_password": "correct horse battery", "new_password": "a new and longer passphrase"}))]
pub struct PasswordChange {
    /// The password in use.
    pub current_password: String,
    /// The new one: 12 characters or more.
    pub new_password: String,
}

/// Changes the caller's password. Every other session ends (all tokens issued before are
/// refused); the answer carries a fresh access token. A wrong current password counts as a
/// failed sign-in (rate limits and lockout apply). Audited as `account.password_changed`.
#[utoipa::path(post, path = "/v1/auth/password", tag = "auth", security(("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed; a fresh session (every earlier access and refresh token is refused)", body = TokenResponse),
        (status = 400, description = "`validation`: the new password breaks the policy", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong current password, or no valid token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an account", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too_many_requests`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`temporarily_unavailable`: every password-hashing slot is busy", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/auth/password")]
pub async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    body: web::Json<PasswordChange>,
) -> Result<HttpResponse, ApiError> {
    require_account(&caller)?;
    let body = body.into_inner();
    let user = state.store.user(&caller.user_id).await?;
    state.throttle.attempt(
        client_ip(&req, state.settings.server.trust_forwarded_for),
        &user.email,
    )?;
    let permit = state.throttle.hash_permit().await?;
    if !verify_password_holding(body.current_password, Some(user.password_hash), permit).await {
        state.throttle.failed(&user.email);
        return Err(ApiError::Unauthorized("wrong current password".into()));
    }
    let permit = state.throttle.hash_permit().await?;
    let password_hash = hash_password_holding(body.new_password, permit)
        .await
        .map_err(|e| match e {
            PasswordError::Policy(m) => ApiError::validation(m),
            other => ApiError::Internal(other.into()),
        })?;
    let audit = NewAuditEntry::new(caller.actor(), "account.password_changed");
    let user = state
        .store
        .set_password(&user.id, password_hash, audit)
        .await?;
    state.throttle.succeeded(&user.email);
    Ok(HttpResponse::Ok().json(session::start(&state, &user).await?))
}

/// Fails with 403 unless the caller is one of Lethe's own accounts.
fn require_account(caller: &Caller) -> Result<(), ApiError> {
    if caller.issuer.is_some() || caller.role == Role::Producer {
        return Err(ApiError::Forbidden(
            "only Lethe accounts have sessions and passwords here".into(),
        ));
    }
    Ok(())
}

/// The account signing in with `email`: the one registered with it, or the account of an
/// erased subject, which keeps the address only as a keyed hash
/// ([`lethe_core::keyring::Keyring::erased_email`]).
async fn account_for(state: &AppState, email: &Email) -> Result<Option<User>, ApiError> {
    if let Some(user) = state.store.user_by_email(email).await? {
        return Ok(Some(user));
    }
    let stand_in = state.keyring.erased_email(email.as_str());
    Ok(state.store.user_by_stored_email(&stand_in).await?)
}
