//! [`DeltaErase`]: erasure (GDPR Art. 17) from a Delta table through the table's own log.
//!
//! 1. read the latest snapshot (`delta_kernel`) and refuse features Lethe cannot honour
//!    ([`super::features`]); remove what crashed runs left ([`super::purge::remove_orphans`]);
//! 2. locate: the `add` actions whose statistics (minValues / maxValues of the subject column)
//!    may hold a subject, then the subject column of those files (the lake engine's locate);
//! 3. rewrite each file holding subject rows with the lake engine (row-group surgery) into a
//!    new file beside it, `<name>-lethe-<uuid>.parquet` in the same partition folder
//!    (PROTOCOL.md "Add File and Remove File": data files are never changed in place);
//! 4. commit once: `commitInfo` (operation `DELETE`) + a `remove` per replaced file + an `add`
//!    per new file ([`super::log`]), created only if that version is still absent. When
//!    another writer committed first, the log is read again: replaced files that commit
//!    removed are planned again from their successors, appended files are searched too, and
//!    the commit is retried with the next version, at most [`DeltaErase::max_attempts`] times;
//! 5. purge ([`super::purge`]): delete the replaced files and every other file no longer in
//!    the table that holds a subject row, whatever the retention setting; the older versions
//!    that needed them become unreadable (`snapshots_expired`);
//! 6. verify by reading data: no file of the new snapshot holds a subject row.
//!
//! Crash safety: new files are written before the commit and are named with Lethe's marker,
//! so a crash before the commit leaves the table as it was, and the next run deletes those
//! files (not referenced by any action of the log); a crash after the commit and before the
//! purge is finished by the next run (it deletes what Lethe's commits removed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use super::features::check_features;
use super::log::{AddAction, CommitFacts, RemoveAction, commit_body, decode, put_commit};
use super::names::new_file_path;
use super::purge::{Purged, purge, remove_orphans};
use super::snapshot::{AddFile, DeltaSnapshot, DeltaTable};
use super::stats::add_stats;
use crate::lake::error::LakeError;
use crate::lake::locate::locate_file;
use crate::lake::rewrite::{
    CommitGuard, Destination, EraseMetrics, ErasePolicy, EraseSubjects, FileOutcome, FileStatus,
    NewFile, RowFilter, rewrite_file_to,
};
use crate::lake::root::DataFile;

/// The result of [`DeltaErase::execute`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeltaEraseOutcome {
    /// One outcome per candidate file (path as in the log, percent-decoded), sorted by path.
    pub files: Vec<FileOutcome>,
    /// Counters (`files_scanned`: candidate files searched).
    pub metrics: EraseMetrics,
    /// The version of the snapshot the erasure started from.
    pub read_version: u64,
    /// The version of Lethe's commit; `None` when no file held a subject row (nothing was
    /// written) or every candidate failed.
    pub commit: Option<u64>,
    /// Commits attempted (1 without a concurrent writer).
    pub commit_attempts: u32,
    /// Data files deleted from storage after the commit, paths relative to the table root.
    pub files_purged: Vec<String>,
    /// Table versions that can no longer be read (time travel) because a file they
    /// reference was purged, among those the log could still reconstruct; 0 when nothing
    /// was purged.
    pub snapshots_expired: u64,
    /// Those versions, as inclusive ranges `[from, to]`.
    pub unreadable_versions: Vec<(u64, u64)>,
    /// Files left by crashed runs (Lethe's new files never committed, files of Lethe's
    /// commits never purged) deleted before this run.
    pub orphans_removed: u64,
}

impl DeltaEraseOutcome {
    /// True when at least one candidate file failed (it still holds whatever it held).
    pub fn has_failures(&self) -> bool {
        self.files
            .iter()
            .any(|f| matches!(f.status, FileStatus::Failed { .. }))
    }
}

/// Builder of an erasure from a Delta table (see the module documentation).
///
/// ```no_run
/// # async fn f() -> Result<(), lethe_core::lake::LakeError> {
/// use lethe_core::lake::LakeRoot;
/// use lethe_core::lake::table::delta::{DeltaErase, DeltaTable};
/// let table = DeltaTable::new(LakeRoot::parse("/data/events")?)?;
/// let outcome = DeltaErase::new(table, "user_id").subjects(["u-1"]).execute().await?;
/// println!("committed version {:?}", outcome.commit);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DeltaErase {
    table: DeltaTable,
    policy: ErasePolicy,
    subjects: BTreeSet<String>,
    concurrency: usize,
    max_attempts: u32,
    guard: Option<Arc<dyn CommitGuard>>,
    /// A rectification's filter, which keeps every row ([`DeltaErase::rectification`]).
    rectify: Option<Arc<dyn RowFilter>>,
}

