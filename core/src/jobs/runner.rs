//! The worker loop: claim, heartbeat, execute, finish.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tracing::Instrument;

use super::context::{ExecuteContext, Execution, JobError};
use super::erase_results::{BatchResults, erasure_result};
use super::execute::execute_job;
use super::lease::{LeaseGuard, spawn_heartbeat};
use crate::audit::NewAuditEntry;
use crate::domain::RequestStatus;
use crate::keyring::Keyring;
use crate::lake::CommitGuard;
use crate::lake::rewrite::failpoint::{Failpoint, hit};
use crate::process_metrics::{BYTES_REWRITTEN, JOBS_ENDED, ROWS_REMOVED};
use crate::requests::complete::{self, Ending};
use crate::requests::results::RequestResult;
use crate::store::{
    Job, JobFinish, JobKind, JobOutcome, JobPayload, PrivacyRequest, Store, StoreError,
    StoreResult, Transition,
};

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Name in leases and audit entries (`worker:<id>`), e.g. host name and pid.
    pub worker_id: String,
    /// Lease length; the worker heartbeats every third of it.
    pub lease: Duration,
    /// Sleep between polls of an empty queue.
    pub poll_interval: Duration,
    /// Where access exports are stored: an absolute folder or an object store URL.
    pub exports_url: String,
    /// Files read in parallel while locating.
    pub file_concurrency: usize,
    /// Jobs run at the same time by [`Worker::run_until_stopped`] (at least 1).
    pub job_concurrency: usize,
    /// How long an access export stays downloadable (`requests.export_ttl_s`).
    pub export_ttl: Duration,
    /// The settings it was made from: Iceberg catalogs and where tables may lie, for
    /// datasets of format `delta` and `iceberg`.
    pub settings: Arc<crate::config::Settings>,
}

impl WorkerConfig {
    /// The worker configuration described by `settings` (`worker.*`, `storage.exports_*`).
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        Self {
            worker_id: Self::default_worker_id(),
            lease: Duration::from_secs(settings.worker.lease_s.max(1)),
            poll_interval: Duration::from_millis(settings.worker.poll_interval_ms.max(10)),
            exports_url: settings.storage.exports_location(),
            file_concurrency: settings.worker.file_concurrency,
            job_concurrency: settings.worker.job_concurrency.max(1),
            export_ttl: Duration::from_secs(settings.requests.export_ttl_s),
            settings: Arc::new(settings.clone()),
        }
    }

    /// A worker id from the host name and process id, e.g. `host-1234`.
    pub fn default_worker_id() -> String {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    }
}

/// A job runner bound to a store.
#[derive(Clone)]
pub struct Worker {
    pub(super) store: Arc<Store>,
    pub(super) config: WorkerConfig,
    pub(super) keyring: Option<Arc<Keyring>>,
}

/// Delay before retry `attempt` (1-based): 2, 4, 8 … seconds, at most 5 minutes.
pub(super) fn backoff(attempt: i64) -> chrono::Duration {
    let secs = 2i64.saturating_pow(attempt.clamp(1, 16) as u32).min(300);
    chrono::Duration::seconds(secs)
}

/// How long a job kept off a dataset by another holder's lease waits before it tries again.
/// Short: leases end when their holder finishes, and the wait spends no attempt.
const BUSY_RETRY_S: i64 = 10;

/// The finish of a job that could not take its dataset lease: queued again shortly, with
/// `reason` (who holds the dataset) as its last error, its attempt given back.
pub(super) fn deferred(reason: String) -> JobFinish {
    JobFinish::new(JobOutcome::Defer {
        at: chrono::Utc::now() + chrono::Duration::seconds(BUSY_RETRY_S),
        reason,
    })
}

/// Runs `work` in a task of its own, so that a panic in it fails the job it belongs to
/// ([`JobError::Panicked`], with the panic's message) instead of the worker; the failpoint
/// `job.panic` (tests only) panics there.
pub(super) async fn isolated<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, JobError>> + Send + 'static,
) -> Result<T, JobError> {
    let task = tokio::spawn(
        async move {
            hit(Failpoint::JobPanic).await;
            work.await
        }
        .instrument(tracing::Span::current()),
    );
    match task.await {
        Ok(result) => result,
        Err(join) if join.is_panic() => {
            let payload = join.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            tracing::error!(panic = %message, "a job's task panicked; the job fails");
            Err(JobError::Panicked(message))
        }
        Err(join) => Err(JobError::Transient(format!(
            "the job's task was cancelled: {join}"
        ))),
    }
}

