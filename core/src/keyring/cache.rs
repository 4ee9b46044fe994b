//! A small bounded, time-limited cache of unwrapped DEKs, keyed by subject reference.
//!
//! Hand-rolled rather than a crate: the whole policy is "at most N entries, each for at most T,
//! oldest out first", which a map and an insertion-ordered queue give in O(1) amortised time
//! under one mutex, with no background threads and nothing to audit beyond this file. Evicted,
//! expired and removed keys are dropped, and [`Dek`] zeroizes itself on drop.
//!
//! An *epoch* counter guards a race with shredding: a reader notes the epoch before it fetches a
//! key from the store, and its key is cached only if no removal happened meanwhile, so a key
//! fetched just before a shred cannot be put back into the cache just after it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Dek;

/// Default bound on cached DEKs.
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;
/// Default time a DEK stays cached.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);

pub(crate) struct DekCache {
    capacity: usize,
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// subject reference → (key, inserted at, insertion sequence number).
    map: HashMap<String, (Dek, Instant, u64)>,
    /// Insertion order; entries whose sequence number no longer matches the map are stale.
    order: VecDeque<(String, u64)>,
    seq: u64,
    epoch: u64,
}

impl DekCache {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            capacity,
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn enabled(&self) -> bool {
        self.capacity > 0 && !self.ttl.is_zero()
    }

    /// The current epoch; pass it to [`DekCache::insert`] after fetching from the store.
    pub(crate) fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    pub(crate) fn get(&self, subject_ref: &str, now: Instant) -> Option<Dek> {
        let mut inner = self.lock();
        let (dek, at, _) = inner.map.get(subject_ref)?;
        if now.saturating_duration_since(*at) < self.ttl {
            return Some(dek.clone());
        }
        inner.map.remove(subject_ref);
        None
    }

    /// Caches `dek` unless a removal happened since `epoch` was read.
    pub(crate) fn insert(&self, subject_ref: &str, dek: Dek, epoch: u64, now: Instant) {
        if !self.enabled() {
            return;
        }
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        let Inner {
            map, order, seq, ..
        } = &mut *inner;
        // Oldest out first: expired entries, then as many as needed to make room.
        while let Some((key, key_seq)) = order.front() {
            let current = map.get(key).filter(|(_, _, s)| s == key_seq);
            let expired =
                current.is_some_and(|(_, at, _)| now.saturating_duration_since(*at) >= self.ttl);
            let stale = current.is_none();
            let full = map.len() >= self.capacity && !map.contains_key(subject_ref);
            if !(stale || expired || full) {
                break;
            }
            let (key, _) = order.pop_front().expect("front exists");
            if !stale {
                map.remove(&key);
            }
        }
        *seq += 1;
        map.insert(subject_ref.to_string(), (dek, now, *seq));
        order.push_back((subject_ref.to_string(), *seq));
        if order.len() > 2 * self.capacity.max(16) {
            order.retain(|(key, s)| map.get(key).is_some_and(|(_, _, cur)| cur == s));
        }
    }

    /// Drops the reference's key (if cached) and starts a new epoch.
    pub(crate) fn remove(&self, subject_ref: &str) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.map.remove(subject_ref);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_never_holds_more_than_its_bound() {
        let cache = DekCache::new(8, Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..100 {
            cache.insert(&format!("r{i}"), Dek::generate(1), cache.epoch(), now);
            assert!(cache.len() <= 8);
        }
        assert_eq!(cache.len(), 8);
        // Oldest out first: the last eight stay.
        assert!(cache.get("r99", now).is_some());
        assert!(cache.get("r92", now).is_some());
        assert!(cache.get("r91", now).is_none());
        let order_len = cache.lock().order.len();
        assert!(order_len <= 32, "{order_len}");
    }

    #[test]
    fn entries_expire() {
        let cache = DekCache::new(8, Duration::from_secs(60));
        let now = Instant::now();
        cache.insert("r", Dek::generate(1), cache.epoch(), now);
        assert!(cache.get("r", now + Duration::from_secs(59)).is_some());
        assert!(cache.get("r", now + Duration::from_secs(60)).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_removal_blocks_a_late_insert_from_before_it() {
        let cache = DekCache::new(8, Duration::from_secs(60));
        let now = Instant::now();
        let epoch = cache.epoch();
        cache.remove("r");
        cache.insert("r", Dek::generate(1), epoch, now);
        assert!(cache.get("r", now).is_none());
        cache.insert("r", Dek::generate(1), cache.epoch(), now);
        assert!(cache.get("r", now).is_some());
    }

    #[test]
    fn a_zero_capacity_or_ttl_disables_the_cache() {
        let now = Instant::now();
        for cache in [
            DekCache::new(0, Duration::from_secs(60)),
            DekCache::new(8, Duration::ZERO),
        ] {
            cache.insert("r", Dek::generate(1), cache.epoch(), now);
            assert_eq!(cache.len(), 0);
        }
    }
}
