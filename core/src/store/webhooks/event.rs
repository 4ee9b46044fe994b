//! The events Lethe announces and the JSON body each delivery carries.
//!
//! Every request status change is an event `request.<status>` (`request.received`,
//! `request.approved`, `request.running`, `request.completed`, `request.rejected`,
//! `request.failed`, and any status the lifecycle gains); a deadline extension is
//! `request.deadline_extended`, because the subject must be told of it with its reasons
//! (GDPR Art. 12(3)). Bodies name the subject only by the audit log's keyed pseudonym, never by
//! the subject id: webhooks leave the system, and the company's app knows its requests by id.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{RequestStatus, RequestType, from_db, to_db};
use crate::store::PrivacyRequest;

/// Type of the event sent when a request's deadline is extended (GDPR Art. 12(3)).
pub const DEADLINE_EXTENDED: &str = "request.deadline_extended";

/// What happened to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestEventKind {
    /// It reached its current status (`previous` is the status it left; `None` when filed).
    StatusChanged {
        /// The status it left.
        previous: Option<RequestStatus>,
    },
    /// An admin extended its deadline.
    DeadlineExtended,
}

/// `request.<status>`, e.g. `request.completed`.
pub fn status_event_type(status: RequestStatus) -> String {
    format!("request.{}", status.as_str())
}

/// Every event type an endpoint may subscribe to, in lifecycle order.
pub fn known_event_types() -> Vec<String> {
    RequestStatus::ALL
        .into_iter()
        .map(status_event_type)
        .chain([DEADLINE_EXTENDED.to_string()])
        .collect()
}

/// The body of a webhook delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "id": "e7d2c1aa-3f0b-4d1e-9a55-0c1f2b3d4e5f",
    "type": "request.rejected",
    "created_at": "2025-01-07T10:02:00.000000Z",
    "data": {
        "request_id": "7f3c2b1a-0000-4000-8000-000000000001",
        "request_type": "erasure",
        "status": "rejected",
        "previous_status": "received",
        "subject_pseudonym": "ps_4f1c9e…",
        "received_at": "2025-01-06T09:00:00.000000Z",
        "due_at": "2025-02-06T09:00:00.000000Z",
        "completed_at": null,
        "reason": "we hold no data about this account",
        "extension": null
    }
}))]
pub struct WebhookEvent {
    /// Event id (UUID); the same in every delivery and retry of this event, and in the
    /// `Lethe-Event-Id` header. Receivers de-duplicate on it.
    pub id: String,
    /// e.g. `request.completed`; also in the `Lethe-Event-Type` header.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it happened (the change committed in the same transaction).
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The request, as it stands after the change.
    pub data: RequestEventData,
}

/// The request an event is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestEventData {
    /// The request's id, as returned when it was filed.
    pub request_id: String,
    /// The right exercised.
    pub request_type: RequestType,
    /// Its status now.
    pub status: RequestStatus,
    /// The status it left; `null` for `request.received` and for
    /// `request.deadline_extended`.
    pub previous_status: Option<RequestStatus>,
    /// The subject's keyed pseudonym, as in the audit log (never the subject id).
    pub subject_pseudonym: String,
    /// When it was received.
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// When it must be answered (GDPR Art. 12(3)), extension included.
    pub due_at: chrono::DateTime<chrono::Utc>,
    /// When it reached `completed` or `failed`.
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The reason given on a decision, e.g. why it was rejected; to be shown to the subject
    /// (GDPR Art. 12(4)).
    pub reason: Option<String>,
    /// The deadline extension, once granted (its reason is to be shown to the subject, GDPR
    /// Art. 12(3)).
    pub extension: Option<EventExtension>,
}

/// A deadline extension as events report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventExtension {
    /// Further months granted: 1 or 2.
    pub months: u32,
    /// Why.
    pub reason: String,
    /// The one-month deadline it replaced.
    pub original_due_at: chrono::DateTime<chrono::Utc>,
}

impl WebhookEvent {
    /// A new event (fresh id, now) of `kind` about `request` as it stands after the change.
    pub fn for_request(request: &PrivacyRequest, kind: RequestEventKind) -> Self {
        let (event_type, previous_status) = match kind {
            RequestEventKind::StatusChanged { previous } => {
                (status_event_type(request.status), previous)
            }
            RequestEventKind::DeadlineExtended => (DEADLINE_EXTENDED.to_string(), None),
        };
        Self {
            id: Uuid::new_v4().to_string(),
            event_type,
            // Truncated to microseconds, like every stored instant.
            created_at: from_db(&to_db(chrono::Utc::now())).expect("own format parses"),
            data: RequestEventData {
                request_id: request.id.clone(),
                request_type: request.request_type,
                status: request.status,
                previous_status,
                subject_pseudonym: request.subject_pseudonym.clone(),
                received_at: request.received_at,
                due_at: request.due_at,
                completed_at: request.completed_at,
                reason: request.decision_reason.clone(),
                extension: request.extension.as_ref().map(|e| EventExtension {
                    months: e.months,
                    reason: e.reason.clone(),
                    original_due_at: e.original_due_at,
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_an_event_type_and_extensions_have_theirs() {
        let known = known_event_types();
        assert_eq!(known.len(), RequestStatus::ALL.len() + 1);
        assert_eq!(
            status_event_type(RequestStatus::Completed),
            "request.completed"
        );
        assert!(known.contains(&"request.received".to_string()));
        assert!(known.contains(&DEADLINE_EXTENDED.to_string()));
    }
}
