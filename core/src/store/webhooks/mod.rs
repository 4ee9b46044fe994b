//! Webhook endpoints and the delivery outbox on the SQL store.
//!
//! [`enqueue_status_change_in`] runs inside the transaction of every request status change
//! (filing included) and [`enqueue_request_event_in`] inside that of a deadline extension: one
//! `pending` delivery per active endpoint whose selection matches the event type, so an event is
//! queued exactly when its change commits. Dispatchers claim due deliveries by moving
//! `next_attempt_at` past a lease and setting a `lease_token` (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL; SQLite serialises writers), and record an attempt only while they still hold it.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use uuid::Uuid;

use super::audit_chain::{append_audit_in, with_detail};
use super::db::{Backend, Store, db, now};
use super::rows::{corrupt, get_os, get_ots, get_s, get_ts};
use super::{PrivacyRequest, StoreError, StoreResult};
use crate::audit::NewAuditEntry;
use crate::domain::{RequestStatus, to_db};

mod event;
mod model;
mod subscription;

pub use event::{
    DEADLINE_EXTENDED, EventExtension, RequestEventData, RequestEventKind, WebhookEvent,
    known_event_types, status_event_type,
};
pub use model::{
    ClaimedDelivery, DeliveryFilter, DeliveryOutcome, DeliveryStatus, NewWebhook, WebhookDelivery,
    WebhookEndpoint,
};
pub use subscription::{EventSelection, SECRET_PREFIX, WebhookUrl, generate_secret, redact};

const ENDPOINT_COLS: &str =
    "id, url, secret, events, description, created_by, created_at, deactivated_at";

const DELIVERY_COLS: &str = "id, endpoint_id, event_id, event_type, request_id, payload, status, \
    attempts, next_attempt_at, last_status_code, last_error, last_attempt_at, created_at, \
    delivered_at";

fn events_from(row: &AnyRow, t: &'static str) -> StoreResult<Vec<String>> {
    serde_json::from_str(&get_s(row, t, "events")?).map_err(|e| corrupt(t, format!("events: {e}")))
}

fn endpoint_from(row: &AnyRow) -> StoreResult<WebhookEndpoint> {
    let t = "webhook_endpoints";
    Ok(WebhookEndpoint {
        id: get_s(row, t, "id")?,
        url: get_s(row, t, "url")?,
        stored_secret: SecretString::from(get_s(row, t, "secret")?),
        events: events_from(row, t)?,
        description: get_os(row, t, "description")?,
        created_by: get_s(row, t, "created_by")?,
        created_at: get_ts(row, t, "created_at")?,
        deactivated_at: get_ots(row, t, "deactivated_at")?,
    })
}

/// The delivery and its payload exactly as stored.
fn delivery_from(row: &AnyRow) -> StoreResult<(WebhookDelivery, String)> {
    let t = "webhook_deliveries";
    let body = get_s(row, t, "payload")?;
    let status = get_s(row, t, "status")?;
    let int = |col: &str| -> StoreResult<Option<i64>> {
        row.try_get::<Option<i64>, _>(col)
            .map_err(|e| corrupt(t, format!("{col}: {e}")))
    };
    let delivery = WebhookDelivery {
        id: get_s(row, t, "id")?,
        endpoint_id: get_s(row, t, "endpoint_id")?,
        event_id: get_s(row, t, "event_id")?,
        event_type: get_s(row, t, "event_type")?,
        request_id: get_os(row, t, "request_id")?,
        payload: serde_json::from_str::<Value>(&body)
            .map_err(|e| corrupt(t, format!("payload: {e}")))?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| corrupt(t, format!("unknown status {status}")))?,
        attempts: int("attempts")?.unwrap_or(0),
        next_attempt_at: get_ts(row, t, "next_attempt_at")?,
        last_status_code: int("last_status_code")?,
        last_error: get_os(row, t, "last_error")?,
        last_attempt_at: get_ots(row, t, "last_attempt_at")?,
        created_at: get_ts(row, t, "created_at")?,
        delivered_at: get_ots(row, t, "delivered_at")?,
    };
    Ok((delivery, body))
}

/// The active endpoints with their event selections.
async fn active_selections_in(
    conn: &mut AnyConnection,
) -> StoreResult<Vec<(String, EventSelection)>> {
    let t = "webhook_endpoints";
    sqlx::query("SELECT id, events FROM webhook_endpoints WHERE deactivated_at IS NULL")
        .fetch_all(&mut *conn)
        .await
        .map_err(db("reading webhook endpoints"))?
        .iter()
        .map(|row| {
            Ok((
                get_s(row, t, "id")?,
                EventSelection::from_stored(events_from(row, t)?),
            ))
        })
        .collect()
}

