//! The tombstone journal: a copy of every tombstone kept outside the database.
//!
//! A database backup restored from before an erasure holds the erased subject's wrapped data
//! key again. The journal — a folder or an object store prefix that database backups do not
//! roll back — lists the subject references that were shredded (one empty-ish object each), and
//! [`TombstoneJournal::reapply`] destroys those keys again at start. Entries hold only the
//! keyed subject reference and a time: no personal data.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;

use super::{Keyring, KeyringError, ShredOutcome};

/// Where tombstones are journaled.
#[derive(Debug, Clone)]
pub struct TombstoneJournal {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
}

/// What [`TombstoneJournal::reapply`] did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReapplyReport {
    /// Entries in the journal.
    pub journal_entries: u64,
    /// Keys that were alive again (a restored backup) and were destroyed.
    pub keys_destroyed: u64,
    /// Tombstones missing from the database that were written back.
    pub tombstones_restored: u64,
}

impl TombstoneJournal {
    /// Opens the journal at `url_or_path` (a local folder, created if missing, or an object
    /// store URL such as `s3://bucket/lethe-tombstones`).
    ///
    /// # Errors
    /// [`KeyringError::Store`] when the folder cannot be created or the URL is not usable.
    pub fn open(url_or_path: &str) -> Result<Self, KeyringError> {
        if let Some(dir) = crate::lake::local_folder(url_or_path) {
            std::fs::create_dir_all(dir).map_err(|e| {
                KeyringError::store(format!("creating the tombstone journal {url_or_path}: {e}"))
            })?;
        }
        let (store, prefix) = crate::lake::object_store_for_url(url_or_path)
            .map_err(|e| KeyringError::store(format!("tombstone journal {url_or_path}: {e}")))?;
        Ok(Self {
            store,
            prefix,
            url: url_or_path.to_string(),
        })
    }

    /// Records that `subject_ref` is shredded. Idempotent.
    ///
    /// # Errors
    /// [`KeyringError::Store`] when the object cannot be written.
    pub async fn record(&self, subject_ref: &str) -> Result<(), KeyringError> {
        let body = serde_json::json!({ "shredded_at": crate::domain::to_db(chrono::Utc::now()) });
        self.store
            .put(
                &self.prefix.clone().join(subject_ref),
                PutPayload::from(body.to_string().into_bytes()),
            )
            .await
            .map_err(|e| {
                KeyringError::store(format!("journaling a tombstone in {}: {e}", self.url))
            })?;
        Ok(())
    }

    /// Every journaled subject reference.
    ///
    /// # Errors
    /// [`KeyringError::Store`] when the journal cannot be listed.
    pub async fn refs(&self) -> Result<Vec<String>, KeyringError> {
        let metas: Vec<_> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| {
                KeyringError::store(format!("listing the tombstone journal {}: {e}", self.url))
            })?;
        Ok(metas
            .into_iter()
            .filter_map(|m| m.location.filename().map(str::to_string))
            .filter(|name| !name.starts_with('.'))
            .collect())
    }

    /// Re-applies every journaled tombstone to the keyring's store: a key alive again (after a
    /// database restore) is destroyed, a missing tombstone is written back.
    ///
    /// # Errors
    /// Journal or key store errors.
    pub async fn reapply(&self, keyring: &Keyring) -> Result<ReapplyReport, KeyringError> {
        let mut report = ReapplyReport::default();
        for subject_ref in self.refs().await? {
            report.journal_entries += 1;
            match keyring.shred_ref_unjournaled(&subject_ref).await? {
                ShredOutcome::Destroyed => report.keys_destroyed += 1,
                ShredOutcome::NoKeyTombstoned => report.tombstones_restored += 1,
                ShredOutcome::AlreadyShredded => {}
            }
        }
        if report.keys_destroyed + report.tombstones_restored > 0 {
            tracing::warn!(
                keys_destroyed = report.keys_destroyed,
                tombstones_restored = report.tombstones_restored,
                "re-applied journaled tombstones: the database was restored from an older backup"
            );
        }
        Ok(report)
    }
}
