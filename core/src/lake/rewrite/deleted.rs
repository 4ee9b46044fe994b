//! [`DeletedRows`]: rows of a table's data file that the table format has already deleted
//! without rewriting the file — a Delta deletion vector (PROTOCOL.md "Deletion Vectors") or
//! Iceberg position deletes (spec, "Position Delete Files"). A copy-on-write rewrite of such
//! a file must leave them out of the new file, or they would come back to life once the new
//! file replaces the old one (its deletes name the old file only).

/// Row positions in a data file (0-based, counted from the file's first row across its row
/// groups, as both formats count them), sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeletedRows(Vec<u64>);

impl DeletedRows {
    /// The positions of `rows`, in any order, duplicates allowed.
    pub fn new(rows: impl IntoIterator<Item = u64>) -> Self {
        let mut rows: Vec<u64> = rows.into_iter().collect();
        rows.sort_unstable();
        rows.dedup();
        Self(rows)
    }

    /// No row deleted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many rows are deleted.
    pub fn len(&self) -> u64 {
        self.0.len() as u64
    }

    /// The deleted positions in `start..end`, ascending.
    pub fn within(&self, start: u64, end: u64) -> &[u64] {
        let from = self.0.partition_point(|&p| p < start);
        let to = self.0.partition_point(|&p| p < end);
        &self.0[from..to]
    }

    /// The largest deleted position, if any.
    pub fn last(&self) -> Option<u64> {
        self.0.last().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::DeletedRows;

    #[test]
    fn positions_are_sorted_deduplicated_and_sliced_by_range() {
        let d = DeletedRows::new([9, 2, 5, 2, 0]);
        assert_eq!(d.len(), 4);
        assert_eq!(d.within(0, 3), &[0, 2]);
        assert_eq!(d.within(3, 9), &[5]);
        assert_eq!(d.within(9, 10), &[9]);
        assert!(d.within(10, 20).is_empty());
        assert_eq!(d.last(), Some(9));
        assert!(DeletedRows::default().is_empty());
    }
}