/// Queues `request.<status>` for the request as it now stands, unless its status did not
/// change (a job taken over or retried sets `running` again). Call it after the request row
/// is updated and before the new history event is inserted: the last history event is the
/// status the request left.
pub(super) async fn enqueue_status_change_in(
    conn: &mut AnyConnection,
    request: &PrivacyRequest,
) -> StoreResult<()> {
    let endpoints = active_selections_in(conn).await?;
    if endpoints.is_empty() {
        return Ok(());
    }
    let last = sqlx::query(
        "SELECT status FROM request_events WHERE request_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(&request.id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("reading a request's last status"))?;
    let previous = last
        .map(|row| {
            RequestStatus::parse(&get_s(&row, "request_events", "status")?)
                .map_err(|e| corrupt("request_events", e))
        })
        .transpose()?;
    if previous == Some(request.status) {
        return Ok(());
    }
    let event = WebhookEvent::for_request(request, RequestEventKind::StatusChanged { previous });
    insert_deliveries_in(conn, &endpoints, &event).await
}

/// Queues an event of `kind` about `request` for every subscribed active endpoint.
pub(super) async fn enqueue_request_event_in(
    conn: &mut AnyConnection,
    request: &PrivacyRequest,
    kind: RequestEventKind,
) -> StoreResult<()> {
    let endpoints = active_selections_in(conn).await?;
    let event = WebhookEvent::for_request(request, kind);
    insert_deliveries_in(conn, &endpoints, &event).await
}

async fn insert_deliveries_in(
    conn: &mut AnyConnection,
    endpoints: &[(String, EventSelection)],
    event: &WebhookEvent,
) -> StoreResult<()> {
    let body = serde_json::to_string(event).expect("an event serialises");
    let at = to_db(event.created_at);
    for (endpoint_id, _) in endpoints
        .iter()
        .filter(|(_, selection)| selection.matches(&event.event_type))
    {
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, request_id, \
               payload, status, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7)",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(endpoint_id)
        .bind(&event.id)
        .bind(&event.event_type)
        .bind(&event.data.request_id)
        .bind(&body)
        .bind(&at)
        .execute(&mut *conn)
        .await
        .map_err(db("queueing a webhook delivery"))?;
    }
    Ok(())
}

fn not_found(entity: &'static str, id: &str) -> StoreError {
    StoreError::NotFound {
        entity,
        id: id.to_string(),
    }
}

