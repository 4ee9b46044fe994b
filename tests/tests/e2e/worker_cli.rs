//! The offline worker commands (`generate`, `locate`, `erase`) run through the worker library,
//! on a lake written by another writer (pyarrow, with Hadoop `.crc` sidecars and `_SUCCESS`,
//! committed in `tests/fixtures/`) and on a generated demo lake.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow_array::{Array, StringArray};
use clap::Parser;
use lethe_worker::cli::{Cli, Exit, Output, run_with};
use lethe_worker::progress::ProgressMode;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::copy_dir;

/// What a command printed and how it ended.
struct Run {
    exit: Exit,
    out: String,
    err: String,
}

impl Run {
    /// The last line of stdout, parsed as JSON.
    fn summary(&self) -> Value {
        let last = self.out.lines().last().unwrap_or_else(|| {
            panic!("no stdout; stderr: {}", self.err);
        });
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"))
    }
}

fn worker(args: &[&str]) -> Run {
    let cli = Cli::try_parse_from(std::iter::once("lethe-worker").chain(args.iter().copied()))
        .expect("valid command line");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let exit = run_with(
        cli,
        &mut Output {
            out: &mut out,
            err: &mut err,
            progress: ProgressMode::Lines {
                every: Duration::ZERO,
            },
        },
    );
    Run {
        exit,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// `tests/fixtures/pyarrow_lake.expected.json`.
fn expected() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("pyarrow_lake.expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A private copy of the pyarrow lake: `(tempdir guard, lake root)`.
fn pyarrow_lake() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lake");
    copy_dir(&fixture_dir().join("pyarrow_lake"), &root);
    (tmp, root)
}

/// Every file under `root` (hidden ones included), relative path → bytes.
fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Rows per `user_id` in every visible `.parquet` file under `root`.
fn rows_by_subject(root: &Path) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for (rel, _) in snapshot(root) {
        let name = rel.rsplit('/').next().unwrap();
        if !name.ends_with(".parquet") || name.starts_with('.') {
            continue;
        }
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(root.join(&rel)).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let ids = batch
                .column_by_name("user_id")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            for i in 0..ids.len() {
                *counts.entry(ids.value(i).to_string()).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// The Hadoop ChecksumFileSystem sidecar of `data` with 512-byte chunks.
fn hadoop_crc(data: &[u8]) -> Vec<u8> {
    let mut out = b"crc\0".to_vec();
    out.extend_from_slice(&512i32.to_be_bytes());
    for chunk in data.chunks(512) {
        out.extend_from_slice(&crc32fast::hash(chunk).to_be_bytes());
    }
    out
}

fn write_subjects(dir: &Path, ids: &[&str]) -> PathBuf {
    let path = dir.join("subjects.txt");
    let mut text = String::from("# subjects to erase\n\n");
    for id in ids {
        text.push_str(id);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn as_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn erasing_two_subjects_from_a_pyarrow_lake_removes_exactly_their_rows() {
    let expected = expected();
    let (tmp, root) = pyarrow_lake();
    let erase: Vec<&str> = expected["erase_subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let before = snapshot(&root);
    let counts_before = rows_by_subject(&root);
    let subjects = write_subjects(tmp.path(), &erase);

    let run = worker(&[
        "erase",
        "--root",
        as_str(&root),
        "--subject-column",
        "user_id",
        "--subjects",
        as_str(&subjects),
        "--jobs",
        "2",
    ]);
    assert_eq!(run.exit, Exit::Success, "stderr: {}", run.err);

    let summary = run.summary();
    let want_removed: u64 = erase
        .iter()
        .map(|id| expected["rows_by_subject"][*id].as_u64().unwrap())
        .sum();
    let files = expected["files"].as_object().unwrap();
    let touched: Vec<&String> = files
        .iter()
        .filter(|(_, f)| {
            erase
                .iter()
                .any(|id| f["rows_by_subject"].get(*id).is_some())
        })
        .map(|(name, _)| name)
        .collect();
    assert_eq!(summary["rows_removed"], want_removed);
    assert_eq!(summary["files_scanned"], files.len());
    assert_eq!(summary["files_rewritten"], touched.len());
    assert_eq!(summary["files_failed"], 0);
    assert_eq!(summary["rows_scanned"], expected["total_rows"]);
    for key in [
        "bytes_read",
        "bytes_written",
        "elapsed_s",
        "rows_per_s",
        "peak_rss_bytes",
    ] {
        assert!(summary[key].as_f64().unwrap() > 0.0, "{key} in {summary}");
    }
    assert!(
        run.err.contains("erase: 4/4 files"),
        "progress on stderr: {}",
        run.err
    );

    // The subjects are gone, and locate agrees.
    for id in &erase {
        let located = worker(&["locate", "--root", as_str(&root), "--subject", id, "--json"]);
        assert_eq!(located.exit, Exit::Success, "{}", located.err);
        assert_eq!(located.summary()["found"], false, "{id}");
    }
    // Everybody else keeps every row.
    let counts_after = rows_by_subject(&root);
    let mut want_after = counts_before.clone();
    for id in &erase {
        want_after.remove(*id);
    }
    assert_eq!(counts_after, want_after);
    for (id, n) in expected["rows_by_subject"].as_object().unwrap() {
        assert_eq!(
            counts_before[id],
            n.as_u64().unwrap(),
            "fixture agrees with pyarrow"
        );
    }

    // Untouched files are byte-identical, `_SUCCESS` too; every sidecar matches its file.
    let after = snapshot(&root);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "no file added or removed"
    );
    for name in files.keys() {
        let same = before[name] == after[name];
        assert_eq!(
            !same,
            touched.contains(&name),
            "{name} changed iff it held a subject"
        );
    }
    assert_eq!(after["_SUCCESS"], before["_SUCCESS"]);
    let mut sidecars = 0;
    for (rel, bytes) in &after {
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        if let Some(data) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".crc")) {
            let data_path = if dir.is_empty() {
                data.to_string()
            } else {
                format!("{dir}/{data}")
            };
            assert_eq!(bytes, &hadoop_crc(&after[&data_path]), "{rel} is stale");
            sidecars += 1;
        }
    }
    assert_eq!(sidecars, files.len());

    // The rewritten files keep their schema.
    let schema = |bytes: &[u8]| {
        let path = tmp.path().join("schema-probe.parquet");
        std::fs::write(&path, bytes).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        // A rewrite adds one key-value entry naming the original writer.
        let mut metadata = builder.schema().metadata().clone();
        metadata.remove("lethe.original_created_by");
        builder.schema().as_ref().clone().with_metadata(metadata)
    };
    for name in &touched {
        assert_eq!(schema(&before[*name]), schema(&after[*name]), "{name}");
    }
}

#[test]
fn a_missing_or_empty_subjects_file_is_a_usage_error_and_changes_nothing() {
    let (tmp, root) = pyarrow_lake();
    let before = snapshot(&root);
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "# nobody yet\n\n   \n").unwrap();
    for subjects in [tmp.path().join("missing.txt"), empty] {
        let run = worker(&[
            "erase",
            "--root",
            as_str(&root),
            "--subjects",
            as_str(&subjects),
        ]);
        assert_eq!(run.exit, Exit::Usage, "{}", run.err);
        assert!(run.err.starts_with("error: "), "{}", run.err);
        assert!(run.out.is_empty(), "no summary: {}", run.out);
    }
    assert_eq!(snapshot(&root), before);
}

#[test]
fn a_missing_root_or_a_delta_table_is_a_usage_error_and_changes_nothing() {
    let (tmp, root) = pyarrow_lake();
    let id = expected()["erase_subjects"][0]
        .as_str()
        .unwrap()
        .to_string();
    let subjects = write_subjects(tmp.path(), &[&id]);

    let missing = worker(&[
        "erase",
        "--root",
        as_str(&tmp.path().join("no-such-lake")),
        "--subjects",
        as_str(&subjects),
    ]);
    assert_eq!(missing.exit, Exit::Usage, "{}", missing.err);

    let log = root.join("_delta_log");
    std::fs::create_dir_all(&log).unwrap();
    std::fs::write(
        log.join("00000000000000000000.json"),
        b"{\"commitInfo\":{}}\n",
    )
    .unwrap();
    let before = snapshot(&root);
    let run = worker(&[
        "erase",
        "--root",
        as_str(&root),
        "--subjects",
        as_str(&subjects),
    ]);
    assert_eq!(run.exit, Exit::Usage, "{}", run.err);
    assert!(run.err.contains("Delta Lake"), "{}", run.err);
    assert_eq!(snapshot(&root), before);
}

#[test]
fn a_non_parquet_file_in_the_lake_fails_alone_and_the_rest_is_erased() {
    let expected = expected();
    let (tmp, root) = pyarrow_lake();
    let stray = "date=2025-01-06/region=EU/part-1.parquet";
    let junk = b"this is a CSV export someone dropped here\nid,name\n1,x\n".to_vec();
    std::fs::write(root.join(stray), &junk).unwrap();
    let erase: Vec<&str> = expected["erase_subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let subjects = write_subjects(tmp.path(), &erase);

    let run = worker(&[
        "erase",
        "--root",
        as_str(&root),
        "--subjects",
        as_str(&subjects),
    ]);
    assert_eq!(run.exit, Exit::Failure, "{}", run.err);
    assert!(run.err.contains(&format!("failed: {stray}")), "{}", run.err);
    let summary = run.summary();
    assert_eq!(summary["files_failed"], 1);
    assert_eq!(summary["files_scanned"], 5);
    let want_removed: u64 = erase
        .iter()
        .map(|id| expected["rows_by_subject"][*id].as_u64().unwrap())
        .sum();
    assert_eq!(summary["rows_removed"], want_removed);
    assert_eq!(std::fs::read(root.join(stray)).unwrap(), junk);
    std::fs::remove_file(root.join(stray)).unwrap();
    let after = rows_by_subject(&root);
    for id in &erase {
        assert!(!after.contains_key(*id), "{id} still present");
    }
}

#[test]
fn a_generated_demo_lake_can_be_located_and_erased_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("demo");
    let ids = tmp.path().join("ids.txt");
    let run = worker(&[
        "generate",
        "--out",
        as_str(&lake),
        "--subjects",
        "120",
        "--days",
        "2",
        "--regions",
        "EU,US",
        "--events-per-day",
        "2",
        "--seed",
        "5",
        "--subjects-out",
        as_str(&ids),
    ]);
    assert_eq!(run.exit, Exit::Success, "{}", run.err);
    let generated = run.summary();
    assert_eq!(generated["files"], 4);
    assert_eq!(generated["subjects"], 120);
    assert_eq!(std::fs::read_to_string(&ids).unwrap().lines().count(), 120);
    let sample = generated["sample_subjects"][0]
        .as_str()
        .unwrap()
        .to_string();

    let table = worker(&["locate", "--root", as_str(&lake), "--subject", &sample]);
    assert_eq!(table.exit, Exit::Success, "{}", table.err);
    assert!(table.out.starts_with("FILE"), "{}", table.out);
    let located = worker(&[
        "locate",
        "--root",
        as_str(&lake),
        "--subject",
        &sample,
        "--json",
    ]);
    let rows = located.summary()["rows"].as_u64().unwrap();
    assert!(rows > 0);

    let subjects = write_subjects(tmp.path(), &[&sample]);
    let erased = worker(&[
        "erase",
        "--root",
        as_str(&lake),
        "--subjects",
        as_str(&subjects),
    ]);
    assert_eq!(erased.exit, Exit::Success, "{}", erased.err);
    assert_eq!(erased.summary()["rows_removed"], rows);
    assert_eq!(
        erased.summary()["rows_scanned"],
        generated["rows"].as_u64().unwrap()
    );

    let gone = worker(&["locate", "--root", as_str(&lake), "--subject", &sample]);
    assert_eq!(gone.exit, Exit::Success);
    assert!(gone.out.starts_with("not found"), "{}", gone.out);

    let again = worker(&["generate", "--out", as_str(&lake)]);
    assert_eq!(again.exit, Exit::Usage, "refuses a non-empty directory");
}
