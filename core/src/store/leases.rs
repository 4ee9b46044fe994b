//! Leases on a dataset's files: who may rewrite them right now.
//!
//! Every rewrite swaps one file conditionally (a compare-and-swap on the object), which keeps
//! two rewrites of the *same* file from losing each other's work. Compaction and residency
//! remediation are different: they read several files, write new ones elsewhere and delete the
//! inputs, so a rectification or an erasure that rewrote an input meanwhile would be undone by
//! the delete. They hold the dataset [`LeaseMode::Exclusive`]ly; erasure tasks and
//! rectifications hold it [`LeaseMode::Shared`], so many of them still run at once.
//!
//! A lease is a row in `dataset_leases` with an expiry. [`HeldDatasetLease`] renews it every
//! third of its time to live while the holder works and deletes it at the end; a holder that
//! dies leaves a row that expires and is then ignored (and deleted by the next acquisition).
//! On PostgreSQL acquisitions of one dataset serialise on a transaction-scoped advisory lock;
//! on SQLite the first statement of the transaction is a write, which takes the database's
//! writer lock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::db::{Store, db, now};
use super::rows::{get_s, get_ts};
use super::{Backend, StoreError, StoreResult};
use crate::domain::to_db;
use crate::lake::CommitGuard;
use serde::Deserialize;
use serde::Serialize;

/// How a holder uses a dataset's files while it holds a [`DatasetLease`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseMode {
    /// Rewrites some files in place, each with a conditional swap (erasure tasks,
    /// rectification): any number of shared holders at once.
    Shared,
    /// Replaces or moves files wholesale (compaction, residency remediation): no other holder.
    Exclusive,
}

impl LeaseMode {
    /// Stable name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseMode::Shared => "shared",
            LeaseMode::Exclusive => "exclusive",
        }
    }
}

/// A time-limited claim on a dataset's files. Holders renew it while they work; one whose
/// holder died expires at `expires_at` and no longer blocks anyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetLease {
    /// The dataset.
    pub dataset_id: String,
    /// Who holds it, e.g. `job:<id>` or `cli:<uuid>`.
    pub holder: String,
    /// Shared or exclusive.
    pub mode: LeaseMode,
    /// What the holder is doing, e.g. `compaction`; shown to whoever is kept waiting.
    pub purpose: String,
    /// When the holder first took it.
    pub acquired_at: chrono::DateTime<chrono::Utc>,
    /// When it lapses unless renewed.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl std::fmt::Display for DatasetLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, {} lease until {})",
            self.purpose,
            self.holder,
            self.mode.as_str(),
            self.expires_at.format("%Y-%m-%dT%H:%M:%SZ")
        )
    }
}

/// How long a dataset lease lives without renewal. A holder renews every third of it, so a
/// stalled or killed holder blocks others for at most this long.
pub const DATASET_LEASE_TTL: Duration = Duration::from_secs(60);

const COLS: &str = "dataset_id, holder, mode, purpose, acquired_at, expires_at";

fn lease_from(row: &AnyRow) -> StoreResult<DatasetLease> {
    let t = "dataset_leases";
    let mode = match get_s(row, t, "mode")?.as_str() {
        "shared" => LeaseMode::Shared,
        "exclusive" => LeaseMode::Exclusive,
        other => return Err(super::rows::corrupt(t, format!("mode: {other}"))),
    };
    Ok(DatasetLease {
        dataset_id: get_s(row, t, "dataset_id")?,
        holder: get_s(row, t, "holder")?,
        mode,
        purpose: get_s(row, t, "purpose")?,
        acquired_at: get_ts(row, t, "acquired_at")?,
        expires_at: get_ts(row, t, "expires_at")?,
    })
}

