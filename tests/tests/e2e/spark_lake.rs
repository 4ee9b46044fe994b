//! Erasure on a lake written by Apache Spark 4 with its default settings
//! (`tests/fixtures/spark_lake/`: INT96 `ts`, snappy, `_SUCCESS`, Hadoop `.crc` sidecars,
//! `parquet-mr` as writer), checked row by row against pyarrow's reading of the original by
//! the fixture's own checker (`check_erased.py`), and read back by DuckDB where it is installed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow_array::{Array, StringArray};
use lethe_core::lake::{Erase, FileStatus, LakeRoot};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Type as PhysicalType;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::copy_dir;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/spark_lake")
}

fn data_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if p.is_dir() {
            data_files(&p, out);
        } else if name.ends_with(".parquet") && !name.starts_with('.') {
            out.push(p);
        }
    }
}

/// Rows of the lake at `dir` whose `user_id` is one of `subjects`, and all rows.
fn count(dir: &Path, subjects: &BTreeSet<String>) -> (u64, u64) {
    let mut files = Vec::new();
    data_files(dir, &mut files);
    let (mut hits, mut all) = (0, 0);
    for f in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let users = batch.column_by_name("user_id").unwrap();
            let users = users.as_any().downcast_ref::<StringArray>().unwrap();
            all += batch.num_rows() as u64;
            hits += users
                .iter()
                .flatten()
                .filter(|u| subjects.contains(*u))
                .count() as u64;
        }
    }
    (hits, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spark_default_lake_is_erased_and_reads_back_as_pyarrow_expects() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    copy_dir(&fixture().join("lake"), &lake);
    let subjects: BTreeSet<String> = std::fs::read_to_string(fixture().join("subjects.txt"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(subjects.len(), 20);
    let (expected_removed, rows_before) = count(&lake, &subjects);
    assert!(expected_removed > 0);

    let outcome = Erase::new(
        LakeRoot::parse(&lake.display().to_string()).unwrap(),
        "user_id",
    )
    .subjects(subjects.iter().cloned())
    .execute()
    .await
    .unwrap();
    let failed: Vec<String> = outcome
        .files
        .iter()
        .filter_map(|f| match &f.status {
            FileStatus::Failed { error } => Some(format!("{}: {error}", f.relative)),
            _ => None,
        })
        .collect();
    assert!(failed.is_empty(), "files refused: {failed:#?}");
    assert_eq!(outcome.metrics.rows_removed, expected_removed);
    assert!(outcome.metrics.files_rewritten >= 2);
    assert_eq!(count(&lake, &subjects), (0, rows_before - expected_removed));

    // INT96 stays INT96 in every rewritten file.
    let mut files = Vec::new();
    data_files(&lake, &mut files);
    for f in &files {
        let reader = SerializedFileReader::new(std::fs::File::open(f).unwrap()).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let ts = schema
            .columns()
            .iter()
            .find(|c| c.name() == "ts")
            .unwrap()
            .clone();
        assert_eq!(ts.physical_type(), PhysicalType::INT96, "{}", f.display());
    }
    let leftovers: Vec<_> = std::fs::read_dir(&lake)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".lethe-tmp-"))
        .collect();
    assert!(leftovers.is_empty());

    // pyarrow's reading, row by row, schema, physical types and .crc sidecars.
    let checker = fixture().join("check_erased.py");
    // DuckDB reads the erased lake too where it is installed (CI installs it).
    let duckdb = std::env::var_os("CI").is_some()
        || Command::new("python3")
            .args(["-c", "import duckdb"])
            .output()
            .is_ok_and(|o| o.status.success());
    let run = Command::new("python3")
        .arg(&checker)
        .arg(fixture().join("lake"))
        .arg(&lake)
        .arg(fixture().join("subjects.txt"))
        .args(duckdb.then_some("--duckdb"))
        .output();
    match run {
        Ok(out) if out.status.success() => {
            println!("{}", String::from_utf8_lossy(&out.stdout));
        }
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let no_pyarrow = stderr.contains("No module named 'pyarrow'");
            if no_pyarrow && std::env::var_os("CI").is_none() {
                println!("skipped the pyarrow check: pyarrow is not installed");
            } else {
                panic!("check_erased.py failed:\n{stdout}\n{stderr}");
            }
        }
        Err(e) if std::env::var_os("CI").is_none() => {
            println!("skipped the pyarrow check: python3 not found ({e})");
        }
        Err(e) => panic!("python3 not found: {e}"),
    }
}
