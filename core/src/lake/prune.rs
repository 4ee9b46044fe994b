//! Row-group pruning on the subject column: min/max statistics, then bloom filters.
//!
//! Pruning is conservative: a row group is skipped only when the footer proves that none of the
//! subjects can be in it. Subjects are compared as the strings the subject column casts to
//! (`arrow-cast` to Utf8), so statistics are used only for types whose order agrees with that:
//! string/binary columns (unsigned byte order) and signed integer columns (subject parsed as a
//! canonical integer). Any other type is never pruned.

use std::collections::BTreeSet;

use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::basic::{ConvertedType, LogicalType, Type as PhysicalType};
use parquet::bloom_filter::Sbbf;
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnDescriptor;

use super::open::LakeFileReader;
use super::trust::{row_counts_agree, stats_trusted};

/// How the subject column's values can be compared with subject ids in the footer.
#[derive(Clone, Copy, Debug, PartialEq)]
enum KeyKind {
    /// Byte-array strings (UTF8/String/Enum/JSON or no annotation): compare bytes.
    Bytes,
    /// Signed INT32 / INT64 without a temporal or decimal annotation.
    Int,
    /// Anything else: never pruned.
    Unknown,
}

fn key_kind(col: &ColumnDescriptor) -> KeyKind {
    match col.physical_type() {
        PhysicalType::BYTE_ARRAY => match (col.logical_type_ref(), col.converted_type()) {
            (None, ConvertedType::NONE | ConvertedType::UTF8 | ConvertedType::ENUM)
            | (Some(LogicalType::String | LogicalType::Enum | LogicalType::Json), _) => {
                KeyKind::Bytes
            }
            _ => KeyKind::Unknown,
        },
        PhysicalType::INT32 | PhysicalType::INT64 => {
            match (col.logical_type_ref(), col.converted_type()) {
                (
                    None,
                    ConvertedType::NONE
                    | ConvertedType::INT_8
                    | ConvertedType::INT_16
                    | ConvertedType::INT_32
                    | ConvertedType::INT_64,
                ) => KeyKind::Int,
                (Some(LogicalType::Integer(int)), _) if int.is_signed => KeyKind::Int,
                _ => KeyKind::Unknown,
            }
        }
        _ => KeyKind::Unknown,
    }
}

/// A subject id as an integer, if it is one written canonically (`"3"`, not `"03"` or `"+3"`).
fn canonical_int(subject: &str) -> Option<i64> {
    subject
        .parse::<i64>()
        .ok()
        .filter(|v| v.to_string() == subject)
}

/// Which row groups may hold the subjects, and why the others were skipped.
#[derive(Debug, Default, Clone)]
pub(crate) struct Pruning {
    /// Row groups that may hold at least one subject, ascending.
    pub candidates: Vec<usize>,
    /// Row groups skipped because of min/max statistics or null counts.
    pub by_statistics: usize,
    /// Row groups skipped because of bloom filters.
    pub by_bloom_filter: usize,
}

