//! What erasing a subject does to a row: the [`ErasePolicy`] of a dataset, decided for one
//! batch by [`erase_plan`] and applied to a whole batch by [`erase_rows`]. Shared by the rewrite, ingest (the resurrection guard) and
//! compaction, so the three agree row for row.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use arrow_array::{Array, ArrayRef, BooleanArray, NullArray, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType};

use super::edits::{CellEdit, RowEdits};

use crate::domain::{DatasetSchema, ErasureStrategy};

/// How a dataset's rows are erased: which columns identify subjects, and what happens to a
/// row holding an erased subject.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErasePolicy {
    /// Columns holding subject ids (at least one).
    pub subject_columns: Vec<String>,
    /// Delete the row, or null the erased subject's columns.
    pub strategy: ErasureStrategy,
    /// Under [`ErasureStrategy::NullSubjectColumns`]: per subject column, the PII columns
    /// belonging to that subject, nulled with it.
    pub owned: BTreeMap<String, Vec<String>>,
    /// Subjects whose rows stay whole, whoever else they name (a legal hold on them).
    pub shielded: Option<Shielded>,
}

/// The subjects whose rows an erasure keeps whole although they also name an erased subject:
/// a legal hold on a subject (GDPR Art. 17(3)(e)) covers the rows they share with others — a
/// message between an erased subject and a held one is kept as it is. Records which erased
/// subject had which rows kept, for the request's result.
#[derive(Clone)]
pub struct Shielded {
    is_shielded: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    kept: Arc<Mutex<BTreeMap<(String, String), u64>>>,
}

impl Shielded {
    /// Rows naming a subject `is_shielded` says yes to are kept whole.
    pub fn new(is_shielded: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self {
            is_shielded: Arc::new(is_shielded),
            kept: Arc::default(),
        }
    }

    /// The rows kept so far, as `(erased subject, shielded subject) → rows`: each kept row
    /// counts once per erased subject in it, for the first shielded subject it names.
    pub fn kept(&self) -> BTreeMap<(String, String), u64> {
        self.kept.lock().map(|k| k.clone()).unwrap_or_default()
    }
}

impl std::fmt::Debug for Shielded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shielded(..)")
    }
}

impl PartialEq for Shielded {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.kept, &other.kept)
    }
}

impl Eq for Shielded {}

impl ErasePolicy {
    /// Rows of subjects in `column` are deleted (datasets written by others).
    pub fn single(column: impl Into<String>) -> Self {
        Self {
            subject_columns: vec![column.into()],
            strategy: ErasureStrategy::DeleteRow,
            owned: BTreeMap::new(),
            shielded: None,
        }
    }

    /// The policy a dataset schema declares.
    pub fn from_schema(schema: &DatasetSchema) -> Self {
        let mut owned: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in schema.columns.iter().filter(|c| c.pii.is_some()) {
            owned
                .entry(schema.owner_of(c).to_string())
                .or_default()
                .push(c.name.clone());
        }
        Self {
            subject_columns: schema.subject_columns.clone(),
            strategy: schema.erasure,
            owned,
            shielded: None,
        }
    }

    /// The same policy, keeping whole every row that names a subject of `shielded`.
    pub fn shielding(mut self, shielded: Shielded) -> Self {
        self.shielded = Some(shielded);
        self
    }
}

/// What [`erase_rows`] did.
#[derive(Debug)]
pub struct Erased {
    /// The batch without the erased subjects.
    pub batch: RecordBatch,
    /// Rows removed.
    pub rows_removed: u64,
    /// Rows kept with an erased subject's columns nulled.
    pub rows_nulled: u64,
}

/// The subject column `name` of `batch` as strings (`None` when the batch lacks it).
pub fn subject_values(batch: &RecordBatch, name: &str) -> Result<Option<StringArray>, ArrowError> {
    let Some(col) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let cast = arrow_cast::cast(col, &DataType::Utf8)?;
    Ok(cast.as_any().downcast_ref::<StringArray>().cloned())
}

/// Applies `policy` to `batch` for the subjects `is_erased` says yes to.
///
/// # Errors
/// Arrow errors (a subject column that cannot be read as text; nulling a non-nullable
/// column).
pub fn erase_rows(
    batch: &RecordBatch,
    policy: &ErasePolicy,
    is_erased: &dyn Fn(&str) -> bool,
) -> Result<Erased, ArrowError> {
    let (edits, rows_nulled) = erase_plan(batch, policy, is_erased)?;
    Ok(Erased {
        batch: edits.apply(batch)?,
        rows_removed: edits.rows_removed(),
        rows_nulled,
    })
}

