//! [`Store`] on [`SqlStore`]: the trait's operations, and the statements several of them share
//! (a request's transition, a job's insert and end).

use async_trait::async_trait;
use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use uuid::Uuid;

use super::audit_chain::{append_audit_in, with_detail};
use super::db::*;
use super::rows::*;
use super::*;
use crate::audit::{AuditEntry, NewAuditEntry};
use crate::domain::{RequestStatus, Role, SubjectId, Timestamp, due_date, to_db};

async fn insert_job_in(
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

async fn insert_event_in(
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

async fn transition_in(
    conn: &mut AnyConnection,
    id: &str,
    t: Transition,
) -> StoreResult<PrivacyRequest> {
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

/// Before a request is cancelled: an approved request's queued job is cancelled with it; if its
/// job already left the queue (claimed, or absorbed into an erasure batch) the cancellation is
/// refused as an invalid transition (too late).
async fn cancel_unstarted_job_in(conn: &mut AnyConnection, id: &str, at: &str) -> StoreResult<()> {
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

fn job_state_error(job: &Job, action: &'static str) -> StoreError {
    StoreError::InvalidJobState {
        status: job.status.as_str(),
        action,
    }
}

/// The requests named by `ids`, in that order, read in chunks of 500 ids (`IN` lists).
///
/// # Errors
/// [`StoreError::NotFound`] for an id with no request; database errors.
async fn requests_in(conn: &mut AnyConnection, ids: &[String]) -> StoreResult<Vec<PrivacyRequest>> {
    let mut found: HashMap<String, PrivacyRequest> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let params = (1..=chunk.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT {REQUEST_COLS} FROM requests WHERE id IN ({params})");
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(id.as_str());
        }
        for row in query
            .fetch_all(&mut *conn)
            .await
            .map_err(db("reading requests"))?
        {
            let request = request_from(&row)?;
            found.insert(request.id.clone(), request);
        }
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

/// Ends a job if `lease_token` still holds it. `false` when fenced.
async fn finish_in(
    conn: &mut AnyConnection,
    job_id: &str,
    lease_token: &str,
    finish: &JobFinish,
) -> StoreResult<bool> {
    let waits = matches!(finish.outcome, JobOutcome::Succeeded) && !finish.children.is_empty();
    let (status, run_at, error) = match &finish.outcome {
        JobOutcome::Succeeded if waits => ("waiting", None, None),
        JobOutcome::Succeeded => ("succeeded", None, None),
        JobOutcome::Retry { at, error } => ("queued", Some(to_db(*at)), Some(error.clone())),
        JobOutcome::Defer { at, reason } => ("queued", Some(to_db(*at)), Some(reason.clone())),
        JobOutcome::Failed { error } => ("failed", None, Some(error.clone())),
    };
    let done = sqlx::query(
        "UPDATE jobs SET status = $1, run_at = COALESCE($2, run_at), last_error = COALESCE($3, last_error), \
           result = COALESCE($7, result), lease_owner = NULL, lease_token = NULL, \
           lease_expires_at = NULL, updated_at = $4, attempts = attempts - $8 \
         WHERE id = $5 AND lease_token = $6 AND status = 'running'",
    )
    .bind(status)
    .bind(run_at)
    .bind(error)
    .bind(to_db(now()))
    .bind(job_id)
    .bind(lease_token)
    .bind(finish.result.as_ref().map(Value::to_string))
    // A deferred job gives its attempt back: it never ran.
    .bind(i64::from(matches!(finish.outcome, JobOutcome::Defer { .. })))
    .execute(&mut *conn)
    .await
    .map_err(db("finishing a job"))?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db("pinging the database"))?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn create_user(&self, user: NewUser, audit: NewAuditEntry) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO users (id, email, password_hash, role, created_at, email_verified_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {USER_COLS}"
        )))
        .bind(Uuid::new_v4().to_string())
        .bind(user.email.as_str())
        .bind(&user.password_hash)
        .bind(user.role.as_str())
        .bind(to_db(now()))
        // Admins and auditors are created by an operator; a subject proves their e-mail.
        .bind((user.role != Role::Subject).then(|| to_db(now())))
        .fetch_one(&mut *tx)
        .await
        .map_err(db("creating an account"))?;
        let created = user_from(&row)?;
        append_audit_in(&mut tx, with_detail(audit, "user_id", &created.id)).await?;
        tx.commit().await.map_err(db("committing an account"))?;
        Ok(created)
    }

    async fn user_by_email(&self, email: &Email) -> StoreResult<Option<User>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users WHERE email = $1"
        )))
        .bind(email.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db("looking up an account"))?
        .as_ref()
        .map(user_from)
        .transpose()
    }

    async fn user(&self, id: &str) -> StoreResult<User> {
        self.by_id(
            format!("SELECT {USER_COLS} FROM users WHERE id = $1"),
            id,
            "user",
            "reading an account",
            user_from,
        )
        .await
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.all(
            format!("SELECT {USER_COLS} FROM users ORDER BY created_at, id"),
            "listing accounts",
            user_from,
        )
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn set_email_code(
        &self,
        user_id: &str,
        code_hash: &str,
        expires_at: Timestamp,
    ) -> StoreResult<()> {
        self.set_email_code_impl(user_id, code_hash, expires_at)
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn check_email_code(
        &self,
        user_id: &str,
        code_hash: &str,
        max_attempts: u32,
        audit: NewAuditEntry,
    ) -> StoreResult<EmailCodeOutcome> {
        self.check_email_code_impl(user_id, code_hash, max_attempts, audit)
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn start_refresh_family(&self, token: NewRefreshToken) -> StoreResult<String> {
        self.start_refresh_family_impl(token).await
    }

    #[tracing::instrument(skip_all)]
    async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        next_hash: &str,
        next_expires_at: Timestamp,
    ) -> StoreResult<RefreshOutcome> {
        self.rotate_refresh_token_impl(token_hash, next_hash, next_expires_at)
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn end_sessions(&self, user_id: &str, audit: NewAuditEntry) -> StoreResult<User> {
        self.change_account_impl(user_id, super::accounts::AccountChange::Epoch, audit)
            .await
    }

    async fn set_password(
        &self,
        user_id: &str,
        password_hash: String,
        audit: NewAuditEntry,
    ) -> StoreResult<User> {
        self.change_account_impl(
            user_id,
            super::accounts::AccountChange::Password(password_hash),
            audit,
        )
        .await
    }

    async fn set_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        audit: NewAuditEntry,
    ) -> StoreResult<User> {
        self.change_account_impl(
            user_id,
            super::accounts::AccountChange::Disabled(disabled),
            audit,
        )
        .await
    }

    async fn link_subject(
        &self,
        user_id: &str,
        subject: &SubjectId,
        audit: NewAuditEntry,
    ) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE users SET subject_id = $1 WHERE id = $2 RETURNING {USER_COLS}"
        )))
        .bind(subject.as_str())
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("linking an account to a subject"))?;
        let Some(row) = row else {
            return Err(StoreError::NotFound {
                entity: "user",
                id: user_id.to_string(),
            });
        };
        let user = user_from(&row)?;
        append_audit_in(&mut tx, audit).await?;
        tx.commit().await.map_err(db("committing a subject link"))?;
        Ok(user)
    }

    #[tracing::instrument(skip_all)]
    async fn create_dataset(
        &self,
        dataset: NewDataset,
        audit: NewAuditEntry,
    ) -> StoreResult<Dataset> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO datasets (id, name, root_url, subject_column, partition_columns, created_by, created_at, schema_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {DATASET_COLS}"
        )))
        .bind(Uuid::new_v4().to_string())
        .bind(&dataset.name)
        .bind(&dataset.root_url)
        .bind(&dataset.subject_column)
        .bind(serde_json::to_string(&dataset.partition_columns).expect("strings serialise"))
        .bind(&dataset.created_by)
        .bind(to_db(now()))
        .bind(
            dataset
                .schema
                .as_ref()
                .map(|s| serde_json::to_string(s).expect("schema serialises")),
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db("registering a dataset"))?;
        let created = dataset_from(&row)?;
        append_audit_in(&mut tx, with_detail(audit, "dataset_id", &created.id)).await?;
        tx.commit().await.map_err(db("committing a dataset"))?;
        Ok(created)
    }

    #[tracing::instrument(skip_all)]
    async fn delete_dataset(&self, id: &str, audit: NewAuditEntry) -> StoreResult<Dataset> {
        self.delete_dataset_impl(id, audit).await
    }

    async fn list_datasets(&self) -> StoreResult<Vec<Dataset>> {
        self.all(
            format!("SELECT {DATASET_COLS} FROM datasets WHERE deleted_at IS NULL ORDER BY name"),
            "listing datasets",
            dataset_from,
        )
        .await
    }

    async fn dataset(&self, id: &str) -> StoreResult<Dataset> {
        self.by_id(
            format!("SELECT {DATASET_COLS} FROM datasets WHERE id = $1 AND deleted_at IS NULL"),
            id,
            "dataset",
            "reading a dataset",
            dataset_from,
        )
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn create_api_token(
        &self,
        token: NewApiToken,
        audit: NewAuditEntry,
    ) -> StoreResult<ApiToken> {
        self.create_api_token_impl(token, audit).await
    }

    async fn api_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<ApiToken>> {
        self.api_token_by_hash_impl(token_hash).await
    }

    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        self.list_api_tokens_impl().await
    }

    #[tracing::instrument(skip_all, fields(token_id = %id))]
    async fn revoke_api_token(&self, id: &str, audit: NewAuditEntry) -> StoreResult<ApiToken> {
        self.revoke_api_token_impl(id, audit).await
    }

    #[tracing::instrument(skip_all)]
    async fn create_request(
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

    async fn request(&self, id: &str) -> StoreResult<PrivacyRequest> {
        self.by_id(
            format!("SELECT {REQUEST_COLS} FROM requests WHERE id = $1"),
            id,
            "request",
            "reading a request",
            request_from,
        )
        .await
    }

    async fn requests(&self, ids: &[String]) -> StoreResult<Vec<PrivacyRequest>> {
        let mut conn = self.pool.acquire().await.map_err(db("reading requests"))?;
        requests_in(&mut conn, ids).await
    }

    async fn list_requests(&self, filter: &RequestFilter) -> StoreResult<Vec<PrivacyRequest>> {
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        let offset = filter.offset.unwrap_or(0).max(0);
        let finished = final_statuses_sql();
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {REQUEST_COLS} FROM requests \
             WHERE ($1 IS NULL OR subject_id = $1) AND ($2 IS NULL OR status = $2) \
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

    async fn request_history(&self, id: &str) -> StoreResult<Vec<RequestEvent>> {
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

    #[tracing::instrument(skip_all, fields(request_id = %id, to = ?transition.to))]
    async fn transition_request(
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

    #[tracing::instrument(skip_all, fields(request_id = %id))]
    async fn extend_deadline(
        &self,
        id: &str,
        extension: NewExtension,
        audit: NewAuditEntry,
    ) -> StoreResult<PrivacyRequest> {
        self.extend_deadline_impl(id, extension, audit).await
    }

    async fn register_page(&self, filter: &RegisterFilter) -> StoreResult<Vec<RegisterEntry>> {
        self.register_page_impl(filter).await
    }

    #[tracing::instrument(skip_all, fields(worker = %worker))]
    async fn claim_job(&self, worker: &str, lease: Duration) -> StoreResult<Option<Job>> {
        // Erasure plans first, one at a time across all workers: a plan batches every due
        // erasure, so two plans running at once would rewrite the same files twice.
        let plan_free = "kind = 'erasure' AND NOT EXISTS (SELECT 1 FROM jobs AS p \
             WHERE p.kind = 'erasure' AND p.status = 'running' AND p.lease_expires_at >= $4)";
        let runnable_plan = format!(
            "{plan_free} AND ((status = 'queued' AND run_at <= $4) \
             OR (status = 'running' AND lease_expires_at < $4))"
        );
        if let Some(job) = self
            .claim_where(worker, lease, &runnable_plan, true)
            .await?
        {
            return Ok(Some(job));
        }
        // A task or export whose worker died (its lease expired), then the oldest due one. Two
        // simple conditions rather than one OR, so each is an index range scan.
        let expired = "kind <> 'erasure' AND status = 'running' AND lease_expires_at < $4";
        if let Some(job) = self.claim_where(worker, lease, expired, false).await? {
            return Ok(Some(job));
        }
        let due = "kind <> 'erasure' AND status = 'queued' AND run_at <= $4";
        self.claim_where(worker, lease, due, false).await
    }

    async fn heartbeat_job(
        &self,
        job_id: &str,
        lease_token: &str,
        lease: Duration,
    ) -> StoreResult<bool> {
        let at = now();
        let expires = at + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let done = sqlx::query(
            "UPDATE jobs SET lease_expires_at = $1, updated_at = $2 \
             WHERE id = $3 AND lease_token = $4 AND status = 'running'",
        )
        .bind(to_db(expires))
        .bind(to_db(at))
        .bind(job_id)
        .bind(lease_token)
        .execute(&self.pool)
        .await
        .map_err(db("extending a job lease"))?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all, fields(job_id = %job_id))]
    async fn finish_job(
        &self,
        job_id: &str,
        lease_token: &str,
        finish: JobFinish,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        if !finish_in(&mut tx, job_id, lease_token, &finish).await? {
            // Fenced: another worker took the job over; write nothing.
            return Ok(false);
        }
        for child in &finish.children {
            insert_job_in(&mut tx, child, Some(job_id)).await?;
        }
        let mut first = true;
        for (request_id, transition) in finish.requests {
            match transition_in(&mut tx, &request_id, transition).await {
                Ok(_) => {}
                // A batch member that is already final stays so; the job's own request (first)
                // must move.
                Err(StoreError::InvalidTransition { .. }) if !first => {}
                Err(e) => return Err(e),
            }
            first = false;
        }
        if let Some(audit) = finish.audit {
            append_audit_in(&mut tx, audit).await?;
        }
        tx.commit().await.map_err(db("committing a job outcome"))?;
        Ok(true)
    }

    #[tracing::instrument(skip_all, fields(job_id = %job_id))]
    async fn finish_task(
        &self,
        job_id: &str,
        lease_token: &str,
        finish: JobFinish,
        decide: &SiblingsDecision<'_>,
    ) -> StoreResult<bool> {
        let task = self.job(job_id).await?;
        let Some(parent_id) = task.parent_id.clone() else {
            return self.finish_job(job_id, lease_token, finish).await;
        };
        let mut tx = self.begin_write().await?;
        // Lock the plan first: siblings finishing at the same time queue up here, so exactly
        // one of them sees the last task done.
        sqlx::query("UPDATE jobs SET updated_at = $1 WHERE id = $2")
            .bind(to_db(now()))
            .bind(&parent_id)
            .execute(&mut *tx)
            .await
            .map_err(db("locking a plan"))?;
        if !finish_in(&mut tx, job_id, lease_token, &finish).await? {
            return Ok(false);
        }
        if let Some(audit) = finish.audit {
            append_audit_in(&mut tx, audit).await?;
        }
        // Most tasks end while siblings still run: counting statuses is enough to know that,
        // and the plan, its tasks and its requests are read only when it ends.
        let mut succeeded = 0i64;
        let mut total = 0i64;
        let mut failed = false;
        for row in sqlx::query(
            "SELECT status, COUNT(*) AS n FROM jobs WHERE parent_id = $1 GROUP BY status",
        )
        .bind(&parent_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("counting a plan's tasks"))?
        {
            let status: String = row
                .try_get("status")
                .map_err(db("counting a plan's tasks"))?;
            let n: i64 = row.try_get("n").map_err(db("counting a plan's tasks"))?;
            total += n;
            match status.as_str() {
                "succeeded" => succeeded += n,
                "failed" | "cancelled" => failed = true,
                _ => {}
            }
        }
        let all_done = succeeded == total;
        if all_done || failed {
            let parent = sqlx::query(AssertSqlSafe(format!(
                "SELECT {JOB_COLS} FROM jobs WHERE id = $1"
            )))
            .bind(&parent_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db("reading a plan"))?;
            let parent = job_from(&parent)?;
            let children: Vec<Job> = sqlx::query(AssertSqlSafe(format!(
                "SELECT {JOB_COLS} FROM jobs WHERE parent_id = $1 ORDER BY created_at, id"
            )))
            .bind(&parent_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("reading a plan's tasks"))?
            .iter()
            .map(job_from)
            .collect::<StoreResult<_>>()?;
            if parent.status == JobStatus::Waiting {
                sqlx::query("UPDATE jobs SET status = $1, updated_at = $2 WHERE id = $3")
                    .bind(if all_done { "succeeded" } else { "failed" })
                    .bind(to_db(now()))
                    .bind(&parent_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("ending a plan"))?;
            }
            let members = requests_in(&mut tx, &parent.batch()).await?;
            for (request_id, transition) in decide(&parent, &children, &members) {
                match transition_in(&mut tx, &request_id, transition).await {
                    Ok(_) | Err(StoreError::InvalidTransition { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        tx.commit().await.map_err(db("committing a task outcome"))?;
        Ok(true)
    }

    #[tracing::instrument(skip_all, fields(job_id = %plan_id))]
    async fn absorb_erasure_plans(
        &self,
        plan_id: &str,
        lease_token: &str,
    ) -> StoreResult<Option<Vec<String>>> {
        let mut tx = self.begin_write().await?;
        let at = to_db(now());
        let held = sqlx::query(AssertSqlSafe(format!(
            "UPDATE jobs SET updated_at = $1 WHERE id = $2 AND lease_token = $3 AND status = 'running' \
             RETURNING {JOB_COLS}"
        )))
        .bind(&at)
        .bind(plan_id)
        .bind(lease_token)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("locking an erasure plan"))?;
        let Some(plan) = held.as_ref().map(job_from).transpose()? else {
            return Ok(None);
        };
        let mut batch: Vec<String> = plan.payload["batch"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(own) = plan.request_id.as_ref().filter(|own| !batch.contains(own)) {
            batch.insert(0, own.clone());
        }
        let merged = sqlx::query(
            "UPDATE jobs SET status = 'succeeded', result = $1, updated_at = $2 \
             WHERE kind = 'erasure' AND status = 'queued' AND id <> $3 \
               AND (request_id IS NULL OR request_id NOT IN \
                    (SELECT id FROM requests WHERE cooling_off_until > $2)) \
             RETURNING request_id",
        )
        .bind(json!({ "merged_into": plan_id }).to_string())
        .bind(&at)
        .bind(plan_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("merging erasure plans"))?;
        for row in &merged {
            if let Some(id) = get_os(row, "jobs", "request_id")?.filter(|id| !batch.contains(id)) {
                batch.push(id);
            }
        }
        let mut payload = plan.payload.clone();
        if !payload.is_object() {
            payload = json!({});
        }
        payload["batch"] = json!(batch);
        sqlx::query("UPDATE jobs SET payload = $1 WHERE id = $2")
            .bind(payload.to_string())
            .bind(plan_id)
            .execute(&mut *tx)
            .await
            .map_err(db("recording an erasure batch"))?;
        tx.commit()
            .await
            .map_err(db("committing an erasure batch"))?;
        Ok(Some(batch))
    }

    async fn enqueue_job(&self, job: NewJob, audit: NewAuditEntry) -> StoreResult<Job> {
        let mut tx = self.begin_write().await?;
        let id = insert_job_in(&mut tx, &job, None).await?;
        append_audit_in(&mut tx, with_detail(audit, "job_id", &id)).await?;
        tx.commit().await.map_err(db("committing a job"))?;
        self.job(&id).await
    }

    async fn job(&self, id: &str) -> StoreResult<Job> {
        self.by_id(
            format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"),
            id,
            "job",
            "reading a job",
            job_from,
        )
        .await
    }

    async fn child_jobs(&self, parent_id: &str) -> StoreResult<Vec<Job>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLS} FROM jobs WHERE parent_id = $1 ORDER BY created_at, id"
        )))
        .bind(parent_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing a plan's tasks"))?
        .iter()
        .map(job_from)
        .collect()
    }

    async fn list_jobs(&self, status: Option<JobStatus>, limit: i64) -> StoreResult<Vec<Job>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLS} FROM jobs WHERE ($1 IS NULL OR status = $1) \
             ORDER BY created_at DESC, id LIMIT $2"
        )))
        .bind(status.map(JobStatus::as_str))
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing jobs"))?
        .iter()
        .map(job_from)
        .collect()
    }

    #[tracing::instrument(skip_all, fields(job_id = %id))]
    async fn retry_job(&self, id: &str, audit: NewAuditEntry) -> StoreResult<Job> {
        let mut tx = self.begin_write().await?;
        let at = to_db(now());
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE jobs SET status = 'queued', attempts = 0, run_at = $1, updated_at = $1 \
             WHERE id = $2 AND status IN ('failed', 'cancelled') RETURNING {JOB_COLS}"
        )))
        .bind(&at)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("retrying a job"))?;
        let job = match row {
            Some(row) => job_from(&row)?,
            None => return Err(job_state_error(&self.job(id).await?, "retry")),
        };
        if let Some(parent) = &job.parent_id {
            sqlx::query("UPDATE jobs SET status = 'waiting', updated_at = $1 WHERE id = $2 AND status IN ('failed', 'cancelled')")
                .bind(&at)
                .bind(parent)
                .execute(&mut *tx)
                .await
                .map_err(db("reopening a plan"))?;
        }
        if let Some(request_id) = &job.request_id {
            let reopen =
                Transition::new(RequestStatus::Running, audit.actor.clone(), audit.clone());
            match transition_in(&mut tx, request_id, reopen).await {
                Ok(_) => {}
                Err(StoreError::InvalidTransition { .. }) => {
                    append_audit_in(&mut tx, audit).await?;
                }
                Err(e) => return Err(e),
            }
        } else {
            append_audit_in(&mut tx, audit).await?;
        }
        tx.commit().await.map_err(db("committing a job retry"))?;
        Ok(job)
    }

    #[tracing::instrument(skip_all, fields(job_id = %id))]
    async fn cancel_job(&self, id: &str, audit: NewAuditEntry) -> StoreResult<Job> {
        let mut tx = self.begin_write().await?;
        let at = to_db(now());
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE jobs SET status = 'cancelled', updated_at = $1 \
             WHERE id = $2 AND status IN ('queued', 'failed') RETURNING {JOB_COLS}"
        )))
        .bind(&at)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("cancelling a job"))?;
        let job = match row {
            Some(row) => job_from(&row)?,
            None => return Err(job_state_error(&self.job(id).await?, "cancel")),
        };
        let mut audited = false;
        if let Some(request_id) = &job.request_id {
            let mut fail =
                Transition::new(RequestStatus::Failed, audit.actor.clone(), audit.clone());
            fail.error = Some("a job of this request was cancelled by an admin".into());
            fail.note = fail.error.clone();
            match transition_in(&mut tx, request_id, fail).await {
                Ok(_) => audited = true,
                Err(StoreError::InvalidTransition { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if !audited {
            append_audit_in(&mut tx, audit).await?;
        }
        tx.commit()
            .await
            .map_err(db("committing a job cancellation"))?;
        Ok(job)
    }

    async fn claim_key_destruction(&self, request_id: &str) -> StoreResult<bool> {
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

    async fn job_counts(&self) -> StoreResult<Vec<(JobKind, JobStatus, i64)>> {
        let rows =
            sqlx::query("SELECT kind, status, COUNT(*) AS n FROM jobs GROUP BY kind, status")
                .fetch_all(&self.pool)
                .await
                .map_err(db("counting jobs"))?;
        rows.iter()
            .map(|row| {
                let kind = get_s(row, "jobs", "kind")?;
                let status = get_s(row, "jobs", "status")?;
                Ok((
                    JobKind::parse(&kind).ok_or_else(|| corrupt("jobs", format!("kind {kind}")))?,
                    JobStatus::parse(&status)
                        .ok_or_else(|| corrupt("jobs", format!("status {status}")))?,
                    row.try_get::<i64, _>("n").map_err(|e| corrupt("jobs", e))?,
                ))
            })
            .collect()
    }

    async fn overdue_requests(&self) -> StoreResult<i64> {
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

    async fn append_audit(&self, entry: NewAuditEntry) -> StoreResult<AuditEntry> {
        let mut tx = self.begin_write().await?;
        let appended = append_audit_in(&mut tx, entry).await?;
        tx.commit().await.map_err(db("committing an audit entry"))?;
        Ok(appended)
    }

    async fn audit_entries(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
        let limit = filter.limit.unwrap_or(1000).clamp(1, 10_000);
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {AUDIT_COLS} FROM audit_log \
             WHERE seq > $1 AND ($2 IS NULL OR at >= $2) AND ($3 IS NULL OR at < $3) \
               AND ($4 IS NULL OR action = $4) AND ($5 IS NULL OR request_id = $5) \
               AND seq <= $7 \
             ORDER BY seq LIMIT $6"
        )))
        .bind(filter.after_seq.unwrap_or(0))
        .bind(filter.from.map(to_db))
        .bind(filter.to.map(to_db))
        .bind(&filter.action)
        .bind(&filter.request_id)
        .bind(limit)
        .bind(filter.until_seq.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading the audit log"))?
        .iter()
        .map(audit_from)
        .collect()
    }

    async fn audit_head(&self) -> StoreResult<(i64, String)> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db("reading the audit head"))?;
        Ok((
            row.try_get("seq").map_err(|e| corrupt("audit_head", e))?,
            get_s(&row, "audit_head", "hash")?,
        ))
    }

    async fn create_legal_hold(
        &self,
        hold: NewLegalHold,
        audit: NewAuditEntry,
    ) -> StoreResult<LegalHold> {
        self.create_legal_hold_impl(hold, audit).await
    }

    async fn list_legal_holds(&self, active_only: bool) -> StoreResult<Vec<LegalHold>> {
        self.list_legal_holds_impl(active_only).await
    }

    async fn active_holds_for(&self, subject_pseudonym: &str) -> StoreResult<Vec<LegalHold>> {
        self.active_holds_for_impl(subject_pseudonym).await
    }

    async fn release_legal_hold(
        &self,
        id: &str,
        actor: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<LegalHold> {
        self.release_legal_hold_impl(id, actor, audit).await
    }

    async fn expired_exports(&self, limit: i64) -> StoreResult<Vec<PrivacyRequest>> {
        self.expired_exports_impl(limit).await
    }

    async fn live_exports_of(&self, subject_pseudonym: &str) -> StoreResult<Vec<PrivacyRequest>> {
        self.live_exports_of_impl(subject_pseudonym).await
    }

    async fn mark_export_deleted(
        &self,
        request_id: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<bool> {
        self.mark_export_deleted_impl(request_id, audit).await
    }

    async fn restrict_subject(
        &self,
        subject: &SubjectId,
        request_id: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<RestrictedSubject> {
        self.restrict_subject_impl(subject, request_id, audit).await
    }

    async fn lift_restriction(
        &self,
        subject: &SubjectId,
        audit: NewAuditEntry,
    ) -> StoreResult<Option<RestrictedSubject>> {
        self.lift_restriction_impl(subject, audit).await
    }

    async fn acquire_dataset_lease(
        &self,
        dataset_id: &str,
        holder: &str,
        mode: LeaseMode,
        purpose: &str,
        ttl: Duration,
    ) -> StoreResult<DatasetLease> {
        self.acquire_dataset_lease_impl(dataset_id, holder, mode, purpose, ttl)
            .await
    }

    async fn release_dataset_lease(&self, dataset_id: &str, holder: &str) -> StoreResult<()> {
        self.release_dataset_lease_impl(dataset_id, holder).await
    }

    async fn restricted_subjects(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<RestrictedSubject>> {
        self.restricted_subjects_impl(after, limit).await
    }

    async fn index_files(
        &self,
        dataset_id: &str,
        added: &[IndexedFile],
        replaced: &[String],
    ) -> StoreResult<()> {
        self.index_files_impl(dataset_id, added, replaced).await
    }

    async fn indexed_files(&self, dataset_id: &str) -> StoreResult<Vec<(String, u64)>> {
        self.indexed_files_impl(dataset_id).await
    }

    async fn index_lookup(
        &self,
        dataset_id: &str,
        subject_refs: &[String],
    ) -> StoreResult<Vec<(String, String, u64)>> {
        self.index_lookup_impl(dataset_id, subject_refs).await
    }

    async fn index_rewritten(
        &self,
        dataset_id: &str,
        path: &str,
        subject_refs: &[String],
        rows: u64,
        bytes: u64,
    ) -> StoreResult<()> {
        self.index_rewritten_impl(dataset_id, path, subject_refs, rows, bytes)
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn set_residency_policy(
        &self,
        jurisdiction: &str,
        regions: &[String],
        actor: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<ResidencyPolicy> {
        self.set_residency_policy_impl(jurisdiction, regions, actor, audit)
            .await
    }

    async fn delete_residency_policy(
        &self,
        jurisdiction: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<()> {
        self.delete_residency_policy_impl(jurisdiction, audit).await
    }

    async fn residency_policies(&self) -> StoreResult<Vec<ResidencyPolicy>> {
        self.residency_policies_impl().await
    }

    async fn set_subject_jurisdiction(
        &self,
        subject_ref: &str,
        jurisdiction: &str,
        actor: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<SubjectJurisdiction> {
        self.set_subject_jurisdiction_impl(subject_ref, jurisdiction, actor, audit)
            .await
    }

    async fn subject_jurisdiction(
        &self,
        subject_ref: &str,
    ) -> StoreResult<Option<SubjectJurisdiction>> {
        self.subject_jurisdiction_impl(subject_ref).await
    }

    async fn subject_jurisdictions(
        &self,
        subject_refs: &[String],
    ) -> StoreResult<Vec<(String, String)>> {
        self.subject_jurisdictions_impl(subject_refs).await
    }

    async fn record_subject_jurisdictions(
        &self,
        entries: &[(String, String)],
        source: &str,
        actor: &str,
    ) -> StoreResult<u64> {
        self.record_subject_jurisdictions_impl(entries, source, actor)
            .await
    }

    async fn record_residency_scan(
        &self,
        scan: &ResidencyScan,
        violations: &[ResidencyViolation],
        audit: Option<NewAuditEntry>,
    ) -> StoreResult<()> {
        self.record_residency_scan_impl(scan, violations, audit)
            .await
    }

    async fn residency_scans(&self) -> StoreResult<Vec<ResidencyScan>> {
        self.residency_scans_impl().await
    }

    async fn residency_violations(
        &self,
        dataset_id: Option<&str>,
    ) -> StoreResult<Vec<ResidencyViolation>> {
        self.residency_violations_impl(dataset_id).await
    }

    async fn create_webhook(
        &self,
        webhook: NewWebhook,
        audit: NewAuditEntry,
    ) -> StoreResult<WebhookEndpoint> {
        self.create_webhook_impl(webhook, audit).await
    }

    async fn list_webhooks(&self) -> StoreResult<Vec<WebhookEndpoint>> {
        self.list_webhooks_impl().await
    }

    async fn webhook(&self, id: &str) -> StoreResult<WebhookEndpoint> {
        self.webhook_impl(id).await
    }

    #[tracing::instrument(skip_all, fields(webhook_id = %id))]
    async fn deactivate_webhook(
        &self,
        id: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<WebhookEndpoint> {
        self.deactivate_webhook_impl(id, audit).await
    }

    async fn replace_webhook_secret(
        &self,
        id: &str,
        expected: &str,
        new: &str,
    ) -> StoreResult<bool> {
        self.replace_webhook_secret_impl(id, expected, new).await
    }

    async fn webhook_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        self.webhook_deliveries_impl(filter).await
    }

    #[tracing::instrument(skip_all, fields(delivery_id = %id))]
    async fn retry_webhook_delivery(
        &self,
        id: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<WebhookDelivery> {
        self.retry_webhook_delivery_impl(id, audit).await
    }

    async fn claim_webhook_deliveries(
        &self,
        limit: i64,
        lease: Duration,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        self.claim_webhook_deliveries_impl(limit, lease).await
    }

    async fn finish_webhook_delivery(
        &self,
        id: &str,
        lease_token: &str,
        outcome: DeliveryOutcome,
    ) -> StoreResult<bool> {
        self.finish_webhook_delivery_impl(id, lease_token, outcome)
            .await
    }
}
