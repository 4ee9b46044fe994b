use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::reader::{FileReader, SerializedFileReader};

use super::*;

fn small() -> DemoLakeOptions {
    DemoLakeOptions {
        subjects: 60,
        days: 3,
        events_per_subject_per_day: 1.5,
        seed: 7,
        row_group_rows: 10,
        ..Default::default()
    }
}

/// Every `.parquet` file under `dir`, as `(path relative to dir, absolute path)`, sorted.
fn files(dir: &Path) -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(dir, &mut paths);
    let mut out: Vec<_> = paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            (rel, p)
        })
        .collect();
    out.sort();
    out
}

fn read(path: &Path) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

fn user_ids(batches: &[RecordBatch]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let col = b
                .column_by_name("user_id")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone();
            (0..col.len())
                .map(|i| col.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_same_seed_gives_byte_identical_files_and_another_seed_does_not() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let sa = generate_lake(a.path(), &small()).unwrap();
    let sb = generate_lake(b.path(), &small()).unwrap();
    let sc = generate_lake(c.path(), &DemoLakeOptions { seed: 8, ..small() }).unwrap();
    let (fa, fb) = (files(a.path()), files(b.path()));
    assert_eq!(
        fa.iter().map(|f| &f.0).collect::<Vec<_>>(),
        fb.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((rel, pa), (_, pb)) in fa.iter().zip(&fb) {
        assert_eq!(
            std::fs::read(pa).unwrap(),
            std::fs::read(pb).unwrap(),
            "{rel}"
        );
    }
    assert_eq!(sa.subjects, sb.subjects);
    assert_eq!(
        subject_ids(&small()),
        sa.subjects
            .iter()
            .map(|s| s.user_id.clone())
            .collect::<Vec<_>>()
    );
    assert_ne!(sa.subjects[0].user_id, sc.subjects[0].user_id);
}

#[test]
fn files_have_exactly_the_running_app_schema_and_the_promised_layout() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate_lake(dir.path(), &small()).unwrap();
    let all = files(dir.path());
    assert_eq!(all.len(), summary.files);
    assert_eq!(summary.files, 3 * 3, "3 days x 3 regions, 1 file each");
    for (rel, path) in &all {
        let parts: Vec<&str> = rel.split('/').collect();
        assert_eq!(parts.len(), 3, "{rel}");
        assert!(parts[0].starts_with("date=2025-01-0"), "{rel}");
        assert!(
            ["region=EU", "region=US", "region=APAC"].contains(&parts[1]),
            "{rel}"
        );
        assert_eq!(parts[2], "part-00000.parquet");

        let batches = read(path);
        assert_eq!(
            batches[0].schema().fields(),
            event_schema().fields(),
            "{rel}"
        );
        let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
        let meta = reader.metadata();
        assert!(meta.num_row_groups() > 1, "{rel}: several row groups");
        for rg in meta.row_groups() {
            let user_id = rg.column(1);
            assert_eq!(user_id.column_path().string(), "user_id");
            assert!(matches!(user_id.compression(), Compression::ZSTD(_)));
            assert!(
                user_id.bloom_filter_offset().is_some(),
                "{rel}: bloom filter"
            );
            assert!(user_id.statistics().is_some(), "{rel}: statistics");
            assert!(user_id.column_index_offset().is_some(), "{rel}: page index");
        }
        // Row groups back to back, bloom filters after the last (as parquet-mr places them),
        // so a rewrite on S3 can copy untouched row groups as one range.
        let chunk_end = |rg: &parquet::file::metadata::RowGroupMetaData| {
            rg.columns()
                .iter()
                .map(|c| {
                    c.dictionary_page_offset().unwrap_or(c.data_page_offset()) + c.compressed_size()
                })
                .max()
                .unwrap()
        };
        let last_data = chunk_end(meta.row_groups().last().unwrap());
        for rg in meta.row_groups() {
            assert!(
                rg.column(1).bloom_filter_offset().unwrap() >= last_data,
                "{rel}"
            );
        }
        let ids = user_ids(&batches);
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "{rel}: sorted by user_id");
    }
}

#[test]
fn every_subject_lives_in_one_region_and_row_counts_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DemoLakeOptions {
        files_per_partition: 2,
        ..small()
    };
    let summary = generate_lake(dir.path(), &opts).unwrap();
    let mut regions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut rows: BTreeMap<String, u64> = BTreeMap::new();
    let mut total_rows = 0u64;
    let mut total_bytes = 0u64;
    for (rel, path) in files(dir.path()) {
        let region = rel
            .split('/')
            .nth(1)
            .unwrap()
            .trim_start_matches("region=")
            .to_string();
        total_bytes += std::fs::metadata(&path).unwrap().len();
        for id in user_ids(&read(&path)) {
            regions
                .entry(id.clone())
                .or_default()
                .insert(region.clone());
            *rows.entry(id).or_default() += 1;
            total_rows += 1;
        }
    }
    assert_eq!(total_rows, summary.rows);
    assert_eq!(total_bytes, summary.bytes);
    assert_eq!(summary.subjects.len(), 60);
    for s in &summary.subjects {
        assert_eq!(
            rows.get(&s.user_id).copied().unwrap_or(0),
            s.rows,
            "{}",
            s.user_id
        );
        if s.rows > 0 {
            assert_eq!(regions[&s.user_id], BTreeSet::from([s.region.clone()]));
        }
        assert!(
            s.email.ends_with(".com") || s.email.ends_with(".org") || s.email.ends_with(".net")
        );
        assert!(s.full_name.contains(' '));
        uuid::Uuid::parse_str(&s.user_id).unwrap();
    }
    assert_eq!(
        summary.subjects.iter().map(|s| s.rows).sum::<u64>(),
        summary.rows
    );
}

#[test]
fn the_generator_refuses_to_write_into_a_non_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), b"mine").unwrap();
    let err = generate_lake(dir.path(), &small()).unwrap_err();
    assert!(matches!(err, DemoError::NotEmpty(_)), "{err}");
    assert_eq!(std::fs::read(dir.path().join("keep.txt")).unwrap(), b"mine");
}

#[test]
fn options_that_make_no_lake_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for opts in [
        DemoLakeOptions {
            subjects: 0,
            ..small()
        },
        DemoLakeOptions {
            regions: vec![],
            ..small()
        },
        DemoLakeOptions {
            regions: vec!["../EU".into()],
            ..small()
        },
        DemoLakeOptions {
            regions: vec!["EU".into(), "EU".into()],
            ..small()
        },
        DemoLakeOptions {
            events_per_subject_per_day: f64::NAN,
            ..small()
        },
    ] {
        let err = generate_lake(&dir.path().join("lake"), &opts).unwrap_err();
        assert!(matches!(err, DemoError::InvalidOptions(_)), "{err}");
    }
}
