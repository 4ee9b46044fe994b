//! [`Rectify`]: set columns of one subject's rows to corrected values (GDPR Art. 16), through
//! the same copy-on-write engine as erasure. Rows keep their place and count; only the changed
//! cells differ. Encrypted columns are sealed again by a [`CellSealer`] (the subject's key).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_array::{Array, ArrayRef, BinaryArray, BooleanArray, RecordBatch, StringArray};
use arrow_schema::DataType;
use chrono::Utc;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CellEdit, RowEdits};
use super::{CommitGuard, LakeError, LakeRoot};
use super::{FileOutcome, FileStatus, FileTask, RowFilter, Target, subject_values};
use crate::domain::typed_value;
use crate::lake::open::open;
use crate::lake::root::DataFile;

/// Seals the new values of an encrypted column (cell encryption with the subject's key).
/// Implementations must be free of I/O: they run on the blocking pool, once per batch.
pub trait CellSealer: Send + Sync + std::fmt::Debug {
    /// Envelopes for `values` (the new value repeated, typed as the column is declared), row by
    /// row for the subject in `owners`; a row whose owner is null gets a null cell.
    ///
    /// # Errors
    /// A sentence saying why (e.g. no key for an owner).
    fn seal(
        &self,
        column: &str,
        values: &ArrayRef,
        owners: &StringArray,
    ) -> Result<BinaryArray, String>;
}

/// One column to rectify.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnChange {
    /// The column (top-level).
    pub column: String,
    /// The subject column whose value selects the rows to change: the column's owner (a PII
    /// column belongs to one subject column), else the primary subject column.
    pub owner: String,
    /// The new value (a JSON scalar), typed against each file's column (see
    /// [`crate::domain::typed_value`]).
    pub value: Value,
    /// For an encrypted column: its declared (plain) type, which the value takes before it is
    /// sealed into the file's binary column. `None`: a plain column.
    pub sealed_as: Option<DataType>,
}

/// What happened to one file of a [`Rectify`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RectifiedFile {
    /// The rewrite's outcome (rows removed is always 0).
    #[serde(flatten)]
    pub file: FileOutcome,
    /// Rows of the subject whose columns were set.
    pub rows_changed: u64,
}

/// Counters of a [`Rectify`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RectifyMetrics {
    /// Files examined.
    pub files_scanned: u64,
    /// Files replaced by a rectified copy.
    pub files_rewritten: u64,
    /// Files that failed (left untouched).
    pub files_failed: u64,
    /// Rows changed in all files.
    pub rows_changed: u64,
    /// Bytes fetched from the store.
    pub bytes_read: u64,
    /// Bytes of new files written.
    pub bytes_written: u64,
    /// Wall-clock duration in seconds.
    pub elapsed_s: f64,
}

/// The result of [`Rectify::execute`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RectifyOutcome {
    /// One outcome per file, sorted by path.
    pub files: Vec<RectifiedFile>,
    /// Counters.
    pub metrics: RectifyMetrics,
}

impl RectifyOutcome {
    /// True when at least one file failed (and still holds its old values).
    pub fn has_failures(&self) -> bool {
        self.files
            .iter()
            .any(|f| matches!(f.file.status, FileStatus::Failed { .. }))
    }
}

/// Builder of a rectification: sets columns of one subject's rows to new values in every file
/// of a lake (or the files given to [`files`](Rectify::files)), GDPR Art. 16.
///
/// Before any file is written, every target file's footer is read and each change is checked
/// against it: the column and its owner exist, the value fits the column's type (a plain
/// column) or the column is binary (an encrypted one), and the column is not a Hive partition
/// key of the file. Any mismatch fails the whole operation with nothing written. Then each file
/// holding the subject is rewritten like an erasure (copy-on-write, verified, atomic swap);
/// files without the subject are not touched.
///
/// ```no_run
/// # async fn f() -> Result<(), lethe_core::lake::LakeError> {
/// use lethe_core::lake::{ColumnChange, LakeRoot, Rectify};
/// let change = ColumnChange {
///     column: "device_id".into(),
///     owner: "user_id".into(),
///     value: serde_json::json!("watch-9"),
///     sealed_as: None,
/// };
/// let outcome = Rectify::new(LakeRoot::parse("/data/events")?, "u-1")
///     .change(change)
///     .execute()
///     .await?;
/// assert!(!outcome.has_failures());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Rectify {
    root: LakeRoot,
    subject: String,
    changes: Vec<ColumnChange>,
    sealer: Option<Arc<dyn CellSealer>>,
    files: Option<BTreeSet<String>>,
    concurrency: usize,
    commit_guard: Option<Arc<dyn CommitGuard>>,
}