impl std::fmt::Debug for DeltaErase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaErase")
            .field("table", &self.table)
            .field("subjects", &self.subjects.len())
            .finish()
    }
}

/// One replaced file: the `add` it had in the log, the rewrite's outcome, the new file.
struct Replaced {
    old: AddFile,
    outcome: FileOutcome,
    /// The new file's `add` path and the file (`None`: every row was removed).
    new: Option<(String, NewFile)>,
}

impl DeltaErase {
    /// An erasure of no subjects yet from `table`, matching on top-level column
    /// `subject_column`.
    pub fn new(table: DeltaTable, subject_column: impl Into<String>) -> Self {
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
    /// cells of the subjects' rows) instead of erasing: the commit's operation is `UPDATE`,
    /// the purge still removes every older file holding the subjects' rows (their old
    /// values), and the check after the commit is that only this commit's new files hold
    /// the subjects' rows.
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

    /// Asks `guard` before each file is written and before the commit (job lease, dataset
    /// lease); a refusal abandons the erasure with the table unchanged.
    pub fn commit_guard(mut self, guard: Arc<dyn CommitGuard>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Runs the erasure (see the module documentation).
    ///
    /// # Errors
    /// [`LakeError::TableFeature`] for a feature Lethe cannot honour, [`LakeError::Table`] for
    /// an unreadable log or a subject column the table does not have, [`LakeError::Fenced`]
    /// when the guard refused the commit, [`LakeError::CommitConflict`] after
    /// `max_attempts` lost races, [`LakeError::NotErased`] when a subject row is still
    /// readable after the commit. Before the commit, every error leaves the table unchanged
    /// (the new files are deleted). Failures of single files are reported in
    /// [`DeltaEraseOutcome::files`]; the other files are still committed.
    #[tracing::instrument(skip_all, fields(root = %self.table.root().url(), subjects = self.subjects.len()))]
    pub async fn execute(self) -> Result<DeltaEraseOutcome, LakeError> {
        let started = Instant::now();
        let attempt_started = Utc::now();
        let root_url = self.table.root().url().to_string();
        let mut snapshot = self.table.snapshot().await?;
        check_features(&root_url, &snapshot)?;
        self.check_columns(&snapshot)?;
        let mut outcome = DeltaEraseOutcome {
            read_version: snapshot.version,
            ..DeltaEraseOutcome::default()
        };
        outcome.orphans_removed = remove_orphans(&self.table, &snapshot, attempt_started).await?;
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
            let planned = self
                .rewrite_candidates(&snapshot, &filter, &mut replaced, &mut searched)
                .await;
            if let Err(e) = planned {
                self.discard(&replaced).await;
                return Err(e);
            }
            if replaced.is_empty() {
                break None;
            }
            if let Some(guard) = &self.guard
                && let Err(reason) = guard.may_commit("_delta_log").await
            {
                self.discard(&replaced).await;
                return Err(LakeError::Fenced {
                    file: "_delta_log".into(),
                    reason,
                });
            }
            let version = snapshot.version + 1;
            let body = self.commit_body(&snapshot, &replaced);
            match put_commit(&self.table, version, body).await {
                Ok(true) => break Some(version),
                Ok(false) => {}
                Err(e) => {
                    self.discard(&replaced).await;
                    return Err(e);
                }
            }
            tracing::info!(
                version,
                "another writer committed first; reading the log again"
            );
            if outcome.commit_attempts >= self.max_attempts {
                self.discard(&replaced).await;
                return Err(LakeError::CommitConflict {
                    root: root_url,
                    attempts: outcome.commit_attempts,
                });
            }
            let latest = match self.table.snapshot().await {
                Ok(s) => s,
                Err(e) => {
                    self.discard(&replaced).await;
                    return Err(e);
                }
            };
            if let Err(e) = check_features(&root_url, &latest) {
                self.discard(&replaced).await;
                return Err(e);
            }
            snapshot = latest;
            let live: BTreeSet<String> = match self.table.files(&snapshot, None).await {
                Ok(files) => files.into_iter().map(|f| f.path).collect(),
                Err(e) => {
                    self.discard(&replaced).await;
                    return Err(e);
                }
            };
            let gone: Vec<String> = replaced
                .keys()
                .filter(|path| !live.contains(*path))
                .cloned()
                .collect();
            for path in gone {
                tracing::info!(file = %path, "a concurrent commit removed a replaced file; planning again");
                if let Some(r) = replaced.remove(&path) {
                    self.discard_one(&r).await;
                }
            }
        };

        let mut files: Vec<FileOutcome> = searched.into_values().collect();
        files.extend(replaced.values().map(|r| r.outcome.clone()));
        files.sort_by(|a, b| a.relative.cmp(&b.relative));
        outcome.metrics = metrics_of(&files);
        outcome.files = files;
        outcome.commit = committed;
        if let Some(version) = committed {
            tracing::info!(version, files = replaced.len(), "erasure committed");
            let removed: Vec<String> = replaced.values().map(|r| decode(&r.old.path)).collect();
            let after = self.table.snapshot().await?;
            let purged: Purged = purge(
                &self.table,
                &after,
                version,
                &removed,
                &self.policy,
                &self.subjects,
            )
            .await?;
            outcome.snapshots_expired = purged.snapshots_expired();
            outcome.unreadable_versions = purged.unreadable_versions;
            outcome.files_purged = purged.files;
            let new_files: BTreeSet<String> = replaced
                .values()
                .filter_map(|r| r.new.as_ref().map(|(path, _)| decode(path)))
                .collect();
            self.verify(&after, &new_files).await?;
        }
        outcome.metrics.elapsed_s = started.elapsed().as_secs_f64();
        Ok(outcome)
    }

    /// The data-skipping filter of the `add` actions: the subject column and the subjects,
    /// when there is one subject column.
    fn by_stats(&self) -> Option<(&str, &BTreeSet<String>)> {
        match self.policy.subject_columns.as_slice() {
            [one] => Some((one.as_str(), &self.subjects)),
            _ => None,
        }
    }

    /// Refuses a subject column the table does not have, or one that is a partition column
    /// (its values are in the log, not in the files: not implemented).
    fn check_columns(&self, snapshot: &DeltaSnapshot) -> Result<(), LakeError> {
        for column in &self.policy.subject_columns {
            if !snapshot.columns.contains(column) {
                return Err(self
                    .table
                    .error(format!("the table has no column {column:?}")));
            }
            if snapshot.partition_columns.contains(column) {
                return Err(self.table.error(format!(
                    "the subject column {column:?} is a partition column; erasing whole partitions is not implemented"
                )));
            }
        }
        Ok(())
    }

    /// Searches the candidates of `snapshot` not yet handled and rewrites those holding
    /// subject rows beside themselves, leaving out the rows their deletion vectors delete.
    async fn rewrite_candidates(
        &self,
        snapshot: &DeltaSnapshot,
        filter: &Arc<dyn RowFilter>,
        replaced: &mut BTreeMap<String, Replaced>,
        searched: &mut BTreeMap<String, FileOutcome>,
    ) -> Result<(), LakeError> {
        let candidates: Vec<AddFile> = self
            .table
            .files(snapshot, self.by_stats())
            .await?
            .into_iter()
            .filter(|f| !replaced.contains_key(&f.path) && !searched.contains_key(&f.path))
            .collect();
        let table = &self.table;
        let guard = self.guard.as_ref();
        let mut results = futures::stream::iter(candidates)
            .map(|add| async move {
                let result = rewrite_one(table, &add, filter, guard).await;
                (add, result)
            })
            .buffer_unordered(self.concurrency);
        while let Some((add, result)) = results.next().await {
            match result {
                Ok((mut outcome, new)) if outcome.status == FileStatus::Rewritten => {
                    outcome.replaced_by = new.as_ref().map(|(path, _)| decode(path));
                    replaced.insert(
                        add.path.clone(),
                        Replaced {
                            old: add,
                            outcome,
                            new,
                        },
                    );
                }
                Ok((outcome, _)) => {
                    searched.insert(add.path, outcome);
                }
                Err(e) => {
                    tracing::warn!(file = %add.path, error = %e, "file not rewritten");
                    let outcome = FileOutcome::failed(decode(&add.path), &e);
                    searched.insert(add.path, outcome);
                }
            }
        }
        Ok(())
    }

    /// The commit of `replaced` on top of `snapshot`.
    fn commit_body(
        &self,
        snapshot: &DeltaSnapshot,
        replaced: &BTreeMap<String, Replaced>,
    ) -> Vec<u8> {
        let now = Utc::now().timestamp_millis();
        let removes: Vec<RemoveAction> = replaced
            .values()
            .map(|r| RemoveAction {
                path: r.old.path.clone(),
                partition_values: r.old.partition_values.clone(),
                size: r.old.size,
                deletion_vector: r
                    .old
                    .deletion_vector
                    .as_ref()
                    .map(|dv| dv.descriptor.clone()),
            })
            .collect();
        let adds: Vec<AddAction> = replaced
            .values()
            .filter_map(|r| {
                let (path, new) = r.new.as_ref()?;
                Some(AddAction {
                    path: path.clone(),
                    partition_values: r.old.partition_values.clone(),
                    size: new.size,
                    modification_time: now,
                    stats: add_stats(&new.metadata, &new.schema),
                })
            })
            .collect();
        let rows_removed = replaced.values().map(|r| r.outcome.rows_removed).sum();
        let rows_copied = replaced
            .values()
            .map(|r| {
                r.outcome.rows_before - r.outcome.rows_removed - r.outcome.rows_already_deleted
            })
            .sum();
        commit_body(
            &CommitFacts {
                read_version: snapshot.version,
                subject_columns: self.policy.subject_columns.join(","),
                subjects: self.subjects.len(),
                rectification: self.rectify.is_some(),
                rows_removed,
                rows_copied,
            },
            &removes,
            &adds,
            now,
        )
    }

    /// Deletes the new files of `replaced` (the commit will not happen); failures are logged,
    /// the next run removes what is left.
    async fn discard(&self, replaced: &BTreeMap<String, Replaced>) {
        for r in replaced.values() {
            self.discard_one(r).await;
        }
    }

    async fn discard_one(&self, r: &Replaced) {
        if let Some((_, new)) = &r.new {
            match self.table.root().store().delete(&new.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(object = %new.location, error = %e, "uncommitted new file not removed")
                }
            }
        }
    }