impl Store {
    /// Registers a webhook endpoint with its audit entry (to which `webhook_id` is added), in
    /// one transaction. Events are queued for it from the next status change on.
    pub async fn create_webhook(
        &self,
        webhook: NewWebhook,
        audit: NewAuditEntry,
    ) -> StoreResult<WebhookEndpoint> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO webhook_endpoints (id, url, secret, events, description, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {ENDPOINT_COLS}"
        )))
        .bind(Uuid::new_v4().to_string())
        .bind(webhook.url.as_str())
        .bind(&webhook.sealed_secret)
        .bind(serde_json::to_string(webhook.events.as_slice()).expect("strings serialise"))
        .bind(&webhook.description)
        .bind(&webhook.created_by)
        .bind(to_db(now()))
        .fetch_one(&mut *tx)
        .await
        .map_err(db("registering a webhook endpoint"))?;
        let created = endpoint_from(&row)?;
        append_audit_in(&mut tx, with_detail(audit, "webhook_id", &created.id)).await?;
        tx.commit()
            .await
            .map_err(db("committing a webhook endpoint"))?;
        Ok(created)
    }

    /// Every endpoint, deactivated ones included, oldest first.
    pub async fn list_webhooks(&self) -> StoreResult<Vec<WebhookEndpoint>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLS} FROM webhook_endpoints ORDER BY created_at, id"
        )))
        .fetch_all(self.pool())
        .await
        .map_err(db("listing webhook endpoints"))?
        .iter()
        .map(endpoint_from)
        .collect()
    }

    /// One endpoint; `NotFound` otherwise.
    pub async fn webhook(&self, id: &str) -> StoreResult<WebhookEndpoint> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLS} FROM webhook_endpoints WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(db("reading a webhook endpoint"))?
        .as_ref()
        .map(endpoint_from)
        .transpose()?
        .ok_or_else(|| not_found("webhook", id))
    }

    /// Replaces an endpoint's stored secret with `new` (the same secret re-sealed, e.g. under a
    /// new KEK) if it still holds `expected`; `false` when it no longer does (or is unknown).
    /// Not audited: the secret does not change, only how it is wrapped.
    pub async fn replace_webhook_secret(
        &self,
        id: &str,
        expected: &str,
        new: &str,
    ) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE webhook_endpoints SET secret = $1 WHERE id = $2 AND secret = $3")
                .bind(new)
                .bind(id)
                .bind(expected)
                .execute(self.pool())
                .await
                .map_err(db("re-sealing a webhook secret"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Deactivates an endpoint: nothing is queued for it any more, and its pending deliveries
    /// become `failed` ("endpoint deactivated"); audited with their count, in one transaction.
    /// Deactivating an inactive endpoint changes and audits nothing. `NotFound` when unknown.
    pub async fn deactivate_webhook(
        &self,
        id: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<WebhookEndpoint> {
        let mut tx = self.begin_write().await?;
        let at = to_db(now());
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE webhook_endpoints SET deactivated_at = $1 \
             WHERE id = $2 AND deactivated_at IS NULL RETURNING {ENDPOINT_COLS}"
        )))
        .bind(&at)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("deactivating a webhook endpoint"))?;
        let Some(row) = row else {
            // Already inactive (nothing changes, nothing is audited) or unknown.
            drop(tx);
            return self.webhook(id).await;
        };
        let endpoint = endpoint_from(&row)?;
        let dropped = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'failed', lease_token = NULL, \
               last_error = 'endpoint deactivated before delivery' \
             WHERE endpoint_id = $1 AND status = 'pending'",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db("dropping a webhook endpoint's pending deliveries"))?;
        let audit = with_detail(audit, "webhook_id", id);
        let audit = with_detail(
            audit,
            "pending_deliveries_dropped",
            &dropped.rows_affected().to_string(),
        );
        append_audit_in(&mut tx, audit).await?;
        tx.commit()
            .await
            .map_err(db("committing a webhook deactivation"))?;
        Ok(endpoint)
    }

    /// The delivery log of an endpoint, newest first.
    pub async fn webhook_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries \
             WHERE endpoint_id = $1 AND ($2 IS NULL OR status = $2) \
             ORDER BY created_at DESC, id LIMIT $3"
        )))
        .bind(&filter.endpoint_id)
        .bind(filter.status.map(DeliveryStatus::as_str))
        .bind(filter.limit.unwrap_or(100).clamp(1, 1000))
        .fetch_all(self.pool())
        .await
        .map_err(db("reading the webhook delivery log"))?
        .iter()
        .map(|row| delivery_from(row).map(|(delivery, _)| delivery))
        .collect()
    }

    /// Re-queues a `failed` delivery with fresh attempts, due now, and appends the audit
    /// entry (with `delivery_id`, `webhook_id`, `event_type` and the request) in one
    /// transaction.
    ///
    /// # Errors
    /// `NotFound`; `InvalidWebhookState` when the delivery is not failed or its endpoint is
    /// deactivated.
    pub async fn retry_webhook_delivery(
        &self,
        id: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<WebhookDelivery> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, \
               next_attempt_at = $1, lease_token = NULL \
             WHERE id = $2 AND status = 'failed' AND endpoint_id IN \
               (SELECT id FROM webhook_endpoints WHERE deactivated_at IS NULL) \
             RETURNING {DELIVERY_COLS}"
        )))
        .bind(to_db(now()))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("re-queueing a webhook delivery"))?;
        let Some(row) = row else {
            drop(tx);
            return Err(self.retry_refusal(id).await?);
        };
        let (delivery, _) = delivery_from(&row)?;
        let mut audit = with_detail(audit, "delivery_id", &delivery.id);
        audit = with_detail(audit, "webhook_id", &delivery.endpoint_id);
        audit = with_detail(audit, "event_type", &delivery.event_type);
        if audit.request_id.is_none() {
            audit.request_id = delivery.request_id.clone();
        }
        append_audit_in(&mut tx, audit).await?;
        tx.commit()
            .await
            .map_err(db("committing a webhook retry"))?;
        Ok(delivery)
    }

    /// Why a delivery could not be re-queued.
    async fn retry_refusal(&self, id: &str) -> StoreResult<StoreError> {
        let row = sqlx::query(
            "SELECT d.status, e.deactivated_at FROM webhook_deliveries AS d \
             JOIN webhook_endpoints AS e ON e.id = d.endpoint_id WHERE d.id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(db("reading a webhook delivery"))?;
        let Some(row) = row else {
            return Ok(not_found("webhook delivery", id));
        };
        let status = get_s(&row, "webhook_deliveries", "status")?;
        Ok(StoreError::InvalidWebhookState(
            if get_os(&row, "webhook_endpoints", "deactivated_at")?.is_some() {
                "the delivery's endpoint is deactivated; register it again to receive events"
                    .to_string()
            } else {
                format!("the delivery is {status}; only a failed delivery can be retried")
            },
        ))
    }

    /// Claims up to `limit` due pending deliveries, oldest first, for `lease`: they are not
    /// due again until it ends, and only the returned lease token can record their outcome.
    pub async fn claim_webhook_deliveries(
        &self,
        limit: i64,
        lease: Duration,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let at = now();
        let until = at + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let lock = match self.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            // SQLite serialises writers: the UPDATE holds the write lock for the whole
            // select-and-update, so two dispatchers never claim the same delivery.
            Backend::Sqlite => "",
        };
        let token = Uuid::new_v4().to_string();
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "UPDATE webhook_deliveries SET lease_token = $1, next_attempt_at = $2 \
             WHERE id IN (SELECT id FROM webhook_deliveries \
                          WHERE status = 'pending' AND next_attempt_at <= $3 \
                          ORDER BY next_attempt_at, created_at LIMIT $4 {lock}) \
             RETURNING {DELIVERY_COLS}"
        )))
        .bind(&token)
        .bind(to_db(until))
        .bind(to_db(at))
        .bind(limit.clamp(1, 1000))
        .fetch_all(&mut *tx)
        .await
        .map_err(db("claiming webhook deliveries"))?;
        let mut claimed = Vec::with_capacity(rows.len());
        let mut endpoints: Vec<WebhookEndpoint> = Vec::new();
        for row in &rows {
            let (delivery, body) = delivery_from(row)?;
            let endpoint = match endpoints.iter().find(|e| e.id == delivery.endpoint_id) {
                Some(endpoint) => endpoint.clone(),
                None => {
                    let row = sqlx::query(AssertSqlSafe(format!(
                        "SELECT {ENDPOINT_COLS} FROM webhook_endpoints WHERE id = $1"
                    )))
                    .bind(&delivery.endpoint_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db("reading a webhook endpoint"))?;
                    let endpoint = endpoint_from(&row)?;
                    endpoints.push(endpoint.clone());
                    endpoint
                }
            };
            claimed.push(ClaimedDelivery {
                delivery,
                body,
                url: endpoint.url,
                stored_secret: endpoint.stored_secret,
                lease_token: token.clone(),
            });
        }
        tx.commit()
            .await
            .map_err(db("committing a webhook claim"))?;
        // Oldest first: one endpoint's events are sent in the order they happened.
        claimed.sort_by(|a, b| {
            (a.delivery.created_at, &a.delivery.id).cmp(&(b.delivery.created_at, &b.delivery.id))
        });
        Ok(claimed)
    }

    /// Records how an attempt ended, if `lease_token` still holds the delivery and it is still
    /// pending; `false` otherwise (nothing written).
    pub async fn finish_webhook_delivery(
        &self,
        id: &str,
        lease_token: &str,
        outcome: DeliveryOutcome,
    ) -> StoreResult<bool> {
        let at = to_db(now());
        let fence = "WHERE id = $1 AND lease_token = $2 AND status = 'pending'";
        let query = match &outcome {
            DeliveryOutcome::Delivered { status_code } => sqlx::query(AssertSqlSafe(format!(
                "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, \
                   last_status_code = $3, last_error = NULL, last_attempt_at = $4, \
                   delivered_at = $4, lease_token = NULL {fence}"
            )))
            .bind(id)
            .bind(lease_token)
            .bind(*status_code)
            .bind(&at),
            DeliveryOutcome::Retry {
                at: next,
                status_code,
                error,
            } => sqlx::query(AssertSqlSafe(format!(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $5, \
                   last_status_code = $3, last_error = $6, last_attempt_at = $4, \
                   lease_token = NULL {fence}"
            )))
            .bind(id)
            .bind(lease_token)
            .bind(*status_code)
            .bind(&at)
            .bind(to_db(*next))
            .bind(error),
            DeliveryOutcome::Failed { status_code, error } => sqlx::query(AssertSqlSafe(format!(
                "UPDATE webhook_deliveries SET status = 'failed', attempts = attempts + 1, \
                   last_status_code = $3, last_error = $5, last_attempt_at = $4, \
                   lease_token = NULL {fence}"
            )))
            .bind(id)
            .bind(lease_token)
            .bind(*status_code)
            .bind(&at)
            .bind(error),
            DeliveryOutcome::Released { at: next } => sqlx::query(AssertSqlSafe(format!(
                "UPDATE webhook_deliveries SET next_attempt_at = $3, lease_token = NULL {fence}"
            )))
            .bind(id)
            .bind(lease_token)
            .bind(to_db(*next)),
        };
        let done = query
            .execute(self.pool())
            .await
            .map_err(db("recording a webhook attempt"))?;
        Ok(done.rows_affected() == 1)
    }
}
