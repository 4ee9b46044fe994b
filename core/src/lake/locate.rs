//! Locate: which files, row groups and how many rows hold given data subjects.
//!
//! Per file: read the footer, prune row groups with statistics and bloom filters on the subject
//! column, then read only the subject column of the surviving row groups and count matches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::types::Int32Type;
use arrow_array::{Array, DictionaryArray, RecordBatch, StringArray};
use arrow_schema::DataType;
use futures::StreamExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use serde::Serialize;

use super::error::LakeError;
use super::open::{OpenFile, open};
use super::prune::{Pruning, prune};
use super::root::{DataFile, LakeRoot};
use super::run_blocking;

/// Rows decoded per batch when reading the subject column.
const BATCH_ROWS: usize = 8192;

/// Builder of a locate operation over a lake root.
///
/// ```no_run
/// # async fn f() -> Result<(), lethe_core::lake::LakeError> {
/// use lethe_core::lake::{LakeRoot, Locate};
/// let report = Locate::new(LakeRoot::parse("/data/events")?, "user_id")
///     .subjects(["u-1", "u-2"])
///     .execute()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Locate {
    root: LakeRoot,
    columns: Vec<String>,
    subjects: BTreeSet<String>,
    concurrency: usize,
    hint: Option<LocatorHint>,
    files: Option<Vec<DataFile>>,
}

/// What the locator index knows of a lake, for [`Locate::index`]: the files it indexed with
/// their sizes, and for those holding the subjects looked for, their rows per subject id.
#[derive(Debug, Clone, Default)]
pub struct LocatorHint {
    /// Indexed files: path relative to the root → size in bytes when indexed.
    pub known: HashMap<String, u64>,
    /// Indexed files holding the subjects: path → subject id → rows.
    pub hits: HashMap<String, BTreeMap<String, u64>>,
}

impl LocatorHint {
    /// What the index says of `file`: `None` when it does not know the file as listed (not
    /// indexed, or its size changed since: rewritten by someone else), else the subjects'
    /// rows in it (empty: none of them).
    pub fn answer(&self, file: &DataFile) -> Option<BTreeMap<String, u64>> {
        (self.known.get(&file.relative) == Some(&file.size))
            .then(|| self.hits.get(&file.relative).cloned().unwrap_or_default())
    }
}

/// One file that holds at least one row of the subjects.
#[derive(Debug, Clone, Serialize)]
pub struct FileMatch {
    /// The file as listed.
    pub file: DataFile,
    /// Rows of any of the subjects in the file.
    pub rows: u64,
    /// Rows per subject id (only subjects with at least one row).
    pub rows_by_subject: BTreeMap<String, u64>,
    /// Indexes of the row groups holding at least one of those rows, ascending (empty when
    /// the locator index answered without opening the file).
    pub row_groups: Vec<usize>,
}

/// A file that could not be searched, and why (the file stays in the lake untouched).
#[derive(Debug, Clone, Serialize)]
pub struct FileFailure {
    /// The file, relative to the lake root.
    pub relative: String,
    /// The error, as an operator-readable sentence.
    pub error: String,
}

/// Counters of a locate operation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LocateMetrics {
    /// Files listed and opened.
    pub files_scanned: u64,
    /// Row groups in the files opened.
    pub row_groups_total: u64,
    /// Row groups skipped thanks to min/max statistics (or all-null columns).
    pub row_groups_pruned_by_statistics: u64,
    /// Row groups skipped thanks to bloom filters.
    pub row_groups_pruned_by_bloom_filter: u64,
    /// Row groups whose subject column was read.
    pub row_groups_read: u64,
    /// Bytes fetched from the store (footers, bloom filters, column chunks).
    pub bytes_read: u64,
    /// Files answered by the locator index without being opened (holding the subjects).
    pub files_answered_by_index: u64,
    /// Files the locator index rules out without being opened.
    pub files_skipped_by_index: u64,
    /// Wall-clock duration in seconds.
    pub elapsed_s: f64,
}

