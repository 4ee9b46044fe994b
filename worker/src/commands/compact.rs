//! `lethe-worker compact`: merge each partition's small files into files of the target size,
//! applying pending erasures in the same pass (see `lethe_core::compaction`).

use lethe_core::compaction::compact;

use super::catalog::Catalog;
use super::generate::print_json;
use super::{CommandError, runtime};
use crate::args::CompactArgs;
use crate::output::{Exit, Output};

/// Runs `compact`.
///
/// # Errors
/// [`CommandError::Usage`] for an unknown dataset or one without schema,
/// [`CommandError::Failed`] otherwise.
pub fn run(args: &CompactArgs, output: &mut Output<'_>) -> Result<Exit, CommandError> {
    let report = runtime()?.block_on(async {
        let catalog = Catalog::open().await?;
        let dataset = catalog.dataset(&args.dataset).await?;
        compact(
            &catalog.store,
            &catalog.keyring,
            &dataset,
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
        "{} partitions compacted: {} files into {}, {} rows of erased subjects removed, in {:.2} s",
        report.partitions_compacted,
        report.files_in,
        report.files_out,
        report.rows_erased,
        report.elapsed_s
    );
    print_json(output, &report)?;
    Ok(Exit::Success)
}
