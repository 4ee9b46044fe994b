//! E-mail ownership: a self-registered account proves it controls its e-mail address with a
//! one-time code before an admin may link it to a data subject (otherwise whoever registered a
//! victim's address first would receive the victim's exports once linked).
//!
//! A code is 6 decimal digits from the operating system's generator, valid `mail.code_ttl_s`
//! (15 minutes), voided after `mail.code_max_attempts` (5) wrong tries; only
//! SHA-256(`<account id>:<code>`) is stored, one live code per account.

use actix_web::{HttpRequest, HttpResponse, post, web};
use lethe_core::audit::NewAuditEntry;
use lethe_core::domain::Role;
use lethe_core::store::{EmailCodeOutcome, User};
use rand::Rng;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::auth::client_ip;
use crate::error::ApiError;
use crate::state::AppState;

/// A verification code, as received by e-mail.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "204981"}))]
pub struct VerifyEmail {
    /// The 6-digit code of the last message.
    pub code: String,
}

fn code_hash(user_id: &str, code: &str) -> String {
    hex::encode(Sha256::digest(format!("{user_id}:{code}").as_bytes()))
}

/// Makes a new code for `user`, stores its hash and mails it in the background. A mail
/// failure is logged, not returned: the caller answers the same either way, and the user can
/// ask for another code.
///
/// # Errors
/// The store's error.
pub(crate) async fn send_code(state: &AppState, user: &User) -> Result<(), ApiError> {
    let code = format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32));
    let ttl = state.settings.mail.code_ttl_s;
    let expires_at =
        chrono::Utc::now() + chrono::Duration::seconds(i64::try_from(ttl).unwrap_or(900));
    state
        .store
        .set_email_code(&user.id, &code_hash(&user.id, &code), expires_at)
        .await?;
    let body = format!(
        "Your Lethe verification code is {code}.\n\n\
         Enter it within {} minutes (POST /v1/auth/email/verify). If you did not create an \
         account, ignore this message.\n",
        ttl.div_ceil(60)
    );
    // Sent in the background: a registration must take as long whether or not it created an
    // account (an SMTP round trip would tell), and the caller answers the same either way.
    let (mailer, to, user_id) = (state.mailer.clone(), user.email.clone(), user.id.clone());
    tokio::spawn(async move {
        if let Err(e) = mailer.send(&to, "Your Lethe verification code", body).await {
            tracing::warn!(error = format!("{e:#}"), %user_id, "the verification code could not be mailed");
        }
    });
    Ok(())
}

/// Fails with 403 unless the caller is a Lethe subject account.
fn require_subject_account(caller: &Caller) -> Result<(), ApiError> {
    if caller.issuer.is_some() || caller.role != Role::Subject {
        return Err(ApiError::Forbidden(
            "only self-registered (subject) accounts verify their e-mail here".into(),
        ));
    }
    Ok(())
}

/// Sends a new verification code to the caller's e-mail (a subject account), voiding the
/// previous one. Limited with sign-ins (`auth.attempts_per_*_per_minute`).
#[utoipa::path(post, path = "/v1/auth/email/code", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 202, description = "A new code was sent (or written to the outbox)"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a subject account", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`already_verified`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too_many_requests`; `Retry-After`", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/auth/email/code")]
pub async fn resend(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    require_subject_account(&caller)?;
    let user = state.store.user(&caller.user_id).await?;
    state.throttle.attempt(
        client_ip(&req, state.settings.server.trust_forwarded_for),
        &user.email,
    )?;
    if user.email_verified_at.is_some() {
        return Err(ApiError::Conflict {
            code: "already_verified",
            detail: "this account's e-mail is verified already".into(),
        });
    }
    send_code(&state, &user).await?;
    Ok(HttpResponse::Accepted().finish())
}

/// Verifies the caller's e-mail with the code it received (a subject account). Audited as
/// `account.email_verified`. An admin may link the account to a data subject only afterwards.
#[utoipa::path(post, path = "/v1/auth/email/verify", tag = "auth", security(("bearer" = [])),
    request_body = VerifyEmail,
    responses(
        (status = 204, description = "Verified"),
        (status = 400, description = "`invalid_code`: wrong code (the detail says how many tries are left) or no live code (expired, used up or never sent: ask for a new one)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a subject account", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`already_verified`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too_many_requests`; `Retry-After`", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/auth/email/verify")]
pub async fn verify(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    body: web::Json<VerifyEmail>,
) -> Result<HttpResponse, ApiError> {
    require_subject_account(&caller)?;
    let user = state.store.user(&caller.user_id).await?;
    state.throttle.attempt(
        client_ip(&req, state.settings.server.trust_forwarded_for),
        &user.email,
    )?;
    if user.email_verified_at.is_some() {
        return Err(ApiError::Conflict {
            code: "already_verified",
            detail: "this account's e-mail is verified already".into(),
        });
    }
    let code = body.code.trim();
    let invalid = |detail: String| ApiError::BadRequest {
        code: "invalid_code",
        detail,
    };
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("a code is 6 digits".into()));
    }
    let audit = NewAuditEntry::new(caller.actor(), "account.email_verified");
    let outcome = state
        .store
        .check_email_code(
            &user.id,
            &code_hash(&user.id, code),
            state.settings.mail.code_max_attempts,
            audit,
        )
        .await?;
    match outcome {
        EmailCodeOutcome::Verified(_) => Ok(HttpResponse::NoContent().finish()),
        EmailCodeOutcome::Wrong { left } if left > 0 => Err(invalid(format!(
            "wrong code; {left} more tries with this code"
        ))),
        EmailCodeOutcome::Wrong { .. } | EmailCodeOutcome::NoCode => Err(invalid(
            "no valid code: it expired, was used up or was never sent; ask for a new one (POST /v1/auth/email/code)".into(),
        )),
    }
}
