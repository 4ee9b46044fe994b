//! Sessions: an access token (short-lived JWT) plus a refresh token (opaque, rotated on each
//! use) for one sign-in.
//!
//! A refresh token is `lethe_rt_` followed by the unpadded base64url of 32 random bytes of the
//! operating system; only its hex SHA-256 is stored. Each sign-in starts a token family; a
//! refresh spends the token and answers its successor; a spent token presented again revokes
//! the whole family (RFC 9700 §4.14.2, refresh token rotation with reuse detection).

use base64::Engine;
use lethe_core::domain::ApiTokenSecret;
use lethe_core::store::{NewRefreshToken, RefreshOutcome, User};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

/// The prefix of every refresh token (easy to find with secret scanners; never a bearer token).
pub const REFRESH_TOKEN_PREFIX: &str = "lethe_rt_";

/// An access token, and the refresh token of the same session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "access_token": "eyJhbGciOiJIUzI1NiJ9…",
    "token_type": "Bearer",
    "expires_in": 900,
    "refresh_token": "lethe_rt_Vb0y9Jq3kX2m8TtQ1cWfR7pZ4sL6nH0aD5eG2uI9oYk",
    "refresh_expires_in": 1209600
}))]
pub struct TokenResponse {
    /// The JWT (HS256) to send as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime of the access token in seconds (`auth.access_token_ttl_s`).
    pub expires_in: u64,
    /// Single-use: exchange it at `POST /v1/auth/refresh` for a new access token and a new
    /// refresh token. Never send it as a bearer token. Using it twice ends the session.
    pub refresh_token: String,
    /// Seconds the refresh token stays usable (`auth.refresh_token_ttl_s`, never past the
    /// session's end at `auth.session_max_s` after sign-in).
    pub refresh_expires_in: u64,
}

fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    format!("{REFRESH_TOKEN_PREFIX}{encoded}")
}

fn seconds(s: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}

fn answer(
    state: &AppState,
    user: &User,
    refresh: String,
    refresh_expires_in: u64,
) -> Result<TokenResponse, ApiError> {
    let access_token = state
        .tokens
        .issue(&user.id, user.role, user.token_epoch)
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: state.tokens.ttl_s(),
        refresh_token: refresh,
        refresh_expires_in,
    })
}

/// Starts a session for `user` (a sign-in or a password change): a new refresh-token family.
///
/// # Errors
/// The store's error; signing never fails with an HMAC key.
pub async fn start(state: &AppState, user: &User) -> Result<TokenResponse, ApiError> {
    let auth = &state.settings.auth;
    let now = chrono::Utc::now();
    let ttl = auth.refresh_token_ttl_s.min(auth.session_max_s);
    let refresh = new_refresh_token();
    state
        .store
        .start_refresh_family(NewRefreshToken {
            user_id: user.id.clone(),
            token_hash: ApiTokenSecret::hash_of(&refresh),
            epoch: user.token_epoch,
            expires_at: now + seconds(ttl),
            family_expires_at: now + seconds(auth.session_max_s),
        })
        .await?;
    answer(state, user, refresh, ttl)
}

/// Exchanges a refresh token for a new pair.
///
/// # Errors
/// 401 when the token is unknown, expired, revoked, spent before (its family is then
/// revoked), or its account is disabled or was signed out since.
pub async fn refresh(state: &AppState, presented: &str) -> Result<TokenResponse, ApiError> {
    let refused = |detail: &str| ApiError::Unauthorized(detail.to_string());
    if !presented.starts_with(REFRESH_TOKEN_PREFIX) || presented.len() > 128 {
        return Err(refused("not a refresh token"));
    }
    let auth = &state.settings.auth;
    let now = chrono::Utc::now();
    let next = new_refresh_token();
    let outcome = state
        .store
        .rotate_refresh_token(
            &ApiTokenSecret::hash_of(presented),
            &ApiTokenSecret::hash_of(&next),
            now + seconds(auth.refresh_token_ttl_s),
        )
        .await?;
    match outcome {
        RefreshOutcome::Rotated {
            user,
            family_id,
            expires_at,
        } => {
            tracing::debug!(family_id, "refresh token rotated");
            // The successor never outlives the family: say how long it really lasts.
            let left = (expires_at - now).num_seconds().max(0);
            answer(state, &user, next, u64::try_from(left).unwrap_or(0))
        }
        RefreshOutcome::Reused => {
            tracing::warn!("a spent refresh token was presented again: its session is revoked");
            Err(refused(
                "this refresh token was already used: the session is ended; sign in again",
            ))
        }
        RefreshOutcome::Refused => Err(refused(
            "the refresh token is unknown, expired or revoked; sign in again",
        )),
    }
}
