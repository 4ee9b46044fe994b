//! [`IcebergErase`]: erasure (GDPR Art. 17) from an Apache Iceberg table through the
//! table's own commit.
//!
//! 1. load the table through its SQL catalog and refuse what Lethe cannot honour
//!    ([`super::features`]); remove what crashed runs left ([`super::purge::remove_orphans`]);
//! 2. locate: the live data files of the current snapshot (manifest list → manifests,
//!    [`super::scan`]) whose identity partition values or `lower_bounds` / `upper_bounds` of
//!    the subject column may hold a subject, then the subject column of those files (the lake
//!    engine's locate);
//! 3. rewrite each file holding subject rows with the lake engine (row-group surgery) into a
//!    new file beside it, `<name>-lethe-<uuid>.parquet` (data files are never changed in
//!    place; spec "Overview"), leaving out the rows delete files delete
//!    ([`super::deletes`]); refuse a file a delete file not in Parquet applies to;
//! 4. commit once: an `overwrite` snapshot ([`super::commit`]), a new metadata file, and the
//!    catalog's compare-and-swap. When another writer committed first, the table is loaded
//!    again: replaced files that are no longer live are dropped from the plan (their new files
//!    deleted), new candidates (appended files) are searched too, and the commit is retried,
//!    at most [`IcebergErase::max_attempts`] times;
//! 5. purge ([`super::purge`]): expire the snapshots that can still read a replaced file or an
//!    older file holding a subject row, and delete the files no snapshot references any more
//!    (on every run, so that a run finishes the purge a crash interrupted);
//! 6. verify by reading data: no file of the new current snapshot holds a subject row.
//!
//! Crash safety: new files are written before the commit and named with Lethe's marker, so a
//! crash before the catalog swap leaves the table as it was; the next run deletes them (no
//! snapshot references them). A crash after the commit and before the end of the purge is
//! finished by the next run with the same subjects (its purge finds the older snapshots'
//! files holding them).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use super::commit::{NewDataFile, overwrite};
use super::deletes::{deleted_rows, unsupported_delete};
use super::features::{check_features, refuse_delete_file};
use super::manifest::Entry;
use super::metadata::LoadedTable;
use super::names::new_data_path;
use super::purge::{data_file, purge, remove_orphans};
use super::rest::Change;
use super::scan::{SnapshotFiles, may_hold};
use super::stats::file_metrics;
use super::table::IcebergTable;
use crate::lake::error::LakeError;
use crate::lake::locate::locate_file;
use crate::lake::rewrite::{
    CommitGuard, Destination, EraseMetrics, ErasePolicy, EraseSubjects, FileOutcome, FileStatus,
    NewFile, RowFilter, rewrite_file_to,
};

/// The result of [`IcebergErase::execute`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IcebergEraseOutcome {
    /// One outcome per candidate file (path relative to the table location), sorted.
    pub files: Vec<FileOutcome>,
    /// Counters (`files_scanned`: candidate files searched).
    pub metrics: EraseMetrics,
    /// The current snapshot the erasure started from (`None`: an empty table).
    pub read_snapshot: Option<i64>,
    /// The id of Lethe's `overwrite` snapshot; `None` when no file held a subject row.
    pub commit: Option<i64>,
    /// Commits attempted (1 without a concurrent writer).
    pub commit_attempts: u32,
    /// Snapshots expired by the purge, ascending.
    pub expired_snapshots: Vec<i64>,
    /// How many: `expired_snapshots.len()`.
    pub snapshots_expired: u64,
    /// Refs (tags, branches) removed because they pointed at an expired snapshot.
    pub refs_removed: Vec<String>,
    /// Data files deleted after the commit, relative to the table location.
    pub files_purged: Vec<String>,
    /// Manifests and manifest lists deleted with the expired snapshots.
    pub metadata_files_purged: u64,
    /// Files left by crashed runs deleted before this run.
    pub orphans_removed: u64,
}

impl IcebergEraseOutcome {
    /// True when at least one candidate file failed (it still holds whatever it held).
    pub fn has_failures(&self) -> bool {
        self.files
            .iter()
            .any(|f| matches!(f.status, FileStatus::Failed { .. }))
    }
}

