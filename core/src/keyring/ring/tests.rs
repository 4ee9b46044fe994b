use super::*;
use crate::keyring::cell::{CellContext, CellError, decrypt_cell, encrypt_cell};
use crate::keyring::{KeyStore, MemoryKeyStore};

fn subject(id: &str) -> SubjectId {
    SubjectId::parse(id).unwrap()
}

fn keyring_with(store: Arc<MemoryKeyStore>) -> Keyring {
    Keyring::new(
        Kek::generate(),
        store,
        SubjectHasher::new(&[9u8; 32]).unwrap(),
    )
}

fn keyring() -> (Keyring, Arc<MemoryKeyStore>) {
    let store = Arc::new(MemoryKeyStore::new());
    (keyring_with(store.clone()), store)
}

#[tokio::test]
async fn the_first_write_creates_one_key_and_later_calls_return_it() {
    let (keyring, store) = keyring();
    let alice = subject("alice");
    let first = keyring.dek_for_write(&alice).await.unwrap();
    let again = keyring.dek_for_write(&alice).await.unwrap();
    let read = keyring.dek_for_read(&alice).await.unwrap();
    assert_eq!(first.bytes(), again.bytes());
    assert_eq!(first.bytes(), read.bytes());
    assert_eq!(first.version(), 1);
    assert_eq!(store.counts(), (1, 0));
    let stored = store
        .get(&keyring.subject_ref(&alice))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.wrapped.kek_id, keyring.kek_id());

    // Without the cache too (the store is the source of truth).
    let uncached = keyring_with(store.clone()).with_cache(0, Duration::ZERO);
    assert!(matches!(
        uncached.dek_for_read(&alice).await,
        Err(KeyringError::UnknownKek { .. })
    ));
    let bob = subject("bob");
    let a = uncached.dek_for_write(&bob).await.unwrap();
    let b = uncached.dek_for_write(&bob).await.unwrap();
    assert_eq!(a.bytes(), b.bytes());
    assert_eq!(uncached.cached_keys(), 0);
}

#[tokio::test]
async fn a_subject_never_written_is_not_found() {
    let (keyring, _) = keyring();
    assert!(matches!(
        keyring.dek_for_read(&subject("nobody")).await,
        Err(KeyringError::NotFound)
    ));
}

