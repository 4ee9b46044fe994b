//! Copy-on-write rewrite of lake files, and the operations built on it: [`Erase`] (GDPR
//! Art. 17) and [`Rectify`] (Art. 16).
//!
//! One engine ([`engine`]) rewrites a file through a [`RowFilter`]; erasure is the filter that
//! drops the subjects' rows; [`Rectify`] (GDPR Art. 16) is the filter that sets columns of the
//! subject's rows. Files without the subjects are never written; a file is either the old one or
//! the complete, verified new one.

mod crc;
mod deleted;
mod edits;
mod engine;
pub(crate) mod failpoint;
mod guard;
mod part_copy;
mod policy;
mod rectify;
mod sink;
mod surgery;
mod swap;
mod temps;

pub use deleted::DeletedRows;
pub use edits::{CellEdit, RowEdits};
pub use policy::{ErasePolicy, Erased, Shielded, erase_plan, erase_rows, subject_values};
pub use rectify::{
    CellSealer, ColumnChange, RectifiedFile, Rectify, RectifyMetrics, RectifyOutcome, RowsChanged,
    table_rectify_filter,
};
pub use surgery::SurgeryMetrics;

pub(crate) use engine::{Destination, NewFile, rewrite_file_to};
pub use guard::{AllGuards, CommitGuard};

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::error::LakeError;
use super::root::{DataFile, LakeRoot};

/// Decides, batch by batch, what a rewrite keeps of a file and which cells it sets.
///
/// The engine reads only the [`columns`](RowFilter::columns) to find the row groups holding
/// [`subjects`](RowFilter::subjects) (pruning), so a filter must only affect rows where one
/// of those columns (cast to a string) holds one of them. It hands [`plan`](RowFilter::plan)
/// the [`input_columns`](RowFilter::input_columns) of the affected row groups only, and
/// applies the returned [`RowEdits`] to every column at Parquet's physical level.
/// Implementations must be cheap to call and free of I/O (they run on the blocking pool).
pub trait RowFilter: Send + Sync + std::fmt::Debug {
    /// The subject ids whose rows this filter affects.
    fn subjects(&self) -> &BTreeSet<String>;

    /// The columns holding subject ids (the first is the primary one).
    fn columns(&self) -> &[String];

    /// The top-level columns [`plan`](RowFilter::plan) reads (default: the subject columns).
    fn input_columns(&self) -> Vec<String> {
        self.columns().to_vec()
    }

    /// What to do with the rows of `batch`, which holds the
    /// [`input_columns`](RowFilter::input_columns) present in the file. Edited cells must be
    /// top-level columns. `file` (relative path) is for error messages.
    ///
    /// # Errors
    /// [`LakeError::Arrow`] when the subject columns cannot be evaluated, or any error
    /// naming the file and column when a new value cannot be made.
    fn plan(&self, file: &str, batch: &RecordBatch) -> Result<RowEdits, LakeError>;
}

/// The erasure filter: applies an [`ErasePolicy`] (delete the row, or null the erased
/// subject's columns) to the rows of the given subject ids.
#[derive(Debug, Clone, Default)]
pub struct EraseSubjects {
    subjects: BTreeSet<String>,
    /// The same ids, for the lookup of every row's subject (foldhash: SipHash was 3 % of an
    /// erase's CPU).
    lookup: std::collections::HashSet<String, foldhash::fast::RandomState>,
    policy: ErasePolicy,
}

impl EraseSubjects {
    /// A filter deleting the rows of `subjects` by `column`.
    pub fn new(
        column: impl Into<String>,
        subjects: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self::with_policy(ErasePolicy::single(column), subjects)
    }

    /// A filter applying `policy` to the rows of `subjects`.
    pub fn with_policy(
        policy: ErasePolicy,
        subjects: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let subjects: BTreeSet<String> = subjects.into_iter().map(Into::into).collect();
        Self {
            lookup: subjects.iter().cloned().collect(),
            subjects,
            policy,
        }
    }
}

impl RowFilter for EraseSubjects {
    fn subjects(&self) -> &BTreeSet<String> {
        &self.subjects
    }

    fn columns(&self) -> &[String] {
        &self.policy.subject_columns
    }

