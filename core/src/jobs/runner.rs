//! The worker loop: claim, heartbeat, execute, finish.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tracing::Instrument;

use super::execute::{ExecuteContext, JobError, execute_job};
use crate::audit::NewAuditEntry;
use crate::domain::RequestStatus;
use crate::store::{Job, JobOutcome, Store, StoreError, StoreResult, Transition};

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Name in leases and audit entries (`worker:<id>`), e.g. host name and pid.
    pub worker_id: String,
    /// Lease length; the worker heartbeats every third of it.
    pub lease: Duration,
    /// Sleep between polls of an empty queue.
    pub poll_interval: Duration,
    /// Folder for access exports.
    pub exports_dir: PathBuf,
    /// Files rewritten in parallel by one erasure.
    pub file_concurrency: usize,
}

impl WorkerConfig {
    /// A worker id from the host name and process id, e.g. `host-1234`.
    pub fn default_worker_id() -> String {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    }
}

/// A job runner bound to a store.
#[derive(Clone)]
pub struct Worker {
    store: Arc<dyn Store>,
    config: WorkerConfig,
}

/// Delay before retry `attempt` (1-based): 2, 4, 8 … seconds, at most 5 minutes.
fn backoff(attempt: i64) -> chrono::Duration {
    let secs = 2i64.saturating_pow(attempt.clamp(1, 16) as u32).min(300);
    chrono::Duration::seconds(secs)
}

impl Worker {
    /// A worker for `store`.
    pub fn new(store: Arc<dyn Store>, config: WorkerConfig) -> Self {
        Self { store, config }
    }

    fn actor(&self) -> String {
        format!("worker:{}", self.config.worker_id)
    }

    /// Polls the queue until `shutdown` becomes `true`; finishes the job in hand first.
    pub async fn run_until_stopped(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(worker = %self.config.worker_id, "worker started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.try_execute_job().await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "worker could not poll the queue"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!(worker = %self.config.worker_id, "worker stopped");
    }

    /// Claims one runnable job and runs it to its end. Returns the job id, or `None` when the
    /// queue had nothing runnable.
    ///
    /// # Errors
    /// Store errors while claiming or finishing; job errors are recorded on the job instead.
    pub async fn try_execute_job(&self) -> StoreResult<Option<String>> {
        let Some(job) = self
            .store
            .claim_job(&self.config.worker_id, self.config.lease)
            .await?
        else {
            return Ok(None);
        };
        let span =
            tracing::info_span!("job", job_id = %job.id, kind = ?job.kind, attempt = job.attempts);
        self.run_claimed(job).instrument(span).await
    }

    async fn run_claimed(&self, job: Job) -> StoreResult<Option<String>> {
        let token = job.lease_token.clone().unwrap_or_default();
        let Some(request_id) = job.request_id.clone() else {
            self.store
                .finish_job(
                    &job.id,
                    &token,
                    JobOutcome::Failed {
                        error: "job has no request".into(),
                    },
                    None,
                )
                .await?;
            return Ok(Some(job.id));
        };
        let request = self.store.request(&request_id).await?;

        if job.attempts > job.max_attempts {
            let error = format!(
                "gave up after {} attempts; last error: {}",
                job.max_attempts,
                job.last_error
                    .clone()
                    .unwrap_or_else(|| "worker lost".into())
            );
            self.fail(&job, &token, &request.id, &request.subject_pseudonym, error)
                .await?;
            return Ok(Some(job.id));
        }

        let started = NewAuditEntry::new(self.actor(), "job.started")
            .request(&request.id)
            .subject(&request.subject_pseudonym)
            .details(json!({ "job_id": job.id, "kind": job.kind, "attempt": job.attempts }));
        match self
            .store
            .transition_request(
                &request.id,
                Transition::new(RequestStatus::Running, self.actor(), started),
            )
            .await
        {
            Ok(_) => {}
            Err(StoreError::InvalidTransition { from, .. }) => {
                let error = format!("request is {from}; nothing to run");
                self.store
                    .finish_job(&job.id, &token, JobOutcome::Failed { error }, None)
                    .await?;
                return Ok(Some(job.id));
            }
            Err(e) => return Err(e),
        }
        tracing::info!("job started");

        // Heartbeat until the job ends; a lost lease is logged and fenced at finish.
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let heartbeat = {
            let store = self.store.clone();
            let (id, token, lease) = (job.id.clone(), token.clone(), self.config.lease);
            tokio::spawn(async move {
                let every = (lease / 3).max(Duration::from_millis(50));
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = stop_rx.changed() => break,
                    }
                    match store.heartbeat_job(&id, &token, lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(
                                "lease lost; the job will not be committed by this worker"
                            );
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                    }
                }
            })
        };

