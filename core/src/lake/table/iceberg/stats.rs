//! The metrics of a data file Lethe wrote, for its manifest entry: `record_count`,
//! `column_sizes`, `value_counts`, `null_value_counts`, `lower_bounds`, `upper_bounds` and
//! `split_offsets`, from the file's own footer (the rewrite engine computed its row groups'
//! statistics from the values kept, or copied them with untouched row groups).
//!
//! Source: Iceberg spec, "Manifests" (`data_file` fields 103–132) and Appendix D. Columns are
//! matched to the table schema by the Parquet field ids Iceberg writers put in the file. A
//! column is left out of a map when a row group lacks what it needs; readers then do not
//! skip on it, which is always correct. NaN counts are not written (the footer has none).

use std::collections::BTreeMap;

use parquet::file::metadata::ParquetMetaData;

use super::bounds::{serialize, wider};
use super::metadata::TableMetadata;

/// The metrics of one Parquet file, keyed by Iceberg field id.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FileMetrics {
    /// Rows in the file.
    pub record_count: i64,
    /// Compressed bytes per column (summed over row groups).
    pub column_sizes: BTreeMap<i32, i64>,
    /// Values (nulls included) per column.
    pub value_counts: BTreeMap<i32, i64>,
    /// Nulls per column.
    pub null_counts: BTreeMap<i32, i64>,
    /// Lower bounds, serialized (Appendix D).
    pub lower: BTreeMap<i32, Vec<u8>>,
    /// Upper bounds, serialized.
    pub upper: BTreeMap<i32, Vec<u8>>,
    /// The row groups' starting byte offsets, ascending.
    pub split_offsets: Vec<i64>,
}

/// Computes [`FileMetrics`] from the footer `md`, the types from `metadata`'s current schema.
pub(crate) fn file_metrics(md: &ParquetMetaData, metadata: &TableMetadata) -> FileMetrics {
    let mut m = FileMetrics::default();
    let descr = md.file_metadata().schema_descr();
    let mut no_nulls_known: Vec<i32> = Vec::new();
    let mut no_bounds: Vec<i32> = Vec::new();
    for rg in md.row_groups() {
        m.record_count += rg.num_rows();
        if let Some(first) = rg.columns().first() {
            let start = first
                .dictionary_page_offset()
                .unwrap_or_else(|| first.data_page_offset());
            m.split_offsets.push(rg.file_offset().unwrap_or(start));
        }
        for (i, chunk) in rg.columns().iter().enumerate() {
            let column = descr.column(i);
            let info = column.self_type().get_basic_info();
            if !info.has_id() {
                continue;
            }
            let id = info.id();
            *m.column_sizes.entry(id).or_default() += chunk.compressed_size();
            *m.value_counts.entry(id).or_default() += chunk.num_values();
            let stats = chunk.statistics();
            match stats.and_then(|s| s.null_count_opt()) {
                Some(n) => *m.null_counts.entry(id).or_default() += n as i64,
                None => no_nulls_known.push(id),
            }
            let all_null = stats
                .and_then(|s| s.null_count_opt())
                .is_some_and(|n| n as i64 == chunk.num_values());
            if all_null {
                continue;
            }
            let kind = (column.path().parts().len() == 1)
                .then(|| metadata.column_kind(id))
                .flatten();
            let bounds = kind.as_deref().zip(stats).and_then(|(kind, s)| {
                Some((kind, serialize(kind, s, true)?, serialize(kind, s, false)?))
            });
            match bounds {
                Some((kind, lo, hi)) => {
                    let lo = match m.lower.remove(&id) {
                        Some(cur) => wider(kind, cur, lo, true),
                        None => lo,
                    };
                    let hi = match m.upper.remove(&id) {
                        Some(cur) => wider(kind, cur, hi, false),
                        None => hi,
                    };
                    m.lower.insert(id, lo);
                    m.upper.insert(id, hi);
                }
                None => no_bounds.push(id),
            }
        }
    }
    for id in no_nulls_known {
        m.null_counts.remove(&id);
    }
    for id in no_bounds {
        m.lower.remove(&id);
        m.upper.remove(&id);
    }
    m.split_offsets.sort_unstable();
    m
}
