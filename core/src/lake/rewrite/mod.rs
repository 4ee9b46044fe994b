//! Copy-on-write rewrite of lake files, and the [`Erase`] operation built on it (GDPR Art. 17).
//!
//! One engine ([`engine`]) rewrites a file through a [`RowFilter`]; erasure is the filter that
//! drops the subjects' rows. Rectification (GDPR Art. 16) will be another filter on the same
//! engine. Files without the subjects are never written; a file is either the old one or the
//! complete, verified new one.

mod crc;
mod engine;
mod faithful;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{BooleanArray, RecordBatch};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::error::LakeError;
use super::locate::subject_strings;
use super::root::LakeRoot;

/// Decides, batch by batch, which rows of a file survive a rewrite.
///
/// The engine reads only the subject column to find the row groups holding [`subjects`]
/// (pruning), so a filter must only affect rows whose subject column (cast to a string) is one
/// of them. Implementations must be cheap to call and free of I/O (they run on the blocking
/// pool).
///
/// [`subjects`]: RowFilter::subjects
pub trait RowFilter: Send + Sync + std::fmt::Debug {
    /// The subject ids whose rows this filter affects.
    fn subjects(&self) -> &BTreeSet<String>;

    /// The keep-mask of `batch`: `true` keeps the row, `false` drops it. Must have
    /// `batch.num_rows()` entries and no nulls. `subject_index` is the index of the subject
    /// column in `batch`; `file` (relative path) is for error messages.
    ///
    /// # Errors
    /// [`LakeError::Arrow`] when the subject column cannot be evaluated.
    fn keep_mask(
        &self,
        file: &str,
        batch: &RecordBatch,
        subject_index: usize,
    ) -> Result<BooleanArray, LakeError>;
}

/// The erasure filter: drops every row whose subject column equals one of the subject ids.
#[derive(Debug, Clone, Default)]
pub struct EraseSubjects {
    subjects: BTreeSet<String>,
}

impl EraseSubjects {
    /// A filter dropping the rows of `subjects`.
    pub fn new(subjects: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            subjects: subjects.into_iter().map(Into::into).collect(),
        }
    }
}

impl RowFilter for EraseSubjects {
    fn subjects(&self) -> &BTreeSet<String> {
        &self.subjects
    }

    fn keep_mask(
        &self,
        file: &str,
        batch: &RecordBatch,
        subject_index: usize,
    ) -> Result<BooleanArray, LakeError> {
        let values = subject_strings(file, batch, subject_index)?;
        Ok(values
            .iter()
            .map(|v| Some(!v.is_some_and(|v| self.subjects.contains(v))))
            .collect())
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
    /// Rows removed.
    pub rows_removed: u64,
    /// Bytes fetched from the store for this file (footer, bloom filters, column chunks).
    pub bytes_read: u64,
    /// Size in bytes of the new file (0 when not rewritten).
    pub bytes_written: u64,
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

/// Builder of an erasure: removes all rows of the given subjects from every file of a lake, in
/// one pass per file (GDPR Art. 17).
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
    subject_column: String,
    subjects: BTreeSet<String>,
    concurrency: usize,
    on_progress: Option<ProgressFn>,
}

impl std::fmt::Debug for Erase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Erase")
            .field("root", &self.root.url())
            .field("subject_column", &self.subject_column)
            .field("subjects", &self.subjects.len())
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl Erase {
    /// An erasure of no subjects yet, over `root`, matching on top-level column
    /// `subject_column`.
    pub fn new(root: LakeRoot, subject_column: impl Into<String>) -> Self {
        Self {
            root,
            subject_column: subject_column.into(),
            subjects: BTreeSet::new(),
            concurrency: 4,
            on_progress: None,
        }
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

    /// Runs the erasure. A file that fails is reported as [`FileStatus::Failed`] and does not
    /// stop the others.
    ///
    /// # Errors
    /// Only root-level problems: [`LakeError::TableFormat`] and listing failures.
    #[tracing::instrument(skip_all, fields(root = %self.root.url(), subjects = self.subjects.len()))]
    pub async fn execute(self) -> Result<EraseOutcome, LakeError> {
        let started = Instant::now();
        let files = self.root.list_files().await?;
        let filter: Arc<dyn RowFilter> = Arc::new(EraseSubjects {
            subjects: self.subjects.clone(),
        });
        let mut progress = EraseProgress {
            files_total: files.len() as u64,
            ..EraseProgress::default()
        };
        let mut outcome = EraseOutcome::default();
        let (root, column, filter) = (&self.root, self.subject_column.as_str(), &filter);
        let mut results = futures::stream::iter(files)
            .map(|file| async move {
                match engine::rewrite_file(root, &file, column, filter).await {
                    Ok(done) => done,
                    Err(e) => {
                        tracing::warn!(file = %file.relative, error = %e, "file not rewritten");
                        FileOutcome {
                            relative: file.relative.clone(),
                            status: FileStatus::Failed {
                                error: e.to_string(),
                            },
                            rows_before: 0,
                            rows_removed: 0,
                            bytes_read: 0,
                            bytes_written: 0,
                        }
                    }
                }
            })
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

#[cfg(test)]
mod tests;