        let ctx = ExecuteContext {
            exports_dir: self.config.exports_dir.clone(),
            file_concurrency: self.config.file_concurrency,
        };
        let task = {
            let (store, job, request) = (self.store.clone(), job.clone(), request.clone());
            tokio::spawn(
                async move { execute_job(&store, &ctx, &job, &request).await }
                    .instrument(tracing::Span::current()),
            )
        };
        let result = match task.await {
            Ok(result) => result,
            Err(join) => Err(JobError::Transient(format!(
                "job task panicked or was cancelled: {join}"
            ))),
        };
        let _ = stop_tx.send(true);
        let _ = heartbeat.await;

        match result {
            Ok((result, export_path)) => {
                let mut audit = NewAuditEntry::new(self.actor(), "request.completed")
                    .request(&request.id)
                    .subject(&request.subject_pseudonym)
                    .details(json!({ "job_id": job.id, "kind": job.kind, "result": result }));
                // The file list stays on the request; the audit entry keeps the counts.
                if let Some(r) = audit
                    .details
                    .get_mut("result")
                    .and_then(|r| r.as_object_mut())
                {
                    r.remove("rewritten");
                }
                let mut transition = Transition::new(RequestStatus::Completed, self.actor(), audit);
                transition.result = Some(result);
                transition.export_path = export_path;
                let committed = self
                    .store
                    .finish_job(
                        &job.id,
                        &token,
                        JobOutcome::Succeeded,
                        Some((request.id.clone(), transition)),
                    )
                    .await?;
                if committed {
                    tracing::info!("job completed");
                } else {
                    tracing::warn!("job finished after its lease was taken over; result discarded");
                }
            }
            Err(JobError::Transient(error)) if job.attempts < job.max_attempts => {
                let at = chrono::Utc::now() + backoff(job.attempts);
                tracing::warn!(error = %error, retry_at = %at, "job failed, will retry");
                let committed = self
                    .store
                    .finish_job(
                        &job.id,
                        &token,
                        JobOutcome::Retry {
                            at,
                            error: error.clone(),
                        },
                        None,
                    )
                    .await?;
                if committed {
                    self.store
                        .append_audit(
                            NewAuditEntry::new(self.actor(), "job.retry_scheduled")
                                .request(&request.id)
                                .subject(&request.subject_pseudonym)
                                .details(json!({ "job_id": job.id, "attempt": job.attempts, "error": error })),
                        )
                        .await?;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "job failed");
                self.fail(
                    &job,
                    &token,
                    &request.id,
                    &request.subject_pseudonym,
                    e.to_string(),
                )
                .await?;
            }
        }
        Ok(Some(job.id))
    }

    async fn fail(
        &self,
        job: &Job,
        token: &str,
        request_id: &str,
        pseudonym: &str,
        error: String,
    ) -> StoreResult<()> {
        let audit = NewAuditEntry::new(self.actor(), "request.failed")
            .request(request_id)
            .subject(pseudonym)
            .details(json!({ "job_id": job.id, "attempts": job.attempts, "error": error }));
        let mut transition = Transition::new(RequestStatus::Failed, self.actor(), audit);
        transition.error = Some(error.clone());
        transition.note = Some(error.clone());
        self.store
            .finish_job(
                job.id.as_str(),
                token,
                JobOutcome::Failed { error },
                Some((request_id.to_string(), transition)),
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1).num_seconds(), 2);
        assert_eq!(backoff(2).num_seconds(), 4);
        assert_eq!(backoff(5).num_seconds(), 32);
        assert_eq!(backoff(50).num_seconds(), 300);
    }
}
