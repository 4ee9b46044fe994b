//! The one error type of the lake engine.
//!
//! Every variant names the lake root or the file (path relative to the root) it is about, so an
//! operator reading a log line or a failed file in a report knows where to look. Variants never
//! carry a cell value: subject ids and PII stay out of errors.

use arrow_schema::ArrowError;
use parquet::errors::ParquetError;

/// An error of the lake engine (listing, locating, rewriting or exporting Parquet files).
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The lake root URL or path cannot be used (unknown scheme, folder missing, not a folder).
    #[error("invalid lake root {url:?}: {reason}")]
    InvalidRoot {
        /// The URL or path as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },

    /// The root is a table of a table format that keeps its own log of files; rewriting its
    /// files one by one would corrupt the table, so the lake engine refuses it.
    #[error(
        "lake root {root:?} is a {format} table; its files must be rewritten through {format}, not file by file"
    )]
    TableFormat {
        /// The lake root URL.
        root: String,
        /// `"Delta Lake"` or `"Apache Iceberg"`.
        format: &'static str,
    },

    /// A Delta Lake or Apache Iceberg table uses a table feature Lethe cannot honour when it
    /// rewrites files (Delta: PROTOCOL.md "Table Features"; Iceberg: format version 3,
    /// delete files…); the table was left exactly as it was.
    #[error("table {root:?} uses table feature {feature:?}, which Lethe cannot honour: {reason}")]
    TableFeature {
        /// The table root URL.
        root: String,
        /// The feature's name as in the protocol or spec (`columnMapping`, `deletionVectors`,
        /// `format-version 3`, `position deletes`…).
        feature: String,
        /// Why Lethe cannot honour it.
        reason: String,
    },

    /// A table's log or metadata cannot be read or used (no `_delta_log/`, a commit that is
    /// not JSON, an unknown column…).
    #[error("table {root:?}: {reason}")]
    Table {
        /// The table root URL.
        root: String,
        /// What is wrong.
        reason: String,
    },

    /// Other writers committed to the table every time Lethe tried; nothing was committed and
    /// Lethe's new files were deleted. Retry later.
    #[error(
        "table {root:?}: commit lost to concurrent writers {attempts} times; nothing committed"
    )]
    CommitConflict {
        /// The table root URL.
        root: String,
        /// Commits attempted.
        attempts: u32,
    },

    /// After the commit, a file of the table still holds rows of the erased subjects (read
    /// back from the data): the erasure is not complete.
    #[error("table {root:?}: file {file:?} still holds {rows} rows of the erased subjects")]
    NotErased {
        /// The table root URL.
        root: String,
        /// The file, relative to the table root.
        file: String,
        /// Rows found.
        rows: u64,
    },

    /// The file has no top-level column of that name.
    #[error("file {file:?} has no top-level column {column:?}")]
    MissingColumn {
        /// The file, relative to the lake root.
        file: String,
        /// The column that was looked for.
        column: String,
    },

    /// The file is not a Parquet file: too short or no `PAR1` magic at its start and end.
    #[error("file {file:?} is not a Parquet file ({reason})")]
    NotParquet {
        /// The file, relative to the lake root.
        file: String,
        /// What was wrong (size in bytes or the magic found).
        reason: String,
    },

    /// The file looks like Parquet but its footer or data cannot be decoded.
    #[error("Parquet file {file:?} is corrupt or unreadable: {reason}")]
    Corrupt {
        /// The file, relative to the lake root.
        file: String,
        /// What failed (footer, row group n, column c…).
        reason: String,
        /// The Parquet decoder error, when there is one.
        #[source]
        source: Option<ParquetError>,
    },

    /// The file is readable but cannot be rewritten without changing its schema or values
    /// (INT96 timestamps, INTERVAL, legacy layouts…), so the engine refuses it before writing.
    #[error("Parquet file {file:?} cannot be rewritten faithfully: {reason}")]
    Unsupported {
        /// The file, relative to the lake root.
        file: String,
        /// Which column and what about it.
        reason: String,
    },

    /// An object store call failed.
    #[error("object store error on {path:?}: {source}")]
    ObjectStore {
        /// The object key.
        path: String,
        /// The object store error.
        #[source]
        source: object_store::Error,
    },

    /// The rewritten file does not hold the expected number of rows; it was not swapped in.
    #[error(
        "verification of the rewrite of {file:?} failed: expected {expected_rows} rows, found {actual_rows}"
    )]
    Verify {
        /// The file, relative to the lake root.
        file: String,
        /// Rows expected in the new file (rows before − rows removed).
        expected_rows: u64,
        /// Rows found in the new file's footer.
        actual_rows: u64,
    },

    /// The file changed in the store while it was being rewritten (another writer); the
    /// rewrite was abandoned so that write is not lost. Retry the file.
    #[error("file {file:?} changed while it was being rewritten; rewrite abandoned, retry it")]
    Changed {
        /// The file, relative to the lake root.
        file: String,
    },

    /// A commit guard ([`CommitGuard`](super::CommitGuard)) refused the swap: another worker
    /// owns the file now (its lease was taken over) or the job was cancelled. The verified new
    /// file was deleted; the original is untouched.
    #[error("rewrite of {file:?} fenced off before the swap: {reason}")]
    Fenced {
        /// The file, relative to the lake root.
        file: String,
        /// The guard's reason.
        reason: String,
    },

    /// A path given to [`Erase::files`](super::Erase::files) does not name a data file of the
    /// lake (invalid, or hidden: a segment starting with `.` or `_`).
    #[error("{file:?} is not a data file of the lake: {reason}")]
    NotADataFile {
        /// The path as given, relative to the lake root.
        file: String,
        /// Why it was refused.
        reason: String,
    },

    /// A rectification's new value does not fit a file's column (wrong type, out of range,
    /// null in a non-nullable column, a partition key, an encrypted column without a key).
    /// Nothing was written.
    #[error("file {file:?}, column {column:?}: the new value cannot be written: {reason}")]
    InvalidValue {
        /// The file, relative to the lake root.
        file: String,
        /// The column.
        column: String,
        /// Why (never the value itself).
        reason: String,
    },

    /// An Arrow compute or encoding step failed (cast, filter, JSON/CSV writing…).
    #[error("Arrow error on {file:?}: {source}")]
    Arrow {
        /// The file (relative to the lake root) or output being processed.
        file: String,
        /// The Arrow error.
        #[source]
        source: ArrowError,
    },

    /// A local I/O error (writing an export, joining a blocking task…).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl LakeError {
    /// Whether another attempt later may succeed: the store failed or timed out, local I/O
    /// failed, the file changed while it was rewritten, or the commit guard fenced the swap (a
    /// lost lease). Anything else fails the same way again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::ObjectStore { .. } | Self::Io(_) | Self::Changed { .. } | Self::Fenced { .. }
        )
    }

    /// Wraps an object store error with the object key it happened on.
    pub(crate) fn store(path: impl std::fmt::Display, source: object_store::Error) -> Self {
        Self::ObjectStore {
            path: path.to_string(),
            source,
        }
    }

    /// Wraps a Parquet error about `file`, with what was being done.
    /// The decoder's message is part of `reason` so it reaches the operator even when only the
    /// top-level message is shown.
    pub(crate) fn corrupt(file: &str, reason: impl Into<String>, source: ParquetError) -> Self {
        Self::Corrupt {
            file: file.to_string(),
            reason: format!("{}: {source}", reason.into()),
            source: Some(source),
        }
    }

    /// The Parquet writer failed on `file` although the schema check passed: the file uses
    /// something the writer cannot reproduce.
    pub(crate) fn writer(file: &str, step: impl std::fmt::Display, source: ParquetError) -> Self {
        Self::Unsupported {
            file: file.to_string(),
            reason: format!("the Parquet writer failed {step}: {source}"),
        }
    }

    /// Wraps an Arrow error about `file`.
    pub(crate) fn arrow(file: &str, source: ArrowError) -> Self {
        Self::Arrow {
            file: file.to_string(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Retries are decided by the variant, never by the error's text: a corrupt file whose
    /// reason mentions a "lease" is still permanent, a fenced swap is retryable whatever its
    /// reason says.
    #[test]
    fn retries_follow_the_variant_not_the_words_of_the_message() {
        let fenced = LakeError::Fenced {
            file: "a.parquet".into(),
            reason: "job cancelled".into(),
        };
        let changed = LakeError::Changed {
            file: "a.parquet".into(),
        };
        let io = LakeError::Io(std::io::Error::other("disk"));
        for e in [&fenced, &changed, &io] {
            assert!(e.is_retryable(), "{e}");
        }
        let corrupt = LakeError::Corrupt {
            file: "lease-fenced.parquet".into(),
            reason: "the lease was fenced (a column named so)".into(),
            source: None,
        };
        let missing = LakeError::MissingColumn {
            file: "a.parquet".into(),
            column: "user_id".into(),
        };
        for e in [&corrupt, &missing] {
            assert!(!e.is_retryable(), "{e}");
        }
        let failed = super::super::rewrite::FileOutcome::failed("a.parquet".into(), &fenced);
        assert!(failed.retryable);
        let json = serde_json::to_value(super::super::rewrite::FileOutcome::failed(
            "b.parquet".into(),
            &corrupt,
        ))
        .unwrap();
        assert!(json.get("retryable").is_none(), "{json}");
    }
}
