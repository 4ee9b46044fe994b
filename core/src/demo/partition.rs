//! Generates and writes the files of one `date=…/region=…` partition of the demo lake.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{
    ArrayRef, Float64Array, Int16Array, Int32Array, RecordBatch, TimestampMicrosecondArray,
};
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{BloomFilterPosition, EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use rand::Rng;
use rand::rngs::StdRng;

use super::subjects::{Profile, stream_rng, uuid_from};
use super::{DemoError, DemoLakeOptions, event_schema, names};

/// One partition to write: a day and a region, and the profiles (sorted by `user_id`) of the
/// subjects living in that region.
pub(crate) struct PartitionJob<'a> {
    pub day_index: u32,
    pub date: NaiveDate,
    pub region_index: usize,
    /// Indices into the full profile list, sorted by `user_id`.
    pub subjects: &'a [usize],
}

/// What writing one partition produced.
pub(crate) struct PartitionOutput {
    /// `(path, rows, bytes)` of each file written.
    pub files: Vec<(PathBuf, u64, u64)>,
    /// `(profile index, rows)` for every subject with rows in this partition.
    pub rows_by_profile: Vec<(usize, u64)>,
}

/// Column buffers for the rows of one file, in schema order.
struct Columns {
    event_id: StringBuilder,
    user_id: StringBuilder,
    ts: Vec<i64>,
    calories: Vec<i32>,
    distance_km: Vec<f64>,
    duration_s: Vec<i32>,
    avg_heart_rate: Vec<Option<i16>>,
    device_id: StringBuilder,
    email: StringBuilder,
    full_name: StringBuilder,
    lat: Vec<f64>,
    lon: Vec<f64>,
    notes: StringBuilder,
}

impl Columns {
    fn with_capacity(rows: usize) -> Self {
        Self {
            event_id: StringBuilder::with_capacity(rows, rows * 36),
            user_id: StringBuilder::with_capacity(rows, rows * 36),
            ts: Vec::with_capacity(rows),
            calories: Vec::with_capacity(rows),
            distance_km: Vec::with_capacity(rows),
            duration_s: Vec::with_capacity(rows),
            avg_heart_rate: Vec::with_capacity(rows),
            device_id: StringBuilder::with_capacity(rows, rows * 24),
            email: StringBuilder::with_capacity(rows, rows * 28),
            full_name: StringBuilder::with_capacity(rows, rows * 16),
            lat: Vec::with_capacity(rows),
            lon: Vec::with_capacity(rows),
            notes: StringBuilder::with_capacity(rows, rows * 4),
        }
    }

    fn len(&self) -> usize {
        self.ts.len()
    }

    fn finish(mut self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(TimestampMicrosecondArray::from(self.ts).with_timezone("UTC")),
            Arc::new(Int32Array::from(self.calories)),
            Arc::new(Float64Array::from(self.distance_km)),
            Arc::new(Int32Array::from(self.duration_s)),
            Arc::new(Int16Array::from(self.avg_heart_rate)),
            Arc::new(self.device_id.finish()),
            Arc::new(self.email.finish()),
            Arc::new(self.full_name.finish()),
            Arc::new(Float64Array::from(self.lat)),
            Arc::new(Float64Array::from(self.lon)),
            Arc::new(self.notes.finish()),
        ];
        RecordBatch::try_new(event_schema(), columns)
    }
}

/// A Poisson-distributed count with mean `lambda` (Knuth's method; fine for small means).
fn poisson(rng: &mut StdRng, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        return 0;
    }
    let limit = (-lambda).exp();
    let mut k = 0;
    let mut p: f64 = rng.r#gen();
    while p > limit {
        k += 1;
        p *= rng.r#gen::<f64>();
    }
    k
}

/// Appends one subject's events of the day, in time order, to `cols`; returns how many.
fn push_subject_day(
    rng: &mut StdRng,
    cols: &mut Columns,
    profile: &Profile,
    day_start_us: i64,
    mean_per_day: f64,
) -> u64 {
    let count = poisson(rng, mean_per_day * profile.activity);
    // Runs happen between 05:00 and 22:00 local-ish time; sort so a subject's rows are in order.
    let mut starts: Vec<i64> = (0..count)
        .map(|_| rng.gen_range(5 * 3600..22 * 3600) * 1_000_000 + rng.gen_range(0..1_000_000))
        .collect();
    starts.sort_unstable();
    let s = &profile.subject;
    for start in starts {
        let distance = 2.0 + rng.r#gen::<f64>().powi(2) * 23.0;
        let distance = (distance * 100.0).round() / 100.0;
        let duration = distance * profile.pace_s_per_km * rng.gen_range(0.93..1.07);
        let heart_rate =
            (profile.has_heart_rate && rng.gen_bool(0.95)).then(|| rng.gen_range(118..178) as i16);
        cols.event_id.append_value(uuid_from(rng));
        cols.user_id.append_value(&s.user_id);
        cols.ts.push(day_start_us + start);
        cols.calories
            .push((distance * rng.gen_range(55.0..78.0)).round() as i32);
        cols.distance_km.push(distance);
        cols.duration_s.push(duration.round() as i32);
        cols.avg_heart_rate.push(heart_rate);
        cols.device_id.append_value(&profile.device_id);
        cols.email.append_value(&s.email);
        cols.full_name.append_value(&s.full_name);
        cols.lat.push(profile.home.0 + rng.gen_range(-0.01..0.01));
        cols.lon.push(profile.home.1 + rng.gen_range(-0.01..0.01));
        if rng.gen_bool(0.25) {
            let note = names::NOTES[rng.gen_range(0..names::NOTES.len())];
            cols.notes.append_value(note);
        } else {
            cols.notes.append_null();
        }
    }
    u64::from(count)
}

