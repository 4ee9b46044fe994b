//! API tokens for pipelines: the producer role, which may ingest into Lethe-managed datasets.
//!
//! A token is shown once, in the response that creates it; the store keeps only its SHA-256.
//! Producers send it as `Authorization: Bearer lethe_pat_…` and act as `token:<id>`.

use actix_web::{HttpResponse, delete, get, post, web};
use lethe_core::audit::NewAuditEntry;
use lethe_core::domain::{ApiTokenSecret, Role};
use lethe_core::store::{ApiToken, NewApiToken, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::startup::AppState;

/// Longest token name, in characters.
const MAX_NAME_CHARS: usize = 100;

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "events-pipeline"}))]
pub struct CreateToken {
    /// What the token is for (1–100 characters, no control characters), e.g. the pipeline's
    /// name.
    pub name: String,
}

/// A created token, with its secret: the only time the secret is shown.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "9d1e…", "name": "events-pipeline", "role": "producer",
    "token": "lethe_pat_Jx3v2t0mH8d0bq5c3nq0yJ4uJ2k9pP1wYx6F7aQe5sM",
    "created_at": "2025-01-07T10:00:00Z"}))]
pub struct CreatedToken {
    /// Token id; the producer acts as `token:<id>`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Always `producer`.
    pub role: Role,
    /// The bearer token. Store it in the pipeline's secret store now: it cannot be shown
    /// again.
    pub token: String,
    /// When.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A token as listed (never its secret).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "9d1e…", "name": "events-pipeline", "role": "producer",
    "created_by": "user:1b2c…", "created_at": "2025-01-07T10:00:00Z", "revoked_at": null}))]
pub struct TokenView {
    /// Token id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Always `producer`.
    pub role: Role,
    /// Who created it (`user:<uuid>`, `system:cli`).
    pub created_by: String,
    /// When.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it was revoked; `null` while it is valid.
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> Self {
        Self {
            id: t.id,
            name: t.name,
            role: t.role,
            created_by: t.created_by,
            created_at: t.created_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// Creates a producer token named `name` for `actor`, audited as `token.created` (with the
/// token's id and name, never the secret). Used by `POST /v1/tokens` and
/// `lethe-service token create`.
///
/// # Errors
/// [`ApiError::BadRequest`] (`validation`) for an empty, over-long or control-character
/// name; store failures otherwise.
pub async fn issue(
    store: &dyn Store,
    name: &str,
    actor: &str,
) -> Result<(ApiToken, ApiTokenSecret), ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::validation(format!(
            "name must be 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "name must not hold control characters",
        ));
    }
    let secret = ApiTokenSecret::generate();
    let token = store
        .create_api_token(
            NewApiToken {
                name: name.to_string(),
                token_hash: secret.hash(),
                created_by: actor.to_string(),
            },
            NewAuditEntry::new(actor, "token.created")
                .details(json!({ "name": name, "role": Role::Producer })),
        )
        .await?;
    Ok((token, secret))
}

/// Creates an API token for a pipeline (admin). The response holds the token: it is shown
/// this once, only its hash is kept.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", security(("bearer" = [])),
    request_body = CreateToken,
    responses((status = 201, body = CreatedToken),
        (status = 400, description = "Invalid name", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/tokens")]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CreateToken>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let (token, secret) = issue(state.store.as_ref(), &body.name, &caller.actor()).await?;
    Ok(HttpResponse::Created().json(CreatedToken {
        id: token.id,
        name: token.name,
        role: token.role,
        token: secret.expose().to_string(),
        created_at: token.created_at,
    }))
}

/// Every API token, revoked ones included, oldest first (admin); never their secrets.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", security(("bearer" = [])),
    responses((status = 200, body = [TokenView]),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/tokens")]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let tokens: Vec<TokenView> = state
        .store
        .list_api_tokens()
        .await?
        .into_iter()
        .map(TokenView::from)
        .collect();
    Ok(HttpResponse::Ok().json(tokens))
}

/// Revokes an API token (admin): from now on it authenticates nothing (401). Audited as
/// `token.revoked`; revoking a revoked token is a no-op.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", security(("bearer" = [])),
    params(("id" = String, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
#[delete("/tokens/{id}")]
pub async fn revoke(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let audit = NewAuditEntry::new(caller.actor(), "token.revoked")
        .details(json!({ "token_id": path.as_str() }));
    state.store.revoke_api_token(&path, audit).await?;
    Ok(HttpResponse::NoContent().finish())
}
