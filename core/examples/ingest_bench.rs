//! Ingest throughput, locate latency with the locator index, compaction and shred latency, on
//! the running-app schema with its 4 PII columns encrypted (issue 4's speed targets).
//!
//! ```sh
//! cargo run --release -p lethe-core --example ingest_bench            # 5,000,000 rows
//! BENCH_ROWS=200000 cargo run --release -p lethe-core --example ingest_bench
//! ```
//!
//! Everything runs in a temporary folder: a SQLite database (WAL), a local lake, a keyring
//! with a fresh KEK. Steps:
//!
//! 1. generate `BENCH_ROWS` (5,000,000) rows of `BENCH_SUBJECTS` (100,000) subjects over 30
//!    days and 3 regions (each subject lives in one region) as JSON Lines, in `BENCH_CHUNKS`
//!    (10) inputs; ingest each (parse, validate, DEK per subject, seal 4 cells per row, sort,
//!    write zstd Parquet with bloom filters, index) and time it;
//! 2. compact the lake (each partition's 10 small files into one);
//! 3. locate `BENCH_LOCATES` (200) random subjects with the index (index lookup, listing, no
//!    file opened for indexed files) and 10 without it (statistics and bloom filters only);
//! 4. shred `BENCH_SHREDS` (200) subjects: wrapped DEK deleted, tombstone written, journal
//!    entry appended (what approving an erasure does before it answers).
//!
//! The last stdout line is a JSON summary.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use lethe_core::audit::NewAuditEntry;
use lethe_core::compaction::compact;
use lethe_core::datasets::locator_hint;
use lethe_core::domain::{DatasetSchema, SubjectId};
use lethe_core::ingest::{InputFormat, ingest};
use lethe_core::keyring::{Kek, Keyring, SubjectHasher, TombstoneJournal};
use lethe_core::lake::{LakeRoot, Locate};
use lethe_core::store::{NewDataset, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;
use serde_json::json;

fn env_usize(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v}")),
        Err(_) => Ok(default),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn schema() -> DatasetSchema {
    serde_json::from_value(json!({
        "subject_columns": ["user_id"],
        "columns": [
            {"name": "event_id", "type": "string"},
            {"name": "user_id", "type": "string"},
            {"name": "ts", "type": "timestamp"},
            {"name": "region", "type": "string"},
            {"name": "calories", "type": "int32"},
            {"name": "distance_km", "type": "float64"},
            {"name": "duration_s", "type": "int32"},
            {"name": "avg_heart_rate", "type": "int16", "nullable": true},
            {"name": "device_id", "type": "string"},
            {"name": "email", "type": "string", "pii": "encrypt"},
            {"name": "full_name", "type": "string", "pii": "encrypt"},
            {"name": "lat", "type": "float64", "pii": "encrypt"},
            {"name": "lon", "type": "float64", "pii": "encrypt"},
            {"name": "notes", "type": "string", "nullable": true}
        ],
        "partition_by": [{"name": "date", "source": "ts", "transform": "day"},
                         {"name": "region", "source": "region"}],
        "region_column": "region",
        "regions": ["EU", "US", "APAC"]
    }))
    .expect("valid schema")
}

const REGIONS: [&str; 3] = ["EU", "US", "APAC"];
const FIRST: [&str; 8] = [
    "Ana", "Ben", "Chloé", "Dmitri", "Eva", "Farid", "Grace", "Hiro",
];
const LAST: [&str; 8] = [
    "Silva", "Okafor", "Müller", "Nakamura", "Rossi", "Kowalski", "Diaz", "Smith",
];

fn subject(i: usize) -> String {
    format!("user-{i:07}")
}

/// One JSON Lines input of `rows` rows.
fn input(rng: &mut StdRng, rows: usize, subjects: usize, chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows * 330);
    for r in 0..rows {
        let s = rng.gen_range(0..subjects);
        let day = rng.gen_range(1..=30);
        let (h, m) = (rng.gen_range(0..24), rng.gen_range(0..60));
        let first = FIRST[s % 8];
        let last = LAST[(s / 8) % 8];
        let hr = if rng.gen_bool(0.9) {
            json!(rng.gen_range(90..180))
        } else {
            json!(null)
        };
        let notes = if rng.gen_bool(0.3) {
            json!("easy run by the river")
        } else {
            json!(null)
        };
        let row = json!({
            "event_id": format!("evt-{chunk:02}-{r:08}"),
            "user_id": subject(s),
            "ts": format!("2025-01-{day:02}T{h:02}:{m:02}:00Z"),
            "region": REGIONS[s % 3],
            "calories": rng.gen_range(50..900),
            "distance_km": (rng.gen_range(1.0..21.0f64) * 100.0).round() / 100.0,
            "duration_s": rng.gen_range(600..7200),
            "avg_heart_rate": hr,
            "device_id": format!("dev-{:05}", s % 40_000),
            "email": format!("{}.{}.{s}@example.com", first.to_lowercase(), last.to_lowercase()),
            "full_name": format!("{first} {last}"),
            "lat": 48.0 + rng.gen_range(-5.0..5.0f64),
            "lon": 2.0 + rng.gen_range(-5.0..5.0f64),
            "notes": notes,
        });
        serde_json::to_writer(&mut out, &row).expect("json");
        out.push(b'\n');
    }
    out
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let rows = env_usize("BENCH_ROWS", 5_000_000)?;
    let subjects = env_usize("BENCH_SUBJECTS", 100_000)?;
    let chunks = env_usize("BENCH_CHUNKS", 10)?.max(1);
    let locates = env_usize("BENCH_LOCATES", 200)?;
    let shreds = env_usize("BENCH_SHREDS", 200)?;
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("lethe.db").display());
    let sql = Arc::new(Store::connect(&SecretString::from(url), 4).await?);
    let journal = Arc::new(TombstoneJournal::open(
        &dir.path().join("tombstones").display().to_string(),
    )?);
    let keyring = Arc::new(
        Keyring::new(
            Kek::generate(),
            sql.clone(),
            SubjectHasher::new(&[7u8; 32])?,
        )
        .with_journal(journal),
    );
    let store: Arc<Store> = sql;
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&lake)?;
    let dataset = store
        .create_dataset(
            NewDataset {
                name: "running_events".into(),
                root_url: lake.display().to_string(),
                subject_column: "user_id".into(),
                partition_columns: vec!["date".into(), "region".into()],
                created_by: "bench".into(),
                schema: Some(schema()),
                format: Default::default(),
                iceberg: None,
            },
            NewAuditEntry::new("bench", "dataset.registered"),
        )
        .await?;

    // 1. ingest
    let mut rng = StdRng::seed_from_u64(42);
    let per_chunk = rows.div_ceil(chunks);
    let (mut ingest_s, mut input_bytes, mut written_rows, mut written_bytes, mut files) =
        (0.0, 0u64, 0u64, 0u64, 0usize);
    let mut chunk_rates = Vec::new();
    for c in 0..chunks {
        let n = per_chunk.min(rows - c * per_chunk);
        let data = input(&mut rng, n, subjects, c);
        input_bytes += data.len() as u64;
        let started = Instant::now();
        let report = ingest(
            &store,
            &keyring,
            &dataset,
            InputFormat::JsonLines,
            Bytes::from(data),
            "bench",
        )
        .await?;
        let s = started.elapsed().as_secs_f64();
        ingest_s += s;
        written_rows += report.rows_written;
        written_bytes += report.bytes_written;
        files += report.files.len();
        chunk_rates.push(report.rows_per_s);
        eprintln!(
            "chunk {c}: {} rows in {s:.1} s ({:.0} rows/s, {:.1} MB/s)",
            report.rows_written, report.rows_per_s, report.mb_per_s
        );
    }
    let ingest_summary = json!({
        "rows": written_rows,
        "subjects": subjects,
        "input_mb": input_bytes as f64 / 1e6,
        "lake_mb": written_bytes as f64 / 1e6,
        "files": files,
        "seconds": ingest_s,
        "rows_per_s": written_rows as f64 / ingest_s,
        "input_mb_per_s": input_bytes as f64 / 1e6 / ingest_s,
    });
    eprintln!("ingest: {ingest_summary}");

    // 2. compaction
    let started = Instant::now();
    let compacted = compact(&store, &keyring, &dataset, "bench").await?;
    let compact_s = started.elapsed().as_secs_f64();
    eprintln!(
        "compaction: {} files into {} in {compact_s:.1} s",
        compacted.files_in, compacted.files_out
    );

    // 3. locate
    let root = LakeRoot::parse(&dataset.root_url)?;
    let mut with_index = Vec::new();
    let mut rows_found = 0u64;
    for _ in 0..locates {
        let who = subject(rng.gen_range(0..subjects));
        let started = Instant::now();
        let hint = locator_hint(&store, Some(&keyring), &dataset, &[who.as_str()])
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .context("the dataset has an index")?;
        let report = Locate::new(root.clone(), "user_id")
            .subjects([who])
            .index(hint)
            .execute()
            .await?;
        with_index.push(started.elapsed().as_secs_f64() * 1000.0);
        rows_found += report.files.iter().map(|f| f.rows).sum::<u64>();
        anyhow::ensure!(
            report.metrics.files_scanned == 0,
            "an indexed file was opened"
        );
    }
    let mut without_index = Vec::new();
    for _ in 0..10 {
        let who = subject(rng.gen_range(0..subjects));
        let started = Instant::now();
        Locate::new(root.clone(), "user_id")
            .subjects([who])
            .concurrency(2)
            .execute()
            .await?;
        without_index.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    with_index.sort_by(f64::total_cmp);
    without_index.sort_by(f64::total_cmp);

    // 4. shred
    let mut shred_ms = Vec::new();
    for i in 0..shreds {
        let who = SubjectId::parse(subject(i * (subjects / shreds.max(1)).max(1)))?;
        let started = Instant::now();
        keyring.shred(&who).await?;
        shred_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    shred_ms.sort_by(f64::total_cmp);

    let summary = json!({
        "ingest": ingest_summary,
        "compaction": {"files_in": compacted.files_in, "files_out": compacted.files_out,
                        "rows": compacted.rows_out, "seconds": compact_s},
        "locate_with_index_ms": {"n": with_index.len(), "p50": percentile(&with_index, 0.5),
                                  "p99": percentile(&with_index, 0.99), "max": with_index.last(),
                                  "mean_rows_found": rows_found as f64 / with_index.len().max(1) as f64},
        "locate_without_index_ms": {"n": without_index.len(), "p50": percentile(&without_index, 0.5),
                                     "p99": percentile(&without_index, 0.99)},
        "shred_ms": {"n": shred_ms.len(), "p50": percentile(&shred_ms, 0.5),
                      "p99": percentile(&shred_ms, 0.99), "max": shred_ms.last()},
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{summary}")?;
    Ok(())
}