/// The result of [`Locate::execute`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct LocateReport {
    /// Files with at least one matching row, sorted by path.
    pub files: Vec<FileMatch>,
    /// Files that could not be searched (not Parquet, corrupt, missing column…).
    pub failures: Vec<FileFailure>,
    /// Counters.
    pub metrics: LocateMetrics,
}

impl Locate {
    /// A locate of no subjects yet, over `root`, matching on top-level column `subject_column`.
    pub fn new(root: LakeRoot, subject_column: impl Into<String>) -> Self {
        Self {
            root,
            columns: vec![subject_column.into()],
            subjects: BTreeSet::new(),
            concurrency: 4,
            hint: None,
            files: None,
        }
    }

    /// Also looks in these subject columns (a message table's `receiver` besides `sender`).
    pub fn also_columns(mut self, columns: impl IntoIterator<Item = impl Into<String>>) -> Self {
        for c in columns {
            let c = c.into();
            if !self.columns.contains(&c) {
                self.columns.push(c);
            }
        }
        self
    }

    /// Uses what the locator index knows: files it indexed (at their current size) are
    /// answered from it without being opened; every other file is searched.
    pub fn index(mut self, hint: LocatorHint) -> Self {
        self.hint = Some(hint);
        self
    }

    /// Adds subject ids to look for (compared with the subject column cast to a string).
    pub fn subjects(mut self, subjects: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.subjects.extend(subjects.into_iter().map(Into::into));
        self
    }

    /// Searches exactly these files of the root instead of listing it: a table's data files
    /// are those of its current snapshot, not those of its folder
    /// ([`crate::lake::table::Table::live_files`]).
    pub fn files(mut self, files: Vec<DataFile>) -> Self {
        self.files = Some(files);
        self
    }