/// The lease of another holder that keeps `mode` from being granted, if any.
async fn blocking_lease(
    conn: &mut AnyConnection,
    dataset_id: &str,
    holder: &str,
    mode: LeaseMode,
) -> StoreResult<Option<DatasetLease>> {
    let conflicting = match mode {
        LeaseMode::Exclusive => "",
        LeaseMode::Shared => " AND mode = 'exclusive'",
    };
    sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLS} FROM dataset_leases WHERE dataset_id = $1 AND holder <> $2{conflicting} \
         ORDER BY expires_at DESC LIMIT 1"
    )))
    .bind(dataset_id)
    .bind(holder)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("reading dataset leases"))?
    .as_ref()
    .map(lease_from)
    .transpose()
}

impl Store {
    /// Takes (or, for the same `holder`, renews) a `mode` lease on dataset `dataset_id`'s
    /// files for `ttl`: shared leases coexist; an exclusive one excludes every other holder.
    /// Expired leases are ignored. Use [`HeldDatasetLease`], which renews and releases.
    ///
    /// # Errors
    /// [`StoreError::DatasetBusy`] naming the lease in the way.
    pub async fn acquire_dataset_lease(
        &self,
        dataset_id: &str,
        holder: &str,
        mode: LeaseMode,
        purpose: &str,
        ttl: Duration,
    ) -> StoreResult<DatasetLease> {
        let at = now();
        let expires = at + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let mut tx = self.begin_write().await?;
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("dataset_lease:{dataset_id}"))
                .execute(&mut *tx)
                .await
                .map_err(db("locking a dataset's leases"))?;
        }
        // On SQLite this write comes first so that the transaction holds the writer lock
        // before it reads: two acquisitions cannot both see a free dataset.
        sqlx::query("DELETE FROM dataset_leases WHERE dataset_id = $1 AND expires_at < $2")
            .bind(dataset_id)
            .bind(to_db(at))
            .execute(&mut *tx)
            .await
            .map_err(db("dropping expired dataset leases"))?;
        if let Some(blocking) = blocking_lease(&mut tx, dataset_id, holder, mode).await? {
            tx.commit().await.map_err(db("committing dataset leases"))?;
            return Err(StoreError::DatasetBusy(Box::new(blocking)));
        }
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO dataset_leases ({COLS}) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (dataset_id, holder) DO UPDATE SET mode = excluded.mode, \
               purpose = excluded.purpose, expires_at = excluded.expires_at \
             RETURNING {COLS}"
        )))
        .bind(dataset_id)
        .bind(holder)
        .bind(mode.as_str())
        .bind(purpose)
        .bind(to_db(at))
        .bind(to_db(expires))
        .fetch_one(&mut *tx)
        .await
        .map_err(db("taking a dataset lease"))?;
        let lease = lease_from(&row)?;
        tx.commit()
            .await
            .map_err(db("committing a dataset lease"))?;
        Ok(lease)
    }

    /// Deletes `holder`'s lease on `dataset_id` (nothing when there is none).
    pub async fn release_dataset_lease(&self, dataset_id: &str, holder: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM dataset_leases WHERE dataset_id = $1 AND holder = $2")
            .bind(dataset_id)
            .bind(holder)
            .execute(self.pool())
            .await
            .map_err(db("releasing a dataset lease"))?;
        Ok(())
    }
}

/// A dataset lease this process holds and renews in the background until
/// [`release`](Self::release)d. Dropped without release, it stops renewing and lapses after
/// [`DATASET_LEASE_TTL`].
pub struct HeldDatasetLease {
    store: Arc<Store>,
    lease: DatasetLease,
    ttl: Duration,
    continuity: Arc<Mutex<Continuity>>,
    stop: watch::Sender<bool>,
    renewer: JoinHandle<()>,
}

/// Whether the lease has been held without a gap since it was taken.
#[derive(Debug)]
struct Continuity {
    /// When the last successful acquisition or renewal was *started*: the row's expiry is at
    /// least this plus the TTL.
    renewed_from: Instant,
    /// Set for good once a renewal came too late or was refused.
    lost: Option<String>,
}