/// Logs how a job's task ended when it did not end cleanly.
fn log_job_end(done: Result<StoreResult<Option<String>>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "a job could not be recorded as ended"),
        Err(e) => tracing::error!(error = %e, "a job's task panicked; its lease will lapse"),
    }
}

impl Worker {
    /// A worker for `store`.
    pub fn new(store: Arc<Store>, config: WorkerConfig) -> Self {
        Self {
            store,
            config,
            keyring: None,
        }
    }

    /// Gives the worker the keyring, so an erasure plan destroys its subjects' data keys
    /// (crypto-shredding) before any file is rewritten, if the approval did not already.
    pub fn with_keyring(mut self, keyring: Arc<Keyring>) -> Self {
        self.keyring = Some(keyring);
        self
    }

    pub(super) fn actor(&self) -> String {
        format!("worker:{}", self.config.worker_id)
    }

    /// Polls the queue until `shutdown` becomes `true`, running up to
    /// [`WorkerConfig::job_concurrency`] jobs at a time, each in its own task; finishes the jobs
    /// in hand first. A job whose work panics fails (the panic's message is its error), and
    /// the loop goes on.
    pub async fn run_until_stopped(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(worker = %self.config.worker_id, "worker started");
        // Expired exports are swept when the queue is idle, every 20 polls (at least 1 s).
        let sweep_every = (self.config.poll_interval * 20).max(Duration::from_secs(1));
        let mut last_sweep: Option<std::time::Instant> = None;
        let capacity = self.config.job_concurrency.max(1);
        let mut running: tokio::task::JoinSet<StoreResult<Option<String>>> =
            tokio::task::JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            if running.is_empty() && last_sweep.is_none_or(|at| at.elapsed() >= sweep_every) {
                last_sweep = Some(std::time::Instant::now());
                if let Err(e) =
                    crate::exports::sweep_expired_exports(self.store.as_ref(), &self.actor()).await
                {
                    tracing::warn!(error = %e, "export sweep failed");
                }
            }
            let mut queue_empty = false;
            while running.len() < capacity {
                match self
                    .store
                    .claim_job(&self.config.worker_id, self.config.lease)
                    .await
                {
                    Ok(Some(job)) => {
                        let span = tracing::info_span!("job", job_id = %job.id, kind = ?job.kind, attempt = job.attempts);
                        let worker = self.clone();
                        running
                            .spawn(async move { worker.run_claimed(job).await }.instrument(span));
                    }
                    Ok(None) => {
                        queue_empty = true;
                        break;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "worker could not poll the queue");
                        queue_empty = true;
                        break;
                    }
                }
            }
            let wait_for_queue = queue_empty || running.len() >= capacity;
            tokio::select! {
                Some(done) = running.join_next(), if !running.is_empty() => log_job_end(done),
                _ = tokio::time::sleep(self.config.poll_interval), if wait_for_queue => {}
                _ = shutdown.changed() => {}
            }
        }
        while let Some(done) = running.join_next().await {
            log_job_end(done);
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

    /// Runs a job this worker has claimed (with the lease token in `job`) to its end.
    ///
    /// # Errors
    /// Store errors while finishing.
    pub async fn run_claimed(&self, job: Job) -> StoreResult<Option<String>> {
        let token = job.lease_token.clone().unwrap_or_default();
        if job.kind == JobKind::Compact {
            return self.run_compaction(job, &token).await;
        }
        if matches!(
            job.kind,
            JobKind::ResidencyScan | JobKind::ResidencyRemediate
        ) {
            return self.run_residency(job, &token).await;
        }
        let Some(request_id) = job.request_id.clone() else {
            let finish = JobFinish::new(JobOutcome::Failed {
                error: "job has no request".into(),
            });
            self.finish_job(&job, &token, finish).await?;
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
            self.fail(&job, &token, &request, error).await?;
            return Ok(Some(job.id));
        }

        if !matches!(job.kind, JobKind::EraseFile | JobKind::EraseTable) {
            let started = NewAuditEntry::new(self.actor(), "job.started")
                .request(&request.id)
                .subject(&request.subject_pseudonym)
                .details(json!({ "job_id": job.id, "kind": job.kind, "attempt": job.attempts }));
            let running = Transition::new(RequestStatus::Running, self.actor(), started);
            match self.store.transition_request(&request.id, running).await {
                Ok(_) => {}
                Err(StoreError::InvalidTransition { from, .. }) => {
                    let finish = JobFinish::new(JobOutcome::Failed {
                        error: format!("request is {from}; nothing to run"),
                    });
                    self.finish_job(&job, &token, finish).await?;
                    return Ok(Some(job.id));
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!("job started");

        // Heartbeat until the job ends; a lost lease is fenced at the swap and at finish.
        let heartbeat = spawn_heartbeat(self.store.clone(), &job, &token, self.config.lease);

        let ctx = ExecuteContext {
            exports_url: self.config.exports_url.clone(),
            file_concurrency: self.config.file_concurrency,
            keyring: self.keyring.clone(),
            settings: self.config.settings.clone(),
        };
        let guard: Arc<dyn CommitGuard> = Arc::new(LeaseGuard::new(
            self.store.clone(),
            job.id.clone(),
            token.clone(),
            self.config.lease,
        ));
        let result = {
            let (store, job, request) = (self.store.clone(), job.clone(), request.clone());
            isolated(async move { execute_job(&store, &ctx, &job, &request, guard).await }).await
        };
        heartbeat.stop().await;

        let committed = match result {
            Ok(execution) => self.succeed(&job, &token, &request, execution).await?,
            Err(JobError::Busy(reason)) => {
                tracing::info!(reason = %reason, "dataset busy, job deferred");
                self.end(&job, &token, deferred(reason)).await?
            }
            Err(JobError::Transient(error)) if job.attempts < job.max_attempts => {
                let at = chrono::Utc::now() + backoff(job.attempts);
                tracing::warn!(error = %error, retry_at = %at, "job failed, will retry");
                let mut finish = JobFinish::new(JobOutcome::Retry {
                    at,
                    error: error.clone(),
                });
                finish.audit = Some(
                    NewAuditEntry::new(self.actor(), "job.retry_scheduled")
                        .request(&request.id)
                        .subject(&request.subject_pseudonym)
                        .details(
                            json!({ "job_id": job.id, "attempt": job.attempts, "error": error }),
                        ),
                );
                self.end(&job, &token, finish).await?
            }
            Err(e) => {
                tracing::error!(error = %e, "job failed");
                self.fail(&job, &token, &request, e.to_string()).await?
            }
        };
        if !committed {
            tracing::warn!("job ended after its lease was taken over; its outcome was discarded");
        }
        Ok(Some(job.id))
    }

    async fn succeed(
        &self,
        job: &Job,
        token: &str,
        request: &PrivacyRequest,
        execution: Execution,
    ) -> StoreResult<bool> {
        match execution {
            Execution::Completed {
                result,
                export_path,
            } => {
                let actor = self.actor();
                let mut transition =
                    complete::completed(self.ending(&actor), request, job, &result);
                transition.export_path = export_path;
                let mut finish = JobFinish::new(JobOutcome::Succeeded);
                finish.requests = vec![(request.id.clone(), transition)];
                self.finish_job(job, token, finish).await
            }
            Execution::Planned { plan, tasks } => {
                let mut finish = JobFinish::new(JobOutcome::Succeeded);
                let mut plan_job = job.clone();
                let plan_value = serde_json::to_value(&plan).expect("a plan serialises");
                plan_job.result = Some(plan_value.clone());
                plan_job.payload = JobPayload::Erasure {
                    batch: plan.batch.clone(),
                }
                .to_value();
                finish.result = Some(plan_value);
                if tasks.is_empty() {
                    // Nothing of the batch's subjects is in the lake: every request is done.
                    for member in self.batch_requests(&plan_job).await? {
                        let result =
                            RequestResult::Erasure(erasure_result(&plan_job, &[], &member.id));
                        let actor = self.actor();
                        let transition =
                            complete::completed(self.ending(&actor), &member, &plan_job, &result);
                        finish.requests.push((member.id.clone(), transition));
                    }
                } else {
                    let details = json!({
                        "job_id": job.id,
                        "tasks": tasks.len(),
                        "batch": plan_job.batch().len(),
                        "datasets": plan.datasets,
                    });
                    finish.audit = Some(
                        NewAuditEntry::new(self.actor(), "erasure.planned")
                            .request(&request.id)
                            .subject(&request.subject_pseudonym)
                            .details(details),
                    );
                    finish.children = tasks;
                }
                self.finish_job(job, token, finish).await
            }
            Execution::Task { result } => {
                metrics::counter!(ROWS_REMOVED).increment(result.rows_removed);
                metrics::counter!(BYTES_REWRITTEN).increment(result.bytes_written);
                let mut details = json!({
                    "job_id": job.id,
                    "file": result.file,
                    "dataset": result.dataset,
                    "status": result.status,
                    "rows_removed": result.rows_removed,
                    "subjects": result.subjects,
                });
                if let Some(table) = &result.table {
                    // A table's erasure: its commit and what the purge made unreadable.
                    details["table"] = json!(table);
                }
                let mut entry = NewAuditEntry::new(self.actor(), "file.erased")
                    .request(&request.id)
                    .details(details);
                if result.subjects == Some(1) {
                    entry = entry.subject(&request.subject_pseudonym);
                }
                let mut finish = JobFinish::new(JobOutcome::Succeeded);
                finish.audit = Some(entry);
                finish.result = Some(serde_json::to_value(&result).expect("a result serialises"));
                self.end(job, token, finish).await
            }
        }
    }

    async fn fail(
        &self,
        job: &Job,
        token: &str,
        request: &PrivacyRequest,
        error: String,
    ) -> StoreResult<bool> {
        let mut finish = JobFinish::new(JobOutcome::Failed {
            error: error.clone(),
        });
        if job.parent_id.is_some() {
            finish.audit = Some(
                NewAuditEntry::new(self.actor(), "file.failed")
                    .request(&request.id)
                    .details(json!({ "job_id": job.id, "attempts": job.attempts, "error": error })),
            );
        } else {
            let members = if job.kind == JobKind::Erasure {
                self.batch_requests(job).await?
            } else {
                vec![request.clone()]
            };
            for member in members {
                let actor = self.actor();
                let transition = complete::failed(self.ending(&actor), &member, job, error.clone());
                finish.requests.push((member.id.clone(), transition));
            }
        }
        self.end(job, token, finish).await
    }

    /// The requests of an erasure plan's batch (its own first).
    async fn batch_requests(&self, plan: &Job) -> StoreResult<Vec<PrivacyRequest>> {
        self.store.requests(&plan.batch()).await
    }

    /// Who ends requests: this worker, with its keyring and export TTL.
    fn ending<'a>(&'a self, actor: &'a str) -> Ending<'a> {
        Ending {
            actor,
            keyring: self.keyring.as_deref(),
            export_ttl: self.config.export_ttl,
        }
    }

    /// Ends a job; a task also decides, with its siblings, what its plan's requests become.
    async fn end(&self, job: &Job, token: &str, finish: JobFinish) -> StoreResult<bool> {
        if job.parent_id.is_none() {
            return self.finish_job(job, token, finish).await;
        }
        // Called by the store only once the plan ends, inside the transaction that ends it.
        let actor = self.actor();
        let ending = self.ending(&actor);
        let decide = |plan: &Job, tasks: &[Job], members: &[PrivacyRequest]| {
            let batch = BatchResults::read(plan, tasks);
            complete::plan_ended(ending, plan, tasks, members, |id| {
                RequestResult::Erasure(batch.for_request(id))
            })
        };
        record_end(job, &finish);
        self.store
            .finish_task(&job.id, token, finish, &decide)
            .await
    }

    /// Ends `job` as `finish` says (see [`Store::finish_job`]) and counts it.
    pub(super) async fn finish_job(
        &self,
        job: &Job,
        token: &str,
        finish: JobFinish,
    ) -> StoreResult<bool> {
        record_end(job, &finish);
        self.store.finish_job(&job.id, token, finish).await
    }
}

/// Counts a job run that ended, by kind and outcome.
fn record_end(job: &Job, finish: &JobFinish) {
    metrics::counter!(JOBS_ENDED, "kind" => job.kind.as_str(), "outcome" => finish.outcome.as_str())
        .increment(1);
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