async fn race_for_one_key(keyrings: Vec<Arc<Keyring>>) -> Vec<Vec<u8>> {
    let tasks: Vec<_> = keyrings
        .into_iter()
        .map(|keyring| {
            tokio::spawn(async move {
                let dek = keyring.dek_for_write(&subject("carol")).await.unwrap();
                dek.bytes().to_vec()
            })
        })
        .collect();
    let mut keys = Vec::new();
    for task in tasks {
        keys.push(task.await.unwrap());
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_writers_get_one_key() {
    // Eight tasks sharing one keyring.
    let keyring = Arc::new(keyring_with(Arc::new(MemoryKeyStore::new())));
    let keys = race_for_one_key(vec![keyring; 8]).await;
    assert!(keys.iter().all(|k| k == &keys[0]), "one key for everyone");

    // Eight keyrings (as if eight processes) sharing one store and KEK, no caches.
    let store = Arc::new(MemoryKeyStore::new());
    let raw = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [3u8; 32]);
    let keyrings = (0..8)
        .map(|_| {
            Arc::new(
                Keyring::new(
                    Kek::from_base64(&raw).unwrap(),
                    store.clone(),
                    SubjectHasher::new(&[9u8; 32]).unwrap(),
                )
                .with_cache(0, Duration::ZERO),
            )
        })
        .collect();
    let keys = race_for_one_key(keyrings).await;
    assert!(keys.iter().all(|k| k == &keys[0]), "one key for everyone");
    assert_eq!(store.counts(), (1, 0));
}

/// A store that lets every caller past `get` before any `put_if_absent` runs, so the race
/// is certain rather than likely.
struct RacyStore {
    inner: MemoryKeyStore,
    barrier: tokio::sync::Barrier,
}

#[async_trait::async_trait]
impl KeyStore for RacyStore {
    async fn get(&self, r: &str) -> Result<Option<StoredKey>, KeyringError> {
        let found = self.inner.get(r).await;
        self.barrier.wait().await;
        found
    }
    async fn put_if_absent(&self, r: &str, k: &StoredKey) -> Result<StoredKey, KeyringError> {
        self.inner.put_if_absent(r, k).await
    }
    async fn destroy(&self, r: &str) -> Result<bool, KeyringError> {
        self.inner.destroy(r).await
    }
    async fn is_tombstoned(&self, r: &str) -> Result<bool, KeyringError> {
        self.inner.is_tombstoned(r).await
    }
    async fn list(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, StoredKey)>, KeyringError> {
        self.inner.list(after, limit).await
    }
    async fn replace(&self, r: &str, o: &StoredKey, n: &StoredKey) -> Result<bool, KeyringError> {
        self.inner.replace(r, o, n).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks_racing_past_an_empty_store_still_share_one_key() {
    let store = Arc::new(RacyStore {
        inner: MemoryKeyStore::new(),
        barrier: tokio::sync::Barrier::new(8),
    });
    let keyring = Arc::new(Keyring::new(
        Kek::generate(),
        store.clone(),
        SubjectHasher::new(&[9u8; 32]).unwrap(),
    ));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let keyring = keyring.clone();
            tokio::spawn(async move {
                keyring
                    .dek_for_write(&subject("dave"))
                    .await
                    .unwrap()
                    .bytes()
                    .to_vec()
            })
        })
        .collect();
    let mut keys = Vec::new();
    for task in tasks {
        keys.push(task.await.unwrap());
    }
    assert!(keys.iter().all(|k| k == &keys[0]), "one key for everyone");
    assert_eq!(store.inner.counts(), (1, 0));
}

#[tokio::test]
async fn after_shredding_the_key_is_gone_everywhere_and_the_cell_unrecoverable() {
    let (keyring, store) = keyring();
    let alice = subject("alice-secret-id-4711");
    let ctx = CellContext {
        dataset: "runs",
        column: "email",
        subject_id: &alice,
    };
    let dek = keyring.dek_for_write(&alice).await.unwrap();
    let envelope = encrypt_cell(&dek, &ctx, b"alice@example.com");
    drop(dek);
    keyring.dek_for_write(&subject("bob")).await.unwrap();
    assert_eq!(keyring.cached_keys(), 2);

    assert_eq!(
        keyring.shred(&alice).await.unwrap(),
        ShredOutcome::Destroyed
    );
    assert_eq!(keyring.cached_keys(), 1, "evicted from the cache");
    assert!(matches!(
        keyring.dek_for_read(&alice).await,
        Err(KeyringError::Shredded)
    ));
    assert!(matches!(
        keyring.dek_for_write(&alice).await,
        Err(KeyringError::Shredded)
    ));
    let error = CellError::from(keyring.dek_for_read(&alice).await.unwrap_err());
    assert!(matches!(error, CellError::KeyDestroyed));

    // The store keeps bob's key and alice's tombstone, which names her only by reference.
    assert_eq!(store.counts(), (1, 1));
    let subject_ref = keyring.subject_ref(&alice);
    assert!(store.get(&subject_ref).await.unwrap().is_none());
    assert!(store.is_tombstoned(&subject_ref).await.unwrap());
    let dump = format!("{store:?}");
    assert!(dump.contains(&subject_ref), "the dump shows the store");
    assert!(!dump.contains("alice"), "{dump}");
    assert!(!dump.contains("4711"), "{dump}");

    // Nothing left can open the cell: no key in the store, and a fresh random key fails.
    assert!(matches!(
        decrypt_cell(&Dek::generate(1), &ctx, &envelope),
        Err(CellError::WrongKeyOrTampered)
    ));

    // Idempotent; and a subject never written gets a tombstone too.
    assert_eq!(
        keyring.shred(&alice).await.unwrap(),
        ShredOutcome::AlreadyShredded
    );
    assert_eq!(
        keyring.shred(&subject("eve")).await.unwrap(),
        ShredOutcome::NoKeyTombstoned
    );
    assert!(matches!(
        keyring.dek_for_write(&subject("eve")).await,
        Err(KeyringError::Shredded)
    ));
}

#[tokio::test]
async fn a_shred_by_another_process_stops_reads_here_at_once() {
    let store = Arc::new(MemoryKeyStore::new());
    let hasher = SubjectHasher::new(&[9u8; 32]).unwrap();
    let raw = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [5u8; 32]);
    let here = Keyring::new(
        Kek::from_base64(&raw).unwrap(),
        store.clone(),
        hasher.clone(),
    );
    let there = Keyring::new(Kek::from_base64(&raw).unwrap(), store.clone(), hasher);
    let alice = subject("alice");
    here.dek_for_write(&alice).await.unwrap();
    assert_eq!(here.cached_keys(), 1);
    there.shred(&alice).await.unwrap();
    assert!(matches!(
        here.dek_for_read(&alice).await,
        Err(KeyringError::Shredded)
    ));
}