/// Writer settings of every demo file: ZSTD, page statistics, a bloom filter on `user_id`
/// sized for `subjects_in_file` distinct values, and `user_id` declared as the sort column.
fn writer_properties(opts: &DemoLakeOptions, subjects_in_file: usize) -> WriterProperties {
    let ndv = subjects_in_file.clamp(1, opts.row_group_rows.max(1)) as u64;
    let user_id = ColumnPath::from("user_id");
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(opts.row_group_rows.max(1)))
        .set_column_bloom_filter_enabled(user_id.clone(), true)
        .set_column_bloom_filter_fpp(user_id.clone(), 0.01)
        .set_column_bloom_filter_max_ndv(user_id, ndv)
        // After the last row group, as parquet-mr and Arrow C++ place them: untouched row
        // groups then form one range an S3 rewrite copies server-side.
        .set_bloom_filter_position(BloomFilterPosition::End)
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 1,
            descending: false,
            nulls_first: false,
        }]))
        .set_created_by("lethe demo generator".to_string())
        .build()
}

fn write_file(
    path: &Path,
    cols: Columns,
    opts: &DemoLakeOptions,
    subjects_in_file: usize,
) -> Result<(u64, u64), DemoError> {
    let rows = cols.len() as u64;
    let parquet_err = |source| DemoError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let batch = cols.finish().map_err(|e| parquet_err(e.into()))?;
    let file = File::create(path).map_err(|source| DemoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let props = writer_properties(opts, subjects_in_file);
    let mut writer = ArrowWriter::try_new(BufWriter::new(file), event_schema(), Some(props))
        .map_err(parquet_err)?;
    writer.write(&batch).map_err(parquet_err)?;
    writer.close().map_err(parquet_err)?;
    let bytes = std::fs::metadata(path)
        .map_err(|source| DemoError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    Ok((rows, bytes))
}

/// Generates and writes every file of one partition under `root`.
///
/// The partition draws from its own random stream (seeded by the lake seed, day and region), so
/// partitions can be written in any order or in parallel and still come out byte-identical.
pub(crate) fn write_partition(
    root: &Path,
    opts: &DemoLakeOptions,
    profiles: &[Profile],
    job: &PartitionJob<'_>,
) -> Result<PartitionOutput, DemoError> {
    let region = &opts.regions[job.region_index];
    let dir = root
        .join(format!("date={}", job.date.format("%Y-%m-%d")))
        .join(format!("region={region}"));
    std::fs::create_dir_all(&dir).map_err(|source| DemoError::Io {
        path: dir.clone(),
        source,
    })?;
    let stream = 1 + u64::from(job.day_index) * opts.regions.len() as u64 + job.region_index as u64;
    let mut rng = stream_rng(opts.seed, stream);
    let day_start_us = job
        .date
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp_micros();
    let files = opts.files_per_partition.max(1);
    let expected_rows =
        (job.subjects.len() as f64 * opts.events_per_subject_per_day * 1.2) as usize / files + 16;
    let mut out = PartitionOutput {
        files: Vec::with_capacity(files),
        rows_by_profile: Vec::with_capacity(job.subjects.len()),
    };
    // Contiguous chunks of the sorted subjects, one per file: each file is sorted by `user_id`
    // and files of a partition cover disjoint `user_id` ranges.
    let chunk = job.subjects.len().div_ceil(files).max(1);
    let mut chunks = job.subjects.chunks(chunk);
    for file_index in 0..files {
        let subjects = chunks.next().unwrap_or(&[]);
        let mut cols = Columns::with_capacity(expected_rows);
        for &i in subjects {
            let n = push_subject_day(
                &mut rng,
                &mut cols,
                &profiles[i],
                day_start_us,
                opts.events_per_subject_per_day,
            );
            if n > 0 {
                out.rows_by_profile.push((i, n));
            }
        }
        if cols.len() == 0 {
            continue; // nobody ran: no file rather than an empty one
        }
        let path = dir.join(format!("part-{file_index:05}.parquet"));
        let (rows, bytes) = write_file(&path, cols, opts, subjects.len())?;
        out.files.push((path, rows, bytes));
    }
    Ok(out)
}
