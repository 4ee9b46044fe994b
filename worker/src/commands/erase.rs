//! `lethe-worker erase`: removes every row of the listed subjects from a lake, in one pass per
//! file (GDPR Art. 17), with the lake engine's verified copy-on-write rewrite.
//!
//! With `--format delta` the root is a Delta Lake table: the files holding the subjects are
//! rewritten beside themselves, committed once (`remove` + `add` actions), the replaced files
//! purged, and the summary names the commit (`commit`), the versions made unreadable
//! (`snapshots_expired`) and the files deleted (`files_purged`); each purged file also gets a
//! `purged: <file>` line on stderr.
//!
//! With `--format iceberg` the table is an Apache Iceberg table of a SQL or REST catalog
//! (`--catalog-uri`, `--catalog-name`, `--table`): one `overwrite` snapshot, then the snapshots
//! that could still read the rows are expired and their files purged; `commit` is the new
//! snapshot's id, `snapshots_expired` the snapshots expired.
//!
//! Progress goes to stderr, each failed file gets one `failed: <file>: <error>` line on stderr,
//! and the last line of stdout is an [`EraseSummary`] in JSON. Exit codes: 0 all files done,
//! 1 some files failed (left untouched; the others were still processed), 2 bad input found
//! before anything changed (unreadable or empty subjects file, missing root, Delta / Iceberg).

use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lethe_core::lake::table::delta::DeltaTable;
use lethe_core::lake::table::iceberg::{Catalog, IcebergTable};
use lethe_core::lake::table::{Table, TableEraseOutcome};
use lethe_core::lake::{Erase, EraseOutcome, ErasePolicy, EraseProgress, FileStatus, LakeRoot};
use serde::{Deserialize, Serialize};

use super::generate::print_json;
use super::{CommandError, default_jobs, runtime};
use crate::args::{EraseArgs, LakeFormatArg};
use crate::output::{Exit, Output};
use crate::progress::{ProgressMode, Reporter, human_bytes};
use crate::subject_list;

/// The JSON summary printed as the last line of stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EraseSummary {
    /// Distinct subject ids erased.
    pub subjects: usize,
    /// Files listed and examined.
    pub files_scanned: u64,
    /// Files replaced by a copy without the subjects' rows.
    pub files_rewritten: u64,
    /// Files that failed and were left untouched.
    pub files_failed: u64,
    /// Rows in the files examined (the row groups' counts; 0 for files that could not be read).
    pub rows_scanned: u64,
    /// Rows removed.
    pub rows_removed: u64,
    /// Bytes fetched from the store (footers, bloom filters, column chunks read).
    pub bytes_read: u64,
    /// Bytes of new files written.
    pub bytes_written: u64,
    /// Row groups decoded, filtered and encoded again (they held rows of the subjects).
    pub row_groups_rewritten: u64,
    /// Row groups of rewritten files copied as encoded bytes (none of the subjects' rows).
    pub row_groups_copied: u64,
    /// Compressed bytes (as in the input) of the row groups decoded and encoded again.
    pub bytes_reencoded: u64,
    /// Compressed bytes of the row groups copied without decoding.
    pub bytes_copied: u64,
    /// Of `bytes_copied`, the bytes S3 copied from the original into the new object itself
    /// (multipart `UploadPartCopy`): they never crossed the worker. 0 off S3.
    #[serde(default)]
    pub bytes_copied_server_side: u64,
    /// Data pages of rewritten row groups copied as encoded bytes (they lost no row).
    pub pages_copied: u64,
    /// Data pages of rewritten row groups encoded again.
    pub pages_reencoded: u64,
    /// Wall-clock seconds of the erase (listing included).
    pub elapsed_s: f64,
    /// `rows_scanned / elapsed_s`.
    pub rows_per_s: f64,
    /// Peak resident memory of the process in bytes (Linux `VmHWM`); `null` where unknown.
    pub peak_rss_bytes: Option<u64>,
    /// `--format delta`: the version of the table commit that removed the rows;
    /// `--format iceberg`: the id of the `overwrite` snapshot (`null`: no commit, nothing
    /// held the subjects; always `null` for `--format parquet`).
    #[serde(default)]
    pub commit: Option<i64>,
    /// `--format delta`: table versions that became unreadable (time travel) because a file
    /// they reference was purged; `--format iceberg`: snapshots expired (0 for
    /// `--format parquet`, which keeps no versions).
    #[serde(default)]
    pub snapshots_expired: u64,
    /// `--format delta` / `iceberg`: data files deleted from storage after the commit (the
    /// replaced files, and files of older versions holding the subjects or referenced only
    /// by expired snapshots); 0 for `--format parquet`, whose files are replaced in place.
    #[serde(default)]
    pub files_purged: u64,
}

