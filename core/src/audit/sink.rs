//! Where checkpoints are kept outside the database: a local folder (the embedded default) or
//! an object-store prefix (`audit.checkpoint_url`, e.g. `s3://bucket/lethe-audit`), one object
//! per checkpoint, `<n as 12 digits>.json`, each written once with create-if-absent (a second
//! writer of the same `n` fails instead of replacing it). On S3, a bucket with Object Lock and a
//! default retention keeps every object immutable for that period.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::checkpoint::Checkpoint;

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
}

impl CheckpointSink {
    /// Opens the sink at `url_or_path`: a local folder (created if missing) or an object store
    /// URL (`s3://…`, `file://…`, `memory://…`).
    ///
    /// # Errors
    /// [`SinkError::Failed`] when the folder cannot be created or the URL is not usable.
    pub fn open(url_or_path: &str) -> Result<Self, SinkError> {
        let failed = |detail: String| SinkError::Failed {
            url: url_or_path.to_string(),
            detail,
        };
        if let Some(dir) = crate::lake::local_folder(url_or_path) {
            std::fs::create_dir_all(dir).map_err(|e| failed(format!("creating it: {e}")))?;
        }
        let (store, prefix) =
            crate::lake::object_store_for_url(url_or_path).map_err(|e| failed(e.to_string()))?;
        Ok(Self {
            store,
            prefix,
            url: url_or_path.to_string(),
            seen: Arc::default(),
        })
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

    /// Writes `checkpoint` unless checkpoint `n` exists.
    ///
    /// # Errors
    /// [`SinkError::AlreadyExists`] when it does; [`SinkError::Failed`] when the write fails.
    pub async fn append(&self, checkpoint: &Checkpoint) -> Result<(), SinkError> {
        let body = format!("{}\n", checkpoint.to_line());
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(
                &self.location(checkpoint.n),
                PutPayload::from(body.into_bytes()),
                options,
            )
            .await
        {
            Ok(_) => {
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