impl std::fmt::Debug for Rectify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rectify")
            .field("root", &self.root.url())
            .field(
                "columns",
                &self.changes.iter().map(|c| &c.column).collect::<Vec<_>>(),
            )
            .field("files", &self.files.as_ref().map(BTreeSet::len))
            .finish()
    }
}

impl Rectify {
    /// A rectification of `subject`'s rows in `root`, with no changes yet.
    pub fn new(root: LakeRoot, subject: impl Into<String>) -> Self {
        Self {
            root,
            subject: subject.into(),
            changes: Vec::new(),
            sealer: None,
            files: None,
            concurrency: 1,
            commit_guard: None,
        }
    }

    /// Adds a column to set.
    pub fn change(mut self, change: ColumnChange) -> Self {
        self.changes.push(change);
        self
    }

    /// Seals the values of encrypted columns (required when a change has `sealed_as`).
    pub fn sealer(mut self, sealer: Arc<dyn CellSealer>) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// Restricts the rectification to these files, relative to the root (see
    /// [`Erase::files`](super::Erase::files)).
    pub fn files(mut self, relative_paths: impl IntoIterator<Item = String>) -> Self {
        self.files
            .get_or_insert_with(BTreeSet::new)
            .extend(relative_paths);
        self
    }

    /// Files rewritten at the same time (default 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Asks `guard` before each swap (see [`CommitGuard`]).
    pub fn commit_guard(mut self, guard: Arc<dyn CommitGuard>) -> Self {
        self.commit_guard = Some(guard);
        self
    }