    /// Files searched at the same time (default 4, at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Runs the search.
    ///
    /// # Errors
    /// Only root-level problems ([`LakeError::TableFormat`], listing failures); problems with
    /// single files are reported in [`LocateReport::failures`].
    #[tracing::instrument(skip_all, fields(root = %self.root.url(), subjects = self.subjects.len()))]
    pub async fn execute(self) -> Result<LocateReport, LakeError> {
        let started = Instant::now();
        let listed = match &self.files {
            Some(files) => files.clone(),
            None => self.root.list_files().await?,
        };
        let mut report = LocateReport::default();
        let mut files = Vec::with_capacity(listed.len());
        for file in listed {
            match self.hint.as_ref().and_then(|h| h.answer(&file)) {
                None => files.push(file),
                Some(hits) if hits.is_empty() => report.metrics.files_skipped_by_index += 1,
                Some(hits) => {
                    report.metrics.files_answered_by_index += 1;
                    report.files.push(FileMatch {
                        file,
                        rows: hits.values().sum(),
                        rows_by_subject: hits,
                        row_groups: Vec::new(),
                    });
                }
            }
        }
        let this = &self;
        let mut results = futures::stream::iter(files)
            .map(|file| async move {
                let result = locate_file(&this.root, &file, &this.columns, &this.subjects).await;
                (file, result)
            })
            .buffer_unordered(self.concurrency);
        while let Some((file, result)) = results.next().await {
            report.metrics.files_scanned += 1;
            match result {
                Ok(found) => {
                    let m = &mut report.metrics;
                    m.row_groups_total += found.row_groups_total;
                    m.row_groups_pruned_by_statistics += found.pruning.by_statistics as u64;
                    m.row_groups_pruned_by_bloom_filter += found.pruning.by_bloom_filter as u64;
                    m.row_groups_read += found.pruning.candidates.len() as u64;
                    m.bytes_read += found.bytes_read;
                    if found.rows > 0 {
                        report.files.push(FileMatch {
                            file,
                            rows: found.rows,
                            rows_by_subject: found.rows_by_subject,
                            row_groups: found.row_groups,
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(file = %file.relative, error = %e, "file could not be searched");
                    report.failures.push(FileFailure {
                        relative: file.relative,
                        error: e.to_string(),
                    });
                }
            }
        }
        report
            .files
            .sort_by(|a, b| a.file.relative.cmp(&b.file.relative));
        report.failures.sort_by(|a, b| a.relative.cmp(&b.relative));
        report.metrics.elapsed_s = started.elapsed().as_secs_f64();
        tracing::info!(
            files = report.files.len(),
            failures = report.failures.len(),
            "locate finished"
        );
        Ok(report)
    }
}

/// What locating subjects in one file found.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub row_groups_total: u64,
    pub pruning: Pruning,
    pub rows: u64,
    pub rows_by_subject: BTreeMap<String, u64>,
    pub row_groups: Vec<usize>,
    pub bytes_read: u64,
}

/// Locates `subjects` in one file (footer, pruning, subject columns of candidate row groups).
pub(crate) async fn locate_file(
    root: &LakeRoot,
    file: &DataFile,
    columns: &[String],
    subjects: &BTreeSet<String>,
) -> Result<Found, LakeError> {
    let opened = open(root.store(), &file.location, &file.relative, file.size).await?;
    let mut found = Ok(Found::default());
    for column in columns {
        let one = match locate_open(&opened, column, subjects).await {
            Ok(one) => one,
            Err(e) => {
                found = Err(e);
                break;
            }
        };
        if let Ok(f) = &mut found {
            f.merge(one);
        }
    }
    tracing::debug!(file = %file.relative, bytes_read = opened.reader.bytes_read(), "file searched");
    found.map(|mut f| {
        f.bytes_read = opened.reader.bytes_read();
        f
    })
}

impl Found {
    /// Adds what another subject column of the same file found.
    fn merge(&mut self, other: Found) {
        self.row_groups_total = self.row_groups_total.max(other.row_groups_total);
        self.pruning.by_statistics += other.pruning.by_statistics;
        self.pruning.by_bloom_filter += other.pruning.by_bloom_filter;
        self.pruning.candidates.extend(other.pruning.candidates);
        self.rows += other.rows;
        for (s, n) in other.rows_by_subject {
            *self.rows_by_subject.entry(s).or_default() += n;
        }
        self.row_groups.extend(other.row_groups);
        self.row_groups.sort_unstable();
        self.row_groups.dedup();
    }
}

/// [`locate_file`] on an already opened file (`bytes_read` is left to the caller).
pub(crate) async fn locate_open(
    opened: &OpenFile,
    subject_column: &str,
    subjects: &BTreeSet<String>,
) -> Result<Found, LakeError> {
    let leaf = opened.subject_leaf(subject_column)?;
    check_value_counts(opened, leaf)?;
    let reader_metadata =
        dictionary_metadata(opened, subject_column).unwrap_or_else(|| opened.metadata.clone());
    let mut builder =
        ParquetRecordBatchStreamBuilder::new_with_metadata(opened.reader.clone(), reader_metadata);
    let mut found = Found {
        row_groups_total: builder.metadata().num_row_groups() as u64,
        pruning: prune(&mut builder, leaf, subjects, opened.footer_rows_agree).await,
        ..Found::default()
    };
    if found.pruning.candidates.is_empty() {
        return Ok(found);
    }
    let mask = ProjectionMask::leaves(opened.parquet_schema(), [leaf]);
    // One hash per row (foldhash: SipHash cost more than the decoding) instead of a dozen
    // string comparisons in the ordered set; built once per file.
    let wanted: Arc<SubjectLookup> = Arc::new(subjects.iter().cloned().collect());
    let mut stream = builder
        .with_projection(mask)
        .with_row_groups(found.pruning.candidates.clone())
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| LakeError::corrupt(&opened.relative, "planning the read", e))?;
    for &rg in &found.pruning.candidates {
        let reader = stream
            .next_row_group()
            .await
            .map_err(|e| {
                LakeError::corrupt(&opened.relative, format!("reading row group {rg}"), e)
            })?
            .ok_or_else(|| LakeError::Corrupt {
                file: opened.relative.clone(),
                reason: format!("row group {rg} missing from the stream"),
                source: None,
            })?;
        let relative = opened.relative.clone();
        let wanted = wanted.clone();
        let counts = run_blocking(move || {
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            for batch in reader {
                let batch = batch.map_err(|e| LakeError::arrow(&relative, e))?;
                count_subjects(&relative, &batch, 0, &wanted, &mut counts)?;
            }
            Ok::<_, LakeError>(counts)
        })
        .await??;
        if !counts.is_empty() {
            found.row_groups.push(rg);
            for (subject, n) in counts {
                found.rows += n;
                *found.rows_by_subject.entry(subject).or_default() += n;
            }
        }
    }
    Ok(found)
}

/// The row groups of `opened` that may hold any of `subjects` in any of `columns`, by the
/// footer alone (statistics and bloom filters where they can be trusted); the data of these
/// must still be read to know.
///
/// # Errors
/// [`LakeError::MissingColumn`] when a column is not a top-level column of the file;
/// [`LakeError::Corrupt`] when a row group's column holds another number of values than it
/// has rows.
pub(crate) async fn candidate_row_groups(
    opened: &OpenFile,
    columns: &[String],
    subjects: &BTreeSet<String>,
) -> Result<BTreeSet<usize>, LakeError> {
    let mut out = BTreeSet::new();
    for column in columns {
        let leaf = opened.subject_leaf(column)?;
        check_value_counts(opened, leaf)?;
        let mut builder = ParquetRecordBatchStreamBuilder::new_with_metadata(
            opened.reader.clone(),
            opened.metadata.clone(),
        );
        out.extend(
            prune(&mut builder, leaf, subjects, opened.footer_rows_agree)
                .await
                .candidates,
        );
    }
    Ok(out)
}

/// Fails when a row group's subject column (top-level, so one value or null per row) holds
/// another number of values than the row group says it has rows: the reader would stop at the
/// footer's count and miss the rest (or read past it), so the file is not searched on its word.
fn check_value_counts(opened: &OpenFile, leaf: usize) -> Result<(), LakeError> {
    for (i, rg) in opened.metadata.metadata().row_groups().iter().enumerate() {
        let values = rg.column(leaf).num_values();
        if values != rg.num_rows() {
            return Err(LakeError::Corrupt {
                file: opened.relative.clone(),
                reason: format!(
                    "row group {i} says {} rows but its column {:?} holds {values} values",
                    rg.num_rows(),
                    rg.column(leaf).column_path().string()
                ),
                source: None,
            });
        }
    }
    Ok(())
}

/// Column `index` of `batch` cast to Utf8 (how subject ids are compared).
pub(crate) fn subject_strings(
    file: &str,
    batch: &RecordBatch,
    index: usize,
) -> Result<StringArray, LakeError> {
    let cast = arrow_cast::cast(batch.column(index), &DataType::Utf8)
        .map_err(|e| LakeError::arrow(file, e))?;
    cast.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| LakeError::Arrow {
            file: file.to_string(),
            source: arrow_schema::ArrowError::CastError(
                "subject column did not cast to Utf8".into(),
            ),
        })
}

