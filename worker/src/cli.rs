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

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::commands::{self, CommandError};
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

/// Arguments of `lethe-worker run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Exit once the queue has nothing runnable (and every due webhook delivery was attempted)
    /// instead of waiting for more work.
    #[arg(long)]
    pub until_idle: bool,
    /// Serve Prometheus metrics (job outcomes, rows removed, webhook attempts) over HTTP at
    /// this address, e.g. `0.0.0.0:9464`; overrides `worker.metrics_addr`.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
}

/// Format of an ingest input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// CSV with a header row.
    Csv,
    /// JSON Lines.
    Jsonl,
    /// Parquet.
    Parquet,
}

impl From<FormatArg> for lethe_core::ingest::InputFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Csv => Self::Csv,
            FormatArg::Jsonl => Self::JsonLines,
            FormatArg::Parquet => Self::Parquet,
        }
    }
}

/// Arguments of `lethe-worker ingest`.
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Name of the registered dataset (it must have a declared schema).
    #[arg(long, value_name = "NAME")]
    pub dataset: String,
    /// The input file. The whole file is validated before anything is written.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Input format; default: from the file extension (.csv, .jsonl/.ndjson, .parquet).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
}

/// Arguments of `lethe-worker compact`.
#[derive(Debug, Clone, Args)]
pub struct CompactArgs {
    /// Name of the registered dataset (it must have a declared schema).
    #[arg(long, value_name = "NAME")]
    pub dataset: String,
}

/// Arguments of `lethe-worker scan-residency` and `remediate-residency`.
#[derive(Debug, Clone, Args)]
pub struct ResidencyArgs {
    /// Name of one registered dataset; default: every registered dataset.
    #[arg(long, value_name = "NAME")]
    pub dataset: Option<String>,
}

/// Arguments of `lethe-worker generate`.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Directory to write the lake into; created if missing, must be empty otherwise.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Number of data subjects.
    #[arg(long, default_value_t = 2000)]
    pub subjects: usize,
    /// Number of days (one `date=` partition each), starting at `--start-date`.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// First day, YYYY-MM-DD.
    #[arg(long, default_value = "2025-01-01")]
    pub start_date: chrono::NaiveDate,
    /// Regions (one `region=` partition each), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "EU,US,APAC")]
    pub regions: Vec<String>,
    /// Mean number of events (rows) per subject per day.
    #[arg(long, default_value_t = 1.0)]
    pub events_per_day: f64,
    /// Seed: the same seed and options give byte-identical files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Maximum rows per Parquet row group.
    #[arg(long, default_value_t = 16_384)]
    pub row_group_rows: usize,
    /// Files per partition, each holding a contiguous `user_id` range.
    #[arg(long, default_value_t = 1)]
    pub files_per_partition: usize,
    /// Also write every subject id, one per line, to this file.
    #[arg(long, value_name = "FILE")]
    pub subjects_out: Option<PathBuf>,
}

/// Arguments of `lethe-worker locate`.
#[derive(Debug, Clone, Args)]
pub struct LocateArgs {
    /// Lake root: a local directory, or a `file://` URL.
    #[arg(long, value_name = "PATH|URL", required_unless_present = "dataset")]
    pub root: Option<String>,
    /// A registered dataset instead of a root: uses its subject columns and its locator
    /// index, and the configured database (`lethe.toml`, `LETHE__…`).
    #[arg(long, value_name = "NAME", conflicts_with = "root")]
    pub dataset: Option<String>,
    /// Top-level column holding the subject id.
    #[arg(long, value_name = "COL", default_value = "user_id")]
    pub subject_column: String,
    /// Subject id to look for; repeat to look for several at once.
    #[arg(long = "subject", value_name = "ID", required = true)]
    pub subjects: Vec<String>,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Files read at the same time; default: the number of CPU cores plus one.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
}

