//! Webhook endpoints and deliveries as the store keeps them, and the commands that change them.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{EventSelection, WebhookUrl};
use crate::domain::Timestamp;

/// A registered receiver of events.
#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    /// UUID.
    pub id: String,
    /// Where events are POSTed (`http` or `https`).
    pub url: String,
    /// The shared HMAC-SHA256 key events are signed with, as stored: sealed under the KEK
    /// (`sealed:v1:…`, see [`super::open_secret`]), or a plain `whsec_…` in rows written before
    /// sealing. Shown to the admin once, on creation, and never again.
    pub stored_secret: SecretString,
    /// Event types it receives, or `["*"]` for all.
    pub events: Vec<String>,
    /// What it is for, e.g. `mobile app notifications`.
    pub description: Option<String>,
    /// Who registered it (`user:<uuid>`).
    pub created_by: String,
    /// When.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it was deactivated; from then on nothing is queued or sent to it.
    pub deactivated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl WebhookEndpoint {
    /// Whether events are still queued for it.
    pub fn is_active(&self) -> bool {
        self.deactivated_at.is_none()
    }
}

/// An endpoint to register.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// Validated URL.
    pub url: WebhookUrl,
    /// Validated event types.
    pub events: EventSelection,
    /// Optional note.
    pub description: Option<String>,
    /// A freshly generated secret ([`super::generate_secret`]) sealed for `url`
    /// ([`super::seal_secret`]).
    pub sealed_secret: String,
    /// Who registers it.
    pub created_by: String,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its first or next attempt (or being sent right now).
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every attempt failed (or the endpoint was deactivated); an admin may re-queue it.
    Failed,
}

impl DeliveryStatus {
    /// The stable lower-case name used in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// Parses a stored name; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One event for one endpoint: a row of the delivery log.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "id": "5b0e…", "endpoint_id": "0c9a…", "event_id": "e7d2…", "event_type": "request.completed",
    "request_id": "7f3c…",
    "payload": {"id": "e7d2…", "type": "request.completed", "created_at": "2025-01-07T10:02:00.000000Z",
        "data": {"request_id": "7f3c…", "request_type": "access", "status": "completed",
            "previous_status": "running", "subject_pseudonym": "ps_4f1c…"}},
    "status": "delivered", "attempts": 2, "next_attempt_at": "2025-01-07T10:02:10.000000Z",
    "last_status_code": 200, "last_error": null, "last_attempt_at": "2025-01-07T10:02:10.000000Z",
    "created_at": "2025-01-07T10:02:00.000000Z", "delivered_at": "2025-01-07T10:02:10.000000Z"}))]
pub struct WebhookDelivery {
    /// UUID of the delivery.
    pub id: String,
    /// The endpoint it goes to.
    pub endpoint_id: String,
    /// The event's id: the body's `id` and the `Lethe-Event-Id` header; the same for every
    /// endpoint and every attempt, so receivers de-duplicate on it.
    pub event_id: String,
    /// e.g. `request.completed`.
    pub event_type: String,
    /// The request the event is about.
    pub request_id: Option<String>,
    /// The JSON body sent (see [`super::RequestEvent`]).
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// HTTP attempts made so far.
    pub attempts: i64,
    /// When a pending delivery is next tried.
    pub next_attempt_at: chrono::DateTime<chrono::Utc>,
    /// HTTP status of the last attempt; `null` when it got no answer (timeout, refused).
    pub last_status_code: Option<i64>,
    /// Why the last attempt failed; `null` after a success.
    pub last_error: Option<String>,
    /// When the last attempt ended.
    pub last_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the event was queued (in the transaction of the change it reports).
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When the endpoint accepted it.
    pub delivered_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Which deliveries to list.
#[derive(Debug, Clone)]
pub struct DeliveryFilter {
    /// The endpoint.
    pub endpoint_id: String,
    /// Only in this status.
    pub status: Option<DeliveryStatus>,
    /// At most this many, newest first (clamped to 1–1000; default 100).
    pub limit: Option<i64>,
}

/// A delivery claimed by a dispatcher, with what it needs to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The delivery as claimed.
    pub delivery: WebhookDelivery,
    /// The exact JSON body to send and sign, as stored.
    pub body: String,
    /// The endpoint's URL.
    pub url: String,
    /// The endpoint's signing secret as stored; [`super::open_secret`] gives the key.
    pub stored_secret: SecretString,
    /// Fences the outcome: only the holder of this token may record it.
    pub lease_token: String,
}

/// How an attempt ended, as the dispatcher records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The endpoint answered 2xx.
    Delivered {
        /// The status it answered.
        status_code: i64,
    },
    /// It failed; try again at `at`.
    Retry {
        /// Next attempt.
        at: Timestamp,
        /// HTTP status, if any answer came.
        status_code: Option<i64>,
        /// What went wrong.
        error: String,
    },
    /// It failed for the last time.
    Failed {
        /// HTTP status, if any answer came.
        status_code: Option<i64>,
        /// What went wrong.
        error: String,
    },
    /// Not attempted (an earlier delivery to the same endpoint failed in this pass): due
    /// again at `at`, no attempt counted.
    Released {
        /// When it is due again.
        at: Timestamp,
    },
}
