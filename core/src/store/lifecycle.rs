//! The statements a request's lifecycle runs inside the transaction of a change, shared by
//! the request operations ([`super::requests`]) and the queue's ([`super::jobs`]): a status
//! transition with its event, audit entry and webhook outbox rows, a job's insert, the cancel
//! of a job that has not started, and the batch read of requests.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::{AnyConnection, AssertSqlSafe};
use uuid::Uuid;

use super::audit_chain::append_audit_in;
use super::db::{WriteTx, db, fetch_in, now};
use super::rows::{REQUEST_COLS, corrupt, get_os, get_s, request_from};
use super::{NewJob, PrivacyRequest, StoreError, StoreResult, Transition};
use crate::domain::{RequestStatus, to_db};

pub(super) async fn transition_in(
    tx: &mut WriteTx,
    id: &str,
    t: Transition,
) -> StoreResult<PrivacyRequest> {
    if t.forget_subject.is_some() {
        tx.erases_personal_data();
    }
    let conn: &mut AnyConnection = tx;
    let allowed: Vec<&str> = RequestStatus::ALL
        .into_iter()
        .filter(|from| from.can_become(t.to))
        .map(RequestStatus::as_str)
        .collect();
    let in_list = allowed
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let at = to_db(now());
    let finished = matches!(
        t.to,
        RequestStatus::Completed
            | RequestStatus::PartiallyCompleted
            | RequestStatus::Failed
            | RequestStatus::Cancelled
    );
    if t.to == RequestStatus::Cancelled {
        cancel_unstarted_job_in(conn, id, &at).await?;
    }
    let sql = format!(
        "UPDATE requests SET status = $1, updated_at = $2, \
           decided_by = CASE WHEN $3 = 1 THEN $4 ELSE decided_by END, \
           decided_at = CASE WHEN $3 = 1 THEN $2 ELSE decided_at END, \
           decision_reason = COALESCE($5, decision_reason), \
           completed_at = CASE WHEN $6 = 1 THEN $2 ELSE completed_at END, \
           result = COALESCE($7, result), error = COALESCE($8, error), \
           export_path = COALESCE($9, export_path), \
           cooling_off_until = COALESCE($11, cooling_off_until), \
           export_expires_at = COALESCE($12, export_expires_at) \
         WHERE id = $10 AND status IN ({in_list}) \
           AND ($13 = 0 OR key_destroyed_at IS NULL) RETURNING {REQUEST_COLS}"
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(t.to.as_str())
        .bind(&at)
        .bind(i64::from(t.decision))
        .bind(&t.actor)
        .bind(&t.decision_reason)
        .bind(i64::from(finished))
        .bind(t.result.as_ref().map(Value::to_string))
        .bind(&t.error)
        .bind(&t.export_path)
        .bind(id)
        .bind(t.cooling_off_until.map(to_db))
        .bind(t.export_expires_at.map(to_db))
        .bind(i64::from(t.to == RequestStatus::Cancelled))
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("changing a request's status"))?;
    let Some(row) = row else {
        let current = sqlx::query("SELECT status, key_destroyed_at FROM requests WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("reading a request's status"))?;
        return Err(match current {
            None => StoreError::NotFound {
                entity: "request",
                id: id.to_string(),
            },
            Some(row)
                if t.to == RequestStatus::Cancelled
                    && get_os(&row, "requests", "key_destroyed_at")?.is_some() =>
            {
                StoreError::KeyDestroyed(id.to_string())
            }
            Some(row) => StoreError::InvalidTransition {
                from: RequestStatus::parse(&get_s(&row, "requests", "status")?)
                    .map_err(|e| corrupt("requests", e))?,
                to: t.to,
            },
        });
    };
    let request = request_from(&row)?;
    super::webhooks::enqueue_status_change_in(conn, &request).await?;
    insert_event_in(conn, id, t.to, &t.actor, t.note.as_deref()).await?;
    if let Some(job) = &t.enqueue {
        insert_job_in(conn, job, None).await?;
    }
    if let Some(subject_ref) = &t.forget_jurisdiction_of {
        sqlx::query("DELETE FROM subject_jurisdictions WHERE subject_ref = $1")
            .bind(subject_ref)
            .execute(&mut *conn)
            .await
            .map_err(db("deleting an erased subject's jurisdiction"))?;
    }
    if let Some(forget) = &t.forget_subject {
        super::forget::forget_subject_in(conn, forget).await?;
    }
    append_audit_in(conn, t.audit).await?;
    Ok(request)
}

pub(super) async fn insert_event_in(
    conn: &mut AnyConnection,
    request_id: &str,
    status: RequestStatus,
    actor: &str,
    note: Option<&str>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO request_events (request_id, status, at, actor, note) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(request_id)
    .bind(status.as_str())
    .bind(to_db(now()))
    .bind(actor)
    .bind(note)
    .execute(&mut *conn)
    .await
    .map_err(db("recording request history"))?;
    Ok(())
}

pub(super) async fn insert_job_in(
    conn: &mut AnyConnection,
    job: &NewJob,
    parent_id: Option<&str>,
) -> StoreResult<String> {
    let id = Uuid::new_v4().to_string();
    let t = to_db(now());
    sqlx::query(
        "INSERT INTO jobs (id, kind, request_id, parent_id, payload, status, attempts, max_attempts, run_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $7, $4, 'queued', 0, $5, $8, $6, $6)",
    )
    .bind(&id)
    .bind(job.kind.as_str())
    .bind(&job.request_id)
    .bind(job.payload.to_string())
    .bind(i64::from(job.max_attempts))
    .bind(&t)
    .bind(parent_id)
    .bind(job.run_at.map(to_db).unwrap_or_else(|| t.clone()))
    .execute(&mut *conn)
    .await
    .map_err(db("enqueueing a job"))?;
    Ok(id)
}

/// Before a request is cancelled: an approved request's queued job is cancelled with it; if its
/// job already left the queue (claimed, or absorbed into an erasure batch) the cancellation is
/// refused as an invalid transition (too late).
pub(super) async fn cancel_unstarted_job_in(
    conn: &mut AnyConnection,
    id: &str,
    at: &str,
) -> StoreResult<()> {
    let status = sqlx::query("SELECT status FROM requests WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("reading a request's status"))?;
    let Some(status) = status else {
        return Ok(());
    };
    let status = RequestStatus::parse(&get_s(&status, "requests", "status")?)
        .map_err(|e| corrupt("requests", e))?;
    if status != RequestStatus::Approved {
        return Ok(());
    }
    let cancelled = sqlx::query(
        "UPDATE jobs SET status = 'cancelled', updated_at = $1, last_error = 'request cancelled' \
         WHERE request_id = $2 AND status = 'queued'",
    )
    .bind(at)
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(db("cancelling a request's job"))?;
    if cancelled.rows_affected() == 0 {
        return Err(StoreError::InvalidTransition {
            from: RequestStatus::Running,
            to: RequestStatus::Cancelled,
        });
    }
    Ok(())
}

/// The requests named by `ids`, in that order, read in chunks of 500 ids (`IN` lists).
///
/// # Errors
/// [`StoreError::NotFound`] for an id with no request; database errors.
pub(super) async fn requests_in(
    conn: &mut AnyConnection,
    ids: &[String],
) -> StoreResult<Vec<PrivacyRequest>> {
    let mut found: HashMap<String, PrivacyRequest> = HashMap::with_capacity(ids.len());
    let rows = fetch_in(conn, &[], ids, 500, |list| {
        format!("SELECT {REQUEST_COLS} FROM requests WHERE id IN ({list})")
    })
    .await
    .map_err(db("reading requests"))?;
    for row in &rows {
        let request = request_from(row)?;
        found.insert(request.id.clone(), request);
    }
    ids.iter()
        .map(|id| {
            found.get(id).cloned().ok_or_else(|| StoreError::NotFound {
                entity: "request",
                id: id.clone(),
            })
        })
        .collect()
}