impl Continuity {
    /// Records a renewal started at `started` that ended at `ended`: the lease stayed
    /// continuous if the new expiry was written before the old one (less `margin` for the
    /// clocks of other hosts) had passed.
    fn renewed(&mut self, started: Instant, ended: Instant, ttl: Duration, margin: Duration) {
        if self.lost.is_some() {
            return;
        }
        let gap = ended.saturating_duration_since(self.renewed_from);
        if gap + margin >= ttl {
            self.lost = Some(format!(
                "not renewed for {:.0} s (time to live {} s): another holder may have had the dataset meanwhile",
                gap.as_secs_f64(),
                ttl.as_secs()
            ));
        } else {
            self.renewed_from = started;
        }
    }
}

/// How much earlier than its expiry a lease counts as lapsed, for clock skew between hosts.
fn skew_margin(ttl: Duration) -> Duration {
    ttl / 6
}

impl HeldDatasetLease {
    /// Takes a `mode` lease on dataset `dataset_id` for `holder` (e.g. `job:<id>`), doing
    /// `purpose` (shown to whoever it keeps waiting), and renews it every third of
    /// [`DATASET_LEASE_TTL`].
    ///
    /// # Errors
    /// [`StoreError::DatasetBusy`] with the lease in the way (try again later);
    /// [`StoreError::Database`].
    pub async fn acquire(
        store: &Arc<Store>,
        dataset_id: &str,
        holder: &str,
        mode: LeaseMode,
        purpose: &str,
    ) -> StoreResult<Self> {
        Self::acquire_for(store, dataset_id, holder, mode, purpose, DATASET_LEASE_TTL).await
    }

    /// [`acquire`](Self::acquire) with a time to live of `ttl` (renewed every third of it).
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_for(
        store: &Arc<Store>,
        dataset_id: &str,
        holder: &str,
        mode: LeaseMode,
        purpose: &str,
        ttl: Duration,
    ) -> StoreResult<Self> {
        let started = Instant::now();
        let lease = match store
            .acquire_dataset_lease(dataset_id, holder, mode, purpose, ttl)
            .await
        {
            Err(StoreError::DatasetBusy(blocking)) if died_on_this_host(&blocking.holder) => {
                // A command killed on this host a moment ago: no need to wait for its lease
                // to lapse.
                tracing::warn!(dataset_id, holder = %blocking.holder, purpose = %blocking.purpose,
                    "taking over the dataset lease of a process that is gone");
                store
                    .release_dataset_lease(dataset_id, &blocking.holder)
                    .await?;
                store
                    .acquire_dataset_lease(dataset_id, holder, mode, purpose, ttl)
                    .await?
            }
            other => other?,
        };
        let continuity = Arc::new(Mutex::new(Continuity {
            renewed_from: started,
            lost: None,
        }));
        let (stop, mut stopped) = watch::channel(false);
        let renewer = {
            let (store, lease, continuity) = (store.clone(), lease.clone(), continuity.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(ttl / 3) => {}
                        _ = stopped.changed() => return,
                    }
                    match renew(store.as_ref(), &lease, ttl, &continuity).await {
                        Ok(()) => {}
                        Err(e @ StoreError::DatasetLeaseLost { .. }) => {
                            // For good: the holder stops at its next confirmation.
                            tracing::warn!(dataset_id = %lease.dataset_id, holder = %lease.holder,
                                error = %e, "dataset lease lost");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(dataset_id = %lease.dataset_id, holder = %lease.holder,
                                error = %e, "could not renew a dataset lease");
                        }
                    }
                }
            })
        };
        tracing::debug!(
            dataset_id,
            holder,
            mode = mode.as_str(),
            "dataset lease taken"
        );
        Ok(Self {
            store: store.clone(),
            lease,
            ttl,
            continuity,
            stop,
            renewer,
        })
    }

    /// The lease as taken.
    pub fn lease(&self) -> &DatasetLease {
        &self.lease
    }

    /// Renews the lease now and checks that it has been held without a gap since it was
    /// taken. Call it right before a step that relies on the lease (compaction deleting the
    /// files it merged): a holder stalled for longer than the time to live (a paused VM, a
    /// long GC of the object store) may have let another holder in.
    ///
    /// # Errors
    /// [`StoreError::DatasetLeaseLost`] when a renewal came too late or another holder has the
    /// dataset now; [`StoreError::Database`]. Either way, stop before changing anything more.
    pub async fn confirm(&self) -> StoreResult<()> {
        renew(self.store.as_ref(), &self.lease, self.ttl, &self.continuity).await
    }

    /// Stops renewing and deletes the lease, so waiting holders can go on at once.
    ///
    /// # Errors
    /// [`StoreError::Database`]; the lease then lapses after [`DATASET_LEASE_TTL`].
    pub async fn release(&self) -> StoreResult<()> {
        let _ = self.stop.send(true);
        self.renewer.abort();
        self.store
            .release_dataset_lease(&self.lease.dataset_id, &self.lease.holder)
            .await
    }
}