impl EraseSummary {
    /// The summary of `outcome` for `subjects` distinct ids, with the current peak RSS.
    pub fn from_outcome(outcome: &EraseOutcome, subjects: usize) -> Self {
        let m = &outcome.metrics;
        let rows_scanned: u64 = outcome.files.iter().map(|f| f.rows_before).sum();
        Self {
            subjects,
            files_scanned: m.files_scanned,
            files_rewritten: m.files_rewritten,
            files_failed: m.files_failed,
            rows_scanned,
            rows_removed: m.rows_removed,
            bytes_read: m.bytes_read,
            bytes_written: m.bytes_written,
            row_groups_rewritten: m.surgery.row_groups_rewritten,
            row_groups_copied: m.surgery.row_groups_copied,
            bytes_reencoded: m.surgery.bytes_reencoded,
            bytes_copied: m.surgery.bytes_copied,
            bytes_copied_server_side: m.surgery.bytes_copied_server_side,
            pages_copied: m.surgery.pages_copied,
            pages_reencoded: m.surgery.pages_reencoded,
            elapsed_s: m.elapsed_s,
            rows_per_s: if m.elapsed_s > 0.0 {
                rows_scanned as f64 / m.elapsed_s
            } else {
                0.0
            },
            peak_rss_bytes: crate::rss::peak_rss_bytes(),
            commit: None,
            snapshots_expired: 0,
            files_purged: 0,
        }
    }

    /// The summary of a Delta or Iceberg table's erasure.
    pub fn from_table(outcome: &TableEraseOutcome, subjects: usize) -> Self {
        let folder = EraseOutcome {
            files: outcome.files.clone(),
            metrics: outcome.metrics.clone(),
        };
        Self {
            commit: outcome.commit,
            snapshots_expired: outcome.snapshots_expired,
            files_purged: outcome.files_purged.len() as u64,
            ..Self::from_outcome(&folder, subjects)
        }
    }
}

/// Runs `erase`.
///
/// # Errors
/// [`CommandError::Usage`] for a bad subjects file, a missing root or a table-format table
/// (nothing is changed); [`CommandError::Failed`] when listing the lake fails.
pub fn run(args: &EraseArgs, output: &mut Output<'_>) -> Result<Exit, CommandError> {
    let subjects = subject_list::read(&args.subjects).map_err(|e| CommandError::Usage(e.into()))?;
    if args.format == LakeFormatArg::Iceberg {
        return run_iceberg(args, subjects, output);
    }
    let Some(root) = &args.root else {
        return Err(CommandError::Usage(anyhow::anyhow!(
            "--root is required with --format parquet and --format delta"
        )));
    };
    let root = LakeRoot::parse(root).map_err(CommandError::from_lake)?;
    let count = subjects.len();
    if args.format == LakeFormatArg::Delta {
        return run_delta(args, root, subjects, output);
    }

    let latest: Arc<Mutex<Option<EraseProgress>>> = Arc::default();
    let sink = Arc::clone(&latest);
    let erase = Erase::new(root, &args.subject_column)
        .subjects(subjects)
        .concurrency(args.jobs.unwrap_or_else(default_jobs))
        .on_progress(Arc::new(move |p: &EraseProgress| {
            if let Ok(mut slot) = sink.lock() {
                *slot = Some(p.clone());
            }
        }));

    let mut reporter = Reporter::new(output.progress);
    let tick = match output.progress {
        ProgressMode::Bar => Duration::from_millis(100),
        _ => Duration::from_millis(250),
    };
    let result = runtime()?.block_on(async {
        let mut execute = pin!(erase.execute());
        let mut ticker = tokio::time::interval(tick);
        loop {
            tokio::select! {
                result = &mut execute => break result,
                _ = ticker.tick() => {
                    let current = latest.lock().ok().and_then(|p| p.clone());
                    if let Some(p) = current {
                        reporter.update(&p, output.err);
                    }
                }
            }
        }
    });
    if let Some(p) = latest.lock().ok().and_then(|p| p.clone()) {
        reporter.update(&p, output.err);
    }
    reporter.finish(output.err);
    let outcome = result.map_err(CommandError::from_lake)?;

    for f in &outcome.files {
        if let FileStatus::Failed { error } = &f.status {
            let _ = writeln!(output.err, "failed: {}: {error}", f.relative);
        }
    }
    let summary = EraseSummary::from_outcome(&outcome, count);
    let _ = writeln!(
        output.err,
        "erased {} rows of {} subjects: {} of {} files rewritten, {} failed; {} read, {} written in {:.1} s",
        summary.rows_removed,
        count,
        summary.files_rewritten,
        summary.files_scanned,
        summary.files_failed,
        human_bytes(summary.bytes_read),
        human_bytes(summary.bytes_written),
        summary.elapsed_s
    );
    let _ = output.err.flush();
    print_json(output, &summary)?;
    Ok(if outcome.has_failures() {
        Exit::Failure
    } else {
        Exit::Success
    })
}

