//! `lethe-worker locate`: which files hold a subject's rows, and how many.
//!
//! Exit codes: 0 when the search covered every file, whether or not the subject was found
//! (not found prints `not found: …` on stdout, or `"found": false` with `--json`); 1 when some
//! files could not be searched (each is listed on stderr: the subject may be in them); 2 for a
//! missing root or a Delta Lake / Iceberg table.

use std::collections::BTreeMap;
use std::io::Write;

use lethe_core::datasets::locator_hint;
use lethe_core::lake::{FileFailure, LakeRoot, Locate, LocateMetrics, LocateReport};
use serde::Serialize;

use super::catalog::Catalog;
use super::generate::print_json;
use super::{CommandError, default_jobs, runtime};
use crate::args::LocateArgs;
use crate::output::{Exit, Output};
use crate::progress::human_bytes;

/// One file in the `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct LocatedFile {
    /// The file, relative to the lake root (for a file under a region's own root, that
    /// root's URL, `/`, and the path relative to it).
    pub file: String,
    /// File size in bytes.
    pub size: u64,
    /// Rows of the subjects in the file.
    pub rows: u64,
    /// Rows per subject id.
    pub rows_by_subject: BTreeMap<String, u64>,
    /// Indexes of the row groups holding those rows.
    pub row_groups: Vec<usize>,
}

/// The `--json` output: one JSON document on one line.
#[derive(Debug, Clone, Serialize)]
pub struct LocateSummary {
    /// Whether at least one row of the subjects was found.
    pub found: bool,
    /// Total rows of the subjects.
    pub rows: u64,
    /// Files holding them, sorted by path.
    pub files: Vec<LocatedFile>,
    /// Files that could not be searched.
    pub failures: Vec<FileFailure>,
    /// Counters (files scanned, row groups pruned, bytes read, seconds).
    pub metrics: LocateMetrics,
}

impl From<LocateReport> for LocateSummary {
    fn from(report: LocateReport) -> Self {
        let files: Vec<LocatedFile> = report
            .files
            .into_iter()
            .map(|m| LocatedFile {
                file: m.file.relative,
                size: m.file.size,
                rows: m.rows,
                rows_by_subject: m.rows_by_subject,
                row_groups: m.row_groups,
            })
            .collect();
        Self {
            found: !files.is_empty(),
            rows: files.iter().map(|f| f.rows).sum(),
            files,
            failures: report.failures,
            metrics: report.metrics,
        }
    }
}

/// Runs `locate`.
///
/// # Errors
/// [`CommandError::Usage`] for a missing root or a table-format table,
/// [`CommandError::Failed`] for listing failures.
pub fn run(args: &LocateArgs, output: &mut Output<'_>) -> Result<Exit, CommandError> {
    let jobs = args.jobs.unwrap_or_else(default_jobs);
    let report = runtime()?.block_on(async {
        let locate = match (&args.dataset, &args.root) {
            (Some(name), _) => {
                let catalog = Catalog::open().await?;
                let dataset = catalog.dataset(name).await?;
                let wanted: Vec<&str> = args.subjects.iter().map(String::as_str).collect();
                let hint = locator_hint(&catalog.store, Some(&catalog.keyring), &dataset, &wanted)
                    .await
                    .map_err(|e| CommandError::Failed(e.into()))?;
                // Every root of the dataset: its root_url, and one per region with data
                // residency (files there are named by their root's URL and path).
                let mut merged = LocateReport::default();
                for dataset_root in dataset.roots() {
                    let root =
                        LakeRoot::parse(&dataset_root.url).map_err(CommandError::from_lake)?;
                    let mut locate = Locate::new(root, &dataset.subject_column)
                        .also_columns(dataset.subject_columns())
                        .subjects(args.subjects.iter().cloned())
                        .concurrency(jobs);
                    if let Some(hint) = &hint {
                        locate = locate.index(hint.clone());
                    }
                    let mut report = locate.execute().await.map_err(CommandError::from_lake)?;
                    if dataset_root.region.is_some() {
                        let prefix = dataset_root.url.trim_end_matches('/');
                        for m in &mut report.files {
                            m.file.relative = format!("{prefix}/{}", m.file.relative);
                        }
                        for f in &mut report.failures {
                            f.relative = format!("{prefix}/{}", f.relative);
                        }
                    }
                    merge(&mut merged, report);
                }
                return Ok(merged);
            }
            (None, Some(root)) => Locate::new(
                LakeRoot::parse(root).map_err(CommandError::from_lake)?,
                &args.subject_column,
            ),
            (None, None) => {
                return Err(CommandError::Usage(anyhow::anyhow!(
                    "give --root or --dataset"
                )));
            }
        };
        locate
            .subjects(args.subjects.iter().cloned())
            .concurrency(jobs)
            .execute()
            .await
            .map_err(CommandError::from_lake)
    })?;
    let summary = LocateSummary::from(report);

    for f in &summary.failures {
        let _ = writeln!(output.err, "failed: {}: {}", f.relative, f.error);
    }
    if args.json {
        print_json(output, &summary)?;
    } else {
        print_table(output.out, &summary, args.subjects.len()).map_err(|e| {
            CommandError::Failed(anyhow::Error::new(e).context("writing to stdout"))
        })?;
    }
    Ok(if summary.failures.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// Adds the report of one root of a dataset to `into`.
fn merge(into: &mut LocateReport, report: LocateReport) {
    into.files.extend(report.files);
    into.failures.extend(report.failures);
    let (m, n) = (&mut into.metrics, report.metrics);
    m.files_scanned += n.files_scanned;
    m.row_groups_total += n.row_groups_total;
    m.row_groups_pruned_by_statistics += n.row_groups_pruned_by_statistics;
    m.row_groups_pruned_by_bloom_filter += n.row_groups_pruned_by_bloom_filter;
    m.row_groups_read += n.row_groups_read;
    m.bytes_read += n.bytes_read;
    m.files_answered_by_index += n.files_answered_by_index;
    m.files_skipped_by_index += n.files_skipped_by_index;
    m.elapsed_s += n.elapsed_s;
}

fn print_table(out: &mut dyn Write, s: &LocateSummary, subjects: usize) -> std::io::Result<()> {
    let who = if subjects == 1 { "subject" } else { "subjects" };
    let m = &s.metrics;
    if s.found {
        let width = s
            .files
            .iter()
            .map(|f| f.file.len())
            .max()
            .unwrap_or(4)
            .max(4);
        writeln!(out, "{:<width$}  {:>8}  {:>10}", "FILE", "ROWS", "SIZE")?;
        for f in &s.files {
            writeln!(
                out,
                "{:<width$}  {:>8}  {:>10}",
                f.file,
                f.rows,
                human_bytes(f.size)
            )?;
        }
        writeln!(
            out,
            "{} rows of the {who} in {} of {} files",
            s.rows,
            s.files.len(),
            m.files_scanned
        )?;
    } else {
        writeln!(
            out,
            "not found: no row of the {who} in {} files",
            m.files_scanned
        )?;
    }
    writeln!(
        out,
        "row groups: {} total, {} pruned by statistics, {} by bloom filter, {} read; {} read in {:.2} s",
        m.row_groups_total,
        m.row_groups_pruned_by_statistics,
        m.row_groups_pruned_by_bloom_filter,
        m.row_groups_read,
        human_bytes(m.bytes_read),
        m.elapsed_s
    )?;
    out.flush()
}
