//! The jobs that serve no request: compaction and the residency scan and remediation, each
//! run in a task of its own, heartbeating, retried with backoff when a failure is transient.

use std::sync::Arc;

use serde_json::json;

use super::context::JobError;
use super::lease::{LeaseGuard, spawn_heartbeat};
use super::runner::{Worker, backoff, deferred, isolated};
use crate::ingest::IngestError;
use crate::lake::CommitGuard;
use crate::residency::ResidencyError;
use crate::store::{Job, JobFinish, JobKind, JobOutcome, JobPayload, StoreError, StoreResult};

impl Worker {
    /// Runs a [`JobKind::Compact`] job (no request): compacts the dataset named in its payload,
    /// heartbeating meanwhile; transient failures are retried with backoff.
    pub(super) async fn run_compaction(
        &self,
        job: Job,
        token: &str,
    ) -> StoreResult<Option<String>> {
        let heartbeat = spawn_heartbeat(self.store.clone(), &job, token, self.config.lease);
        let (worker, job_in_task) = (self.clone(), job.clone());
        let outcome = isolated(async move {
            let (worker, job) = (&worker, &job_in_task);
            let keyring = worker
                .keyring
                .clone()
                .ok_or_else(|| JobError::Permanent("compaction needs the keyring".into()))?;
            let JobPayload::Compact { dataset_id } = job.typed_payload()? else {
                return Err(JobError::Permanent("not a compact job".into()));
            };
            let dataset = worker.store.dataset(&dataset_id).await?;
            crate::compaction::compact(&worker.store, &keyring, &dataset, &worker.actor())
                .await
                .map_err(|e| {
                    if let IngestError::Store(
                        StoreError::DatasetBusy(_) | StoreError::DatasetLeaseLost { .. },
                    ) = e
                    {
                        JobError::Busy(e.to_string())
                    } else if e.is_client_error() {
                        JobError::Permanent(e.to_string())
                    } else {
                        JobError::Transient(e.to_string())
                    }
                })
        })
        .await;
        heartbeat.stop().await;
        let finish = ended(
            &job,
            outcome.map(|report| serde_json::to_value(report).ok()),
        );
        self.finish_job(&job, token, finish).await?;
        Ok(Some(job.id))
    }

    /// Runs a [`JobKind::ResidencyScan`] or [`JobKind::ResidencyRemediate`] job (no request)
    /// over the dataset named in its payload (`dataset_id`), or every dataset, heartbeating
    /// meanwhile; a remediation swaps a source file only while it holds the lease. Transient
    /// failures are retried with backoff (a remediation finishes what the failed attempt left).
    pub(super) async fn run_residency(&self, job: Job, token: &str) -> StoreResult<Option<String>> {
        let heartbeat = spawn_heartbeat(self.store.clone(), &job, token, self.config.lease);
        let (worker, job_in_task, token_in_task) = (self.clone(), job.clone(), token.to_string());
        let outcome = isolated(async move {
            let (worker, job, token) = (&worker, &job_in_task, &token_in_task);
            let keyring = worker
                .keyring
                .clone()
                .ok_or_else(|| JobError::Permanent("residency jobs need the keyring".into()))?;
            let dataset_id = match job.typed_payload()? {
                JobPayload::ResidencyScan { dataset_id }
                | JobPayload::ResidencyRemediate { dataset_id } => dataset_id,
                _ => return Err(JobError::Permanent("not a residency job".into())),
            };
            let dataset_id = dataset_id.as_deref();
            let classify = |e: crate::residency::ResidencyError| {
                if let ResidencyError::Store(
                    StoreError::DatasetBusy(_) | StoreError::DatasetLeaseLost { .. },
                ) = e
                {
                    JobError::Busy(e.to_string())
                } else if e.is_transient() {
                    JobError::Transient(e.to_string())
                } else {
                    JobError::Permanent(e.to_string())
                }
            };
            if job.kind == JobKind::ResidencyScan {
                let scans = crate::residency::scan_datasets(
                    &worker.store,
                    &keyring,
                    dataset_id,
                    &worker.actor(),
                )
                .await
                .map_err(classify)?;
                Ok(json!({ "datasets": scans.iter().map(|s| &s.scan).collect::<Vec<_>>() }))
            } else {
                let guard: Arc<dyn CommitGuard> = Arc::new(LeaseGuard::new(
                    worker.store.clone(),
                    job.id.clone(),
                    token.clone(),
                    worker.config.lease,
                ));
                let reports = crate::residency::remediate_datasets(
                    &worker.store,
                    &keyring,
                    dataset_id,
                    &worker.actor(),
                    Some(guard),
                )
                .await
                .map_err(classify)?;
                Ok(json!({ "datasets": reports }))
            }
        })
        .await;
        heartbeat.stop().await;
        let finish = ended(&job, outcome.map(Some));
        self.finish_job(&job, token, finish).await?;
        Ok(Some(job.id))
    }
}

/// How a maintenance job ends: succeeded with its `result`, deferred while its dataset is
/// busy, retried with backoff after a transient failure (until its attempts run out), or
/// failed.
fn ended(job: &Job, outcome: Result<Option<serde_json::Value>, JobError>) -> JobFinish {
    match outcome {
        Ok(result) => {
            let mut finish = JobFinish::new(JobOutcome::Succeeded);
            finish.result = result;
            finish
        }
        Err(JobError::Busy(reason)) => deferred(reason),
        Err(JobError::Transient(error)) if job.attempts < job.max_attempts => {
            JobFinish::new(JobOutcome::Retry {
                at: chrono::Utc::now() + backoff(job.attempts),
                error,
            })
        }
        Err(e) => {
            tracing::error!(error = %e, kind = job.kind.as_str(), "maintenance job failed");
            JobFinish::new(JobOutcome::Failed {
                error: e.to_string(),
            })
        }
    }
}