/// `erase --format delta`: the table at `root`.
fn run_delta(
    args: &EraseArgs,
    root: LakeRoot,
    subjects: std::collections::BTreeSet<String>,
    output: &mut Output<'_>,
) -> Result<Exit, CommandError> {
    let table = Table::Delta(DeltaTable::new(root).map_err(CommandError::from_lake)?);
    run_table(args, table, subjects, output)
}

/// `erase --format iceberg`: the table of a SQL or REST catalog.
fn run_iceberg(
    args: &EraseArgs,
    subjects: std::collections::BTreeSet<String>,
    output: &mut Output<'_>,
) -> Result<Exit, CommandError> {
    let (Some(uri), Some(name), Some(identifier)) =
        (&args.catalog_uri, &args.catalog_name, &args.table)
    else {
        return Err(CommandError::Usage(anyhow::anyhow!(
            "--format iceberg needs --catalog-uri, --catalog-name and --table (NS.TABLE)"
        )));
    };
    // A catalog, table or metadata that cannot be read is bad input, found before anything
    // changed (exit code 2); once the erasure runs, errors are failures (exit code 1).
    let table = runtime()?
        .block_on(async {
            let catalog = Catalog::connect(uri, name).await?;
            let table = IcebergTable::of(catalog, identifier)?;
            table.load().await?;
            Ok::<_, lethe_core::lake::LakeError>(table)
        })
        .map_err(|e| match e {
            lethe_core::lake::LakeError::Table { .. } => CommandError::Usage(e.into()),
            other => CommandError::from_lake(other),
        })?;
    run_table(args, Table::Iceberg(table), subjects, output)
}

/// A table's erasure: one commit (a Delta `DELETE` commit, an Iceberg `overwrite`
/// snapshot), then the purge of what older versions or snapshots could still read.
fn run_table(
    args: &EraseArgs,
    table: Table,
    subjects: std::collections::BTreeSet<String>,
    output: &mut Output<'_>,
) -> Result<Exit, CommandError> {
    let count = subjects.len();
    let policy = ErasePolicy::single(args.subject_column.clone());
    let jobs = args.jobs.unwrap_or_else(default_jobs);
    let outcome = runtime()?
        .block_on(table.erase(policy, subjects, jobs, None))
        .map_err(CommandError::from_lake)?;
    for f in &outcome.files {
        if let FileStatus::Failed { error } = &f.status {
            let _ = writeln!(output.err, "failed: {}: {error}", f.relative);
        }
    }
    for f in &outcome.files_purged {
        let _ = writeln!(output.err, "purged: {f}");
    }
    let summary = EraseSummary::from_table(&outcome, count);
    let (what, commit, expired) = match &table {
        Table::Delta(_) => (
            format!(
                "Delta table version {}",
                outcome.read_version.unwrap_or_default()
            ),
            outcome
                .commit
                .map_or_else(|| "no commit".to_string(), |v| format!("commit {v}")),
            "older versions unreadable",
        ),
        Table::Iceberg(t) => (
            format!("Iceberg table {}", t.identifier()),
            outcome
                .commit
                .map_or_else(|| "no commit".to_string(), |id| format!("snapshot {id}")),
            "snapshots expired",
        ),
    };
    let _ = writeln!(
        output.err,
        "erased {} rows of {} subjects from {what}: {commit}, {} of {} files rewritten, {} failed, {} files purged, {} {expired}; {:.1} s",
        summary.rows_removed,
        count,
        summary.files_rewritten,
        summary.files_scanned,
        summary.files_failed,
        summary.files_purged,
        summary.snapshots_expired,
        summary.elapsed_s
    );
    let _ = output.err.flush();
    print_json(output, &summary)?;
    Ok(if outcome.has_failures() {
        Exit::Failure
    } else {
        Exit::Success
    })
}
