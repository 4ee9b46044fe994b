//! [`RowEdits`]: what a [`RowFilter`](super::RowFilter) decides for the rows of one batch —
//! which rows stay, and which cells of the kept rows get a new value (or null). The decision
//! is made on the few columns a filter reads (the subject columns); the rewrite then applies
//! it to every column at Parquet's physical level, and ingest and compaction apply it to
//! whole Arrow batches ([`RowEdits::apply`]). One decision, two ways of applying it, so the
//! three agree row for row.

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::ArrowError;
use arrow_select::filter::filter_record_batch;

/// New values for one top-level column in some rows of a batch.
#[derive(Debug, Clone)]
pub struct CellEdit {
    /// The top-level column.
    pub column: String,
    /// Rows whose cell is set (same length as the batch, no nulls).
    pub rows: BooleanArray,
    /// The new values, one per row of the batch, read where `rows` is true; a null sets the
    /// cell to null. Typed as the reader maps the column, or [`arrow_schema::DataType::Null`]
    /// when every new value is null.
    pub values: ArrayRef,
}

/// What a filter decides for the rows of one batch.
#[derive(Debug, Clone)]
pub struct RowEdits {
    /// Per row: kept (true) or removed (false); same length as the batch, no nulls.
    pub keep: BooleanArray,
    /// Cells set in the kept rows.
    pub cells: Vec<CellEdit>,
}

impl RowEdits {
    /// Keeps every one of `rows` rows unchanged.
    pub fn keep_all(rows: usize) -> Self {
        Self {
            keep: BooleanArray::from(vec![true; rows]),
            cells: Vec::new(),
        }
    }

    /// Rows removed.
    pub fn rows_removed(&self) -> u64 {
        self.keep.false_count() as u64
    }

    /// Kept rows with at least one cell set.
    pub fn rows_changed(&self) -> u64 {
        (0..self.keep.len())
            .filter(|&i| self.keep.value(i) && self.cells.iter().any(|c| c.rows.value(i)))
            .count() as u64
    }

    /// True when nothing is removed and no cell is set.
    pub fn is_noop(&self) -> bool {
        self.keep.false_count() == 0 && self.cells.iter().all(|c| c.rows.true_count() == 0)
    }

    /// `batch` with the edits applied: cells set (edits of columns the batch does not have are
    /// skipped), then removed rows dropped.
    ///
    /// # Errors
    /// [`ArrowError`] when a value does not cast to the column's type, or a null is set in a
    /// non-nullable column.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
        if self.is_noop() {
            return Ok(batch.clone());
        }
        let schema = batch.schema();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for cell in self.cells.iter().filter(|c| c.rows.true_count() > 0) {
            // A column the batch does not have (an older file of the dataset) has nothing to set.
            let Ok(i) = schema.index_of(&cell.column) else {
                continue;
            };
            let values = if cell.values.data_type() == columns[i].data_type() {
                cell.values.clone()
            } else {
                arrow_cast::cast(&cell.values, columns[i].data_type())?
            };
            columns[i] = arrow_select::zip::zip(&cell.rows, &values, &columns[i])?;
        }
        let edited = RecordBatch::try_new(schema, columns)?;
        if self.keep.false_count() == 0 {
            return Ok(edited);
        }
        filter_record_batch(&edited, &self.keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, NullArray, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn cells_are_set_before_removed_rows_are_dropped() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "c"])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .unwrap();
        let edits = RowEdits {
            keep: BooleanArray::from(vec![true, false, true]),
            cells: vec![CellEdit {
                column: "user".into(),
                rows: BooleanArray::from(vec![false, true, true]),
                values: Arc::new(NullArray::new(3)),
            }],
        };
        assert_eq!((edits.rows_removed(), edits.rows_changed()), (1, 1));
        let out = edits.apply(&batch).unwrap();
        let user = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(user.iter().collect::<Vec<_>>(), [Some("a"), None]);
        assert!(RowEdits::keep_all(3).is_noop());
    }
}