    fn plan(&self, file: &str, batch: &RecordBatch) -> Result<RowEdits, LakeError> {
        let (edits, _nulled) = erase_plan(batch, &self.policy, &|s| self.lookup.contains(s))
            .map_err(|e| LakeError::arrow(file, e))?;
        Ok(edits)
    }
}

/// Progress of an [`Erase`], reported after each file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EraseProgress {
    /// Files in the lake.
    pub files_total: u64,
    /// Files finished (unchanged, rewritten or failed).
    pub files_done: u64,
    /// Rows removed so far.
    pub rows_removed: u64,
    /// Bytes fetched from the store so far.
    pub bytes_read: u64,
    /// Bytes of new files written so far.
    pub bytes_written: u64,
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FileStatus {
    /// The file holds none of the subjects' rows and was not written.
    Unchanged,
    /// The file was replaced by a verified copy without the subjects' rows.
    Rewritten,
    /// The file could not be processed and is untouched.
    Failed {
        /// The error, as an operator-readable sentence.
        error: String,
    },
}

/// The outcome for one file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileOutcome {
    /// The file, relative to the lake root.
    pub relative: String,
    /// What happened.
    pub status: FileStatus,
    /// Rows in the file before (0 when it could not be read).
    pub rows_before: u64,
    /// Rows removed (the rows the filter selected; see `rows_already_deleted`).
    pub rows_removed: u64,
    /// A table's file only: rows the table format had already deleted (a deletion vector,
    /// position deletes) and the rewrite left out of the new file as well, besides
    /// `rows_removed`. Serialized only when not zero.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows_already_deleted: u64,
    /// Bytes fetched from the store for this file (footer, bloom filters, column chunks).
    pub bytes_read: u64,
    /// Size in bytes of the new file (0 when not rewritten).
    pub bytes_written: u64,
    /// Parts of the multipart upload of the new file (0: uploaded with one PUT, or not
    /// rewritten).
    #[serde(default)]
    pub upload_parts: u64,
    /// Temporary objects of this file left by earlier, crashed attempts and removed before
    /// this one.
    #[serde(default)]
    pub stale_temps_removed: u64,
    /// Row groups copied as encoded bytes and rewritten (row-group surgery).
    #[serde(flatten)]
    pub surgery: SurgeryMetrics,
    /// A failed file only: whether another attempt may succeed
    /// ([`LakeError::is_retryable`]: the store failed, the file changed, the lease was lost).
    /// Serialized only when `true`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retryable: bool,
    /// A table's file rewritten beside itself (copy-on-write): the new file, relative to
    /// the table root; `None` for a lake's file (replaced in place) or when every row was
    /// removed. Serialized only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
}

impl FileOutcome {
    /// `relative` with `status` and every count zero; the other fields are set by the caller.
    pub(crate) fn of(relative: String, status: FileStatus) -> Self {
        Self {
            relative,
            status,
            rows_before: 0,
            rows_removed: 0,
            rows_already_deleted: 0,
            bytes_read: 0,
            bytes_written: 0,
            upload_parts: 0,
            stale_temps_removed: 0,
            surgery: SurgeryMetrics::default(),
            retryable: false,
            replaced_by: None,
        }
    }

