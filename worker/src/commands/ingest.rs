//! `lethe-worker ingest`: validate, encrypt and write a CSV, JSON Lines or Parquet file into a
//! registered dataset (see `lethe_core::ingest`).
//!
//! Exit codes: 0 written; 2 for bad input (a row not matching the schema, an unreadable file,
//! an unknown dataset), with nothing written; 1 for infrastructure failures.

use anyhow::Context;
use bytes::Bytes;
use lethe_core::ingest::{InputFormat, ingest};

use super::catalog::Catalog;
use super::generate::print_json;
use super::{CommandError, runtime};
use crate::args::IngestArgs;
use crate::output::{Exit, Output};
use crate::progress::human_bytes;

/// Runs `ingest`.
///
/// # Errors
/// [`CommandError::Usage`] for bad input, [`CommandError::Failed`] otherwise.
pub fn run(args: &IngestArgs, output: &mut Output<'_>) -> Result<Exit, CommandError> {
    let format = match args.format {
        Some(f) => f.into(),
        None => InputFormat::from_extension(&args.input).ok_or_else(|| {
            CommandError::Usage(anyhow::anyhow!(
                "cannot tell the format of {} from its extension; pass --format csv|jsonl|parquet",
                args.input.display()
            ))
        })?,
    };
    let input = std::fs::read(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))
        .map_err(CommandError::Usage)?;
    let _ = writeln!(
        output.err,
        "ingesting {} ({}) into {}",
        args.input.display(),
        human_bytes(input.len() as u64),
        args.dataset
    );
    let report = runtime()?.block_on(async {
        let catalog = Catalog::open().await?;
        let dataset = catalog.dataset(&args.dataset).await?;
        ingest(
            &catalog.store,
            &catalog.keyring,
            &dataset,
            format,
            Bytes::from(input),
            "system:worker-cli",
        )
        .await
        .map_err(|e| {
            if e.is_client_error() {
                CommandError::Usage(e.into())
            } else {
                CommandError::Failed(e.into())
            }
        })
    })?;
    let _ = writeln!(
        output.err,
        "{} rows written in {} files ({} dropped: subject erased) in {:.2} s, {:.0} rows/s",
        report.rows_written,
        report.files.len(),
        report.rows_dropped_erased,
        report.elapsed_s,
        report.rows_per_s
    );
    print_json(output, &report)?;
    Ok(Exit::Success)
}
