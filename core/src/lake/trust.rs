//! What a footer can be trusted with. Locating a subject skips row groups on the footer's
//! word, and the rewrite copies row groups with their statistics; both must only do so where
//! the footer is known to be right. Where it is not, the data is read instead.
//!
//! Sources: PARQUET-251 (parquet-mr before 1.8.0 wrote wrong min/max for binary columns;
//! parquet-mr's `CorruptStatistics` and Arrow C++'s `ApplicationVersion` skip them), and the
//! Parquet format spec (`FileMetaData.num_rows` is the sum of the row groups' `num_rows`).

use parquet::basic::Type as PhysicalType;
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};

/// `(major, minor, patch)` of `created_by` when it was written by `app`
/// (`"parquet-mr version 1.7.0 (build …)"`).
fn version_of(created_by: &str, app: &str) -> Option<(u32, u32, u32)> {
    let rest = created_by.strip_prefix(app)?.trim_start();
    let rest = rest.strip_prefix("version")?.trim_start();
    let version: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next().flatten()?;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// Whether min/max statistics of BYTE_ARRAY and FIXED_LEN_BYTE_ARRAY columns written by
/// `created_by` can be trusted: not when written by parquet-mr before 1.8.0 (PARQUET-251), nor
/// when the writer is unknown (no `created_by`, as parquet-mr and Arrow C++ assume the worst).
pub(crate) fn binary_stats_trusted(created_by: Option<&str>) -> bool {
    let Some(created_by) = created_by else {
        return false;
    };
    match version_of(created_by, "parquet-mr") {
        Some(v) => v >= (1, 8, 0),
        None => true,
    }
}

/// Whether a file written by `created_by` may leave each column chunk's dictionary page header
/// out of its `total_compressed_size` and `total_uncompressed_size`: parquet-mr before 1.2.9,
/// or a `parquet-mr` that gives no version (PARQUET-816, IMPALA-694; Arrow C++ pads such
/// chunks' ranges for the same writers).
pub(crate) fn dictionary_header_uncounted(created_by: Option<&str>) -> bool {
    let Some(created_by) = created_by else {
        return false;
    };
    if !created_by.starts_with("parquet-mr") {
        return false;
    }
    version_of(created_by, "parquet-mr").is_none_or(|v| v < (1, 2, 9))
}

/// Whether the min/max statistics of `col` in a file written by `created_by` can be used to
/// rule values out (or be copied into a file that will say it was written by Lethe).
pub(crate) fn stats_trusted(col: &ColumnChunkMetaData, created_by: Option<&str>) -> bool {
    let Some(stats) = col.statistics() else {
        return true;
    };
    match col.column_type() {
        PhysicalType::BYTE_ARRAY | PhysicalType::FIXED_LEN_BYTE_ARRAY => {
            !stats.is_min_max_deprecated() && binary_stats_trusted(created_by)
        }
        _ => true,
    }
}

/// Whether the file's row count agrees with the sum of its row groups' (a footer that does
/// not is not trusted to prune anything).
pub(crate) fn row_counts_agree(md: &ParquetMetaData) -> bool {
    let sum: i64 = md.row_groups().iter().map(|rg| rg.num_rows()).sum();
    sum == md.file_metadata().num_rows()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_mr_before_1_2_9_or_without_a_version_leaves_the_dictionary_header_uncounted() {
        assert!(dictionary_header_uncounted(Some("parquet-mr")));
        assert!(dictionary_header_uncounted(Some(
            "parquet-mr version 1.2.8"
        )));
        assert!(!dictionary_header_uncounted(Some(
            "parquet-mr version 1.2.9"
        )));
        assert!(!dictionary_header_uncounted(Some(
            "parquet-mr version 1.12.0-20181221031136"
        )));
        assert!(!dictionary_header_uncounted(Some(
            "parquet-cpp-arrow version 14.0.0"
        )));
        assert!(!dictionary_header_uncounted(None));
    }

    #[test]
    fn parquet_mr_before_1_8_has_untrusted_binary_statistics() {
        assert!(!binary_stats_trusted(Some(
            "parquet-mr version 1.7.0 (build 1234)"
        )));
        assert!(!binary_stats_trusted(Some("parquet-mr version 1.6.0")));
        assert!(binary_stats_trusted(Some(
            "parquet-mr version 1.8.0 (build 0fda28af84b9746396014ad6a415b90592a98b3b)"
        )));
        assert!(binary_stats_trusted(Some(
            "parquet-mr version 1.13.1 (build db4183109d5b734ec5930d870cdae161e408ddba)"
        )));
        assert!(binary_stats_trusted(Some(
            "parquet-cpp-arrow version 14.0.2"
        )));
        assert!(binary_stats_trusted(Some("parquet-rs version 60.1.0")));
        assert!(!binary_stats_trusted(None));
    }
}
