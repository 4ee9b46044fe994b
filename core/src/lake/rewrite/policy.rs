//! What erasing a subject does to a row: the [`ErasePolicy`] of a dataset, decided for one
//! batch by [`erase_plan`] and applied to a whole batch by [`erase_rows`]. Shared by the rewrite, ingest (the resurrection guard) and
//! compaction, so the three agree row for row.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

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
}

impl ErasePolicy {
    /// Rows of subjects in `column` are deleted (datasets written by others).
    pub fn single(column: impl Into<String>) -> Self {
        Self {
            subject_columns: vec![column.into()],
            strategy: ErasureStrategy::DeleteRow,
            owned: BTreeMap::new(),
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
        }
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
        }
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
