//! Privacy requests: filing (with idempotency and the webhook outbox row), reads and listings,
//! the history of a request, status transitions, and the one-time claim of first-phase key
//! destruction.

use serde_json::Value;
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::audit_chain::append_audit_in;
use super::db::{Store, db, now};
use super::lifecycle::{insert_event_in, requests_in, transition_in};
use super::rows::{REQUEST_COLS, corrupt, final_statuses_sql, get_os, get_s, get_ts, request_from};
use super::{DeadlineExtension, ForgetSubject, NewJob, StoreResult};
use crate::audit::NewAuditEntry;
use crate::domain::RequestType;
use crate::domain::Timestamp;
use crate::domain::{RequestStatus, SubjectId, due_date, to_db};
use serde::Deserialize;
use serde::Serialize;

/// A privacy request (data subject request, DSR).
#[derive(Debug, Clone)]
pub struct PrivacyRequest {
    /// UUID.
    pub id: String,
    /// The right exercised.
    pub request_type: RequestType,
    /// The data subject (personal data: never log it).
    pub subject_id: SubjectId,
    /// Keyed pseudonym of the subject, as used in the audit log.
    pub subject_pseudonym: String,
    /// Where it stands.
    pub status: RequestStatus,
    /// Who filed it (`user:<uuid>`).
    pub filed_by: String,
    /// For requests an admin files on a subject's behalf: how identity was verified.
    pub verification_note: Option<String>,
    /// The client's `Idempotency-Key`, if given.
    pub idempotency_key: Option<String>,
    /// When it was received.
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// When it must be answered: received + one calendar month (GDPR Art. 12(3)), or the
    /// extended deadline once [`PrivacyRequest::extension`] is set.
    pub due_at: chrono::DateTime<chrono::Utc>,
    /// The one extension of the deadline, if an admin granted it (GDPR Art. 12(3)).
    pub extension: Option<DeadlineExtension>,
    /// Admin who approved or rejected it.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Reason given on rejection (shown to the subject, GDPR Art. 12(4)).
    pub decision_reason: Option<String>,
    /// When it reached `completed` or `failed`.
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Outcome: per-dataset counts; for access, the export's manifest.
    pub result: Option<Value>,
    /// Last error when `failed`.
    pub error: Option<String>,
    /// Path of the export archive (access requests).
    pub export_path: Option<String>,
    /// Erasure: when the subject's data key was destroyed (the first phase; every copy of the
    /// encrypted PII is unreadable from then on).
    pub key_destroyed_at: Option<Timestamp>,
    /// Erasure: end of the cooling-off period during which the subject can still cancel it.
    pub cooling_off_until: Option<Timestamp>,
    /// Access: when the export stops being downloadable.
    pub export_expires_at: Option<Timestamp>,
    /// Access: when the expired export was deleted by the sweep.
    pub export_deleted_at: Option<Timestamp>,
    /// Type-specific parameters: for rectification the [`crate::domain::Rectification`]
    /// (dataset and new values: personal data, never audited).
    pub details: Option<Value>,
}

/// A request to file.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// The right exercised.
    pub request_type: RequestType,
    /// The data subject.
    pub subject_id: SubjectId,
    /// Its pseudonym.
    pub subject_pseudonym: String,
    /// Who files it.
    pub filed_by: String,
    /// How identity was verified (admin filings).
    pub verification_note: Option<String>,
    /// Client idempotency key.
    pub idempotency_key: Option<String>,
    /// Receipt time; the due date follows from it.
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// Type-specific parameters (rectification: the [`crate::domain::Rectification`]).
    pub details: Option<Value>,
}

/// Which requests to list.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Only this subject's requests.
    pub subject_id: Option<SubjectId>,
    /// Only requests in this status.
    pub status: Option<RequestStatus>,
    /// `Some(true)`: only open requests (not completed, rejected or failed) whose `due_at` has
    /// passed; `Some(false)`: only the others.
    pub overdue: Option<bool>,
    /// Only requests whose `due_at` is before this instant (any status).
    pub due_before: Option<Timestamp>,
    /// At most this many (default 100, max 1000).
    pub limit: Option<i64>,
    /// Skip this many.
    pub offset: Option<i64>,
}

/// One step of a request's history.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestEvent {
    /// Status entered.
    pub status: RequestStatus,
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Who moved it (`user:<uuid>`, `worker:<id>`).
    pub actor: String,
    /// Why, if said.
    pub note: Option<String>,
}