/// The subject ids looked up for every row.
type SubjectLookup = std::collections::HashSet<String, foldhash::fast::RandomState>;

/// `opened`'s reader metadata with the top-level `Utf8` column `column` read as
/// `Dictionary(Int32, Utf8)` (the Arrow reader keeps a dictionary-encoded chunk's dictionary
/// and indices, and builds them for plain pages), so that counting subjects looks each
/// distinct value up once instead of materializing and hashing every row's string. `None`
/// for any other type.
fn dictionary_metadata(opened: &OpenFile, column: &str) -> Option<ArrowReaderMetadata> {
    let schema = opened.metadata.schema();
    let index = schema.index_of(column).ok()?;
    if schema.field(index).data_type() != &DataType::Utf8 {
        return None;
    }
    let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let fields: Vec<arrow_schema::FieldRef> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if i == index {
                Arc::new(f.as_ref().clone().with_data_type(dictionary.clone()))
            } else {
                Arc::clone(f)
            }
        })
        .collect();
    let hinted = Arc::new(arrow_schema::Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    ));
    ArrowReaderMetadata::try_new(
        Arc::clone(opened.metadata.metadata()),
        ArrowReaderOptions::new().with_schema(hinted),
    )
    .ok()
}

/// Counts per subject in a dictionary-encoded column: each distinct value is looked up once,
/// then the rows are counted by dictionary key. `false` when `column` is not a
/// `Dictionary(Int32, Utf8)` (nothing counted).
fn count_dictionary(
    column: &dyn Array,
    wanted: &SubjectLookup,
    counts: &mut BTreeMap<String, u64>,
) -> bool {
    let Some(dict) = column.as_any().downcast_ref::<DictionaryArray<Int32Type>>() else {
        return false;
    };
    let Some(values) = dict.values().as_any().downcast_ref::<StringArray>() else {
        return false;
    };
    let hit: Vec<bool> = (0..values.len())
        .map(|i| values.is_valid(i) && wanted.contains(values.value(i)))
        .collect();
    if !hit.contains(&true) {
        return true;
    }
    let mut per_key = vec![0u64; values.len()];
    let keys = dict.keys();
    for (row, &key) in keys.values().iter().enumerate() {
        if keys.is_valid(row)
            && let Some(n) = usize::try_from(key).ok().and_then(|k| per_key.get_mut(k))
        {
            *n += 1;
        }
    }
    for (k, n) in per_key.into_iter().enumerate() {
        if n > 0 && hit[k] {
            *counts.entry(values.value(k).to_string()).or_default() += n;
        }
    }
    true
}