/// Builder of an erasure from an Iceberg table (see the module documentation).
///
/// ```no_run
/// # async fn f() -> Result<(), lethe_core::lake::LakeError> {
/// use lethe_core::lake::table::iceberg::{IcebergErase, IcebergTable, SqlCatalog};
/// let catalog = SqlCatalog::connect("sqlite:///data/catalog.db", "lethe").await?;
/// let table = IcebergTable::new(catalog, "default.events")?;
/// let outcome = IcebergErase::new(table, "user_id").subjects(["u-1"]).execute().await?;
/// println!("committed snapshot {:?}", outcome.commit);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct IcebergErase {
    table: IcebergTable,
    policy: ErasePolicy,
    subjects: BTreeSet<String>,
    concurrency: usize,
    max_attempts: u32,
    guard: Option<Arc<dyn CommitGuard>>,
    /// A rectification's filter, which keeps every row ([`IcebergErase::rectification`]).
    rectify: Option<Arc<dyn RowFilter>>,
}

impl std::fmt::Debug for IcebergErase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IcebergErase")
            .field("table", &self.table)
            .field("subjects", &self.subjects.len())
            .finish()
    }
}

/// One replaced file: its entry, the rewrite's outcome, the new file.
struct Replaced {
    outcome: FileOutcome,
    /// The new file's path relative to the table location, and the file (`None`: every row
    /// was removed).
    new: Option<(String, NewFile)>,
}

impl IcebergErase {
    /// An erasure of no subjects yet from `table`, matching on top-level column
    /// `subject_column`.
    pub fn new(table: IcebergTable, subject_column: impl Into<String>) -> Self {
        Self {
            table,
            policy: ErasePolicy::single(subject_column),
            subjects: BTreeSet::new(),
            concurrency: 4,
            max_attempts: 5,
            guard: None,
            rectify: None,
        }
    }

    /// Rewrites with `filter` (a rectification, GDPR Art. 16: it keeps every row and sets
    /// cells of the subjects' rows) instead of erasing: the `overwrite` snapshot's summary
    /// says so, the purge still expires every snapshot that reads the subjects' old rows, and
    /// the check after the commit is that only this commit's new files hold the subjects'
    /// rows.
    pub fn rectification(mut self, filter: Arc<dyn RowFilter>) -> Self {
        self.rectify = Some(filter);
        self
    }

