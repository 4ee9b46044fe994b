//! A job's lease while it runs: the heartbeat that extends it, and the guard that fences a
//! rewrite's swap on it (a worker that lost its lease never commits).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::lake::CommitGuard;
use crate::store::{Job, Store};

/// Fences a rewrite: the file is swapped in only while this worker still holds the job's
/// lease (checked, and extended, immediately before the swap).
pub struct LeaseGuard {
    store: Arc<Store>,
    job_id: String,
    token: String,
    lease: Duration,
}

impl LeaseGuard {
    /// A guard for the lease `token` on `job_id`.
    pub fn new(store: Arc<Store>, job_id: String, token: String, lease: Duration) -> Self {
        Self {
            store,
            job_id,
            token,
            lease,
        }
    }
}

#[async_trait]
impl CommitGuard for LeaseGuard {
    async fn may_commit(&self, _file: &str) -> Result<(), String> {
        match self
            .store
            .heartbeat_job(&self.job_id, &self.token, self.lease)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err("lease lost: another worker owns this task now (fenced)".into()),
            Err(e) => Err(format!("lease could not be confirmed: {e}")),
        }
    }
}

/// A running heartbeat task.
pub(super) struct Heartbeat {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

/// Extends `job`'s lease every third of the lease until stopped.
pub(super) fn spawn_heartbeat(
    store: Arc<Store>,
    job: &Job,
    token: &str,
    lease: Duration,
) -> Heartbeat {
    let (stop, mut stop_rx) = watch::channel(false);
    let (id, token) = (job.id.clone(), token.to_string());
    let handle = tokio::spawn(async move {
        let every = (lease / 3).max(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop_rx.changed() => break,
            }
            match store.heartbeat_job(&id, &token, lease).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!("lease lost; this worker will not commit the job");
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
    });
    Heartbeat { stop, handle }
}