    /// Searches every file of `snapshot` (footer pruning, then the subject column): none may
    /// hold a row — but, for a rectification, this commit's `new_files` (paths relative to the
    /// root), which hold the changed rows. The `add` actions' statistics, which chose what
    /// the search read, are not trusted here: a file whose log statistics are wrong fails
    /// the erasure instead of being skipped twice. It costs one HEAD and one footer per file.
    async fn verify(
        &self,
        snapshot: &DeltaSnapshot,
        new_files: &BTreeSet<String>,
    ) -> Result<(), LakeError> {
        let files = self.table.files(snapshot, None).await?;
        for add in files {
            if self.rectify.is_some() && new_files.contains(&decode(&add.path)) {
                continue;
            }
            let file = data_file(&self.table, &add).await?;
            let found = locate_file(
                self.table.root(),
                &file,
                &self.policy.subject_columns,
                &self.subjects,
            )
            .await?;
            if found.rows > 0 {
                return Err(LakeError::NotErased {
                    root: self.table.root().url().to_string(),
                    file: file.relative,
                    rows: found.rows,
                });
            }
        }
        Ok(())
    }
}

/// The [`DataFile`] of an `add` action (one HEAD: its real size, and that it exists).
pub(crate) async fn data_file(table: &DeltaTable, add: &AddFile) -> Result<DataFile, LakeError> {
    let location = table.location_of(&add.path)?;
    let meta = table
        .root()
        .store()
        .head(&location)
        .await
        .map_err(|e| LakeError::store(&location, e))?;
    Ok(DataFile {
        location,
        relative: decode(&add.path),
        size: meta.size,
        partition: add
            .partition_values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
            .collect(),
        e_tag: meta.e_tag,
        last_modified: meta.last_modified,
    })
}

/// Rewrites one candidate beside itself.
async fn rewrite_one(
    table: &DeltaTable,
    add: &AddFile,
    filter: &Arc<dyn RowFilter>,
    guard: Option<&Arc<dyn CommitGuard>>,
) -> Result<(FileOutcome, Option<(String, NewFile)>), LakeError> {
    let file = data_file(table, add).await?;
    let new_path = new_file_path(&add.path);
    let location = table.location_of(&new_path)?;
    let deleted = Arc::new(table.deleted_rows(add).await?);
    let (outcome, new) = rewrite_file_to(
        table.root(),
        &file,
        filter,
        guard,
        Destination::Beside {
            at: location,
            deleted,
        },
    )
    .await?;
    Ok((outcome, new.map(|n| (new_path, n))))
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