/// A change of a request's status and what comes with it.
#[derive(Debug, Clone)]
pub struct Transition {
    /// Status to enter.
    pub to: RequestStatus,
    /// Who moves it.
    pub actor: String,
    /// Note for the history (e.g. the rejection reason).
    pub note: Option<String>,
    /// Record `actor` and now as the decision (approve / reject).
    pub decision: bool,
    /// Decision reason (rejection).
    pub decision_reason: Option<String>,
    /// Result to store.
    pub result: Option<Value>,
    /// Error to store.
    pub error: Option<String>,
    /// Export archive path to store.
    pub export_path: Option<String>,
    /// A job to enqueue in the same transaction.
    pub enqueue: Option<NewJob>,
    /// End of an erasure's cooling-off period to record (approval).
    pub cooling_off_until: Option<Timestamp>,
    /// Expiry of the export to record (completion of an access request).
    pub export_expires_at: Option<Timestamp>,
    /// Keyed subject reference whose recorded jurisdiction to delete in the same transaction
    /// (a completed erasure: nothing of the subject is left whose residency would matter).
    pub forget_jurisdiction_of: Option<String>,
    /// A completed erasure: from now on Lethe's own database names this subject only by
    /// pseudonym (requests, account links, the restricted list).
    pub forget_subject: Option<ForgetSubject>,
    /// The audit entry for this change.
    pub audit: NewAuditEntry,
}

impl Transition {
    /// A bare transition to `to` by `actor`, audited by `audit`.
    pub fn new(to: RequestStatus, actor: impl Into<String>, audit: NewAuditEntry) -> Self {
        Self {
            to,
            actor: actor.into(),
            note: None,
            decision: false,
            decision_reason: None,
            result: None,
            error: None,
            export_path: None,
            enqueue: None,
            cooling_off_until: None,
            export_expires_at: None,
            forget_jurisdiction_of: None,
            forget_subject: None,
            audit,
        }
    }
}

