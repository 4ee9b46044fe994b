//! The lake engine: list, locate, rewrite (erase) and export the rows of data subjects in a
//! Hive-partitioned folder of Parquet files (`date=2025-01-07/region=EU/part-0001.parquet`) on an
//! [`object_store`].
//!
//! | module | idea it owns |
//! |---|---|
//! | [`error`] | [`LakeError`], the one error type, naming the file and column |
//! | [`store`] | [`object_store_for_url_with`]: stores from URLs (`s3://`, `file://`, `memory://`), timeouts, retries |
//! | [`s3`] | [`S3Client`](s3::S3Client): the signed S3 requests object_store lacks (multipart `UploadPartCopy`, Object Lock) |
//! | [`root`] | [`LakeRoot`]: the store + prefix, listing data files ([`DataFile`]) |
//! | `footer` | reading footers as parquet-mr and Arrow C++ do: mistyped fields skipped, known writer mistakes mended; logical types the writer lacks restored |
//! | [`locate`] | [`Locate`]: which files / row groups / rows hold given subjects |
//! | [`rewrite`] | [`Erase`], [`Rectify`]: copy-on-write rewrites dropping or correcting subjects' rows, verified and atomic |
//! | [`export`] | [`collect_subject_rows`]: one subject's rows as JSON Lines / CSV / JSON / Parquet (GDPR Art. 15, 20) |
//! | [`table`] | tables of table formats (Delta Lake): erasure through the format's own commit, then the purge |
//!
//! Files are rewritten at Parquet's physical level with row-group surgery
//! ([`rewrite`]): what a footer says is trusted only where it is known to be right
//! (`trust`).
//!
//! Tables of table formats with their own file log (Delta Lake, Apache Iceberg) are refused by
//! the folder operations: rewriting their files one by one would corrupt them. Delta Lake
//! tables are erased through [`table::delta`] instead.

pub(crate) mod columns;
pub mod error;
pub mod export;
mod footer;
pub mod locate;
mod open;
mod prune;
pub mod rewrite;
pub mod root;
pub mod s3;
pub mod store;
pub mod table;
mod timeouts;
pub(crate) mod trust;

pub use columns::column_names;
pub use error::LakeError;
pub use export::{
    SubjectRows, collect_subject_rows, collect_subject_rows_in, write_csv, write_json_array,
    write_json_lines, write_parquet,
};
pub use locate::{FileFailure, FileMatch, Locate, LocateMetrics, LocateReport, LocatorHint};
pub use rewrite::{
    AllGuards, CellEdit, CellSealer, ColumnChange, CommitGuard, Erase, EraseMetrics, EraseOutcome,
    ErasePolicy, EraseProgress, EraseSubjects, Erased, FileOutcome, FileStatus, RectifiedFile,
    Rectify, RectifyMetrics, RectifyOutcome, RowEdits, RowFilter, RowsChanged, Shielded,
    SurgeryMetrics, erase_plan, erase_rows, subject_values, table_rectify_filter,
};
pub use root::{DataFile, LakeRoot};
pub use store::{
    S3Options, StoreOptions, local_folder, object_store_for_url, object_store_for_url_with,
};

/// Runs CPU-heavy work (Parquet decoding / encoding) on tokio's blocking pool, keeping the
/// caller's tracing span, so the async workers stay free for I/O, HTTP and job heartbeats.
///
/// # Errors
/// [`LakeError::Io`] when the closure panicked or the runtime is shutting down.
pub(crate) async fn run_blocking<T, F>(f: F) -> Result<T, LakeError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| LakeError::Io(std::io::Error::other(format!("blocking task failed: {e}"))))
}

#[cfg(test)]
pub(crate) mod testlake;