/// What `policy` does to the rows of `batch` (which needs only the subject columns) for the
/// subjects `is_erased` says yes to, and how many kept rows get columns nulled.
///
/// # Errors
/// Arrow errors (a subject column that cannot be read as text).
pub fn erase_plan(
    batch: &RecordBatch,
    policy: &ErasePolicy,
    is_erased: &dyn Fn(&str) -> bool,
) -> Result<(RowEdits, u64), ArrowError> {
    let rows = batch.num_rows();
    let mut hits: Vec<(String, BooleanArray)> = Vec::new();
    let mut present: Vec<(String, StringArray)> = Vec::new();
    for name in &policy.subject_columns {
        if let Some(values) = subject_values(batch, name)? {
            let hit: BooleanArray = values
                .iter()
                .map(|v| Some(v.is_some_and(is_erased)))
                .collect();
            if hit.true_count() > 0 {
                hits.push((name.clone(), hit));
            }
            present.push((name.clone(), values));
        }
    }
    if let Some(shielded) = &policy.shielded {
        shield(&mut hits, &present, shielded, is_erased);
        hits.retain(|(_, h)| h.true_count() > 0);
    }
    if hits.is_empty() {
        return Ok((RowEdits::keep_all(rows), 0));
    }
    match policy.strategy {
        ErasureStrategy::DeleteRow => {
            let keep: BooleanArray = (0..rows)
                .map(|i| Some(!hits.iter().any(|(_, h)| h.value(i))))
                .collect();
            Ok((
                RowEdits {
                    keep,
                    cells: Vec::new(),
                },
                0,
            ))
        }
        ErasureStrategy::NullSubjectColumns => {
            // Per column nulled: the rows where it is nulled.
            let mut nulled: BTreeMap<&str, Vec<bool>> = BTreeMap::new();
            for (subject_column, hit) in &hits {
                let targets = std::iter::once(subject_column)
                    .chain(policy.owned.get(subject_column).into_iter().flatten());
                for target in targets {
                    let rows_of = nulled
                        .entry(target.as_str())
                        .or_insert_with(|| vec![false; rows]);
                    for (r, h) in rows_of.iter_mut().zip(hit.values().iter()) {
                        *r |= h;
                    }
                }
            }
            // A row left with no subject at all belongs to nobody: remove it.
            let keep: BooleanArray = (0..rows)
                .map(|i| {
                    Some(present.iter().any(|(name, values)| {
                        values.is_valid(i) && !nulled.get(name.as_str()).is_some_and(|n| n[i])
                    }))
                })
                .collect();
            let touched: HashSet<usize> = hits
                .iter()
                .flat_map(|(_, h)| (0..rows).filter(|i| h.value(*i)))
                .collect();
            let removed = keep.false_count();
            let cells = nulled
                .into_iter()
                .map(|(column, rows_of)| CellEdit {
                    column: column.to_string(),
                    rows: BooleanArray::from(rows_of),
                    values: Arc::new(NullArray::new(rows)) as ArrayRef,
                })
                .collect();
            Ok((RowEdits { keep, cells }, (touched.len() - removed) as u64))
        }
    }
}

/// Row `i` of `values`, unless null.
fn value_at(values: &StringArray, i: usize) -> Option<&str> {
    values.is_valid(i).then(|| values.value(i))
}

