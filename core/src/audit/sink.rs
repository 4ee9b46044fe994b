//! Where checkpoints are kept outside the database: a local folder (the embedded default) or
//! an object-store prefix (`audit.checkpoint_url`, e.g. `s3://bucket/lethe-audit`), one object
//! per checkpoint, `<n as 12 digits>.json`, each written once with create-if-absent (a second
//! writer of the same `n` fails instead of replacing it).
//!
//! On S3, before the first write the sink reads the bucket's Object Lock configuration
//! (`GetObjectLockConfiguration`). When Object Lock is enabled, each checkpoint is written
//! with its own retention (`x-amz-object-lock-mode`, `x-amz-object-lock-retain-until-date`):
//! the mode of the bucket's default retention rule (`COMPLIANCE` when it has none) for
//! `audit.checkpoint_retention_days` days (default: the rule's period, else
//! [`DEFAULT_RETENTION_DAYS`]), so no one — the database's administrators included — can
//! delete or overwrite a checkpoint version before then. When the bucket has no Object Lock
//! (or its configuration cannot be read), a warning is logged once and checkpoints are only
//! as immutable as the bucket's policy makes them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::sync::OnceCell;

use super::checkpoint::Checkpoint;
use crate::lake::StoreOptions;
use crate::lake::s3::{LockMode, S3Client};

/// Retention of a checkpoint on an S3 bucket with Object Lock and no default retention rule,
/// when `audit.checkpoint_retention_days` is unset: 2,555 days (7 years).
pub const DEFAULT_RETENTION_DAYS: u32 = 2555;

/// How [`CheckpointSink::open_with`] opens a sink.
#[derive(Debug, Clone, Default)]
pub struct CheckpointSinkOptions {
    /// Settings of an `s3://` sink (default: the AWS environment variables).
    pub store: StoreOptions,
    /// Days each checkpoint stays locked on an S3 bucket with Object Lock
    /// (`audit.checkpoint_retention_days`); `None`: the bucket's default retention period,
    /// else [`DEFAULT_RETENTION_DAYS`].
    pub retention_days: Option<u32>,
}

/// The Object Lock retention each checkpoint is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointRetention {
    /// `COMPLIANCE` or `GOVERNANCE`.
    pub mode: LockMode,
    /// Days from the write.
    pub days: u32,
}

/// Errors of the checkpoint sink; each names the location.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Checkpoint `n` exists already (another replica wrote it first).
    #[error("checkpoint {0} already exists in the sink")]
    AlreadyExists(i64),
    /// The sink failed or holds something that is not a checkpoint.
    #[error("audit checkpoint sink {url}: {detail}")]
    Failed {
        /// The sink.
        url: String,
        /// What failed.
        detail: String,
    },
}

/// The checkpoint sink.
#[derive(Debug, Clone)]
pub struct CheckpointSink {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
    /// Checkpoints read so far, by `n`: objects are written once, so they need reading once.
    seen: Arc<Mutex<BTreeMap<i64, Checkpoint>>>,
    /// Signed S3 requests (Object Lock), on an `s3://` sink.
    s3: Option<Arc<S3Client>>,
    retention_days: Option<u32>,
    /// The retention of each write, read from the bucket once (`None`: no Object Lock).
    retention: Arc<OnceCell<Option<CheckpointRetention>>>,
}

impl CheckpointSink {
    /// Opens the sink at `url_or_path`: a local folder (created if missing) or an object store
    /// URL (`s3://…`, `file://…`, `memory://…`), with S3 settings from the environment and the
    /// default retention ([`CheckpointSinkOptions::default`]).
    ///
    /// # Errors
    /// [`SinkError::Failed`] when the folder cannot be created or the URL is not usable.
    pub fn open(url_or_path: &str) -> Result<Self, SinkError> {
        Self::open_with(url_or_path, &CheckpointSinkOptions::default())
    }

    /// Opens the sink at `url_or_path` with `options`. Nothing is contacted here; an S3
    /// bucket's Object Lock configuration is read before the first write (see the module
    /// documentation, and [`retention`](Self::retention)).
    ///
    /// # Errors
    /// [`SinkError::Failed`] when the folder cannot be created or the URL is not usable.
    pub fn open_with(
        url_or_path: &str,
        options: &CheckpointSinkOptions,
    ) -> Result<Self, SinkError> {
        let failed = |detail: String| SinkError::Failed {
            url: url_or_path.to_string(),
            detail,
        };
        if let Some(dir) = crate::lake::local_folder(url_or_path) {
            std::fs::create_dir_all(dir).map_err(|e| failed(format!("creating it: {e}")))?;
        }
        let built = crate::lake::store::build(url_or_path, &options.store)
            .map_err(|e| failed(e.to_string()))?;
        Ok(Self {
            store: built.store,
            prefix: built.prefix,
            url: url_or_path.to_string(),
            seen: Arc::default(),
            s3: built.s3,
            retention_days: options.retention_days,
            retention: Arc::default(),
        })
    }

