//! `lethe-worker generate`: writes the demo lake ([`lethe_core::demo`]).

use std::time::Instant;

use anyhow::Context;
use lethe_core::demo::{DemoError, DemoLakeOptions, generate_lake};
use serde::{Deserialize, Serialize};

use super::CommandError;
use crate::args::GenerateArgs;
use crate::output::{Exit, Output};

/// How many subject ids the JSON summary shows.
const SAMPLE_SUBJECTS: usize = 5;

/// The JSON summary printed as the last line of stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerateSummary {
    /// The lake directory.
    pub out: String,
    /// Parquet files written.
    pub files: usize,
    /// Rows written.
    pub rows: u64,
    /// Bytes written (sum of file sizes).
    pub bytes: u64,
    /// Number of data subjects.
    pub subjects: usize,
    /// A few subject ids that have rows in the lake, to try `locate` / `erase` with.
    pub sample_subjects: Vec<String>,
    /// Wall-clock seconds spent generating.
    pub elapsed_s: f64,
}

/// Runs `generate`: writes the lake, optionally the subject list, then the summary.
///
/// # Errors
/// [`CommandError::Usage`] for invalid options or a non-empty output directory;
/// [`CommandError::Failed`] for I/O and encoding failures.
pub fn run(args: &GenerateArgs, output: &mut Output<'_>) -> Result<Exit, CommandError> {
    let opts = DemoLakeOptions {
        subjects: args.subjects,
        days: args.days,
        start_date: args.start_date,
        regions: args.regions.iter().map(|r| r.trim().to_string()).collect(),
        events_per_subject_per_day: args.events_per_day,
        seed: args.seed,
        row_group_rows: args.row_group_rows,
        files_per_partition: args.files_per_partition,
    };
    let started = Instant::now();
    let summary = generate_lake(&args.out, &opts).map_err(|e| match e {
        DemoError::InvalidOptions(_) | DemoError::NotEmpty(_) => CommandError::Usage(e.into()),
        other => CommandError::Failed(other.into()),
    })?;
    let elapsed_s = started.elapsed().as_secs_f64();

    if let Some(path) = &args.subjects_out {
        let mut text = String::with_capacity(summary.subjects.len() * 37);
        for s in &summary.subjects {
            text.push_str(&s.user_id);
            text.push('\n');
        }
        std::fs::write(path, text)
            .with_context(|| format!("writing subject ids to {}", path.display()))
            .map_err(CommandError::Failed)?;
    }

    let result = GenerateSummary {
        out: args.out.display().to_string(),
        files: summary.files,
        rows: summary.rows,
        bytes: summary.bytes,
        subjects: summary.subjects.len(),
        sample_subjects: summary
            .subjects
            .iter()
            .filter(|s| s.rows > 0)
            .take(SAMPLE_SUBJECTS)
            .map(|s| s.user_id.clone())
            .collect(),
        elapsed_s,
    };
    let _ = writeln!(
        output.err,
        "generated {} rows of {} subjects in {} files ({}) under {} in {:.1} s",
        result.rows,
        result.subjects,
        result.files,
        crate::progress::human_bytes(result.bytes),
        result.out,
        elapsed_s
    );
    print_json(output, &result)?;
    Ok(Exit::Success)
}

/// Prints `value` as one JSON line on the command's stdout.
pub(crate) fn print_json(
    output: &mut Output<'_>,
    value: &impl Serialize,
) -> Result<(), CommandError> {
    let line = serde_json::to_string(value)
        .context("encoding the JSON summary")
        .map_err(CommandError::Failed)?;
    writeln!(output.out, "{line}")
        .and_then(|()| output.out.flush())
        .context("writing to stdout")
        .map_err(CommandError::Failed)
}