/// Subjects that may be in a row group according to its statistics (all of them when the
/// statistics cannot be trusted, see [`stats_trusted`]).
fn by_statistics<'s>(
    rg: &RowGroupMetaData,
    leaf: usize,
    kind: KeyKind,
    subjects: &'s BTreeSet<String>,
    created_by: Option<&str>,
) -> Vec<&'s str> {
    let all: Vec<&str> = subjects.iter().map(String::as_str).collect();
    let chunk = rg.column(leaf);
    if !stats_trusted(chunk, created_by) {
        return all;
    }
    let Some(stats) = chunk.statistics() else {
        return if kind == KeyKind::Int {
            // A subject that is not a canonical integer can never equal a cast integer.
            all.into_iter()
                .filter(|s| canonical_int(s).is_some())
                .collect()
        } else {
            all
        };
    };
    if stats.null_count_opt() == Some(rg.num_rows() as u64) && rg.num_rows() > 0 {
        return Vec::new();
    }
    match (kind, stats) {
        (KeyKind::Bytes, Statistics::ByteArray(s)) if !stats.is_min_max_deprecated() => {
            let (min, max) = (s.min_opt(), s.max_opt());
            all.into_iter()
                .filter(|subject| {
                    let b = subject.as_bytes();
                    min.is_none_or(|m| m.data() <= b) && max.is_none_or(|m| b <= m.data())
                })
                .collect()
        }
        (KeyKind::Int, _) => {
            let (min, max) = match stats {
                Statistics::Int32(s) => (
                    s.min_opt().map(|v| *v as i64),
                    s.max_opt().map(|v| *v as i64),
                ),
                Statistics::Int64(s) => (s.min_opt().copied(), s.max_opt().copied()),
                _ => (None, None),
            };
            all.into_iter()
                .filter(|subject| match canonical_int(subject) {
                    Some(v) => min.is_none_or(|m| m <= v) && max.is_none_or(|m| v <= m),
                    None => false,
                })
                .collect()
        }
        _ => all,
    }
}

/// Whether the bloom filter says `subject` may be in the column chunk.
fn bloom_may_contain(sbbf: &Sbbf, col: &ColumnDescriptor, kind: KeyKind, subject: &str) -> bool {
    match kind {
        KeyKind::Bytes => sbbf.check(subject),
        KeyKind::Int => match (col.physical_type(), canonical_int(subject)) {
            (PhysicalType::INT32, Some(v)) => match i32::try_from(v) {
                Ok(v) => sbbf.check(&v),
                Err(_) => false,
            },
            (PhysicalType::INT64, Some(v)) => sbbf.check(&v),
            (_, None) => false,
            _ => true,
        },
        KeyKind::Unknown => true,
    }
}

/// Decides which row groups of the file behind `builder` may contain any of `subjects` in leaf
/// column `leaf`: statistics first, then bloom filters (fetched only for surviving row groups).
/// A bloom filter that cannot be read is ignored (the row group stays a candidate). A footer
/// whose file-level row count disagrees with its row groups prunes nothing: every row group
/// is a candidate, so the data decides.
pub(crate) async fn prune(
    builder: &mut ParquetRecordBatchStreamBuilder<LakeFileReader>,
    leaf: usize,
    subjects: &BTreeSet<String>,
    footer_rows_agree: bool,
) -> Pruning {
    let metadata = builder.metadata().clone();
    let col = metadata.file_metadata().schema_descr().column(leaf);
    let kind = key_kind(&col);
    let mut out = Pruning::default();
    if !footer_rows_agree || !row_counts_agree(&metadata) {
        out.candidates = (0..metadata.num_row_groups()).collect();
        return out;
    }
    let created_by = metadata.file_metadata().created_by();
    for (i, rg) in metadata.row_groups().iter().enumerate() {
        let mut maybe = by_statistics(rg, leaf, kind, subjects, created_by);
        if maybe.is_empty() {
            out.by_statistics += 1;
            continue;
        }
        if kind != KeyKind::Unknown && rg.column(leaf).bloom_filter_offset().is_some() {
            match builder.get_row_group_column_bloom_filter(i, leaf).await {
                Ok(Some(sbbf)) => maybe.retain(|s| bloom_may_contain(&sbbf, &col, kind, s)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(row_group = i, error = %e, "bloom filter unreadable; not used")
                }
            }
            if maybe.is_empty() {
                out.by_bloom_filter += 1;
                continue;
            }
        }
        out.candidates.push(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::canonical_int;

    #[test]
    fn only_canonical_integers_are_integer_subjects() {
        assert_eq!(canonical_int("3"), Some(3));
        assert_eq!(canonical_int("-42"), Some(-42));
        assert_eq!(canonical_int("03"), None);
        assert_eq!(canonical_int("+3"), None);
        assert_eq!(canonical_int("abc"), None);
    }
}