    /// The outcome of a file that failed with `error` and was left untouched.
    pub(crate) fn failed(relative: String, error: &LakeError) -> Self {
        Self {
            retryable: error.is_retryable(),
            ..Self::of(
                relative,
                FileStatus::Failed {
                    error: error.to_string(),
                },
            )
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Counters of an [`Erase`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EraseMetrics {
    /// Files listed and examined.
    pub files_scanned: u64,
    /// Files replaced.
    pub files_rewritten: u64,
    /// Files that failed (left untouched).
    pub files_failed: u64,
    /// Rows removed in all files.
    pub rows_removed: u64,
    /// Bytes fetched from the store.
    pub bytes_read: u64,
    /// Bytes of new files written.
    pub bytes_written: u64,
    /// Row groups copied as encoded bytes and rewritten, in all files.
    #[serde(flatten)]
    pub surgery: SurgeryMetrics,
    /// Wall-clock duration in seconds.
    pub elapsed_s: f64,
}

/// The result of [`Erase::execute`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EraseOutcome {
    /// One outcome per file, sorted by path.
    pub files: Vec<FileOutcome>,
    /// Counters.
    pub metrics: EraseMetrics,
}

impl EraseOutcome {
    /// True when at least one file failed (and still holds whatever it held).
    pub fn has_failures(&self) -> bool {
        self.files
            .iter()
            .any(|f| matches!(f.status, FileStatus::Failed { .. }))
    }
}

/// Callback receiving [`EraseProgress`] after each file.
pub type ProgressFn = Arc<dyn Fn(&EraseProgress) + Send + Sync>;

/// Builder of an erasure: removes all rows of the given subjects from every file of a lake (or
/// from the files given to [`files`](Erase::files)), in one pass per file (GDPR Art. 17).
///
/// ```no_run
/// # async fn f() -> Result<(), lethe_core::lake::LakeError> {
/// use lethe_core::lake::{Erase, LakeRoot};
/// let outcome = Erase::new(LakeRoot::parse("/data/events")?, "user_id")
///     .subjects(["u-1", "u-2"])
///     .concurrency(2)
///     .execute()
///     .await?;
/// assert!(!outcome.has_failures());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Erase {
    root: LakeRoot,
    policy: ErasePolicy,
    subjects: BTreeSet<String>,
    concurrency: usize,
    on_progress: Option<ProgressFn>,
    files: Option<BTreeSet<String>>,
    commit_guard: Option<Arc<dyn CommitGuard>>,
    row_filter: Option<Arc<dyn RowFilter>>,
}

impl std::fmt::Debug for Erase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Erase")
            .field("root", &self.root.url())
            .field("policy", &self.policy)
            .field("subjects", &self.subjects.len())
            .field("concurrency", &self.concurrency)
            .field("files", &self.files.as_ref().map(BTreeSet::len))
            .field("commit_guard", &self.commit_guard.is_some())
            .field("row_filter", &self.row_filter)
            .finish()
    }
}

impl Erase {
    /// An erasure of no subjects yet, over `root`, matching on top-level column
    /// `subject_column`.
    pub fn new(root: LakeRoot, subject_column: impl Into<String>) -> Self {
        Self {
            root,
            policy: ErasePolicy::single(subject_column),
            subjects: BTreeSet::new(),
            concurrency: 4,
            on_progress: None,
            files: None,
            commit_guard: None,
            row_filter: None,
        }
    }

