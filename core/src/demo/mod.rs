//! A generator for the running-app demo lake.
//!
//! [`generate_lake`] writes a Hive-partitioned Parquet lake,
//! `<dir>/date=YYYY-MM-DD/region=<REGION>/part-00000.parquet`, in the running-app event schema of
//! the design brief ([`event_schema`]): one row per run, many subjects per file. The lake is a
//! pure function of [`DemoLakeOptions`]: the same options (seed included) give byte-identical
//! files. It is what the service quick start serves, what the end-to-end tests erase from and what
//! the benchmark (`bench/run.sh`) measures.
//!
//! Each data subject has a home region (all their rows land in that region's partitions), a
//! realistic name, an email derived from it (on a documentation-only domain), a device id, home
//! coordinates near a real city of their region, and a UUID subject id. Files are sorted by
//! `user_id`, ZSTD-compressed, with page statistics and a bloom filter on `user_id`, so that
//! locate can prune them the way it would prune a well-kept production lake.
//!
//! ```no_run
//! use lethe_core::demo::{DemoLakeOptions, generate_lake};
//! let summary = generate_lake(
//!     std::path::Path::new("/tmp/lake"),
//!     &DemoLakeOptions { subjects: 100, days: 3, ..Default::default() },
//! )?;
//! println!("{} rows in {} files", summary.rows, summary.files);
//! # Ok::<(), lethe_core::demo::DemoError>(())
//! ```

mod names;
mod partition;
mod subjects;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::NaiveDate;
use serde::Serialize;

pub use subjects::{DemoSubject, subject_ids, subjects};

use partition::{PartitionJob, PartitionOutput, write_partition};

/// What lake to generate. `Default` gives the quick-start lake: 2,000 subjects over the 30 days
/// from 2025-01-01 in EU, US and APAC, about one run per subject per day (≈ 60,000 rows).
#[derive(Debug, Clone, PartialEq)]
pub struct DemoLakeOptions {
    /// Number of data subjects (default 2,000).
    pub subjects: usize,
    /// Number of consecutive days, one `date=` partition each (default 30).
    pub days: u32,
    /// First day (default 2025-01-01).
    pub start_date: NaiveDate,
    /// Region names, one `region=` partition each (default `EU`, `US`, `APAC`). `EU`, `US` and
    /// `APAC` have their own names and cities; any other region draws from all of them. Names
    /// must be non-empty ASCII letters, digits, `-` or `_` (they become directory names).
    pub regions: Vec<String>,
    /// Mean number of events (rows) per subject per day (default 1.0). Each subject's own rate
    /// is this times an activity factor in `[0.25, 1.75)`; daily counts are Poisson-distributed.
    pub events_per_subject_per_day: f64,
    /// Seed of every random choice (default 42).
    pub seed: u64,
    /// Maximum rows per Parquet row group (default 16,384).
    pub row_group_rows: usize,
    /// Files per partition (default 1). Each file holds a contiguous `user_id` range of the
    /// partition's subjects.
    pub files_per_partition: usize,
}

impl Default for DemoLakeOptions {
    fn default() -> Self {
        Self {
            subjects: 2000,
            days: 30,
            start_date: NaiveDate::from_ymd_opt(2025, 1, 1).expect("valid date"),
            regions: vec!["EU".into(), "US".into(), "APAC".into()],
            events_per_subject_per_day: 1.0,
            seed: 42,
            row_group_rows: 16 * 1024,
            files_per_partition: 1,
        }
    }
}

/// What [`generate_lake`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct DemoLakeSummary {
    /// Number of Parquet files written (a partition where nobody ran gets no file).
    pub files: usize,
    /// Total rows across all files.
    pub rows: u64,
    /// Total size of all files, in bytes.
    pub bytes: u64,
    /// Every subject, in generation order (the order of [`subject_ids`]), with their row count.
    pub subjects: Vec<DemoSubject>,
}

/// Why [`generate_lake`] failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The options make no lake (zero subjects, no regions, a bad region name, …).
    #[error("invalid demo lake options: {0}")]
    InvalidOptions(String),
    /// The output directory exists and is not empty; the generator never writes over data.
    #[error("output directory {0} is not empty")]
    NotEmpty(PathBuf),
    /// Reading or writing a path failed.
    #[error("I/O error on {path}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Encoding a Parquet file failed.
    #[error("writing Parquet file {path}")]
    Parquet {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },
}