    /// The Object Lock retention checkpoints are written with: read from the S3 bucket the
    /// first time (`GetObjectLockConfiguration`), then remembered. `None` off S3, and on a
    /// bucket without Object Lock or whose configuration cannot be read (a warning is logged:
    /// the sink is then only as immutable as the bucket's policy).
    pub async fn retention(&self) -> Option<CheckpointRetention> {
        let Some(s3) = &self.s3 else {
            return None;
        };
        *self
            .retention
            .get_or_init(|| async {
                match s3.object_lock_configuration().await {
                    Ok(config) if config.enabled => {
                        let (mode, default_days) = match config.default_retention {
                            Some((mode, days)) => (mode, Some(days)),
                            None => (LockMode::Compliance, None),
                        };
                        let days = self
                            .retention_days
                            .or(default_days)
                            .unwrap_or(DEFAULT_RETENTION_DAYS)
                            .max(1);
                        tracing::info!(sink = %self.url, ?mode, days, "audit checkpoints are written with an S3 Object Lock retention");
                        Some(CheckpointRetention { mode, days })
                    }
                    Ok(_) => {
                        tracing::warn!(sink = %self.url, "the audit checkpoint bucket has no S3 Object Lock: checkpoints are only as immutable as the bucket's policy");
                        None
                    }
                    Err(e) => {
                        tracing::warn!(sink = %self.url, error = %e, "the audit checkpoint bucket's Object Lock configuration cannot be read: checkpoints are written without a retention");
                        None
                    }
                }
            })
            .await
    }

    /// The sink's URL or folder, as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn failed(&self, detail: String) -> SinkError {
        SinkError::Failed {
            url: self.url.clone(),
            detail,
        }
    }

    fn location(&self, n: i64) -> Path {
        self.prefix.clone().join(format!("{n:012}.json"))
    }

    /// Writes `checkpoint` unless checkpoint `n` exists; on an S3 bucket with Object Lock,
    /// locked for the [`retention`](Self::retention) (`PutObject` with
    /// `x-amz-object-lock-mode` and `x-amz-object-lock-retain-until-date`).
    ///
    /// # Errors
    /// [`SinkError::AlreadyExists`] when it does; [`SinkError::Failed`] when the write fails.
    pub async fn append(&self, checkpoint: &Checkpoint) -> Result<(), SinkError> {
        let body = format!("{}\n", checkpoint.to_line());
        let location = self.location(checkpoint.n);
        let written = match (&self.s3, self.retention().await) {
            (Some(s3), Some(retention)) => {
                let until = chrono::Utc::now() + chrono::Duration::days(i64::from(retention.days));
                s3.put_locked(&location, body.into_bytes().into(), retention.mode, until)
                    .await
                    .map(|_| ())
            }
            _ => {
                let options = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                self.store
                    .put_opts(&location, PutPayload::from(body.into_bytes()), options)
                    .await
                    .map(|_| ())
            }
        };
        match written {
            Ok(()) => {
                self.seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(checkpoint.n, checkpoint.clone());
                Ok(())
            }
            Err(object_store::Error::AlreadyExists { .. }) => {
                Err(SinkError::AlreadyExists(checkpoint.n))
            }
            Err(e) => Err(self.failed(format!("writing checkpoint {}: {e}", checkpoint.n))),
        }
    }

    /// Every checkpoint in the sink, in order of `n` (their chain is not checked here: see
    /// [`super::verify_checkpoints`]).
    ///
    /// # Errors
    /// [`SinkError::Failed`] when the sink cannot be listed or read, or an object is not a
    /// checkpoint or is not where its `n` says.
    pub async fn list(&self) -> Result<Vec<Checkpoint>, SinkError> {
        let metas: Vec<_> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| self.failed(format!("listing: {e}")))?;
        let mut names: Vec<(i64, Path)> = metas
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?;
                let n = name.strip_suffix(".json")?.parse::<i64>().ok()?;
                Some((n, m.location))
            })
            .collect();
        names.sort_by_key(|(n, _)| *n);
        let mut checkpoints = Vec::with_capacity(names.len());
        for (n, location) in names {
            let cached = self
                .seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&n)
                .cloned();
            if let Some(checkpoint) = cached {
                checkpoints.push(checkpoint);
                continue;
            }
            let read = async { self.store.get(&location).await?.bytes().await };
            let bytes = read
                .await
                .map_err(|e| self.failed(format!("reading {location}: {e}")))?;
            let checkpoint: Checkpoint = serde_json::from_slice(&bytes)
                .map_err(|e| self.failed(format!("{location} is not a checkpoint: {e}")))?;
            if checkpoint.n != n {
                return Err(self.failed(format!(
                    "{location} holds checkpoint {}, not {n}",
                    checkpoint.n
                )));
            }
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(n, checkpoint.clone());
            checkpoints.push(checkpoint);
        }
        Ok(checkpoints)
    }
}