fn count_subjects(
    file: &str,
    batch: &RecordBatch,
    index: usize,
    wanted: &SubjectLookup,
    counts: &mut BTreeMap<String, u64>,
) -> Result<(), LakeError> {
    if count_dictionary(batch.column(index).as_ref(), wanted, counts) {
        return Ok(());
    }
    let values = subject_strings(file, batch, index)?;
    for value in values.iter().flatten() {
        if wanted.contains(value) {
            *counts.entry(value.to_string()).or_default() += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::testlake::*;

    #[test]
    fn a_dictionary_column_is_counted_by_key_with_nulls_and_repeated_values() {
        // Values "a", "b", "a" again (a dictionary built from plain pages may repeat one),
        // keys with a null row.
        let values = StringArray::from(vec![Some("a"), Some("b"), Some("a"), None]);
        let keys =
            arrow_array::Int32Array::from(vec![Some(0), Some(1), None, Some(2), Some(0), Some(3)]);
        let dict = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values)).unwrap();
        let wanted: SubjectLookup = ["a".to_string(), "z".to_string()].into_iter().collect();
        let mut counts = BTreeMap::new();
        assert!(count_dictionary(&dict, &wanted, &mut counts));
        assert_eq!(counts, BTreeMap::from([("a".to_string(), 3)]));
        // Not a dictionary: left to the row-by-row count.
        let plain = StringArray::from(vec!["a"]);
        assert!(!count_dictionary(&plain, &wanted, &mut counts));
    }

    fn root_of(dir: &tempfile::TempDir) -> LakeRoot {
        LakeRoot::parse(&dir.path().display().to_string()).unwrap()
    }

    #[tokio::test]
    async fn locate_finds_exactly_the_files_rows_and_row_groups_of_the_subjects() {
        let dir = tempfile::tempdir().unwrap();
        three_file_lake(dir.path());
        let report = Locate::new(root_of(&dir), "user_id")
            .subjects(["u1", "u6", "nobody"])
            .execute()
            .await
            .unwrap();
        let found: Vec<_> = report
            .files
            .iter()
            .map(|f| (f.file.relative.as_str(), f.rows, f.row_groups.clone()))
            .collect();
        assert_eq!(
            found,
            [
                ("date=2025-01-07/region=EU/part-0.parquet", 10, vec![0]),
                ("date=2025-01-07/region=US/part-0.parquet", 10, vec![1]),
                ("date=2025-01-08/region=APAC/part-0.parquet", 10, vec![0]),
            ]
        );
        assert_eq!(
            report.files[0].rows_by_subject,
            BTreeMap::from([("u1".into(), 10)])
        );
        assert_eq!(
            report.files[1].rows_by_subject,
            BTreeMap::from([("u6".into(), 10)])
        );
        assert!(report.failures.is_empty());
        let m = &report.metrics;
        assert_eq!(m.files_scanned, 3);
        assert_eq!(m.row_groups_total, 9);
        // EU: u1 only in row group 0; US: u6 only in row group 1; APAC's one row group spans
        // u1..u9 so it is read.
        assert_eq!(m.row_groups_pruned_by_statistics, 6);
        assert_eq!(m.row_groups_read, 3);
        assert!(m.bytes_read > 0);
    }

    #[tokio::test]
    async fn bloom_filters_prune_row_groups_that_statistics_cannot() {
        let dir = tempfile::tempdir().unwrap();
        // Every row group spans "a".."z", so min/max cannot exclude "m-absent".
        let rows: Vec<(&str, i64)> = (0..40)
            .map(|i| match i % 4 {
                0 => ("a", i),
                1 => ("z", i),
                2 => ("m-present", i),
                _ => ("k", i),
            })
            .collect();
        let props = props(8)
            .set_column_bloom_filter_enabled("user_id".into(), true)
            .build();
        write_file(dir.path(), "p.parquet", &[events(&rows)], props);
        let report = Locate::new(root_of(&dir), "user_id")
            .subjects(["m-absent"])
            .execute()
            .await
            .unwrap();
        assert!(report.files.is_empty());
        assert_eq!(report.metrics.row_groups_total, 5);
        assert_eq!(report.metrics.row_groups_pruned_by_statistics, 0);
        assert_eq!(report.metrics.row_groups_pruned_by_bloom_filter, 5);
        assert_eq!(report.metrics.row_groups_read, 0);

        let report = Locate::new(root_of(&dir), "user_id")
            .subjects(["m-present"])
            .execute()
            .await
            .unwrap();
        assert_eq!(report.files[0].rows, 10);
        assert_eq!(report.metrics.row_groups_read, 5);
    }

    #[tokio::test]
    async fn integer_subject_columns_match_subject_ids_as_strings() {
        let dir = tempfile::tempdir().unwrap();
        three_file_lake(dir.path());
        let report = Locate::new(root_of(&dir), "id")
            .subjects(["105", "0105"])
            .execute()
            .await
            .unwrap();
        assert_eq!(report.files.len(), 1);
        assert_eq!(
            report.files[0].file.relative,
            "date=2025-01-07/region=US/part-0.parquet"
        );
        assert_eq!(
            report.files[0].rows_by_subject,
            BTreeMap::from([("105".into(), 1)])
        );
        // Statistics pruned every row group but the one holding 105.
        assert_eq!(report.metrics.row_groups_read, 1);
    }

    #[tokio::test]
    async fn unreadable_files_and_missing_columns_are_failures_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        three_file_lake(dir.path());
        std::fs::write(dir.path().join("readme.txt"), "not parquet").unwrap();
        let report = Locate::new(root_of(&dir), "email")
            .subjects(["x"])
            .execute()
            .await
            .unwrap();
        assert_eq!(report.failures.len(), 4);
        let readme = report
            .failures
            .iter()
            .find(|f| f.relative == "readme.txt")
            .unwrap();
        assert!(
            readme.error.contains("not a Parquet file"),
            "{}",
            readme.error
        );
        assert!(
            report.failures[0]
                .error
                .contains("no top-level column \"email\""),
            "{}",
            report.failures[0].error
        );
    }
}
