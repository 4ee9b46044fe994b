//! Where wrapped DEKs and tombstones live: the [`KeyStore`] trait and [`MemoryKeyStore`].

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{KeyringError, WrappedDek};

/// A subject's wrapped DEK as the key store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    /// The DEK, wrapped by a KEK.
    pub wrapped: WrappedDek,
    /// When the DEK was created (kept across KEK rotations).
    pub created_at: DateTime<Utc>,
}

/// Persistence of wrapped DEKs and tombstones, keyed by subject reference (a keyed hash of the
/// subject id, see [`super::SubjectHasher`]; never the id itself).
///
/// The database implements it; [`MemoryKeyStore`] serves tests and offline tools. The
/// guarantees below are what make crypto-shredding safe under races, and each method must
/// give them atomically (one transaction, or one conditional statement):
///
/// - a tombstone is permanent: no method removes it;
/// - once a reference is tombstoned, no method stores a key for it again;
/// - a tombstone holds the reference and the time only.
///
/// [`check_key_store_contract`](super::check_key_store_contract) tests an implementation
/// against these rules.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The live (not destroyed) key of `subject_ref`, if any.
    async fn get(&self, subject_ref: &str) -> Result<Option<StoredKey>, KeyringError>;

    /// The live keys of `subject_refs` (absent ones are left out), for bulk work such as
    /// ingest. The default asks [`KeyStore::get`] one by one.
    async fn get_many(
        &self,
        subject_refs: &[String],
    ) -> Result<Vec<(String, StoredKey)>, KeyringError> {
        let mut found = Vec::new();
        for r in subject_refs {
            if let Some(k) = self.get(r).await? {
                found.push((r.clone(), k));
            }
        }
        Ok(found)
    }

    /// Stores `key` unless the reference already has one, and returns the key that is stored
    /// afterwards: `key` itself, or the one another writer stored first (the winner of a race).
    ///
    /// # Errors
    /// [`KeyringError::Shredded`] when the reference is tombstoned (nothing is stored).
    async fn put_if_absent(
        &self,
        subject_ref: &str,
        key: &StoredKey,
    ) -> Result<StoredKey, KeyringError>;

    /// [`KeyStore::put_if_absent`] for many references at once (ingest of new subjects), with
    /// the same guarantees per reference: returns, per reference, the stored key, or `None`
    /// when it is tombstoned. The default calls `put_if_absent` one by one.
    ///
    /// # Errors
    /// Store errors (then some keys may be stored and others not; calling again is safe).
    async fn put_many_if_absent(
        &self,
        keys: &[(String, StoredKey)],
    ) -> Result<Vec<(String, Option<StoredKey>)>, KeyringError> {
        let mut out = Vec::with_capacity(keys.len());
        for (r, k) in keys {
            match self.put_if_absent(r, k).await {
                Ok(stored) => out.push((r.clone(), Some(stored))),
                Err(KeyringError::Shredded) => out.push((r.clone(), None)),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Deletes the reference's wrapped DEK and writes its tombstone (if not already there).
    /// Returns whether a key was deleted. Idempotent.
    async fn destroy(&self, subject_ref: &str) -> Result<bool, KeyringError>;

    /// Whether the reference has a tombstone.
    async fn is_tombstoned(&self, subject_ref: &str) -> Result<bool, KeyringError>;

    /// The tombstoned references among `subject_refs` (ingest and compaction check whole
    /// batches at once). The default asks [`KeyStore::is_tombstoned`] one by one.
    async fn tombstoned_among(&self, subject_refs: &[String]) -> Result<Vec<String>, KeyringError> {
        let mut found = Vec::new();
        for r in subject_refs {
            if self.is_tombstoned(r).await? {
                found.push(r.clone());
            }
        }
        Ok(found)
    }

    /// One page of live keys, ordered by reference, starting after `after` (from the start
    /// when `None`), at most `limit` long. Used by KEK rotation; paged so that millions of
    /// subjects never sit in memory at once.
    async fn list(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, StoredKey)>, KeyringError>;

    /// Compare-and-swap for KEK rotation: replaces the reference's key with `new` only if the
    /// stored key still equals `old`. Returns `false` (and changes nothing) when the key
    /// differs or is gone (destroyed meanwhile: a destroyed key is never brought back).
    async fn replace(
        &self,
        subject_ref: &str,
        old: &StoredKey,
        new: &StoredKey,
    ) -> Result<bool, KeyringError>;
}

/// An in-memory [`KeyStore`] for tests and offline tools; everything is lost on drop.
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    keys: BTreeMap<String, StoredKey>,
    /// Subject reference → when its key was destroyed.
    tombstones: BTreeMap<String, DateTime<Utc>>,
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // A panic while holding the lock cannot leave the maps half-changed (each change is
        // one insert or remove), so a poisoned lock is still safe to use.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many live keys and how many tombstones the store holds.
    pub fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.keys.len(), inner.tombstones.len())
    }
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn get(&self, subject_ref: &str) -> Result<Option<StoredKey>, KeyringError> {
        Ok(self.lock().keys.get(subject_ref).cloned())
    }

    async fn put_if_absent(
        &self,
        subject_ref: &str,
        key: &StoredKey,
    ) -> Result<StoredKey, KeyringError> {
        let mut inner = self.lock();
        if inner.tombstones.contains_key(subject_ref) {
            return Err(KeyringError::Shredded);
        }
        Ok(inner
            .keys
            .entry(subject_ref.to_string())
            .or_insert_with(|| key.clone())
            .clone())
    }

    async fn destroy(&self, subject_ref: &str) -> Result<bool, KeyringError> {
        let mut inner = self.lock();
        let deleted = inner.keys.remove(subject_ref).is_some();
        inner
            .tombstones
            .entry(subject_ref.to_string())
            .or_insert_with(Utc::now);
        Ok(deleted)
    }

    async fn is_tombstoned(&self, subject_ref: &str) -> Result<bool, KeyringError> {
        Ok(self.lock().tombstones.contains_key(subject_ref))
    }

    async fn list(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, StoredKey)>, KeyringError> {
        use std::ops::Bound;
        let inner = self.lock();
        let start = match after {
            Some(after) => Bound::Excluded(after.to_string()),
            None => Bound::Unbounded,
        };
        Ok(inner
            .keys
            .range((start, Bound::Unbounded))
            .take(limit)
            .map(|(r, k)| (r.clone(), k.clone()))
            .collect())
    }

    async fn replace(
        &self,
        subject_ref: &str,
        old: &StoredKey,
        new: &StoredKey,
    ) -> Result<bool, KeyringError> {
        let mut inner = self.lock();
        match inner.keys.get_mut(subject_ref) {
            Some(current) if current == old => {
                *current = new.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_store_keeps_the_contract() {
        super::super::check_key_store_contract(&MemoryKeyStore::new())
            .await
            .unwrap();
    }
}
