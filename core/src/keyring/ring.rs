//! [`Keyring`]: gets, creates, destroys and re-wraps subjects' DEKs.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;

use super::cache::{DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL, DekCache};
use super::journal::TombstoneJournal;
use super::{Dek, Kek, KeyStore, KeyringError, StoredKey, SubjectHasher};
use crate::domain::SubjectId;

/// Version of a subject's first DEK.
const FIRST_KEY_VERSION: u32 = 1;
/// Keys read per page during KEK rotation.
const ROTATION_PAGE: usize = 500;
/// Compare-and-swap attempts per key during rotation before giving up on it.
const ROTATION_ATTEMPTS: usize = 5;

/// What [`Keyring::shred`] found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShredOutcome {
    /// The wrapped DEK existed and was deleted; a tombstone was written.
    Destroyed,
    /// The subject was already shredded; nothing changed.
    AlreadyShredded,
    /// The subject never had a key; a tombstone was written so none is ever created.
    NoKeyTombstoned,
}

/// What [`Keyring::rotate_kek`] did: counts of keys, and how long it took.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RotationReport {
    /// Id of the KEK every key is now wrapped by.
    pub new_kek_id: String,
    /// Keys read from the store.
    pub keys_seen: u64,
    /// Keys re-wrapped under the new KEK.
    pub rewrapped: u64,
    /// Keys already wrapped by the new KEK (e.g. a resumed rotation), left as they were.
    pub already_current: u64,
    /// Keys destroyed (shredded) while the rotation ran, so there was nothing to re-wrap.
    pub destroyed_meanwhile: u64,
    /// Wall-clock duration in seconds.
    pub seconds: f64,
}

struct Keks {
    current: Arc<Kek>,
    /// KEKs that may still have wrapped some stored keys; used to unwrap only.
    previous: Vec<Arc<Kek>>,
}

impl Keks {
    fn find(&self, kek_id: &str) -> Option<Arc<Kek>> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id() == kek_id)
            .cloned()
    }
}

