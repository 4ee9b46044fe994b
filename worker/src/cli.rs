//! The `lethe-worker` command line: arguments, dispatch and exit codes.
//!
//! ```text
//! lethe-worker generate --out <dir> [--subjects N] [--days N] [--regions EU,US,APAC]
//!                       [--events-per-day F] [--seed N] [--subjects-out <file>]
//! lethe-worker locate   (--root <path|url> [--subject-column user_id] | --dataset <name>)
//!                       --subject <id>... [--json]
//! lethe-worker erase    [--format parquet|delta] --root <path|url> [--subject-column user_id]
//!                       --subjects <file> [--jobs N]
//! lethe-worker erase    --format iceberg --catalog-uri <sqlite:///…|postgres://…|https://…>
//!                       --catalog-name <name> --table <NS.TABLE> [--subject-column user_id]
//!                       --subjects <file> [--jobs N]
//! lethe-worker ingest   --dataset <name> --input <file> [--format csv|jsonl|parquet]
//! lethe-worker compact  --dataset <name>
//! lethe-worker scan-residency      [--dataset <name>]
//! lethe-worker remediate-residency [--dataset <name>]
//! lethe-worker run      [--until-idle]
//! ```
//!
//! Every command prints its machine-readable result as the last line of stdout (JSON) where it
//! has one, and diagnostics and progress on stderr. Exit codes: see [`Exit`].

use std::io::IsTerminal;
use std::time::Duration;

use clap::{Parser, Subcommand};

pub use crate::args::*;
use crate::commands::{self, CommandError};
pub use crate::output::{Exit, Output};
use crate::progress::ProgressMode;

/// `lethe-worker`: runs Lethe jobs, and locates or erases data subjects in a Parquet lake offline.
#[derive(Debug, Parser)]
#[command(name = "lethe-worker", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a deterministic demo lake in the running-app schema (no service, no database).
    Generate(GenerateArgs),
    /// List the files (and row counts) holding a subject's rows.
    Locate(LocateArgs),
    /// Remove every row of the listed subjects from the lake, rewriting each affected file once.
    Erase(EraseArgs),
    /// Validate, encrypt and write a CSV / JSON Lines / Parquet file into a registered dataset
    /// (configured like the service: `lethe.toml`, `LETHE__…`).
    Ingest(IngestArgs),
    /// Merge each partition's small files of a registered dataset into files of the target
    /// size, removing rows of erased subjects in the same pass.
    Compact(CompactArgs),
    /// Report, per dataset, root and file, the rows stored outside the regions their subjects'
    /// jurisdictions allow (residency policies, GDPR Chapter V), and record them like
    /// `POST /v1/residency/scan`. Exit code 3 when there are such rows.
    ScanResidency(ResidencyArgs),
    /// Move rows stored outside their allowed regions into an allowed region's root (copy,
    /// then rewrite the source; crash-safe: a rerun finishes an interrupted run), like
    /// `POST /v1/residency/remediate`. Exit code 3 when misplaced rows remain.
    RemediateResidency(ResidencyArgs),
    /// Claim and execute jobs from the database queue until SIGTERM / Ctrl-C (configured like
    /// the service: `lethe.toml`, `LETHE__…`).
    Run(RunArgs),
}

/// Runs `cli` on the process's stdout and stderr: a progress bar when stderr is a terminal,
/// a plain progress line every 5 seconds otherwise. Blocking (builds its own tokio runtime);
/// do not call it from inside an async runtime.
pub fn run(cli: Cli) -> Exit {
    let progress = if std::io::stderr().is_terminal() {
        ProgressMode::Bar
    } else {
        ProgressMode::Lines {
            every: Duration::from_secs(5),
        }
    };
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
    run_with(
        cli,
        &mut Output {
            out: &mut out,
            err: &mut err,
            progress,
        },
    )
}

/// Runs `cli`, writing to `output`: what [`run`] does, with the streams chosen by the caller
/// (tests capture them in buffers). Blocking, like [`run`].
pub fn run_with(cli: Cli, output: &mut Output<'_>) -> Exit {
    let result = match &cli.command {
        Command::Generate(args) => commands::generate::run(args, output),
        Command::Locate(args) => commands::locate::run(args, output),
        Command::Erase(args) => commands::erase::run(args, output),
        Command::Ingest(args) => commands::ingest::run(args, output),
        Command::Compact(args) => commands::compact::run(args, output),
        Command::ScanResidency(args) => commands::residency::scan(args, output),
        Command::RemediateResidency(args) => commands::residency::remediate(args, output),
        Command::Run(args) => commands::run::run(args, output),
    };
    match result {
        Ok(exit) => exit,
        Err(e) => {
            let _ = writeln!(output.err, "error: {e}");
            let _ = output.err.flush();
            match e {
                CommandError::Usage(_) => Exit::Usage,
                CommandError::Failed(_) => Exit::Failure,
            }
        }
    }
}

/// Logging for `lethe-worker run`: the format and filter from configuration (`log.*`),
/// `RUST_LOG` overriding the filter.
pub fn init_tracing_from_settings() {
    let (format, filter) = match lethe_core::config::Settings::load() {
        Ok(s) => (s.log.format, s.log.filter),
        Err(_) => ("pretty".to_string(), "info".to_string()),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
}

/// Sends tracing output to stderr, filtered by `RUST_LOG` (default: errors only, because the
/// commands report per-file problems themselves).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn regions_are_comma_separated_and_defaults_apply() {
        let cli = Cli::try_parse_from([
            "lethe-worker",
            "generate",
            "--out",
            "/tmp/x",
            "--regions",
            "EU,US",
        ])
        .unwrap();
        let Command::Generate(args) = cli.command else {
            panic!("not generate")
        };
        assert_eq!(args.regions, ["EU", "US"]);
        assert_eq!(args.subjects, 2000);
        assert_eq!(args.seed, 42);
    }

    #[test]
    fn erase_format_iceberg_takes_a_catalog_instead_of_a_root() {
        let cli = Cli::try_parse_from([
            "lethe-worker",
            "erase",
            "--format",
            "iceberg",
            "--catalog-uri",
            "sqlite:///tmp/catalog.db",
            "--catalog-name",
            "lethe",
            "--table",
            "default.events",
            "--subject-column",
            "user_id",
            "--subjects",
            "/tmp/s.txt",
        ])
        .unwrap();
        let Command::Erase(args) = cli.command else {
            panic!("not erase")
        };
        assert_eq!(args.format, LakeFormatArg::Iceberg);
        assert_eq!(args.root, None);
        assert_eq!(args.table.as_deref(), Some("default.events"));
        assert!(
            Cli::try_parse_from(["lethe-worker", "erase", "--subjects", "/tmp/s.txt"]).is_err()
        );
    }

    #[test]
    fn exit_codes_are_0_1_2() {
        assert_eq!(
            [Exit::Success, Exit::Failure, Exit::Usage].map(Exit::code),
            [0, 1, 2]
        );
    }
}