    /// Runs the rectification: checks every target file, then rewrites those holding the
    /// subject. A file failing during its rewrite is reported as [`FileStatus::Failed`] (left
    /// untouched) and does not stop the others.
    ///
    /// # Errors
    /// [`LakeError::InvalidValue`] or [`LakeError::MissingColumn`] when a change does not fit
    /// a file, a sealed change without a sealer, any error opening a target file, and
    /// root-level errors ([`LakeError::TableFormat`], listing). Nothing is written then.
    #[tracing::instrument(skip_all, fields(root = %self.root.url(), columns = self.changes.len()))]
    pub async fn execute(self) -> Result<RectifyOutcome, LakeError> {
        let started = Instant::now();
        let attempt_started = Utc::now();
        let targets: Vec<(DataFile, Arc<Vec<object_store::ObjectMeta>>)> = match &self.files {
            None => {
                let (files, temps) = self.root.list_files_and_temps().await?;
                let temps = Arc::new(temps);
                files.into_iter().map(|f| (f, Arc::clone(&temps))).collect()
            }
            Some(files) => {
                self.root.refuse_table_formats().await?;
                let mut out = Vec::with_capacity(files.len());
                for relative in files {
                    let (file, temps) = self.root.file_and_temps(relative).await?;
                    out.push((file, Arc::new(temps)));
                }
                out
            }
        };
        let mut resolved = HashMap::new();
        for (file, _) in &targets {
            for (column, value) in self.resolve(file).await? {
                resolved.insert((file.relative.clone(), column), value);
            }
        }
        let owners: Vec<String> = self
            .changes
            .iter()
            .map(|c| c.owner.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let filter: Arc<dyn RowFilter> = Arc::new(RectifySubject {
            subjects: [self.subject.clone()].into(),
            owners,
            changes: self.changes.clone(),
            resolved,
            sealer: self.sealer.clone(),
            counts: Arc::clone(&counts),
            lazy: false,
        });
        let task = FileTask {
            root: &self.root,
            filter: &filter,
            guard: self.commit_guard.as_ref(),
            attempt_started,
        };
        let task = &task;
        let mut results = futures::stream::iter(targets)
            .map(|(file, temps)| task.run(Target::Listed(file, temps)))
            .buffer_unordered(self.concurrency);
        let mut outcome = RectifyOutcome::default();
        while let Some(done) = results.next().await {
            let rows_changed = match done.status {
                FileStatus::Rewritten => counts
                    .lock()
                    .expect("counts lock")
                    .get(&done.relative)
                    .copied()
                    .unwrap_or(0),
                _ => 0,
            };
            let m = &mut outcome.metrics;
            m.files_scanned += 1;
            match done.status {
                FileStatus::Rewritten => m.files_rewritten += 1,
                FileStatus::Failed { .. } => m.files_failed += 1,
                FileStatus::Unchanged => {}
            }
            m.rows_changed += rows_changed;
            m.bytes_read += done.bytes_read;
            m.bytes_written += done.bytes_written;
            outcome.files.push(RectifiedFile {
                file: done,
                rows_changed,
            });
        }
        outcome
            .files
            .sort_by(|a, b| a.file.relative.cmp(&b.file.relative));
        outcome.metrics.elapsed_s = started.elapsed().as_secs_f64();
        tracing::info!(
            files_rewritten = outcome.metrics.files_rewritten,
            files_failed = outcome.metrics.files_failed,
            rows_changed = outcome.metrics.rows_changed,
            "rectify finished"
        );
        Ok(outcome)
    }

    /// Each change's value typed for `file` (footer only), or why it does not fit.
    async fn resolve(&self, file: &DataFile) -> Result<Vec<(String, Resolved)>, LakeError> {
        let relative = file.relative.as_str();
        let opened = open(self.root.store(), &file.location, relative, file.size).await?;
        let schema = Arc::clone(opened.metadata.schema());
        let invalid = |column: &str, reason: String| LakeError::InvalidValue {
            file: relative.to_string(),
            column: column.to_string(),
            reason,
        };
        let mut out = Vec::with_capacity(self.changes.len());
        for change in &self.changes {
            let column = change.column.as_str();
            if file.partition.iter().any(|(key, _)| key == column) {
                return Err(invalid(
                    column,
                    "it is a partition key of the file's folder".into(),
                ));
            }
            let missing = |column: &str| LakeError::MissingColumn {
                file: relative.to_string(),
                column: column.to_string(),
            };
            let field = schema
                .field_with_name(column)
                .map_err(|_| missing(column))?;
            schema
                .field_with_name(&change.owner)
                .map_err(|_| missing(&change.owner))?;
            let resolved = match &change.sealed_as {
                Some(plain) => {
                    if self.sealer.is_none() {
                        return Err(invalid(
                            column,
                            "it is encrypted and no key was given to seal it".into(),
                        ));
                    }
                    if !matches!(
                        field.data_type(),
                        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
                    ) {
                        return Err(invalid(
                            column,
                            format!(
                                "it is declared encrypted but stored as {}",
                                field.data_type()
                            ),
                        ));
                    }
                    let value = typed_value(column, &change.value, plain, field.is_nullable())
                        .map_err(|e| invalid(column, e.to_string()))?;
                    Resolved::Sealed(value)
                }
                None => {
                    let value = typed_value(
                        column,
                        &change.value,
                        field.data_type(),
                        field.is_nullable(),
                    )
                    .map_err(|e| invalid(column, e.to_string()))?;
                    Resolved::Plain(value)
                }
            };
            out.push((change.column.clone(), resolved));
        }
        Ok(out)
    }
}

/// `change`'s value typed as its column in `batch` (of `file`).
fn typed_in_batch(
    file: &str,
    batch: &RecordBatch,
    change: &ColumnChange,
) -> Result<Resolved, LakeError> {
    let schema = batch.schema();
    let field = schema
        .field_with_name(&change.column)
        .map_err(|_| LakeError::MissingColumn {
            file: file.to_string(),
            column: change.column.clone(),
        })?;
    typed_value(
        &change.column,
        &change.value,
        field.data_type(),
        field.is_nullable(),
    )
    .map(Resolved::Plain)
    .map_err(|e| LakeError::InvalidValue {
        file: file.to_string(),
        column: change.column.clone(),
        reason: e.to_string(),
    })
}

/// A change's value typed for one file.
#[derive(Debug, Clone)]
enum Resolved {
    /// One element in the file's column type.
    Plain(ArrayRef),
    /// One element in the column's declared type, sealed per row before it is written.
    Sealed(ArrayRef),
}

/// The rectification filter: on rows whose owner column holds the subject, sets each changed
/// column to its resolved value; removes no row.
#[derive(Debug)]
struct RectifySubject {
    subjects: BTreeSet<String>,
    owners: Vec<String>,
    changes: Vec<ColumnChange>,
    /// `(file, column)` → value typed for that file.
    resolved: HashMap<(String, String), Resolved>,
    sealer: Option<Arc<dyn CellSealer>>,
    /// Rows changed per file.
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Values not in `resolved` are typed from the changed column of the batch planned (the
    /// batch then also holds the changed columns): a table's files, checked as the table's
    /// schema, not one by one before the rewrite.
    lazy: bool,
}

/// The rectification filter for the files of a Delta or Iceberg table (GDPR Art. 16): on the
/// rows whose owner column holds `subject`, sets each change's column to its value, typed
/// from that column in each file as it is rewritten (a value that does not fit fails that
/// file). Plain columns only: a table has no columns Lethe sealed.
///
/// Returns the filter and the count of the rows it changed, by file.
///
/// # Errors
/// [`LakeError::InvalidValue`] for a change of an encrypted column (`sealed_as`).
pub fn table_rectify_filter(
    subject: &str,
    changes: Vec<ColumnChange>,
) -> Result<(Arc<dyn RowFilter>, RowsChanged), LakeError> {
    if let Some(sealed) = changes.iter().find(|c| c.sealed_as.is_some()) {
        return Err(LakeError::InvalidValue {
            file: String::new(),
            column: sealed.column.clone(),
            reason: "a table's columns are not sealed by Lethe".into(),
        });
    }
    let owners: Vec<String> = changes
        .iter()
        .map(|c| c.owner.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let filter = Arc::new(RectifySubject {
        subjects: [subject.to_string()].into(),
        owners,
        changes,
        resolved: HashMap::new(),
        sealer: None,
        counts: Arc::clone(&counts),
        lazy: true,
    });
    Ok((filter, RowsChanged(counts)))
}

/// The rows a rectification filter changed, by file, as it runs.
#[derive(Debug, Clone, Default)]
pub struct RowsChanged(Arc<Mutex<BTreeMap<String, u64>>>);

impl RowsChanged {
    /// Rows changed in `files` (relative paths; the files a rewrite kept, not those it
    /// abandoned).
    pub fn in_files<'a>(&self, files: impl IntoIterator<Item = &'a str>) -> u64 {
        let counts = self.0.lock().expect("counts lock");
        files.into_iter().filter_map(|f| counts.get(f)).sum()
    }
}

impl RowFilter for RectifySubject {
    fn subjects(&self) -> &BTreeSet<String> {
        &self.subjects
    }

