//! `lethe-worker scan-residency` and `lethe-worker remediate-residency`: find rows stored
//! outside the regions their subjects' jurisdictions allow, and move them (see
//! `lethe_core::residency`). Configured like the service (`lethe.toml`, `LETHE__…`); the
//! findings are recorded in the database, as by the jobs of `POST /v1/residency/scan` and
//! `POST /v1/residency/remediate`.

use lethe_core::residency::{ResidencyError, remediate_datasets, scan_datasets};

use super::catalog::Catalog;
use super::generate::print_json;
use super::{CommandError, runtime};
use crate::args::ResidencyArgs;
use crate::output::{Exit, Output};

/// Who the audit log names for these commands.
const ACTOR: &str = "system:worker-cli";

fn failed(e: ResidencyError) -> CommandError {
    CommandError::Failed(e.into())
}

/// The id of the dataset named by `--dataset`, if given.
async fn dataset_id(
    catalog: &Catalog,
    args: &ResidencyArgs,
) -> Result<Option<String>, CommandError> {
    Ok(match &args.dataset {
        Some(name) => Some(catalog.dataset(name).await?.id),
        None => None,
    })
}

/// Runs `scan-residency`: prints one line per violating file on stderr and the scans as JSON.
/// Exits 3 when violations were found (so a cron job can alert), 0 when every scanned dataset
/// is clean.
///
/// # Errors
/// [`CommandError::Usage`] for an unknown dataset; [`CommandError::Failed`] otherwise.
pub fn scan(args: &ResidencyArgs, output: &mut Output<'_>) -> Result<Exit, CommandError> {
    let scans = runtime()?.block_on(async {
        let catalog = Catalog::open().await?;
        let id = dataset_id(&catalog, args).await?;
        scan_datasets(&catalog.store, &catalog.keyring, id.as_deref(), ACTOR)
            .await
            .map_err(failed)
    })?;
    let mut violations = 0;
    for s in &scans {
        let _ = writeln!(
            output.err,
            "{}: {} ({} files, {} rows scanned; {} rows in {} files outside their allowed regions){}",
            s.scan.dataset,
            s.scan.status.as_str(),
            s.scan.files_scanned,
            s.scan.rows_scanned,
            s.scan.violating_rows,
            s.scan.violating_files,
            s.scan
                .note
                .as_ref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        );
        for v in &s.violations {
            let _ = writeln!(
                output.err,
                "  {} {}: {} rows of {} subjects ({}) stored in {}, allowed in {}",
                v.root_url,
                v.file,
                v.rows,
                v.subjects,
                v.jurisdictions.join(", "),
                v.region,
                v.allowed_regions.join(", ")
            );
        }
        violations += s.violations.len();
    }
    print_json(output, &scans)?;
    Ok(if violations > 0 {
        Exit::Violations
    } else {
        Exit::Success
    })
}

/// Runs `remediate-residency`: finishes interrupted remediations, moves misplaced rows into an
/// allowed region, and prints the reports as JSON. Exits 3 when misplaced rows remain
/// (unmovable rows or failed files), 0 otherwise.
///
/// # Errors
/// [`CommandError::Usage`] for an unknown dataset; [`CommandError::Failed`] otherwise (run it
/// again: it finishes what the failed run left).
pub fn remediate(args: &ResidencyArgs, output: &mut Output<'_>) -> Result<Exit, CommandError> {
    let reports = runtime()?.block_on(async {
        let catalog = Catalog::open().await?;
        let id = dataset_id(&catalog, args).await?;
        remediate_datasets(&catalog.store, &catalog.keyring, id.as_deref(), ACTOR, None)
            .await
            .map_err(failed)
    })?;
    let mut left = false;
    for r in &reports {
        let _ = writeln!(
            output.err,
            "{}: {} rows moved out of {} files into {} files, {} rows cannot move, {} files failed, {} interrupted remediations finished, in {:.2} s{}",
            r.dataset,
            r.rows_moved,
            r.files_remediated,
            r.files_written.len(),
            r.rows_unmovable,
            r.files_failed.len(),
            r.recovered,
            r.elapsed_s,
            r.note
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
        for f in &r.files_failed {
            let _ = writeln!(
                output.err,
                "  failed: {} {}: {}",
                f.root_url, f.file, f.error
            );
        }
        left |= r.rows_unmovable > 0 || !r.files_failed.is_empty();
    }
    print_json(output, &reports)?;
    Ok(if left {
        Exit::Violations
    } else {
        Exit::Success
    })
}