/// The Arrow schema of the running-app event files (design brief, "Running-app event schema").
///
/// `event_id`, `user_id` utf8 · `ts` timestamp(µs, "UTC") · `calories` int32 · `distance_km`
/// float64 · `duration_s` int32 · `avg_heart_rate` int16 nullable · `device_id`, `email`,
/// `full_name` utf8 · `lat`, `lon` float64 (degrees) · `notes` utf8 nullable. Only
/// `avg_heart_rate` and `notes` are nullable. `date` and `region` are partition columns: they
/// live in the path, not in the file.
pub fn event_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("calories", DataType::Int32, false),
        Field::new("distance_km", DataType::Float64, false),
        Field::new("duration_s", DataType::Int32, false),
        Field::new("avg_heart_rate", DataType::Int16, true),
        Field::new("device_id", DataType::Utf8, false),
        Field::new("email", DataType::Utf8, false),
        Field::new("full_name", DataType::Utf8, false),
        Field::new("lat", DataType::Float64, false),
        Field::new("lon", DataType::Float64, false),
        Field::new("notes", DataType::Utf8, true),
    ]))
}

fn validate(dir: &Path, opts: &DemoLakeOptions) -> Result<(), DemoError> {
    let invalid = |m: &str| Err(DemoError::InvalidOptions(m.to_string()));
    if opts.subjects == 0 {
        return invalid("subjects must be at least 1");
    }
    if opts.days == 0 {
        return invalid("days must be at least 1");
    }
    if opts.regions.is_empty() {
        return invalid("at least one region is needed");
    }
    for region in &opts.regions {
        let ok = !region.is_empty()
            && region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return invalid(&format!(
                "region {region:?} must be ASCII letters, digits, '-' or '_'"
            ));
        }
    }
    let mut sorted = opts.regions.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != opts.regions.len() {
        return invalid("regions must be distinct");
    }
    if !(opts.events_per_subject_per_day.is_finite()
        && (0.0..=50.0).contains(&opts.events_per_subject_per_day))
    {
        return invalid("events per subject per day must be between 0 and 50");
    }
    if opts.row_group_rows == 0 || opts.files_per_partition == 0 {
        return invalid("row_group_rows and files_per_partition must be at least 1");
    }
    if opts
        .start_date
        .checked_add_days(chrono::Days::new(u64::from(opts.days)))
        .is_none()
    {
        return invalid("start date plus days is out of range");
    }
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            Some(_) => Err(DemoError::NotEmpty(dir.into())),
            None => Ok(()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DemoError::Io {
            path: dir.into(),
            source,
        }),
    }
}

/// Writes the demo lake described by `opts` under `dir` and returns what it wrote.
///
/// `dir` is created if missing and must otherwise be empty ([`DemoError::NotEmpty`]): the
/// generator never mixes its files with existing data. Partitions are written in parallel, one
/// thread per available core; the output does not depend on the number of threads. In a release
/// build, about one million rows take 2–4 seconds per core.
///
/// # Errors
/// [`DemoError::InvalidOptions`] for options that make no lake, [`DemoError::NotEmpty`],
/// and [`DemoError::Io`] / [`DemoError::Parquet`] naming the path that failed. A failed run may
/// leave some files behind.
pub fn generate_lake(dir: &Path, opts: &DemoLakeOptions) -> Result<DemoLakeSummary, DemoError> {
    validate(dir, opts)?;
    let profiles = subjects::profiles(opts);
    // Per region, the profile indices sorted by user_id: the row order of every file.
    let mut by_region: Vec<Vec<usize>> = vec![Vec::new(); opts.regions.len()];
    for (i, p) in profiles.iter().enumerate() {
        by_region[p.region_index].push(i);
    }
    for list in &mut by_region {
        list.sort_by(|&a, &b| {
            profiles[a]
                .subject
                .user_id
                .cmp(&profiles[b].subject.user_id)
        });
    }
    let jobs: Vec<PartitionJob<'_>> = (0..opts.days)
        .flat_map(|day_index| {
            let date = opts.start_date + chrono::Days::new(u64::from(day_index));
            by_region
                .iter()
                .enumerate()
                .map(move |(region_index, subjects)| PartitionJob {
                    day_index,
                    date,
                    region_index,
                    subjects,
                })
        })
        .collect();

    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(jobs.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Result<PartitionOutput, DemoError>>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let result = write_partition(dir, opts, &profiles, job);
                    let failed = result.is_err();
                    results.lock().expect("no panics").push(result);
                    if failed {
                        // Stop handing out work; other threads finish their current partition.
                        next.store(jobs.len(), Ordering::Relaxed);
                        break;
                    }
                }
            });
        }
    });

    let mut summary = DemoLakeSummary {
        files: 0,
        rows: 0,
        bytes: 0,
        subjects: Vec::new(),
    };
    let mut rows_by_profile = vec![0u64; profiles.len()];
    for result in results.into_inner().expect("no panics") {
        let output = result?;
        for (_, rows, bytes) in &output.files {
            summary.files += 1;
            summary.rows += rows;
            summary.bytes += bytes;
        }
        for (i, n) in output.rows_by_profile {
            rows_by_profile[i] += n;
        }
    }
    summary.subjects = profiles
        .into_iter()
        .zip(rows_by_profile)
        .map(|(p, rows)| DemoSubject { rows, ..p.subject })
        .collect();
    Ok(summary)
}

#[cfg(test)]
mod tests;
