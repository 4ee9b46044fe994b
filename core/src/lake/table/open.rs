//! A table of either format as one handle, [`Table`]: what registering it as a dataset checks
//! ([`Table::describe`]), the data files of its current snapshot ([`Table::live_files`]: what
//! locate and access read), and an erasure or a rectification through the format's own
//! commit and purge ([`Table::erase`], [`Table::rectify`]; one [`TableEraseOutcome`] for both
//! formats).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::delta::{self, DeltaErase, DeltaEraseOutcome, DeltaTable};
use super::iceberg::{IcebergErase, IcebergEraseOutcome, IcebergTable};
use crate::lake::error::LakeError;
use crate::lake::rewrite::{
    ColumnChange, CommitGuard, DeletedRows, EraseMetrics, ErasePolicy, FileOutcome, FileStatus,
    table_rectify_filter,
};
use crate::lake::root::{DataFile, LakeRoot};

/// HEAD requests sent at once while listing a snapshot's files.
const HEAD_CONCURRENCY: usize = 16;

/// A Delta Lake or Apache Iceberg table. Nothing is read until a method is called.
#[derive(Debug, Clone)]
pub enum Table {
    /// A Delta table (its root, holding `_delta_log/`).
    Delta(DeltaTable),
    /// An Iceberg table of a SQL or REST catalog.
    Iceberg(IcebergTable),
}

/// What a table is now, as registration checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// `delta` or `iceberg`.
    pub format: &'static str,
    /// Where its files are: the Delta root, the Iceberg table `location` (a URL).
    pub location: String,
    /// Top-level columns of the current schema, in order.
    pub columns: Vec<String>,
    /// Partition columns: Delta's `partitionColumns`, the partition field names of the
    /// Iceberg table's default spec.
    pub partition_columns: Vec<String>,
    /// The current version (Delta) or snapshot id (Iceberg; `None`: no snapshot yet).
    pub version: Option<i64>,
}

/// The data files of a table's current snapshot, as the lake engine reads them.
#[derive(Debug, Clone)]
pub struct LiveFiles {
    /// The root the files' relative paths are relative to (table root or location).
    pub root: LakeRoot,
    /// The files (size and ETag from one HEAD each; Delta partition values as the log has
    /// them), sorted by path.
    pub files: Vec<DataFile>,
    /// Rows of the files deleted without rewriting them, by relative path (only files
    /// with deleted rows; filled by `live_files(true)`).
    pub deleted: BTreeMap<String, Arc<DeletedRows>>,
    /// The version or snapshot id they were read at (`None`: an Iceberg table with no
    /// snapshot).
    pub version: Option<i64>,
}

/// What [`Table::erase`] did, for both formats.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableEraseOutcome {
    /// One outcome per candidate file (relative to the table root or location), sorted; a
    /// rewritten file names its successor in `replaced_by`.
    pub files: Vec<FileOutcome>,
    /// Counters.
    pub metrics: EraseMetrics,
    /// The version / snapshot the erasure started from.
    pub read_version: Option<i64>,
    /// Lethe's commit: the Delta version or the Iceberg `overwrite` snapshot id; `None` when
    /// no file held a subject row.
    pub commit: Option<i64>,
    /// Commits attempted (more than 1 after losing races to other writers).
    pub commit_attempts: u32,
    /// Versions (Delta) or snapshots (Iceberg) that can no longer read the erased rows.
    pub snapshots_expired: u64,
    /// Data files deleted from storage after the commit, relative to the table root.
    pub files_purged: Vec<String>,
    /// Files left by crashed runs and removed before this one.
    pub orphans_removed: u64,
}

impl TableEraseOutcome {
    /// True when at least one candidate file failed (it still holds whatever it held).
    pub fn has_failures(&self) -> bool {
        self.files
            .iter()
            .any(|f| matches!(f.status, FileStatus::Failed { .. }))
    }
}

impl From<DeltaEraseOutcome> for TableEraseOutcome {
    fn from(o: DeltaEraseOutcome) -> Self {
        Self {
            files: o.files,
            metrics: o.metrics,
            read_version: i64::try_from(o.read_version).ok(),
            commit: o.commit.and_then(|v| i64::try_from(v).ok()),
            commit_attempts: o.commit_attempts,
            snapshots_expired: o.snapshots_expired,
            files_purged: o.files_purged,
            orphans_removed: o.orphans_removed,
        }
    }
}