    fn columns(&self) -> &[String] {
        &self.owners
    }

    fn input_columns(&self) -> Vec<String> {
        let mut columns = self.owners.clone();
        if self.lazy {
            for change in &self.changes {
                if !columns.contains(&change.column) {
                    columns.push(change.column.clone());
                }
            }
        }
        columns
    }

    fn plan(&self, file: &str, batch: &RecordBatch) -> Result<RowEdits, LakeError> {
        let arrow = |e| LakeError::arrow(file, e);
        let rows = batch.num_rows();
        let mut cells = Vec::new();
        let mut changed = vec![false; rows];
        for change in &self.changes {
            let owners = subject_values(batch, &change.owner)
                .map_err(arrow)?
                .ok_or_else(|| LakeError::MissingColumn {
                    file: file.to_string(),
                    column: change.owner.clone(),
                })?;
            let mask: BooleanArray = owners
                .iter()
                .map(|v| Some(v.is_some_and(|s| self.subjects.contains(s))))
                .collect();
            if mask.true_count() == 0 {
                continue;
            }
            for (c, m) in changed.iter_mut().zip(mask.values().iter()) {
                *c |= m;
            }
            let typed_here;
            let resolved = match self
                .resolved
                .get(&(file.to_string(), change.column.clone()))
            {
                Some(resolved) => resolved,
                None if self.lazy => {
                    typed_here = typed_in_batch(file, batch, change)?;
                    &typed_here
                }
                None => {
                    return Err(LakeError::InvalidValue {
                        file: file.to_string(),
                        column: change.column.clone(),
                        reason: "the file was not checked before its rewrite".into(),
                    });
                }
            };
            let repeat = |value: &ArrayRef| {
                arrow_select::take::take(
                    value.as_ref(),
                    &arrow_array::UInt32Array::from(vec![0u32; rows]),
                    None,
                )
                .map_err(arrow)
            };
            let values: ArrayRef = match resolved {
                Resolved::Plain(value) => repeat(value)?,
                Resolved::Sealed(value) => {
                    let sealer = self
                        .sealer
                        .as_ref()
                        .ok_or_else(|| LakeError::InvalidValue {
                            file: file.to_string(),
                            column: change.column.clone(),
                            reason: "it is encrypted and no key was given to seal it".into(),
                        })?;
                    // Only the subject's rows are sealed; the others stay as they are.
                    let others: BooleanArray = mask.values().iter().map(|m| Some(!m)).collect();
                    let only_subject =
                        arrow_select::nullif::nullif(&owners, &others).map_err(arrow)?;
                    let only_subject = only_subject
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .expect("nullif keeps the type");
                    let sealed = sealer
                        .seal(&change.column, &repeat(value)?, only_subject)
                        .map_err(|reason| LakeError::InvalidValue {
                            file: file.to_string(),
                            column: change.column.clone(),
                            reason,
                        })?;
                    Arc::new(sealed)
                }
            };
            cells.push(CellEdit {
                column: change.column.clone(),
                rows: mask,
                values,
            });
        }
        let count = changed.iter().filter(|c| **c).count() as u64;
        *self
            .counts
            .lock()
            .expect("counts lock")
            .entry(file.to_string())
            .or_default() += count;
        Ok(RowEdits {
            keep: BooleanArray::from(vec![true; rows]),
            cells,
        })
    }
}

#[cfg(test)]
#[path = "rectify_tests.rs"]
mod tests;