/// A rewrite under a dataset lease swaps a file only while the lease is still held without a
/// gap ([`HeldDatasetLease::confirm`]).
#[async_trait::async_trait]
impl CommitGuard for HeldDatasetLease {
    async fn may_commit(&self, _file: &str) -> Result<(), String> {
        self.confirm().await.map_err(|e| e.to_string())
    }
}

impl std::fmt::Debug for HeldDatasetLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldDatasetLease")
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Drop for HeldDatasetLease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Renews `lease` for `ttl` and records in `continuity` whether it stayed continuous.
async fn renew(
    store: &Store,
    lease: &DatasetLease,
    ttl: Duration,
    continuity: &Mutex<Continuity>,
) -> StoreResult<()> {
    let lost = |detail: String| StoreError::DatasetLeaseLost {
        dataset_id: lease.dataset_id.clone(),
        detail,
    };
    if let Some(why) = &continuity.lock().expect("not poisoned").lost {
        return Err(lost(why.clone()));
    }
    let started = Instant::now();
    let renewed = store
        .acquire_dataset_lease(
            &lease.dataset_id,
            &lease.holder,
            lease.mode,
            &lease.purpose,
            ttl,
        )
        .await;
    let mut state = continuity.lock().expect("not poisoned");
    match renewed {
        Ok(_) => {
            state.renewed(started, Instant::now(), ttl, skew_margin(ttl));
            match &state.lost {
                Some(why) => Err(lost(why.clone())),
                None => Ok(()),
            }
        }
        Err(StoreError::DatasetBusy(other)) => {
            let why = format!("taken by {other}");
            state.lost = Some(why.clone());
            Err(lost(why))
        }
        Err(e) => Err(e),
    }
}

