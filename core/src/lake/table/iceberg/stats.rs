//! The metrics of a data file Lethe wrote, for its manifest entry: `record_count`,
//! `column_sizes`, `value_counts`, `null_value_counts`, `lower_bounds`, `upper_bounds` and
//! `split_offsets`, from the file's own footer (the rewrite engine computed its row groups'
//! statistics from the values kept, or copied them with untouched row groups).
//!
//! Source: Iceberg spec, "Manifests" (`data_file` fields 103–132) and Appendix D. Columns are
//! matched to the table schema by the Parquet field ids Iceberg writers put in the file. A
//! column is left out of a map when a row group lacks what it needs; readers then do not
//! skip on it, which is always correct. NaN counts are not written (the footer has none).
//!
//! The table's metrics modes are honoured (Iceberg docs, "Configuration": table properties
//! `write.metadata.metrics.default`, default `truncate(16)`, and
//! `write.metadata.metrics.column.<name>`): `none` writes no metrics for the column, `counts`
//! no bounds, `truncate(n)` string and binary bounds cut to `n` characters / bytes (the upper
//! bound incremented so it stays a bound, or left out when it cannot be), `full` whole values.

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
    apply_modes(&mut m, metadata);
    m.split_offsets.sort_unstable();
    m
}

/// A column's metrics mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    None,
    Counts,
    Truncate(usize),
    Full,
}

fn parse_mode(text: &str) -> Option<Mode> {
    let text = text.trim();
    match text {
        "none" => Some(Mode::None),
        "counts" => Some(Mode::Counts),
        "full" => Some(Mode::Full),
        _ => text
            .strip_prefix("truncate(")
            .and_then(|t| t.strip_suffix(')'))
            .and_then(|n| n.trim().parse().ok())
            .filter(|&n| n > 0)
            .map(Mode::Truncate),
    }
}

/// Applies the table's metrics modes to `m` (top-level columns; nested leaves follow the
/// default mode).
fn apply_modes(m: &mut FileMetrics, metadata: &TableMetadata) {
    let default = metadata
        .property("write.metadata.metrics.default")
        .and_then(parse_mode)
        .unwrap_or(Mode::Truncate(16));
    let columns = metadata.columns();
    let ids: Vec<i32> = m.value_counts.keys().copied().collect();
    for id in ids {
        let column = columns.iter().find(|c| c.id == id);
        let mode = column
            .and_then(|c| metadata.property(&format!("write.metadata.metrics.column.{}", c.name)))
            .and_then(parse_mode)
            .unwrap_or(default);
        let kind = column.map(|c| c.kind.as_str()).unwrap_or_default();
        match mode {
            Mode::None => {
                m.column_sizes.remove(&id);
                m.value_counts.remove(&id);
                m.null_counts.remove(&id);
                m.lower.remove(&id);
                m.upper.remove(&id);
            }
            Mode::Counts => {
                m.lower.remove(&id);
                m.upper.remove(&id);
            }
            Mode::Truncate(n) if kind == "string" || kind == "binary" => {
                let text = kind == "string";
                if let Some(lo) = m.lower.remove(&id) {
                    m.lower.insert(id, truncate_lower(lo, n, text));
                }
                if let Some(hi) = m.upper.remove(&id)
                    && let Some(hi) = truncate_upper(hi, n, text)
                {
                    m.upper.insert(id, hi);
                }
            }
            Mode::Truncate(_) | Mode::Full => {}
        }
    }
}

/// The first `n` characters (`text`) or bytes of a lower bound: a prefix, still ≤ every value.
fn truncate_lower(bound: Vec<u8>, n: usize, text: bool) -> Vec<u8> {
    match (text, std::str::from_utf8(&bound)) {
        (true, Ok(s)) => s.chars().take(n).collect::<String>().into_bytes(),
        _ => bound.into_iter().take(n).collect(),
    }
}

/// An upper bound cut to `n` characters / bytes with its last one incremented, so it stays
/// ≥ every value; `None` when no such bound exists (every character or byte at its maximum).
fn truncate_upper(bound: Vec<u8>, n: usize, text: bool) -> Option<Vec<u8>> {
    if text {
        let s = String::from_utf8(bound).ok()?;
        let mut chars: Vec<char> = s.chars().collect();
        if chars.len() <= n {
            return Some(s.into_bytes());
        }
        chars.truncate(n);
        while let Some(last) = chars.pop() {
            let next = (u32::from(last) + 1..=0x10_FFFF).find_map(char::from_u32);
            if let Some(c) = next {
                chars.push(c);
                return Some(chars.into_iter().collect::<String>().into_bytes());
            }
        }
        None
    } else {
        if bound.len() <= n {
            return Some(bound);
        }
        let mut bytes = bound[..n].to_vec();
        while let Some(last) = bytes.pop() {
            if last < u8::MAX {
                bytes.push(last + 1);
                return Some(bytes);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_bounds_stay_bounds() {
        assert_eq!(
            truncate_lower(b"u-07@example.com".to_vec(), 4, true),
            b"u-07"
        );
        assert_eq!(
            truncate_upper(b"u-07@example.com".to_vec(), 4, true).unwrap(),
            b"u-08"
        );
        assert_eq!(truncate_upper(b"ab".to_vec(), 4, true).unwrap(), b"ab");
        assert_eq!(
            truncate_upper(vec![1, 255, 255], 2, false).unwrap(),
            vec![2]
        );
        assert_eq!(truncate_upper(vec![255, 255, 1], 2, false), None);
        assert_eq!(
            truncate_lower("ééé".as_bytes().to_vec(), 2, true),
            "éé".as_bytes()
        );
        assert_eq!(parse_mode("truncate(16)"), Some(Mode::Truncate(16)));
        assert_eq!(parse_mode("counts"), Some(Mode::Counts));
        assert_eq!(parse_mode("truncate(0)"), None);
    }
}