impl Store {
    /// Files a request in status `received` with its first history event. When
    /// `idempotency_key` repeats a key the same filer used before, returns the earlier request
    /// and `false` instead of creating another.
    #[tracing::instrument(skip_all)]
    pub async fn create_request(
        &self,
        request: NewRequest,
        audit: NewAuditEntry,
    ) -> StoreResult<(PrivacyRequest, bool)> {
        if let Some(key) = &request.idempotency_key {
            let existing = sqlx::query(AssertSqlSafe(format!(
                "SELECT {REQUEST_COLS} FROM requests WHERE filed_by = $1 AND idempotency_key = $2"
            )))
            .bind(&request.filed_by)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("looking up an idempotency key"))?;
            if let Some(row) = existing {
                return Ok((request_from(&row)?, false));
            }
        }
        let id = Uuid::new_v4().to_string();
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO requests (id, request_type, subject_id, subject_pseudonym, status, filed_by, \
               verification_note, idempotency_key, received_at, due_at, updated_at, details) \
             VALUES ($1, $2, $3, $4, 'received', $5, $6, $7, $8, $9, $8, $10) RETURNING {REQUEST_COLS}"
        )))
        .bind(&id)
        .bind(request.request_type.as_str())
        .bind(request.subject_id.as_str())
        .bind(&request.subject_pseudonym)
        .bind(&request.filed_by)
        .bind(&request.verification_note)
        .bind(&request.idempotency_key)
        .bind(to_db(request.received_at))
        .bind(to_db(due_date(request.received_at)))
        .bind(request.details.as_ref().map(Value::to_string))
        .fetch_one(&mut *tx)
        .await;
        let row = match inserted {
            Ok(row) => row,
            // A concurrent request with the same idempotency key won the race: return it.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                drop(tx);
                let row = sqlx::query(AssertSqlSafe(format!(
                    "SELECT {REQUEST_COLS} FROM requests WHERE filed_by = $1 AND idempotency_key = $2"
                )))
                .bind(&request.filed_by)
                .bind(&request.idempotency_key)
                .fetch_one(&self.pool)
                .await
                .map_err(db("reading a request by idempotency key"))?;
                return Ok((request_from(&row)?, false));
            }
            Err(e) => return Err(db("filing a request")(e)),
        };
        let created = request_from(&row)?;
        super::webhooks::enqueue_status_change_in(&mut tx, &created).await?;
        insert_event_in(
            &mut tx,
            &id,
            RequestStatus::Received,
            &request.filed_by,
            None,
        )
        .await?;
        append_audit_in(&mut tx, audit.request(&id)).await?;
        tx.commit().await.map_err(db("committing a request"))?;
        Ok((created, true))
    }

    /// The request with that id; `NotFound` otherwise.
    pub async fn request(&self, id: &str) -> StoreResult<PrivacyRequest> {
        self.by_id(
            format!("SELECT {REQUEST_COLS} FROM requests WHERE id = $1"),
            id,
            "request",
            "reading a request",
            request_from,
        )
        .await
    }

    /// The requests with these ids, in the order given, read in one query per 500 ids (an
    /// erasure batch's members are read by every one of its file tasks); `NotFound` naming
    /// the first id that does not exist.
    pub async fn requests(&self, ids: &[String]) -> StoreResult<Vec<PrivacyRequest>> {
        let mut conn = self.pool.acquire().await.map_err(db("reading requests"))?;
        requests_in(&mut conn, ids).await
    }

    /// Requests matching the filter, newest first.
    pub async fn list_requests(&self, filter: &RequestFilter) -> StoreResult<Vec<PrivacyRequest>> {
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        let offset = filter.offset.unwrap_or(0).max(0);
        let finished = final_statuses_sql();
        // A plain `subject_id = $1` when a subject is given: the planners (SQLite's above all)
        // use the `requests_subject` index for it, not for `$1 IS NULL OR …`.
        let subject = if filter.subject_id.is_some() {
            "subject_id = $1"
        } else {
            "$1 IS NULL"
        };
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {REQUEST_COLS} FROM requests \
             WHERE {subject} AND ($2 IS NULL OR status = $2) \
               AND ($5 IS NULL OR due_at < $5) \
               AND ($6 IS NULL OR $6 = CASE WHEN status NOT IN ({finished}) AND due_at < $7 \
                                            THEN 1 ELSE 0 END) \
             ORDER BY received_at DESC, id LIMIT $3 OFFSET $4"
        )))
        .bind(filter.subject_id.as_ref().map(SubjectId::as_str))
        .bind(filter.status.map(RequestStatus::as_str))
        .bind(limit)
        .bind(offset)
        .bind(filter.due_before.map(to_db))
        .bind(filter.overdue.map(i64::from))
        .bind(to_db(now()))
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing requests"))?
        .iter()
        .map(request_from)
        .collect()
    }

    /// The status history of a request, oldest first.
    pub async fn request_history(&self, id: &str) -> StoreResult<Vec<RequestEvent>> {
        let rows = sqlx::query(
            "SELECT status, at, actor, note FROM request_events WHERE request_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading request history"))?;
        rows.iter()
            .map(|row| {
                let t = "request_events";
                Ok(RequestEvent {
                    status: RequestStatus::parse(&get_s(row, t, "status")?)
                        .map_err(|e| corrupt(t, e))?,
                    at: get_ts(row, t, "at")?,
                    actor: get_s(row, t, "actor")?,
                    note: get_os(row, t, "note")?,
                })
            })
            .collect()
    }

    /// Moves a request to `transition.to` if its current status allows it
    /// ([`RequestStatus::can_become`]), records the history event, optionally enqueues a job,
    /// and appends the audit entry — all in one transaction.
    #[tracing::instrument(skip_all, fields(request_id = %id, to = ?transition.to))]
    pub async fn transition_request(
        &self,
        id: &str,
        transition: Transition,
    ) -> StoreResult<PrivacyRequest> {
        let mut tx = self.begin_write().await?;
        let request = transition_in(&mut tx, id, transition).await?;
        tx.commit()
            .await
            .map_err(db("committing a status change"))?;
        Ok(request)
    }

    /// Claims the destruction of erasure request `request_id`'s data key, before the key is
    /// destroyed: records now as its `key_destroyed_at` unless that is recorded already or the
    /// request was cancelled or rejected. From then on the request can no longer be cancelled
    /// (a cancellation after the key is gone would leave a cancelled request whose subject is
    /// erased). `true` when this call claimed it.
    pub async fn claim_key_destruction(&self, request_id: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE requests SET key_destroyed_at = $1, updated_at = $1 \
             WHERE id = $2 AND key_destroyed_at IS NULL AND status NOT IN ('cancelled', 'rejected')",
        )
        .bind(to_db(now()))
        .bind(request_id)
        .execute(&mut *tx)
        .await
        .map_err(db("claiming a key destruction"))?;
        tx.commit()
            .await
            .map_err(db("committing a key destruction claim"))?;
        Ok(done.rows_affected() == 1)
    }

    /// How many requests of `request_type` `subject` has open (not completed, rejected or
    /// failed), and whether one of them carries idempotency `key`. One count on the
    /// `requests_subject` index, whatever the size of the table (filing calls it each time).
    pub async fn open_requests_of(
        &self,
        subject: &SubjectId,
        request_type: RequestType,
        key: Option<&str>,
    ) -> StoreResult<(u64, bool)> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n, \
                    COALESCE(SUM(CASE WHEN idempotency_key = $3 THEN 1 ELSE 0 END), 0) AS retry \
             FROM requests \
             WHERE subject_id = $1 AND request_type = $2 AND status NOT IN ({})",
            final_statuses_sql()
        )))
        .bind(subject.as_str())
        .bind(request_type.as_str())
        .bind(key)
        .fetch_one(&self.pool)
        .await
        .map_err(db("counting a subject's open requests"))?;
        let n = row
            .try_get::<i64, _>("n")
            .map_err(|e| corrupt("requests", e))?;
        let retry = row
            .try_get::<i64, _>("retry")
            .map_err(|e| corrupt("requests", e))?;
        Ok((u64::try_from(n).unwrap_or(0), retry > 0))
    }

    /// How many requests are open (not completed, rejected or failed) past their due date.
    pub async fn overdue_requests(&self) -> StoreResult<i64> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM requests \
             WHERE status NOT IN ({}) AND due_at < $1",
            final_statuses_sql()
        )))
        .bind(to_db(now()))
        .fetch_one(&self.pool)
        .await
        .map_err(db("counting overdue requests"))?;
        row.try_get::<i64, _>("n")
            .map_err(|e| corrupt("requests", e))
    }
}