impl From<IcebergEraseOutcome> for TableEraseOutcome {
    fn from(o: IcebergEraseOutcome) -> Self {
        Self {
            files: o.files,
            metrics: o.metrics,
            read_version: o.read_snapshot,
            commit: o.commit,
            commit_attempts: o.commit_attempts,
            snapshots_expired: o.snapshots_expired,
            files_purged: o.files_purged,
            orphans_removed: o.orphans_removed,
        }
    }
}

impl Table {
    /// `delta` or `iceberg`.
    pub fn format(&self) -> &'static str {
        match self {
            Self::Delta(_) => "delta",
            Self::Iceberg(_) => "iceberg",
        }
    }

    /// The table's current schema, partitioning and location, after refusing the table
    /// features Lethe cannot honour.
    ///
    /// # Errors
    /// [`LakeError::Table`] when the log, catalog or metadata cannot be read;
    /// [`LakeError::TableFeature`] naming a feature Lethe cannot honour.
    pub async fn describe(&self) -> Result<TableInfo, LakeError> {
        match self {
            Self::Delta(table) => {
                let snapshot = table.snapshot().await?;
                delta::check_features(table.root().url(), &snapshot)?;
                Ok(TableInfo {
                    format: self.format(),
                    location: table.root().url().to_string(),
                    columns: snapshot.columns.clone(),
                    partition_columns: snapshot.partition_columns.clone(),
                    version: i64::try_from(snapshot.version).ok(),
                })
            }
            Self::Iceberg(table) => {
                let loaded = table.load().await?;
                super::iceberg::check_features(&loaded)?;
                let spec = loaded.metadata.default_spec_id();
                Ok(TableInfo {
                    format: self.format(),
                    location: loaded.root.url().to_string(),
                    columns: loaded
                        .metadata
                        .columns()
                        .into_iter()
                        .map(|c| c.name)
                        .collect(),
                    partition_columns: loaded
                        .metadata
                        .partition_fields(spec)
                        .into_iter()
                        .map(|(_, _, name)| name)
                        .collect(),
                    version: loaded.metadata.current_snapshot_id(),
                })
            }
        }
    }

    /// The data files of the current snapshot. With `with_deletes`, also the rows deleted
    /// without rewriting their file (Delta deletion vectors, Iceberg position delete files),
    /// which a reader of the snapshot must leave out; a file an equality delete file applies
    /// to is then refused (not implemented). Without, locating may count deleted rows (it
    /// over-counts, never misses).
    ///
    /// # Errors
    /// [`LakeError::Table`], [`LakeError::TableFeature`], [`LakeError::ObjectStore`] when a
    /// listed file cannot be found.
    pub async fn live_files(&self, with_deletes: bool) -> Result<LiveFiles, LakeError> {
        match self {
            Self::Delta(table) => {
                let snapshot = table.snapshot().await?;
                delta::check_features(table.root().url(), &snapshot)?;
                let adds = table.files(&snapshot, None).await?;
                let mut deleted = BTreeMap::new();
                if with_deletes {
                    for add in adds.iter().filter(|a| a.has_deletion_vector()) {
                        let rows = table.deleted_rows(add).await?;
                        deleted.insert(delta::decode(&add.path), Arc::new(rows));
                    }
                }
                let files = heads(adds, |add| {
                    let table = table.clone();
                    async move { delta::erase::data_file(&table, &add).await }
                })
                .await?;
                Ok(LiveFiles {
                    root: table.root().clone(),
                    files,
                    deleted,
                    version: i64::try_from(snapshot.version).ok(),
                })
            }
            Self::Iceberg(table) => {
                let loaded = table.load().await?;
                super::iceberg::check_features(&loaded)?;
                let current = super::iceberg::current_files(&loaded).await?;
                let uris: Vec<String> = current
                    .as_ref()
                    .map(|f| f.data_paths().into_iter().collect())
                    .unwrap_or_default();
                let mut deleted = BTreeMap::new();
                if with_deletes && let Some(current) = &current {
                    for (uri, rows) in super::iceberg::deleted_in(&loaded, current).await? {
                        deleted.insert(loaded.relative(&uri)?, Arc::new(rows));
                    }
                }
                let loaded = Arc::new(loaded);
                let files = heads(uris, |uri| {
                    let loaded = Arc::clone(&loaded);
                    async move { super::iceberg::data_file(&loaded, &uri).await }
                })
                .await?;
                Ok(LiveFiles {
                    root: loaded.root.clone(),
                    files,
                    deleted,
                    version: loaded.metadata.current_snapshot_id(),
                })
            }
        }
    }

    /// Rectifies `subject`'s rows (GDPR Art. 16): sets each change's column on the rows whose
    /// owner column holds the subject, in the files of the current snapshot holding them,
    /// through one commit (Delta `UPDATE`, Iceberg `overwrite`), then purges the older
    /// snapshots and files that still read the old values. Returns the outcome and the rows
    /// changed.
    ///
    /// # Errors
    /// [`LakeError::InvalidValue`] for a sealed change; those of [`Table::erase`], but the
    /// check after the commit is that only the new files hold the subject's rows.
    pub async fn rectify(
        &self,
        subject: &str,
        changes: Vec<ColumnChange>,
        concurrency: usize,
        guard: Option<Arc<dyn CommitGuard>>,
    ) -> Result<(TableEraseOutcome, u64), LakeError> {
        let owner = changes.first().map(|c| c.owner.clone()).unwrap_or_default();
        let (filter, changed) = table_rectify_filter(subject, changes)?;
        let outcome: TableEraseOutcome = match self {
            Self::Delta(table) => {
                let mut run = DeltaErase::new(table.clone(), owner)
                    .subjects([subject])
                    .rectification(filter)
                    .concurrency(concurrency);
                if let Some(guard) = guard {
                    run = run.commit_guard(guard);
                }
                run.execute().await?.into()
            }
            Self::Iceberg(table) => {
                let mut run = IcebergErase::new(table.clone(), owner)
                    .subjects([subject])
                    .rectification(filter)
                    .concurrency(concurrency);
                if let Some(guard) = guard {
                    run = run.commit_guard(guard);
                }
                run.execute().await?.into()
            }
        };
        let rows = changed.in_files(
            outcome
                .files
                .iter()
                .filter(|f| f.status == FileStatus::Rewritten)
                .map(|f| f.relative.as_str()),
        );
        Ok((outcome, rows))
    }

    /// Erases `subjects` from the table: locate in the current snapshot, rewrite the files
    /// holding them, one commit, then the purge (see [`DeltaErase`] and [`IcebergErase`]).
    /// `guard` is asked right before the commit (lease fencing).
    ///
    /// # Errors
    /// Those of [`DeltaErase::execute`] and [`IcebergErase::execute`].
    pub async fn erase(
        &self,
        policy: ErasePolicy,
        subjects: BTreeSet<String>,
        concurrency: usize,
        guard: Option<Arc<dyn CommitGuard>>,
    ) -> Result<TableEraseOutcome, LakeError> {
        let column = policy.subject_columns.first().cloned().unwrap_or_default();
        match self {
            Self::Delta(table) => {
                let mut erase = DeltaErase::new(table.clone(), column)
                    .policy(policy)
                    .subjects(subjects)
                    .concurrency(concurrency);
                if let Some(guard) = guard {
                    erase = erase.commit_guard(guard);
                }
                Ok(erase.execute().await?.into())
            }
            Self::Iceberg(table) => {
                let mut erase = IcebergErase::new(table.clone(), column)
                    .policy(policy)
                    .subjects(subjects)
                    .concurrency(concurrency);
                if let Some(guard) = guard {
                    erase = erase.commit_guard(guard);
                }
                Ok(erase.execute().await?.into())
            }
        }
    }
}

/// The [`DataFile`] of each of `items` by `head` (one HEAD each, [`HEAD_CONCURRENCY`] at
/// once), sorted by path.
async fn heads<T, F, Fut>(items: Vec<T>, head: F) -> Result<Vec<DataFile>, LakeError>
where
    F: FnMut(T) -> Fut,
    Fut: std::future::Future<Output = Result<DataFile, LakeError>>,
{
    let mut files: Vec<DataFile> = futures::stream::iter(items)
        .map(head)
        .buffer_unordered(HEAD_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    files.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(files)
}
