//! The job queue and its rows: enqueue, claim with a lease, heartbeat, finish (fenced by the
//! lease token, a plan's tasks enqueued with it), retry and cancel by an admin. An erasure
//! plan's batch and end are in [`super::plans`].

use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::audit_chain::{append_audit_in, with_detail};
use super::db::{Store, db, now};
use super::lifecycle::{insert_job_in, transition_in};
use super::rows::{JOB_COLS, corrupt, get_s, job_from};
use super::{StoreError, StoreResult, Transition};
use crate::audit::NewAuditEntry;
use crate::domain::Timestamp;
use crate::domain::{RequestStatus, to_db};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Export a subject's rows from every dataset (GDPR Art. 15).
    Access,
    /// Export a subject's rows from every dataset as Parquet, CSV and JSON (GDPR Art. 20).
    Portability,
    /// Rewrite the subject's files of one dataset with the request's corrected values
    /// (GDPR Art. 16).
    Rectification,
    /// Mark the subject restricted, or lift the restriction (GDPR Art. 18), as the request's
    /// type says. Touches no lake.
    Restriction,
    /// Plan an erasure (GDPR Art. 17): locate the subject's files in every dataset and fan out
    /// one [`JobKind::EraseFile`] task per affected file of a Parquet dataset, one
    /// [`JobKind::EraseTable`] task per affected table.
    Erasure,
    /// Rewrite one file without the subject's rows; many workers share one erasure this way.
    EraseFile,
    /// Erase a plan's subjects from one Delta or Iceberg table: rewrite its affected files,
    /// one commit through the format's protocol, then the purge of what older snapshots
    /// could still read.
    EraseTable,
    /// Compact a Lethe-managed dataset (payload `{"dataset_id": …}`): merge small files and
    /// apply pending erasures. Serves no request.
    Compact,
    /// Scan Lethe-managed datasets for rows stored outside the regions their subjects'
    /// jurisdictions allow (payload `{"dataset_id": …}` or `{}` for every dataset); records
    /// the violations. Serves no request.
    ResidencyScan,
    /// Move misplaced rows into an allowed region's root, then record what is left (payload
    /// as for [`JobKind::ResidencyScan`]). Serves no request.
    ResidencyRemediate,
}

impl JobKind {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Access => "access",
            JobKind::Portability => "portability",
            JobKind::Rectification => "rectification",
            JobKind::Restriction => "restriction",
            JobKind::Erasure => "erasure",
            JobKind::EraseFile => "erase_file",
            JobKind::EraseTable => "erase_table",
            JobKind::Compact => "compact",
            JobKind::ResidencyScan => "residency_scan",
            JobKind::ResidencyRemediate => "residency_remediate",
        }
    }

    /// Parses a stable name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "access" => Some(JobKind::Access),
            "portability" => Some(JobKind::Portability),
            "rectification" => Some(JobKind::Rectification),
            "restriction" => Some(JobKind::Restriction),
            "erasure" => Some(JobKind::Erasure),
            "erase_file" => Some(JobKind::EraseFile),
            "erase_table" => Some(JobKind::EraseTable),
            "compact" => Some(JobKind::Compact),
            "residency_scan" => Some(JobKind::ResidencyScan),
            "residency_remediate" => Some(JobKind::ResidencyRemediate),
            _ => None,
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for a worker (possibly until `run_at`, after a retry backoff).
    Queued,
    /// Held by a worker's lease.
    Running,
    /// A plan whose tasks are still running; it ends when the last of them does.
    Waiting,
    /// Done.
    Succeeded,
    /// Gave up after `max_attempts`, or aborted on a permanent error (dead-lettered: an admin
    /// can retry it).
    Failed,
    /// Cancelled by an admin.
    Cancelled,
}

impl JobStatus {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Waiting => "waiting",
        }
    }

    /// Parses a stable name.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "waiting" => JobStatus::Waiting,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// What to do.
    pub kind: JobKind,
    /// The request it serves.
    pub request_id: Option<String>,
    /// Kind-specific parameters.
    pub payload: Value,
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// Not before this instant (`None`: now). Erasure plans wait out the batching window.
    pub run_at: Option<Timestamp>,
}

/// A row of the jobs table (the queue).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    /// UUID.
    pub id: String,
    /// What it does.
    pub kind: JobKind,
    /// The request it serves.
    pub request_id: Option<String>,
    /// The plan that created this task, if any.
    pub parent_id: Option<String>,
    /// Parameters.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// What it produced (per-file counts for a task, the plan for a plan).
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Where it stands.
    pub status: JobStatus,
    /// Claims so far (a takeover counts).
    pub attempts: i64,
    /// Claims allowed.
    pub max_attempts: i64,
    /// Not before.
    pub run_at: chrono::DateTime<chrono::Utc>,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// Fencing token of the current lease.
    #[serde(skip)]
    pub lease_token: Option<String>,
    /// Lease end.
    pub lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Last error.
    pub last_error: Option<String>,
    /// Created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Last change.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl Job {
    /// The request ids of an erasure plan's batch ([`super::JobPayload::Erasure`]), or else
    /// its own request.
    pub fn batch(&self) -> Vec<String> {
        match self.typed_payload() {
            Ok(super::JobPayload::Erasure { batch }) if !batch.is_empty() => batch,
            _ => self.request_id.iter().cloned().collect(),
        }
    }
}

/// Everything that happens when a job ends, in one transaction.
#[derive(Debug, Clone)]
pub struct JobFinish {
    /// How it ended.
    pub outcome: JobOutcome,
    /// What it produced.
    pub result: Option<Value>,
    /// Tasks to enqueue as its children; when non-empty and the outcome is `Succeeded`, the job
    /// becomes `waiting` and ends with its last child.
    pub children: Vec<NewJob>,
    /// Request transitions to apply (e.g. completed, failed; several for a batched erasure).
    /// One refused because its request is already final is skipped.
    pub requests: Vec<(String, Transition)>,
    /// An audit entry to append (when no transition carries one).
    pub audit: Option<NewAuditEntry>,
}

impl JobFinish {
    /// A bare finish with `outcome`.
    pub fn new(outcome: JobOutcome) -> Self {
        Self {
            outcome,
            result: None,
            children: Vec::new(),
            requests: Vec::new(),
            audit: None,
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone)]
pub enum JobOutcome {
    /// Done.
    Succeeded,
    /// A transient error: run again at `at`.
    Retry {
        /// When to run again.
        at: Timestamp,
        /// The error.
        error: String,
    },
    /// Could not start for now (another holder's dataset lease was in the way): run again at
    /// `at`, and give the attempt back.
    Defer {
        /// When to run again.
        at: Timestamp,
        /// Why, kept as the job's `last_error`.
        reason: String,
    },
    /// A permanent error or attempts exhausted.
    Failed {
        /// The error.
        error: String,
    },
}

impl JobOutcome {
    /// Stable name, for metrics: `succeeded`, `retry`, `deferred` or `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Retry { .. } => "retry",
            JobOutcome::Defer { .. } => "deferred",
            JobOutcome::Failed { .. } => "failed",
        }
    }
}

pub(super) fn job_state_error(job: &Job, action: &'static str) -> StoreError {
    StoreError::InvalidJobState {
        status: job.status.as_str(),
        action,
    }
}

/// Ends a job if `lease_token` still holds it. `false` when fenced.
pub(super) async fn finish_in(
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