/// A holder name for a lease taken by `actor` in this process, unique to this run:
/// `<actor>@<host>:<pid>#<run>`. The host and process let a later process on the same host
/// take the lease over at once when this one died (see [`HeldDatasetLease::acquire`]).
pub fn process_lease_holder(actor: &str) -> String {
    let run = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{actor}@{}:{}#{}",
        this_host(),
        std::process::id(),
        &run[..12]
    )
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Whether `holder` (as made by [`process_lease_holder`]) names a process of this host that
/// no longer runs (no `/proc/<pid>`, or a zombie). `false` wherever that cannot be told: another
/// host, another holder format, no `/proc`, this very process.
fn died_on_this_host(holder: &str) -> bool {
    let Some((_, place)) = holder.rsplit_once('@') else {
        return false;
    };
    let Some((host, rest)) = place.split_once(':') else {
        return false;
    };
    let Some(pid) = rest
        .split_once('#')
        .and_then(|(pid, _)| pid.parse::<u32>().ok())
    else {
        return false;
    };
    let here = this_host();
    if here.is_empty() || host != here || pid == std::process::id() {
        return false;
    }
    if !std::path::Path::new("/proc/self/stat").exists() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: `pid (comm) S …`.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, after)| after.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Runs `work` while holding a `mode` lease on dataset `dataset_id` (see
/// [`HeldDatasetLease::acquire`]), and releases it afterwards whatever `work` returned. `work`
/// gets the lease, to [`confirm`](HeldDatasetLease::confirm) it (or use it as a
/// [`CommitGuard`]) right before each step that relies on it. A failed release is logged; the
/// lease then lapses after [`DATASET_LEASE_TTL`].
///
/// # Errors
/// [`StoreError::DatasetBusy`] (converted into `E`) when the lease cannot be taken, and
/// `work`'s own errors.
pub async fn with_dataset_lease<T, E, F, Fut>(
    store: &Arc<Store>,
    dataset_id: &str,
    holder: &str,
    mode: LeaseMode,
    purpose: &str,
    work: F,
) -> Result<T, E>
where
    E: From<StoreError>,
    F: FnOnce(Arc<HeldDatasetLease>) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let held = Arc::new(HeldDatasetLease::acquire(store, dataset_id, holder, mode, purpose).await?);
    let outcome = work(held.clone()).await;
    if let Err(e) = held.release().await {
        tracing::warn!(dataset_id, holder, error = %e, "could not release a dataset lease");
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_renewed_too_late_counts_as_lost_for_good() {
        let ttl = Duration::from_secs(60);
        let margin = skew_margin(ttl);
        let t0 = Instant::now();
        let mut held = Continuity {
            renewed_from: t0,
            lost: None,
        };
        // Renewed every 20 s: continuous, and each renewal counts from when it started.
        held.renewed(
            t0 + Duration::from_secs(20),
            t0 + Duration::from_secs(21),
            ttl,
            margin,
        );
        assert!(held.lost.is_none());
        assert_eq!(held.renewed_from, t0 + Duration::from_secs(20));
        // Next renewal written 45 s after the last one began: still inside 60 s less the margin.
        held.renewed(
            t0 + Duration::from_secs(64),
            t0 + Duration::from_secs(65),
            ttl,
            margin,
        );
        assert!(held.lost.is_none());
        // A stall: written 51 s after the last one began, within 10 s of its expiry (another
        // host's clock may already see it expired).
        held.renewed(
            t0 + Duration::from_secs(114),
            t0 + Duration::from_secs(115),
            ttl,
            margin,
        );
        let why = held.lost.clone().expect("lost");
        assert!(why.contains("not renewed for 51 s"), "{why}");
        // Lost stays lost, however promptly the next renewal comes.
        held.renewed(
            t0 + Duration::from_secs(116),
            t0 + Duration::from_secs(117),
            ttl,
            margin,
        );
        assert_eq!(held.lost.as_deref(), Some(why.as_str()));
    }

    #[test]
    fn a_holder_is_dead_only_when_its_process_here_is_gone() {
        let mine = process_lease_holder("worker:cli");
        assert!(mine.starts_with("worker:cli@"), "{mine}");
        assert!(!died_on_this_host(&mine), "this process runs");
        let (prefix, _) = mine.rsplit_once(':').unwrap();
        // A pid above the kernel's maximum (4194304) never runs.
        assert!(died_on_this_host(&format!("{prefix}:4294967#abc")));
        assert!(!died_on_this_host("worker:cli@elsewhere:4294967#abc"));
        assert!(!died_on_this_host("job:1234"));
        // The parent of this test process runs.
        let parent = std::fs::read_to_string("/proc/self/stat").unwrap();
        let ppid = parent
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(1)
            .unwrap();
        assert!(!died_on_this_host(&format!("{prefix}:{ppid}#abc")));
    }
}