    /// Replaces the single subject column by a dataset's [`ErasePolicy`] (several subject
    /// columns; delete the row or null the erased subject's columns).
    pub fn policy(mut self, policy: ErasePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Adds subject ids to erase (compared with the subject column cast to a string).
    pub fn subjects(mut self, subjects: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.subjects.extend(subjects.into_iter().map(Into::into));
        self
    }

    /// Files processed at the same time (default 4, at least 1). Each holds one row group in
    /// memory.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Calls `f` after each file with the running totals.
    pub fn on_progress(mut self, f: ProgressFn) -> Self {
        self.on_progress = Some(f);
        self
    }

    /// Restricts the erasure to these files, paths relative to the lake root
    /// (`date=2025-01-07/region=EU/part-0.parquet`); may be called several times. The lake is
    /// then not listed: each file is looked up by itself (one HEAD and one listing of its
    /// folder), so a worker can take one file of a large erasure as its task. A path that does
    /// not exist or is hidden is reported as [`FileStatus::Failed`].
    pub fn files(mut self, relative_paths: impl IntoIterator<Item = String>) -> Self {
        self.files
            .get_or_insert_with(BTreeSet::new)
            .extend(relative_paths);
        self
    }

    /// Removes the rows `filter` selects instead of the subjects' rows (the policy and the
    /// subjects given are then ignored): e.g. residency remediation removes only the rows of
    /// subjects stored in a region their jurisdiction does not allow. Same engine, same
    /// guarantees.
    pub fn row_filter(mut self, filter: Arc<dyn RowFilter>) -> Self {
        self.row_filter = Some(filter);
        self
    }

    /// Asks `guard` before each swap (see [`CommitGuard`]); a refusal abandons that file's
    /// rewrite with [`LakeError::Fenced`], reported as [`FileStatus::Failed`].
    pub fn commit_guard(mut self, guard: Arc<dyn CommitGuard>) -> Self {
        self.commit_guard = Some(guard);
        self
    }

    /// Runs the erasure. A file that fails is reported as [`FileStatus::Failed`] and does not
    /// stop the others. Before a file is processed, temporary objects of that file older than
    /// this run (left by a crashed attempt) are deleted.
    ///
    /// # Errors
    /// Only root-level problems: [`LakeError::TableFormat`] and listing failures.
    #[tracing::instrument(skip_all, fields(root = %self.root.url(), subjects = self.subjects.len()))]
    pub async fn execute(self) -> Result<EraseOutcome, LakeError> {
        let started = Instant::now();
        let attempt_started = Utc::now();
        let targets: Vec<Target> = match &self.files {
            None => {
                let (files, temps) = self.root.list_files_and_temps().await?;
                let temps = Arc::new(temps);
                files
                    .into_iter()
                    .map(|file| Target::Listed(file, Arc::clone(&temps)))
                    .collect()
            }
            Some(files) => {
                self.root.refuse_table_formats().await?;
                files.iter().cloned().map(Target::Named).collect()
            }
        };
        let filter: Arc<dyn RowFilter> = match &self.row_filter {
            Some(filter) => Arc::clone(filter),
            None => Arc::new(EraseSubjects::with_policy(
                self.policy.clone(),
                self.subjects.iter().cloned(),
            )),
        };
        let mut progress = EraseProgress {
            files_total: targets.len() as u64,
            ..EraseProgress::default()
        };
        let mut outcome = EraseOutcome::default();
        let task = FileTask {
            root: &self.root,
            filter: &filter,
            guard: self.commit_guard.as_ref(),
            attempt_started,
        };
        let task = &task;
        let mut results = futures::stream::iter(targets)
            .map(|target| task.run(target))
            .buffer_unordered(self.concurrency);
        while let Some(done) = results.next().await {
            let m = &mut outcome.metrics;
            m.files_scanned += 1;
            match done.status {
                FileStatus::Rewritten => m.files_rewritten += 1,
                FileStatus::Failed { .. } => m.files_failed += 1,
                FileStatus::Unchanged => {}
            }
            m.rows_removed += done.rows_removed;
            m.bytes_read += done.bytes_read;
            m.bytes_written += done.bytes_written;
            m.surgery.add(&done.surgery);
            progress.files_done += 1;
            progress.rows_removed = m.rows_removed;
            progress.bytes_read = m.bytes_read;
            progress.bytes_written = m.bytes_written;
            if let Some(f) = &self.on_progress {
                f(&progress);
            }
            outcome.files.push(done);
        }
        outcome.files.sort_by(|a, b| a.relative.cmp(&b.relative));
        outcome.metrics.elapsed_s = started.elapsed().as_secs_f64();
        tracing::info!(
            files_rewritten = outcome.metrics.files_rewritten,
            files_failed = outcome.metrics.files_failed,
            rows_removed = outcome.metrics.rows_removed,
            "erase finished"
        );
        Ok(outcome)
    }
}

/// A file to process: found by the listing (with the listing's temporary objects), or named
/// by [`Erase::files`].
enum Target {
    Listed(DataFile, Arc<Vec<ObjectMeta>>),
    Named(String),
}

/// What every file's task shares.
struct FileTask<'a> {
    root: &'a LakeRoot,
    filter: &'a Arc<dyn RowFilter>,
    guard: Option<&'a Arc<dyn CommitGuard>>,
    attempt_started: DateTime<Utc>,
}

impl FileTask<'_> {
    /// Removes the file's stale temporary objects, then rewrites it; never fails (a failure
    /// becomes the file's outcome).
    async fn run(&self, target: Target) -> FileOutcome {
        let (file, temps) = match target {
            Target::Listed(file, temps) => (file, temps),
            Target::Named(relative) => match self.root.file_and_temps(&relative).await {
                Ok((file, temps)) => (file, Arc::new(temps)),
                Err(e) => {
                    tracing::warn!(file = %relative, error = %e, "file not rewritten");
                    return FileOutcome::failed(relative, &e);
                }
            },
        };
        let stale =
            engine::remove_stale_temps(self.root.store(), &file, &temps, self.attempt_started)
                .await
                + engine::remove_stale_staging(self.root, &file, self.attempt_started);
        drop(temps);
        let mut done = match engine::rewrite_file(self.root, &file, self.filter, self.guard).await {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(file = %file.relative, error = %e, "file not rewritten");
                FileOutcome::failed(file.relative.clone(), &e)
            }
        };
        done.stale_temps_removed = stale;
        done
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod worker_tests;