/// The keyring: one DEK per data subject, created on first write, destroyed on erasure.
///
/// Keys are stored wrapped by the current KEK under the subject's reference
/// ([`SubjectHasher`]). Unwrapped DEKs are cached briefly for writes (at most
/// [`DEFAULT_CACHE_CAPACITY`] keys for [`DEFAULT_CACHE_TTL`] by default; zeroized when evicted,
/// never logged). Reads ([`Keyring::dek_for_read`]) always ask the store, so once a key is
/// destroyed no process returns it, whatever its cache holds.
pub struct Keyring {
    keks: RwLock<Keks>,
    store: Arc<dyn KeyStore>,
    hasher: SubjectHasher,
    cache: DekCache,
    journal: Option<Arc<TombstoneJournal>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("kek_id", &self.current_kek().id())
            .field("cached_keys", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// A keyring wrapping new keys with `kek`, keeping them in `store`, and naming subjects by
    /// `subject_hasher`'s keyed hash; with the default cache.
    pub fn new(kek: Kek, store: Arc<dyn KeyStore>, subject_hasher: SubjectHasher) -> Self {
        Self {
            keks: RwLock::new(Keks {
                current: Arc::new(kek),
                previous: Vec::new(),
            }),
            store,
            hasher: subject_hasher,
            cache: DekCache::new(DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL),
            journal: None,
        }
    }

    /// Journals every shred in `journal` (before the key is destroyed), so that a database
    /// restored from an older backup can be re-shredded ([`TombstoneJournal::reapply`]).
    pub fn with_journal(mut self, journal: Arc<TombstoneJournal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The tombstone journal, if any.
    pub fn journal(&self) -> Option<&Arc<TombstoneJournal>> {
        self.journal.as_ref()
    }

    /// Replaces the cache by one holding at most `capacity` keys, each for at most `ttl`
    /// (`0` or `Duration::ZERO` turn caching off).
    pub fn with_cache(mut self, capacity: usize, ttl: Duration) -> Self {
        self.cache = DekCache::new(capacity, ttl);
        self
    }

    /// Adds a KEK used only to unwrap keys it wrapped: an older KEK during a rotation rolled out
    /// across several processes (see `docs/encryption.md`, rotation).
    pub fn with_previous_kek(self, kek: Kek) -> Self {
        self.write_keks().previous.push(Arc::new(kek));
        self
    }

    fn read_keks(&self) -> std::sync::RwLockReadGuard<'_, Keks> {
        self.keks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_keks(&self) -> std::sync::RwLockWriteGuard<'_, Keks> {
        self.keks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn current_kek(&self) -> Arc<Kek> {
        self.read_keks().current.clone()
    }

    /// The current KEK, for sealing blobs ([`super::blob`]).
    pub(super) fn current_kek_for_blobs(&self) -> Arc<Kek> {
        self.current_kek()
    }

    /// Unwraps a blob key wrapped for `context` by this keyring's current or a previous KEK.
    pub(super) fn unwrap_for_blobs(
        &self,
        wrapped: &super::WrappedDek,
        context: &str,
    ) -> Result<Dek, KeyringError> {
        let kek =
            self.read_keks()
                .find(&wrapped.kek_id)
                .ok_or_else(|| KeyringError::UnknownKek {
                    kek_id: wrapped.kek_id.clone(),
                })?;
        kek.unwrap(wrapped, context)
    }

    /// Id of the KEK new keys are wrapped with.
    pub fn kek_id(&self) -> String {
        self.current_kek().id().to_string()
    }

    /// The key-store reference of `subject` (64 hex digits; no personal data). What the store
    /// and the tombstones are keyed by; safe to log and to audit.
    pub fn subject_ref(&self, subject: &SubjectId) -> String {
        self.hasher.subject_ref(subject)
    }

    /// The hasher of subject references ([`SubjectHasher`]).
    pub fn hasher(&self) -> &SubjectHasher {
        &self.hasher
    }

    /// [`SubjectHasher::erased_email`]: what an erased subject's account keeps in place of
    /// `email`.
    pub fn erased_email(&self, email: &str) -> String {
        self.hasher.erased_email(email)
    }

    /// [`Keyring::subject_ref`] of a subject id read from a lake row.
    pub fn subject_ref_str(&self, subject: &str) -> String {
        self.hasher.subject_ref_str(subject)
    }

    /// Number of DEKs in the cache right now.
    pub fn cached_keys(&self) -> usize {
        self.cache.len()
    }

    fn unwrap_stored(&self, subject_ref: &str, stored: &StoredKey) -> Result<Dek, KeyringError> {
        let kek = self
            .read_keks()
            .find(&stored.wrapped.kek_id)
            .ok_or_else(|| KeyringError::UnknownKek {
                kek_id: stored.wrapped.kek_id.clone(),
            })?;
        kek.unwrap(&stored.wrapped, subject_ref)
    }

    /// The subject's DEK for encrypting new cells, created on first use.
    ///
    /// Race-safe: concurrent first writers (in any process) all get the one key the store kept
    /// ([`KeyStore::put_if_absent`]).
    ///
    /// # Errors
    /// [`KeyringError::Shredded`] when the subject was erased (ingest must drop the row);
    /// store and unwrap errors.
    #[tracing::instrument(skip_all)]
    pub async fn dek_for_write(&self, subject: &SubjectId) -> Result<Dek, KeyringError> {
        let subject_ref = self.subject_ref(subject);
        if let Some(dek) = self.cache.get(&subject_ref, Instant::now()) {
            return Ok(dek);
        }
        let epoch = self.cache.epoch();
        let dek = match self.store.get(&subject_ref).await? {
            Some(stored) => self.unwrap_stored(&subject_ref, &stored)?,
            None => {
                let dek = Dek::generate(FIRST_KEY_VERSION);
                let mine = StoredKey {
                    wrapped: self.current_kek().wrap(&dek, &subject_ref),
                    created_at: Utc::now(),
                };
                let winner = self.store.put_if_absent(&subject_ref, &mine).await?;
                if winner.wrapped == mine.wrapped {
                    dek
                } else {
                    self.unwrap_stored(&subject_ref, &winner)?
                }
            }
        };
        self.cache
            .insert(&subject_ref, dek.clone(), epoch, Instant::now());
        Ok(dek)
    }

    /// The DEKs for encrypting new cells of many subjects at once (ingest): one store read per
    /// 500 subjects for existing keys, then one conditional insert per new subject. Subjects
    /// whose key was destroyed (tombstoned, even during the call) are returned in the second
    /// set instead.
    ///
    /// # Errors
    /// Store and unwrap errors.
    pub async fn deks_for_write_many(
        &self,
        subjects: &[SubjectId],
    ) -> Result<(Vec<(SubjectId, Dek)>, Vec<SubjectId>), KeyringError> {
        let now = Instant::now();
        let mut keys = Vec::with_capacity(subjects.len());
        let mut missing: std::collections::HashMap<String, &SubjectId> =
            std::collections::HashMap::new();
        for s in subjects {
            let r = self.subject_ref(s);
            match self.cache.get(&r, now) {
                Some(dek) => keys.push((s.clone(), dek)),
                None => {
                    missing.insert(r, s);
                }
            }
        }
        let refs: Vec<String> = missing.keys().cloned().collect();
        for (r, stored) in self.store.get_many(&refs).await? {
            if let Some(s) = missing.remove(&r) {
                keys.push((s.clone(), self.unwrap_stored(&r, &stored)?));
            }
        }
        let mut shredded = Vec::new();
        let kek = self.current_kek();
        let mut fresh: std::collections::HashMap<String, Dek> = std::collections::HashMap::new();
        let mut batch = Vec::with_capacity(missing.len());
        for r in missing.keys() {
            let dek = Dek::generate(FIRST_KEY_VERSION);
            batch.push((
                r.clone(),
                StoredKey {
                    wrapped: kek.wrap(&dek, r),
                    created_at: Utc::now(),
                },
            ));
            fresh.insert(r.clone(), dek);
        }
        let mine: std::collections::HashMap<&str, &StoredKey> =
            batch.iter().map(|(r, k)| (r.as_str(), k)).collect();
        for (r, stored) in self.store.put_many_if_absent(&batch).await? {
            let subject = missing[&r];
            match stored {
                None => shredded.push(subject.clone()),
                Some(stored)
                    if mine
                        .get(r.as_str())
                        .is_some_and(|k| k.wrapped == stored.wrapped) =>
                {
                    let dek = fresh.remove(&r).expect("generated above");
                    keys.push((subject.clone(), dek));
                }
                // Another writer created the subject's key first: use theirs.
                Some(stored) => keys.push((subject.clone(), self.unwrap_stored(&r, &stored)?)),
            }
        }
        Ok((keys, shredded))
    }

    /// The subject's DEK for decrypting their cells. Always read from the store (not the
    /// cache), so a key destroyed by any process is never returned.
    ///
    /// # Errors
    /// [`KeyringError::Shredded`] when the key was destroyed; [`KeyringError::NotFound`] when
    /// the subject never had one; store and unwrap errors.
    #[tracing::instrument(skip_all)]
    pub async fn dek_for_read(&self, subject: &SubjectId) -> Result<Dek, KeyringError> {
        let subject_ref = self.subject_ref(subject);
        let epoch = self.cache.epoch();
        match self.store.get(&subject_ref).await? {
            Some(stored) => {
                let dek = self.unwrap_stored(&subject_ref, &stored)?;
                self.cache
                    .insert(&subject_ref, dek.clone(), epoch, Instant::now());
                Ok(dek)
            }
            None if self.store.is_tombstoned(&subject_ref).await? => Err(KeyringError::Shredded),
            None => Err(KeyringError::NotFound),
        }
    }

    /// The subjects among `subjects` whose key was destroyed, asked of the store (never the
    /// cache), for a whole batch at once: ingest drops their rows, compaction removes them.
    ///
    /// # Errors
    /// Store errors.
    pub async fn shredded_among<'a>(
        &self,
        subjects: impl IntoIterator<Item = &'a str>,
    ) -> Result<std::collections::HashSet<String>, KeyringError> {
        let by_ref: std::collections::HashMap<String, &str> = subjects
            .into_iter()
            .map(|s| (self.hasher.subject_ref_str(s), s))
            .collect();
        let refs: Vec<String> = by_ref.keys().cloned().collect();
        let tombstoned = self.store.tombstoned_among(&refs).await?;
        Ok(tombstoned
            .iter()
            .filter_map(|r| by_ref.get(r).map(|s| (*s).to_string()))
            // The stand-in of a subject whose erasure completed is erased by construction.
            .chain(
                by_ref
                    .values()
                    .filter(|s| s.starts_with(crate::domain::ERASED_SUBJECT_PREFIX))
                    .map(|s| (*s).to_string()),
            )
            .collect())
    }

    /// Crypto-shreds the subject: deletes the wrapped DEK, writes the tombstone, drops the key
    /// from this process's cache. Idempotent. From then on every cell sealed with that key is
    /// unreadable, wherever its copies are (GDPR Art. 17(1)).
    ///
    /// # Errors
    /// Store errors (then nothing may have changed; retry).
    #[tracing::instrument(skip_all)]
    pub async fn shred(&self, subject: &SubjectId) -> Result<ShredOutcome, KeyringError> {
        let subject_ref = self.subject_ref(subject);
        self.shred_ref(&subject_ref).await
    }

    /// [`Keyring::shred`] by subject reference: re-applies a tombstone known only by its
    /// reference (e.g. after restoring an older database backup).
    ///
    /// # Errors
    /// Store errors.
    #[tracing::instrument(skip(self), fields(subject_ref = %subject_ref))]
    pub async fn shred_ref(&self, subject_ref: &str) -> Result<ShredOutcome, KeyringError> {
        // Journal first: a crash after this line is repaired by the next start's reapply.
        if let Some(journal) = &self.journal {
            journal.record(subject_ref).await?;
        }
        self.shred_ref_unjournaled(subject_ref).await
    }

    /// [`Keyring::shred_ref`] without writing the journal (used when replaying it).
    ///
    /// # Errors
    /// Store errors.
    pub(crate) async fn shred_ref_unjournaled(
        &self,
        subject_ref: &str,
    ) -> Result<ShredOutcome, KeyringError> {
        let was_tombstoned = self.store.is_tombstoned(subject_ref).await?;
        let destroyed = self.store.destroy(subject_ref).await;
        // Evict whatever happened: a failed destroy may still have committed.
        self.cache.remove(subject_ref);
        let outcome = match (destroyed?, was_tombstoned) {
            (true, _) => ShredOutcome::Destroyed,
            (false, true) => ShredOutcome::AlreadyShredded,
            (false, false) => ShredOutcome::NoKeyTombstoned,
        };
        tracing::info!(?outcome, "subject key shredded");
        Ok(outcome)
    }

    /// Re-wraps every stored DEK under `new` with compare-and-swap; the lake is not touched
    /// (cells are sealed by DEKs, which do not change).
    ///
    /// From the call on, new keys are wrapped by `new`. Keys already wrapped by `new` are left
    /// alone, so an interrupted rotation is resumed by calling it again with the same KEK. On
    /// success the keyring forgets every other KEK; on error it keeps them all.
    ///
    /// # Errors
    /// [`KeyringError::UnknownKek`] for a key wrapped by a KEK this keyring does not hold;
    /// [`KeyringError::UnwrapFailed`] for a key that does not authenticate; store errors.
    #[tracing::instrument(skip_all)]
    pub async fn rotate_kek(&self, new: Kek) -> Result<RotationReport, KeyringError> {
        let started = Instant::now();
        let new = Arc::new(new);
        {
            let mut keks = self.write_keks();
            if keks.current.id() != new.id() {
                let old = std::mem::replace(&mut keks.current, new.clone());
                keks.previous.push(old);
            }
        }
        let mut report = RotationReport {
            new_kek_id: new.id().to_string(),
            ..RotationReport::default()
        };
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list(after.as_deref(), ROTATION_PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let full_page = page.len() == ROTATION_PAGE;
            for (subject_ref, stored) in page {
                report.keys_seen += 1;
                self.rewrap_one(&new, &subject_ref, stored, &mut report)
                    .await?;
            }
            if !full_page {
                break;
            }
        }
        self.write_keks().previous.clear();
        report.seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            new_kek_id = %report.new_kek_id,
            rewrapped = report.rewrapped,
            already_current = report.already_current,
            destroyed_meanwhile = report.destroyed_meanwhile,
            "KEK rotation finished"
        );
        Ok(report)
    }

    async fn rewrap_one(
        &self,
        new: &Kek,
        subject_ref: &str,
        mut stored: StoredKey,
        report: &mut RotationReport,
    ) -> Result<(), KeyringError> {
        for _ in 0..ROTATION_ATTEMPTS {
            if stored.wrapped.kek_id == new.id() {
                report.already_current += 1;
                return Ok(());
            }
            let dek = self.unwrap_stored(subject_ref, &stored)?;
            let rewrapped = StoredKey {
                wrapped: new.wrap(&dek, subject_ref),
                created_at: stored.created_at,
            };
            if self.store.replace(subject_ref, &stored, &rewrapped).await? {
                report.rewrapped += 1;
                return Ok(());
            }
            match self.store.get(subject_ref).await? {
                Some(changed) => stored = changed,
                None => {
                    report.destroyed_meanwhile += 1;
                    return Ok(());
                }
            }
        }
        Err(KeyringError::store(format!(
            "key {subject_ref} kept changing during KEK rotation; run the rotation again"
        )))
    }
}

#[cfg(test)]
mod tests;