    /// Replaces the single subject column by a dataset's [`ErasePolicy`].
    pub fn policy(mut self, policy: ErasePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Adds subject ids to erase (compared with the subject column cast to a string).
    pub fn subjects(mut self, subjects: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.subjects.extend(subjects.into_iter().map(Into::into));
        self
    }

    /// Files rewritten at the same time (default 4, at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Commits attempted before giving up on concurrent writers (default 5, at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Asks `guard` before each file is written and before the commit; a refusal abandons
    /// the erasure with the table unchanged.
    pub fn commit_guard(mut self, guard: Arc<dyn CommitGuard>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Runs the erasure (see the module documentation).
    ///
    /// # Errors
    /// [`LakeError::TableFeature`] for something Lethe cannot honour (format v3, a delete
    /// file on a file holding subjects…), [`LakeError::Table`] for an unreadable catalog or
    /// metadata or a subject column the table does not have, [`LakeError::Fenced`] when the
    /// guard refused the commit, [`LakeError::CommitConflict`] after `max_attempts` lost
    /// races, [`LakeError::NotErased`] when a subject row is still readable after the
    /// commit. Before the commit, every error leaves the table unchanged (the new files are
    /// deleted). Failures of single files are reported in [`IcebergEraseOutcome::files`];
    /// the other files are still committed.
    #[tracing::instrument(skip_all, fields(table = %self.table.identifier(), subjects = self.subjects.len()))]
    pub async fn execute(self) -> Result<IcebergEraseOutcome, LakeError> {
        let started = Instant::now();
        let attempt_started = Utc::now();
        let mut loaded = self.table.load().await?;
        check_features(&loaded)?;
        let columns = self.columns(&loaded)?;
        let mut outcome = IcebergEraseOutcome {
            read_snapshot: loaded.metadata.current_snapshot_id(),
            ..IcebergEraseOutcome::default()
        };
        outcome.orphans_removed = remove_orphans(&loaded, attempt_started).await?;
        let filter: Arc<dyn RowFilter> = match &self.rectify {
            Some(filter) => Arc::clone(filter),
            None => Arc::new(EraseSubjects::with_policy(
                self.policy.clone(),
                self.subjects.iter().cloned(),
            )),
        };
        let mut replaced: BTreeMap<String, Replaced> = BTreeMap::new();
        let mut searched: BTreeMap<String, FileOutcome> = BTreeMap::new();
        let committed = loop {
            outcome.commit_attempts += 1;
            let attempt = self
                .attempt(&loaded, &columns, &filter, &mut replaced, &mut searched)
                .await;
            match attempt {
                Ok(Attempt::Nothing) => break None,
                Ok(Attempt::Committed(id)) => break Some(id),
                Ok(Attempt::Lost) => {}
                Ok(Attempt::Unknown(e)) => {
                    // The catalog may hold the commit: nothing is deleted (a later run's
                    // cleanup removes what no snapshot references).
                    return Err(e);
                }
                Err(e) => {
                    self.discard(&loaded, &replaced).await;
                    return Err(e);
                }
            }
            tracing::info!("another writer committed first; loading the table again");
            if outcome.commit_attempts >= self.max_attempts {
                self.discard(&loaded, &replaced).await;
                return Err(LakeError::CommitConflict {
                    root: self.table.identifier(),
                    attempts: outcome.commit_attempts,
                });
            }
            let reloaded = self.table.load().await.and_then(|l| {
                check_features(&l)?;
                Ok(l)
            });
            match reloaded {
                Ok(l) => loaded = l,
                Err(e) => {
                    self.discard(&loaded, &replaced).await;
                    return Err(e);
                }
            }
        };

        let clean: BTreeSet<String> = searched
            .iter()
            .filter(|(_, o)| o.status == FileStatus::Unchanged)
            .map(|(uri, _)| uri.clone())
            .collect();
        let mut files: Vec<FileOutcome> = searched.into_values().collect();
        files.extend(replaced.values().map(|r| r.outcome.clone()));
        files.sort_by(|a, b| a.relative.cmp(&b.relative));
        outcome.metrics = metrics_of(&files);
        outcome.files = files;
        outcome.commit = committed;
        if let Some(id) = committed {
            tracing::info!(snapshot = id, files = replaced.len(), "erasure committed");
        }
        // Also without a commit: a crash after an earlier run's commit may have left
        // snapshots that still read the subjects' rows.
        let old: BTreeSet<String> = replaced.keys().cloned().collect();
        let purged = purge(
            &self.table,
            &old,
            (&self.policy.subject_columns, &columns),
            &self.subjects,
            self.max_attempts,
        )
        .await?;
        outcome.snapshots_expired = purged.snapshots_expired.len() as u64;
        outcome.expired_snapshots = purged.snapshots_expired;
        outcome.refs_removed = purged.refs_removed;
        outcome.files_purged = purged.files;
        outcome.metadata_files_purged = purged.metadata_files;
        if committed.is_some() {
            // Data files are immutable: those this run read and found without a subject row
            // need no second read; a rectification's new files hold the changed rows.
            let mut skip = clean;
            if self.rectify.is_some() {
                skip.extend(
                    replaced
                        .values()
                        .filter_map(|r| r.new.as_ref())
                        .map(|(relative, _)| loaded.uri(relative)),
                );
            }
            self.verify(&skip).await?;
        }
        outcome.metrics.elapsed_s = started.elapsed().as_secs_f64();
        Ok(outcome)
    }

    /// The subject columns as `(field id, Iceberg type)`; refuses a column the current
    /// schema does not have at the top level.
    fn columns(&self, loaded: &LoadedTable) -> Result<Vec<(i32, String)>, LakeError> {
        let all = loaded.metadata.columns();
        self.policy
            .subject_columns
            .iter()
            .map(|name| {
                all.iter()
                    .find(|c| &c.name == name)
                    .map(|c| (c.id, c.kind.clone()))
                    .ok_or_else(|| {
                        self.table
                            .error(format!("the table has no top-level column {name:?}"))
                    })
            })
            .collect()
    }

    /// One plan-rewrite-commit attempt on `loaded`.
    async fn attempt(
        &self,
        loaded: &LoadedTable,
        columns: &[(i32, String)],
        filter: &Arc<dyn RowFilter>,
        replaced: &mut BTreeMap<String, Replaced>,
        searched: &mut BTreeMap<String, FileOutcome>,
    ) -> Result<Attempt, LakeError> {
        let Some(current_id) = loaded.metadata.current_snapshot_id() else {
            return Ok(Attempt::Nothing);
        };
        let snap = loaded
            .metadata
            .snapshots()
            .into_iter()
            .find(|s| s.id == current_id)
            .ok_or_else(|| self.table.error("the current snapshot is not listed"))?;
        let current = SnapshotFiles::read(loaded, current_id, &snap.manifest_list).await?;
        let live = current.data_paths();
        let gone: Vec<String> = replaced
            .keys()
            .filter(|p| !live.contains(*p))
            .cloned()
            .collect();
        for path in gone {
            tracing::info!(file = %path, "a concurrent commit removed a replaced file; planning again");
            if let Some(r) = replaced.remove(&path) {
                self.discard_one(loaded, &r).await;
            }
        }
        let candidates: Vec<(i64, Entry)> = current
            .data_files()
            .filter(|(_, e)| {
                !replaced.contains_key(&e.file_path) && !searched.contains_key(&e.file_path)
            })
            .filter(|(spec, e)| {
                columns
                    .iter()
                    .any(|(id, kind)| may_hold(loaded, *spec, e, (*id, kind), &self.subjects))
            })
            .map(|(spec, e)| (spec, e.clone()))
            .collect();
        // Delete files are applied by the rewrite; what it cannot apply is refused
        // before anything is written.
        if let Some((entry, delete)) = candidates
            .iter()
            .find_map(|(_, e)| unsupported_delete(&current, e).map(|d| (e, d)))
        {
            return Err(refuse_delete_file(loaded, &entry.file_path, delete));
        }
        let guard = self.guard.as_ref();
        let current_ref = &current;
        let mut results = futures::stream::iter(candidates)
            .map(|(_, entry)| async move {
                let result = rewrite_one(loaded, current_ref, &entry, filter, guard).await;
                (entry, result)
            })
            .buffer_unordered(self.concurrency);
        while let Some((entry, result)) = results.next().await {
            match result {
                Ok((mut outcome, new)) if outcome.status == FileStatus::Rewritten => {
                    outcome.replaced_by = new.as_ref().map(|(relative, _)| relative.clone());
                    replaced.insert(entry.file_path.clone(), Replaced { outcome, new });
                }
                Ok((outcome, _)) => {
                    searched.insert(entry.file_path, outcome);
                }
                Err(e) => {
                    tracing::warn!(file = %entry.file_path, error = %e, "file not rewritten");
                    let relative = loaded
                        .relative(&entry.file_path)
                        .unwrap_or(entry.file_path.clone());
                    searched.insert(entry.file_path, FileOutcome::failed(relative, &e));
                }
            }
        }
        drop(results);
        if replaced.is_empty() {
            return Ok(Attempt::Nothing);
        }
        if let Some(guard) = &self.guard
            && let Err(reason) = guard.may_commit("metadata").await
        {
            return Err(LakeError::Fenced {
                file: "metadata".into(),
                reason,
            });
        }
        let plan: BTreeMap<String, Option<NewDataFile>> = replaced
            .iter()
            .map(|(uri, r)| {
                let new = r.new.as_ref().map(|(relative, file)| NewDataFile {
                    relative: relative.clone(),
                    size: file.size,
                    metrics: file_metrics(&file.metadata, &loaded.metadata),
                });
                (uri.clone(), new)
            })
            .collect();
        let note = format!(
            "{} of {} data subjects by {}",
            if self.rectify.is_some() {
                "rectification"
            } else {
                "erasure"
            },
            self.subjects.len(),
            self.policy.subject_columns.join(",")
        );
        let written = overwrite(loaded, &current, &plan, &note).await?;
        let change = Change::AddSnapshot(written.snapshot.clone());
        match self.table.commit(loaded, &written.metadata, &change).await {
            Ok(Some(_)) => Ok(Attempt::Committed(written.snapshot_id)),
            Ok(None) => {
                for relative in &written.written {
                    let at = loaded.root.location(relative);
                    if let Err(e) = loaded.root.store().delete(&at).await {
                        tracing::warn!(object = %at, error = %e, "uncommitted manifest not removed");
                    }
                }
                Ok(Attempt::Lost)
            }
            Err(e @ LakeError::Table { .. }) => Ok(Attempt::Unknown(e)),
            Err(e) => Err(e),
        }
    }

    /// Deletes the new files of `replaced` (the commit will not happen); failures are
    /// logged, the next run removes what is left.
    async fn discard(&self, loaded: &LoadedTable, replaced: &BTreeMap<String, Replaced>) {
        for r in replaced.values() {
            self.discard_one(loaded, r).await;
        }
    }

    async fn discard_one(&self, loaded: &LoadedTable, r: &Replaced) {
        if let Some((_, new)) = &r.new {
            match loaded.root.store().delete(&new.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(object = %new.location, error = %e, "uncommitted new file not removed")
                }
            }
        }
    }

    /// Reads the subject columns of every data file of the new current snapshot but those of
    /// `clean` (URIs this run already read without finding a subject row): none may hold a
    /// row. The manifests' partition values and bounds are not consulted: the search already
    /// trusted them, and a file whose bounds are wrong must fail the erasure here rather than
    /// be skipped twice (as Delta Lake's check reads every file whatever its log statistics).
    async fn verify(&self, clean: &BTreeSet<String>) -> Result<(), LakeError> {
        let loaded = self.table.load().await?;
        let Some(id) = loaded.metadata.current_snapshot_id() else {
            return Ok(());
        };
        let snap = loaded
            .metadata
            .snapshots()
            .into_iter()
            .find(|s| s.id == id)
            .ok_or_else(|| self.table.error("the current snapshot is not listed"))?;
        let current = SnapshotFiles::read(&loaded, id, &snap.manifest_list).await?;
        for (_, entry) in current.data_files() {
            if clean.contains(&entry.file_path) {
                continue;
            }
            let file = data_file(&loaded, &entry.file_path).await?;
            let found = locate_file(
                &loaded.root,
                &file,
                &self.policy.subject_columns,
                &self.subjects,
            )
            .await?;
            if found.rows > 0 {
                return Err(LakeError::NotErased {
                    root: loaded.metadata.location().to_string(),
                    file: file.relative,
                    rows: found.rows,
                });
            }
        }
        Ok(())
    }
}

/// How an attempt ended.
enum Attempt {
    /// No file holds a subject row: nothing written.
    Nothing,
    /// Committed: the new snapshot's id.
    Committed(i64),
    /// Another writer committed first; nothing committed.
    Lost,
    /// The catalog update failed after the metadata file was written: the commit may or may
    /// not have happened, so nothing it references may be deleted.
    Unknown(LakeError),
}

/// Rewrites one data file beside itself.
async fn rewrite_one(
    loaded: &LoadedTable,
    current: &SnapshotFiles,
    entry: &Entry,
    filter: &Arc<dyn RowFilter>,
    guard: Option<&Arc<dyn CommitGuard>>,
) -> Result<(FileOutcome, Option<(String, NewFile)>), LakeError> {
    let file = data_file(loaded, &entry.file_path).await?;
    let new_relative = new_data_path(&file.relative);
    let location = loaded.root.location(&new_relative);
    let deleted = Arc::new(deleted_rows(loaded, current, entry).await?);
    let (outcome, new) = rewrite_file_to(
        &loaded.root,
        &file,
        filter,
        guard,
        Destination::Beside {
            at: location,
            deleted,
        },
    )
    .await?;
    Ok((outcome, new.map(|n| (new_relative, n))))
}

fn metrics_of(files: &[FileOutcome]) -> EraseMetrics {
    let mut m = EraseMetrics::default();
    for f in files {
        m.files_scanned += 1;
        match f.status {
            FileStatus::Rewritten => m.files_rewritten += 1,
            FileStatus::Failed { .. } => m.files_failed += 1,
            FileStatus::Unchanged => {}
        }
        m.rows_removed += f.rows_removed;
        m.bytes_read += f.bytes_read;
        m.bytes_written += f.bytes_written;
        m.surgery.add(&f.surgery);
    }
    m
}
