//! The bookkeeping of erasure plans on the queue: a due plan absorbs the other due plans into
//! its batch (one pass per file serves them all), and a file task's end decides, once its
//! plan's last task ended, what the plan and its requests become — in the transaction that
//! ends the task.

use serde_json::json;
use sqlx::{AssertSqlSafe, Row};

use super::audit_chain::append_audit_in;
use super::db::{Store, db, now};
use super::jobs::finish_in;
use super::lifecycle::{requests_in, transition_in};
use super::rows::{JOB_COLS, get_os, job_from};
use super::{
    Job, JobFinish, JobPayload, JobStatus, PrivacyRequest, StoreError, StoreResult, Transition,
};
use crate::domain::to_db;

/// Decides, once the last task of a plan has succeeded or one has failed for good, what happens
/// to the plan's requests, given the plan, every task (the ended one included) and the requests
/// of the plan's batch ([`Job::batch`], in that order): the transitions to apply.
pub type SiblingsDecision<'a> =
    dyn Fn(&Job, &[Job], &[PrivacyRequest]) -> Vec<(String, Transition)> + Send + Sync + 'a;

impl Store {
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
        let mut batch = match plan.typed_payload() {
            Ok(JobPayload::Erasure { batch }) => batch,
            _ => Vec::new(),
        };
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
        sqlx::query("UPDATE jobs SET payload = $1 WHERE id = $2")
            .bind(
                JobPayload::Erasure {
                    batch: batch.clone(),
                }
                .to_value()
                .to_string(),
            )
            .bind(plan_id)
            .execute(&mut *tx)
            .await
            .map_err(db("recording an erasure batch"))?;
        tx.commit()
            .await
            .map_err(db("committing an erasure batch"))?;
        Ok(Some(batch))
    }
}