/// Arguments of `lethe-worker erase`.
#[derive(Debug, Clone, Args)]
pub struct EraseArgs {
    /// What the root holds: `parquet` (a Hive-partitioned folder of Parquet files; a Delta
    /// Lake or Iceberg table there is refused), `delta` (a Delta Lake table: one commit,
    /// then the purge of the replaced files) or `iceberg` (an Apache Iceberg table of a SQL
    /// catalog, given by `--catalog-uri`, `--catalog-name` and `--table` instead of
    /// `--root`: one `overwrite` snapshot, then the expiry of the snapshots that could read
    /// the rows and the purge of their files).
    #[arg(long, value_enum, default_value = "parquet")]
    pub format: LakeFormatArg,
    /// Lake root (or Delta table root): a local directory, or a `file://` / `s3://` URL.
    /// Required unless `--format iceberg`.
    #[arg(long, value_name = "PATH|URL", required_unless_present = "catalog_uri")]
    pub root: Option<String>,
    /// `--format iceberg`: the catalog. A SQL catalog's database, `sqlite:///PATH/catalog.db`
    /// or `postgres://user:password@host/db` (the JDBC catalog schema, `iceberg_tables`, as
    /// Java's `JdbcCatalog` and pyiceberg's `SqlCatalog` write it), or a REST catalog's base
    /// URI `https://…` (bearer token from `LETHE_ICEBERG_REST_TOKEN`).
    #[arg(long, value_name = "URI", conflicts_with = "root", requires_all = ["catalog_name", "table"])]
    pub catalog_uri: Option<String>,
    /// `--format iceberg`: the catalog's name (`catalog_name` in `iceberg_tables`; a REST
    /// catalog's `warehouse`).
    #[arg(long, value_name = "NAME", requires = "catalog_uri")]
    pub catalog_name: Option<String>,
    /// `--format iceberg`: the table, `NAMESPACE.TABLE`.
    #[arg(long, value_name = "NS.TABLE", requires = "catalog_uri")]
    pub table: Option<String>,
    /// Top-level column holding the subject id.
    #[arg(long, value_name = "COL", default_value = "user_id")]
    pub subject_column: String,
    /// File of subject ids to erase: one per line; blank lines and `#` comments are ignored.
    #[arg(long, value_name = "FILE")]
    pub subjects: PathBuf,
    /// Files processed at the same time (each holds about one row group in memory);
    /// default: the number of CPU cores plus one.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
}

/// What `erase --root` points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LakeFormatArg {
    /// A Hive-partitioned folder of Parquet files (the default).
    Parquet,
    /// A Delta Lake table (the folder holding `_delta_log/`).
    Delta,
    /// An Apache Iceberg table of a SQL catalog (`--catalog-uri`, `--catalog-name`,
    /// `--table`).
    Iceberg,
}

/// How a command ended, and the process exit code that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exit code 0: done (for `locate`, also when the subject was not found).
    Success,
    /// Exit code 1: the command ran but some files failed (each is reported on stderr and left
    /// untouched; the others were processed), or an unexpected error stopped it.
    Failure,
    /// Exit code 2: bad usage or input, found before anything was changed: unreadable or empty
    /// subjects file, missing lake root, a Delta Lake / Iceberg table, invalid options.
    Usage,
    /// Exit code 3: `scan-residency` found rows stored outside their allowed regions, or
    /// `remediate-residency` left some (no allowed region in the dataset, or a file failed).
    Violations,
}

impl Exit {
    /// The process exit code: 0, 1, 2 or 3.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::Violations => 3,
        }
    }
}

/// Where a command writes: its result (`out`, stdout), its diagnostics (`err`, stderr), and how it
/// shows progress.
pub struct Output<'a> {
    /// Results; the last line is the JSON summary where the command has one.
    pub out: &'a mut dyn Write,
    /// Progress, per-file failures, errors.
    pub err: &'a mut dyn Write,
    /// How long-running commands show progress on `err`.
    pub progress: ProgressMode,
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
