//! The job queue: enqueue, claim with a lease, heartbeat, finish (fenced by the lease token),
//! the fan-out of an erasure plan into per-file tasks and the end of a plan when its last task
//! ends, retry and cancel by an admin.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::audit_chain::{append_audit_in, with_detail};
use super::db::{Store, db, now};
use super::lifecycle::{insert_job_in, requests_in, transition_in};
use super::rows::{JOB_COLS, corrupt, get_os, get_s, job_from};
use super::{
    Job, JobFinish, JobKind, JobOutcome, JobStatus, NewJob, SiblingsDecision, StoreError,
    StoreResult, Transition,
};
use crate::audit::NewAuditEntry;
use crate::domain::{RequestStatus, to_db};

pub(super) fn job_state_error(job: &Job, action: &'static str) -> StoreError {
    StoreError::InvalidJobState {
        status: job.status.as_str(),
        action,
    }
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

impl Store {
    /// Claims the oldest runnable job — queued and due, or running with an expired lease
    /// (its worker died) — setting a fresh lease token. `None` when nothing is runnable.
    #[tracing::instrument(skip_all, fields(worker = %worker))]
    pub async fn claim_job(&self, worker: &str, lease: Duration) -> StoreResult<Option<Job>> {
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

    /// Extends the lease if `lease_token` still holds it; `false` means the lease was lost and
    /// the worker must stop without committing anything.
    pub async fn heartbeat_job(
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

    /// Ends a job (fenced by `lease_token`): records outcome and result, enqueues its children,
    /// applies the request transition and audit entry, all in one transaction. `false` when the
    /// lease was lost: nothing was written.
    #[tracing::instrument(skip_all, fields(job_id = %job_id))]
    pub async fn finish_job(
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

    /// Ends a task (a job with a parent), fenced by `lease_token`, then — serialised with its
    /// siblings by a lock on the parent — counts the plan's tasks by status. When every task
    /// succeeded the plan becomes `succeeded`; when one failed for good, `failed`; in both cases
    /// (and only then) `decide` is asked what the plan's requests become, given the plan, all
    /// its tasks and the requests of its batch, and its transitions are applied in the same
    /// transaction. A transition refused because the request is already final is skipped.
    /// `false` when the lease was lost: nothing was written.
    #[tracing::instrument(skip_all, fields(job_id = %job_id))]
    pub async fn finish_task(
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

    /// Batches erasures: merges every other queued erasure plan — due, or still waiting out its
    /// batching window (running it early only serves its subject sooner) — into the plan `plan_id`
    /// (held by `lease_token`), records the batch's request ids in its payload (`batch`), and
    /// returns them, its own request first. `None` when the lease was lost. Running it again
    /// after a takeover returns the batch recorded so far plus anything newly queued.
    #[tracing::instrument(skip_all, fields(job_id = %plan_id))]
    pub async fn absorb_erasure_plans(
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

    /// Enqueues a job that serves no request (maintenance such as compaction), with its
    /// audit entry, in one transaction.
    pub async fn enqueue_job(&self, job: NewJob, audit: NewAuditEntry) -> StoreResult<Job> {
        let mut tx = self.begin_write().await?;
        let id = insert_job_in(&mut tx, &job, None).await?;
        append_audit_in(&mut tx, with_detail(audit, "job_id", &id)).await?;
        tx.commit().await.map_err(db("committing a job"))?;
        self.job(&id).await
    }

    /// One job; `NotFound` otherwise.
    pub async fn job(&self, id: &str) -> StoreResult<Job> {
        self.by_id(
            format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"),
            id,
            "job",
            "reading a job",
            job_from,
        )
        .await
    }

    /// The tasks of a plan, oldest first.
    pub async fn child_jobs(&self, parent_id: &str) -> StoreResult<Vec<Job>> {
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

    /// Jobs, newest first (at most `limit`), optionally only in one status.
    pub async fn list_jobs(&self, status: Option<JobStatus>, limit: i64) -> StoreResult<Vec<Job>> {
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

    /// Puts a `failed` or `cancelled` job back in the queue with fresh attempts (admin), and a
    /// failed request back to `running`; `InvalidJobState` otherwise.
    #[tracing::instrument(skip_all, fields(job_id = %id))]
    pub async fn retry_job(&self, id: &str, audit: NewAuditEntry) -> StoreResult<Job> {
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

    /// Cancels a `queued` or `failed` job (admin) and fails its request if still open;
    /// `InvalidJobState` for a running or finished job.
    #[tracing::instrument(skip_all, fields(job_id = %id))]
    pub async fn cancel_job(&self, id: &str, audit: NewAuditEntry) -> StoreResult<Job> {
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

    /// How many jobs are in each status, per kind: `(kind, status, count)`; for metrics.
    pub async fn job_counts(&self) -> StoreResult<Vec<(JobKind, JobStatus, i64)>> {
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
}
