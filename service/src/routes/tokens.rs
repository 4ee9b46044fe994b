//! API tokens for pipelines: the producer role, which may ingest into the Lethe-managed
//! datasets its token is granted, and read the restricted list when granted that.
//!
//! A token is shown once, in the response that creates it; the store keeps only its SHA-256.
//! Producers send it as `Authorization: Bearer lethe_pat_…` and act as `token:<id>`.

use actix_web::{HttpResponse, delete, get, post, web};
use lethe_core::audit::NewAuditEntry;
use lethe_core::domain::{ApiTokenSecret, Role};
use lethe_core::store::{ApiToken, NewApiToken, Store, TokenScope};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Longest token name, in characters.
const MAX_NAME_CHARS: usize = 100;

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "events-pipeline", "datasets": ["7f8e2c1a-…"], "list_restricted": false}))]
pub struct CreateToken {
    /// What the token is for (1–100 characters, no control characters), e.g. the pipeline's
    /// name.
    pub name: String,
    /// Ids of the datasets the token may ingest into (0–100, each registered); ingest into
    /// any other dataset is 403.
    pub datasets: Vec<String>,
    /// Whether the token may read `GET /v1/subjects/restricted` (subject ids under a
    /// restriction of processing, GDPR Art. 18); default `false`.
    #[serde(default)]
    pub list_restricted: bool,
}

/// Most datasets one token may be granted.
const MAX_DATASETS: usize = 100;

/// A created token, with its secret: the only time the secret is shown.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "9d1e…", "name": "events-pipeline", "role": "producer",
    "token": "lethe_pat_Jx3v2t0mH8d0bq5c3nq0yJ4uJ2k9pP1wYx6F7aQe5sM",
    "created_at": "2025-01-07T10:00:00Z",
    "scope": {"datasets": ["7f8e2c1a-…"], "list_restricted": false}}))]
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
    /// What it may do.
    pub scope: TokenScope,
}

/// A token as listed (never its secret).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "9d1e…", "name": "events-pipeline", "role": "producer",
    "created_by": "user:1b2c…", "created_at": "2025-01-07T10:00:00Z", "revoked_at": null,
    "scope": {"datasets": ["7f8e2c1a-…"], "list_restricted": false}}))]
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
    /// What it may do; `null` for a token created before scopes existed, which may ingest
    /// into every dataset and read the restricted list (revoke it and issue a scoped one).
    pub scope: Option<TokenScope>,
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
            scope: t.scope,
        }
    }
}

/// Creates a producer token named `name` with `scope` for `actor`, audited as
/// `token.created` (with the token's id, name and scope, never the secret). Used by
/// `POST /v1/tokens` and `lethe-service token create`.
///
/// # Errors
/// [`ApiError::BadRequest`] (`validation`) for an empty, over-long or control-character
/// name, more than 100 datasets or one that is not registered; store failures otherwise.
pub async fn issue(
    store: &Store,
    name: &str,
    scope: TokenScope,
    actor: &str,
) -> Result<(ApiToken, ApiTokenSecret), ApiError> {
    if scope.datasets.len() > MAX_DATASETS {
        return Err(ApiError::validation(format!(
            "a token may be granted at most {MAX_DATASETS} datasets"
        )));
    }
    for id in &scope.datasets {
        match store.dataset(id).await {
            Ok(_) => {}
            Err(lethe_core::store::StoreError::NotFound { .. }) => {
                return Err(ApiError::validation(format!(
                    "datasets: no dataset has the id {id:?}"
                )));
            }
            Err(other) => return Err(other.into()),
        }
    }
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
                scope: scope.clone(),
            },
            NewAuditEntry::new(actor, "token.created")
                .details(json!({ "name": name, "role": Role::Producer, "scope": scope })),
        )
        .await?;
    Ok((token, secret))
}

/// Creates an API token for a pipeline (admin). The response holds the token: it is shown
/// this once, only its hash is kept.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", security(("bearer" = [])),
    request_body = CreateToken,
    responses((status = 201, body = CreatedToken),
        (status = 400, description = "`validation`: invalid name, too many datasets or one not registered; `malformed_json`: no `datasets`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/tokens")]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CreateToken>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let body = body.into_inner();
    let scope = TokenScope {
        datasets: body.datasets,
        list_restricted: body.list_restricted,
    };
    let (token, secret) = issue(
        state.store.as_ref(),
        &body.name,
        scope.clone(),
        &caller.actor(),
    )
    .await?;
    Ok(HttpResponse::Created().json(CreatedToken {
        id: token.id,
        name: token.name,
        role: token.role,
        token: secret.expose().to_string(),
        created_at: token.created_at,
        scope,
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