#[tokio::test]
async fn kek_rotation_keeps_every_cell_readable_and_retires_the_old_kek() {
    let store = Arc::new(MemoryKeyStore::new());
    let old_raw = [1u8; 32];
    let b64 = |raw: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw);
    let keyring = Keyring::new(
        Kek::from_base64(&b64(&old_raw)).unwrap(),
        store.clone(),
        SubjectHasher::new(&[9u8; 32]).unwrap(),
    );
    let subjects: Vec<SubjectId> = (0..1203).map(|i| subject(&format!("user-{i}"))).collect();
    let mut cells = Vec::new();
    for id in &subjects {
        let dek = keyring.dek_for_write(id).await.unwrap();
        let ctx = CellContext {
            dataset: "runs",
            column: "email",
            subject_id: id,
        };
        cells.push(encrypt_cell(&dek, &ctx, id.as_str().as_bytes()));
    }
    keyring.shred(&subjects[0]).await.unwrap();

    let new_raw = [2u8; 32];
    let report = keyring
        .rotate_kek(Kek::from_base64(&b64(&new_raw)).unwrap())
        .await
        .unwrap();
    assert_eq!(report.keys_seen, 1202);
    assert_eq!(report.rewrapped, 1202);
    assert_eq!(report.already_current, 0);
    let new_id = Kek::from_base64(&b64(&new_raw)).unwrap().id().to_string();
    assert_eq!(report.new_kek_id, new_id);
    assert_eq!(keyring.kek_id(), new_id);

    // Every cell opens through a fresh keyring holding only the new KEK.
    let fresh = Keyring::new(
        Kek::from_base64(&b64(&new_raw)).unwrap(),
        store.clone(),
        SubjectHasher::new(&[9u8; 32]).unwrap(),
    );
    for (id, envelope) in subjects.iter().zip(&cells).skip(1) {
        let dek = fresh.dek_for_read(id).await.unwrap();
        let ctx = CellContext {
            dataset: "runs",
            column: "email",
            subject_id: id,
        };
        assert_eq!(
            decrypt_cell(&dek, &ctx, envelope).unwrap(),
            id.as_str().as_bytes()
        );
    }
    assert!(matches!(
        fresh.dek_for_read(&subjects[0]).await,
        Err(KeyringError::Shredded)
    ));

    // The old KEK unwraps nothing any more.
    let old = Kek::from_base64(&b64(&old_raw)).unwrap();
    for (subject_ref, stored) in store.list(None, usize::MAX).await.unwrap() {
        assert_eq!(stored.wrapped.kek_id, new_id);
        assert!(old.unwrap(&stored.wrapped, &subject_ref).is_err());
        let forged = crate::keyring::WrappedDek {
            kek_id: old.id().to_string(),
            ..stored.wrapped
        };
        assert!(matches!(
            old.unwrap(&forged, &subject_ref),
            Err(KeyringError::UnwrapFailed)
        ));
    }
    let old_only = Keyring::new(old, store.clone(), SubjectHasher::new(&[9u8; 32]).unwrap());
    assert!(matches!(
        old_only.dek_for_read(&subjects[1]).await,
        Err(KeyringError::UnknownKek { .. })
    ));

    // Resuming (same KEK again) re-wraps nothing.
    let again = keyring
        .rotate_kek(Kek::from_base64(&b64(&new_raw)).unwrap())
        .await
        .unwrap();
    assert_eq!((again.rewrapped, again.already_current), (0, 1202));
}

#[tokio::test]
async fn the_keyring_cache_stays_within_its_bound() {
    let (keyring, _) = keyring();
    let keyring = keyring.with_cache(16, Duration::from_secs(60));
    for i in 0..100 {
        keyring
            .dek_for_write(&subject(&format!("user-{i}")))
            .await
            .unwrap();
        assert!(keyring.cached_keys() <= 16);
    }
    assert_eq!(keyring.cached_keys(), 16);
}

#[tokio::test]
async fn the_keyring_debug_shows_no_keys() {
    let (keyring, _) = keyring();
    let dek = keyring.dek_for_write(&subject("alice")).await.unwrap();
    let text = format!("{keyring:?}");
    assert!(text.contains("cached_keys: 1"), "{text}");
    assert!(!text.contains(&hex::encode(dek.bytes())));
    assert!(!text.contains("alice"));
}
