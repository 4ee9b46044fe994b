//! Webhooks: signed HTTP notifications of request status changes, so the company's app can tell
//! the user what happened to their request.
//!
//! **Outbox.** Each status change of a request (and each deadline extension) queues one
//! delivery per active endpoint subscribed to its event type, in the same database transaction
//! as the change ([`crate::store`]): an event is announced if and only if its change committed.
//!
//! **Delivery.** A [`Dispatcher`] — in the service next to the in-process worker, and in every
//! `lethe-worker run` — claims due deliveries with a lease, POSTs the JSON body
//! ([`WebhookEvent`]) signed with the endpoint's secret ([`signature_header`]), and records the
//! attempt in the delivery log. A 2xx answer delivers it; anything else (another status, a
//! timeout, a refused connection) is retried with exponential backoff until
//! `webhooks.max_attempts`, then the delivery is `failed` until an admin re-queues it.
//! Deliveries to one endpoint are sent one at a time, oldest first, but a retried event can
//! arrive after a newer one: receivers should order by the request's `status` and the event's
//! `created_at`, and de-duplicate on the event `id` (a dispatcher that dies after sending and
//! before recording sends again).
//!
//! The endpoints, deliveries and events themselves (rows and the outbox's payloads) live with
//! their SQL in the store ([`crate::store::webhooks`]), which writes the outbox in the same
//! transaction as each change; this module delivers them.
//!
//! **Secrets** are stored sealed under the KEK, bound to the endpoint's URL ([`seal_secret`]).
//!
//! **Receivers** verify the `Lethe-Signature` header with [`verify_signature`].

mod dispatcher;
pub mod egress;
mod sealing;
mod signature;

pub use crate::store::webhooks::{
    ClaimedDelivery, DEADLINE_EXTENDED, DeliveryFilter, DeliveryOutcome, DeliveryStatus,
    EventExtension, EventSelection, NewWebhook, RequestEventData, RequestEventKind, SECRET_PREFIX,
    WebhookDelivery, WebhookEndpoint, WebhookEvent, WebhookUrl, generate_secret, known_event_types,
    redact, status_event_type,
};
pub use dispatcher::{Dispatcher, DispatcherConfig, retry_delay};
pub use sealing::{
    SEALED_SECRET_PREFIX, SecretResealReport, open_secret, reseal_secret, reseal_secrets,
    seal_secret,
};
pub use signature::{
    DEFAULT_TOLERANCE, EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, SignatureError,
    signature_header, verify_signature,
};
