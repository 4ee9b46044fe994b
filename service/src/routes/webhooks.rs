//! Webhook endpoints (admin): the company's app registers a URL and is told of every request
//! status change, signed with a shared secret shown once; the delivery log shows each event's
//! attempts, and a failed delivery can be re-queued.

use actix_web::{HttpResponse, delete, get, post, web};
use lethe_core::audit::NewAuditEntry;
use lethe_core::domain::Role;
use lethe_core::webhooks::{
    DeliveryFilter, DeliveryStatus, EventSelection, NewWebhook, WebhookDelivery, WebhookEndpoint,
    WebhookUrl, generate_secret, redact, seal_secret,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Longest description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 200;

/// An endpoint to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://app.example.com/hooks/lethe",
    "events": ["request.completed", "request.rejected"], "description": "tell users in the app"}))]
pub struct CreateWebhook {
    /// Where events are POSTed: an absolute `http` or `https` URL (at most 2,048 characters).
    pub url: String,
    /// Event types to receive (`request.<status>`, `request.deadline_extended`), or `["*"]`
    /// for all. Default: all.
    pub events: Option<Vec<String>>,
    /// What it is for (at most 200 characters).
    pub description: Option<String>,
}

/// A registered endpoint (never its secret).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "0c9a…", "url": "https://app.example.com/hooks/lethe",
    "events": ["*"], "description": "tell users in the app", "active": true,
    "created_by": "user:1b2c…", "created_at": "2025-01-07T10:00:00Z", "deactivated_at": null}))]
pub struct WebhookView {
    /// Endpoint id.
    pub id: String,
    /// Where events go.
    pub url: String,
    /// Event types it receives, or `["*"]`.
    pub events: Vec<String>,
    /// What it is for.
    pub description: Option<String>,
    /// Whether events are still sent to it.
    pub active: bool,
    /// Who registered it.
    pub created_by: String,
    /// When.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it was deactivated.
    pub deactivated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<WebhookEndpoint> for WebhookView {
    fn from(e: WebhookEndpoint) -> Self {
        Self {
            active: e.is_active(),
            id: e.id,
            url: e.url,
            events: e.events,
            description: e.description,
            created_by: e.created_by,
            created_at: e.created_at,
            deactivated_at: e.deactivated_at,
        }
    }
}

/// A registered endpoint with its secret: the only time the secret is shown.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "0c9a…", "url": "https://app.example.com/hooks/lethe",
    "events": ["*"], "description": null, "active": true, "created_by": "user:1b2c…",
    "created_at": "2025-01-07T10:00:00Z", "deactivated_at": null,
    "secret": "whsec_q8Yb1m2K3x4Jp5Lr6Ns7Tv8Wz9Ac0Bd1Ce2Df3Eg4F"}))]
pub struct CreatedWebhook {
    /// The endpoint.
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The shared HMAC-SHA256 key the endpoint's events are signed with (the whole string is
    /// the key). Store it in the receiver's secret store now: it cannot be shown again.
    pub secret: String,
}

/// Query of the delivery log.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DeliveriesQuery {
    /// Only deliveries in this status (`failed`: the ones to look at).
    pub status: Option<DeliveryStatus>,
    /// At most this many, newest first (1–1000, default 100).
    pub limit: Option<i64>,
}

/// Registers a webhook endpoint (admin). From the next status change on, every event it
/// subscribes to is POSTed to `url` as JSON, signed in the `Lethe-Signature` header with the
/// `secret` returned here — shown this once. Audited as `webhook.created` (URL without
/// password or query string; never the secret).
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    request_body = CreateWebhook,
    responses((status = 201, body = CreatedWebhook),
        (status = 400, description = "`validation`: invalid URL (not http/https), unknown event type, or over-long description. `url_not_allowed`: the host is, or resolves to, a loopback, private, link-local or unique-local address (unless `webhooks.allow_private_networks`), or does not resolve", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/webhooks")]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CreateWebhook>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let url = WebhookUrl::parse(&body.url)?;
    lethe_core::webhooks::egress::check_url(
        url.as_str(),
        state.settings.webhooks.allow_private_networks,
    )
    .await
    .map_err(|refused| ApiError::BadRequest {
        code: "url_not_allowed",
        detail: format!("url: {refused}"),
    })?;
    let events = EventSelection::parse(body.events.as_deref())?;
    let description = body
        .description
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty());
    if description.is_some_and(|d| {
        d.chars().count() > MAX_DESCRIPTION_CHARS || d.chars().any(char::is_control)
    }) {
        return Err(ApiError::validation(format!(
            "description must be at most {MAX_DESCRIPTION_CHARS} characters, without control characters"
        )));
    }
    let secret = generate_secret();
    let audit = NewAuditEntry::new(caller.actor(), "webhook.created")
        .details(json!({ "url": url.redacted(), "events": events.as_slice() }));
    let endpoint = state
        .store
        .create_webhook(
            NewWebhook {
                sealed_secret: seal_secret(&state.keyring, url.as_str(), &secret),
                url,
                events,
                description: description.map(String::from),
                created_by: caller.actor(),
            },
            audit,
        )
        .await?;
    Ok(HttpResponse::Created().json(CreatedWebhook {
        webhook: endpoint.into(),
        secret: secret.expose_secret().to_string(),
    }))
}

/// Every webhook endpoint, deactivated ones included, oldest first (admin, auditor); never
/// their secrets.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = [WebhookView]),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/webhooks")]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    let endpoints: Vec<WebhookView> = state
        .store
        .list_webhooks()
        .await?
        .into_iter()
        .map(WebhookView::from)
        .collect();
    Ok(HttpResponse::Ok().json(endpoints))
}

/// Deactivates a webhook endpoint (admin): nothing more is queued for it, and its pending
/// deliveries are marked `failed`. The endpoint and its delivery log are kept. Audited as
/// `webhook.deactivated`; deactivating an inactive endpoint is a no-op.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 204, description = "Deactivated"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
#[delete("/webhooks/{id}")]
pub async fn deactivate(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let endpoint = state.store.webhook(&path).await?;
    let audit = NewAuditEntry::new(caller.actor(), "webhook.deactivated")
        .details(json!({ "url": redact(&endpoint.url) }));
    state.store.deactivate_webhook(&path, audit).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The delivery log of an endpoint, newest first (admin, auditor): per event, its status
/// (`pending`, `delivered`, `failed`), attempts, the last HTTP status and error, and when it
/// is next tried.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Endpoint id"), DeliveriesQuery),
    responses((status = 200, body = [WebhookDelivery]),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/webhooks/{id}/deliveries")]
pub async fn deliveries(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    let endpoint = state.store.webhook(&path).await?;
    let log = state
        .store
        .webhook_deliveries(&DeliveryFilter {
            endpoint_id: endpoint.id,
            status: query.status,
            limit: query.limit,
        })
        .await?;
    Ok(HttpResponse::Ok().json(log))
}

/// Re-queues a failed delivery (admin): it is sent again at once, with a fresh round of
/// attempts, same event id and body. Audited as `webhook.delivery_retried`.
#[utoipa::path(post, path = "/v1/webhooks/deliveries/{id}/retry", tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Delivery id")),
    responses((status = 200, description = "Re-queued (status `pending`)", body = WebhookDelivery),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not failed (`invalid_webhook_state`), or its endpoint is deactivated", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/webhooks/deliveries/{id}/retry")]
pub async fn retry(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let audit = NewAuditEntry::new(caller.actor(), "webhook.delivery_retried");
    let delivery = state.store.retry_webhook_delivery(&path, audit).await?;
    Ok(HttpResponse::Ok().json(delivery))
}