/// Clears the hits of every row that names a shielded subject (one not erased), and records
/// the rows kept per erased subject.
fn shield(
    hits: &mut [(String, BooleanArray)],
    present: &[(String, StringArray)],
    shielded: &Shielded,
    is_erased: &dyn Fn(&str) -> bool,
) {
    if hits.is_empty() || present.len() < 2 {
        // One subject column: a row names one subject, never a shielded one besides.
        return;
    }
    let rows = hits[0].1.len();
    let mut kept: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut cleared = vec![false; rows];
    for (i, clear) in cleared.iter_mut().enumerate() {
        if !hits.iter().any(|(_, h)| h.value(i)) {
            continue;
        }
        let Some(holder) = present
            .iter()
            .filter_map(|(_, values)| value_at(values, i))
            .find(|v| !is_erased(v) && (shielded.is_shielded)(v))
        else {
            continue;
        };
        *clear = true;
        let erased: BTreeSet<&str> = present
            .iter()
            .filter_map(|(_, values)| value_at(values, i))
            .filter(|v| is_erased(v))
            .collect();
        for subject in erased {
            *kept
                .entry((subject.to_string(), holder.to_string()))
                .or_default() += 1;
        }
    }
    if kept.is_empty() {
        return;
    }
    for (_, hit) in hits.iter_mut() {
        *hit = hit
            .iter()
            .zip(&cleared)
            .map(|(h, c)| Some(h == Some(true) && !c))
            .collect();
    }
    if let Ok(mut all) = shielded.kept.lock() {
        for (key, n) in kept {
            *all.entry(key).or_default() += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::BinaryArray;
    use arrow_schema::{Field, Schema};

    fn messages() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("sender", DataType::Utf8, true),
            Field::new("receiver", DataType::Utf8, true),
            Field::new("sender_email", DataType::Binary, true),
            Field::new("body", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "a", "c"])),
                Arc::new(StringArray::from(vec!["b", "a", "a", "b"])),
                Arc::new(BinaryArray::from(vec![&b"ea"[..], b"eb", b"ea", b"ec"])),
                Arc::new(StringArray::from(vec!["1", "2", "3", "4"])),
            ],
        )
        .unwrap()
    }

    fn policy(strategy: ErasureStrategy) -> ErasePolicy {
        ErasePolicy {
            subject_columns: vec!["sender".into(), "receiver".into()],
            strategy,
            owned: [("sender".to_string(), vec!["sender_email".to_string()])].into(),
            shielded: None,
        }
    }

    #[test]
    fn rows_naming_a_shielded_subject_are_kept_whole_and_counted_per_erased_subject() {
        // Rows: a→b, b→a, a→a, c→b. Erase a; b is under a hold.
        for strategy in [
            ErasureStrategy::DeleteRow,
            ErasureStrategy::NullSubjectColumns,
        ] {
            let shielded = Shielded::new(|s| s == "b");
            let policy = policy(strategy).shielding(shielded.clone());
            let out = erase_rows(&messages(), &policy, &|s| s == "a").unwrap();
            // Only a→a goes; both rows a shares with b stay untouched.
            assert_eq!((out.rows_removed, out.rows_nulled), (1, 0), "{strategy:?}");
            let sender = subject_values(&out.batch, "sender").unwrap().unwrap();
            assert_eq!(
                sender.iter().collect::<Vec<_>>(),
                [Some("a"), Some("b"), Some("c")]
            );
            assert!(
                out.batch
                    .column_by_name("sender_email")
                    .unwrap()
                    .is_valid(0)
            );
            assert_eq!(
                shielded.kept(),
                [(("a".to_string(), "b".to_string()), 2)].into()
            );
        }
        // A shielded subject that is itself being erased shields nothing.
        let shielded = Shielded::new(|s| s == "a");
        let policy = policy(ErasureStrategy::DeleteRow).shielding(shielded.clone());
        let out = erase_rows(&messages(), &policy, &|s| s == "a").unwrap();
        assert_eq!(out.rows_removed, 3);
        assert!(shielded.kept().is_empty());
    }

    #[test]
    fn delete_row_removes_every_row_naming_the_subject_in_any_column() {
        let out = erase_rows(&messages(), &policy(ErasureStrategy::DeleteRow), &|s| {
            s == "a"
        })
        .unwrap();
        assert_eq!(out.rows_removed, 3);
        let body = out.batch.column_by_name("body").unwrap();
        let body = body.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(body.iter().collect::<Vec<_>>(), [Some("4")]);
    }

    #[test]
    fn null_subject_columns_keeps_the_other_subjects_rows() {
        let out = erase_rows(
            &messages(),
            &policy(ErasureStrategy::NullSubjectColumns),
            &|s| s == "a",
        )
        .unwrap();
        // Row 3 (a → a) has nobody left and goes; rows 1 and 2 keep b's side.
        assert_eq!((out.rows_removed, out.rows_nulled), (1, 2));
        let b = &out.batch;
        let sender = subject_values(b, "sender").unwrap().unwrap();
        let receiver = subject_values(b, "receiver").unwrap().unwrap();
        assert_eq!(
            sender.iter().collect::<Vec<_>>(),
            [None, Some("b"), Some("c")]
        );
        assert_eq!(
            receiver.iter().collect::<Vec<_>>(),
            [Some("b"), None, Some("b")]
        );
        let email = b.column_by_name("sender_email").unwrap();
        assert!(email.is_null(0), "a's own PII is nulled with a");
        assert!(email.is_valid(1), "b's PII stays");
    }

    #[test]
    fn nothing_to_erase_returns_the_batch_unchanged() {
        let out = erase_rows(&messages(), &policy(ErasureStrategy::DeleteRow), &|_| false).unwrap();
        assert_eq!(out.batch, messages());
        assert_eq!(out.rows_removed, 0);
    }
}
