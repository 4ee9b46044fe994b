//! The arguments of each `lethe-worker` subcommand (clap), apart from the dispatch in
//! [`crate::cli`], so that the commands read their arguments without importing the dispatcher.

use std::path::PathBuf;

use clap::Args;

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
