//! Erasure from Delta Lake tables written by the `deltalake` Python package
//! (`tests/fixtures/delta/make_tables.py`, generated into a temporary folder): one commit, the
//! purge, and the table read back by deltalake itself. Skipped (with a message) only when the
//! Python package is missing and `CI` is not set; `.ci/run` installs it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow_array::{Array, StringArray};
use lethe_core::lake::table::delta::{DeltaErase, DeltaTable};
use lethe_core::lake::{LakeError, LakeRoot};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/delta/make_tables.py")
}

/// Runs the fixture script; `Err(stderr)` when it fails.
fn py(args: &[&str]) -> Result<String, String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let out = Command::new("python3")
            .arg(script())
            .args(args)
            .output()
            .map_err(|e| format!("python3 not found: {e}"))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).to_string());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        // The deltalake wheel's runtime can abort while the interpreter shuts down on a loaded
        // machine ("terminate called without an active exception"), after the work is done;
        // a read is run again, anything else is reported.
        if args[0] == "read" && attempt < 3 && stderr.contains("terminate called") {
            continue;
        }
        return Err(stderr);
    }
}

/// A fresh fixture table, or `None` (skip) when python's deltalake is missing off CI.
fn fixture() -> Option<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir().unwrap();
    match py(&["make", dir.path().to_str().unwrap()]) {
        Ok(_) => {
            let table = dir.path().join("events");
            Some((dir, table))
        }
        Err(e)
            if std::env::var_os("CI").is_none()
                && (e.contains("No module named 'deltalake'")
                    || e.contains("python3 not found")) =>
        {
            println!(
                "skipped: the Python deltalake package is not installed (pip install deltalake pyarrow)"
            );
            None
        }
        Err(e) => panic!("make_tables.py failed: {e}"),
    }
}

/// The table's rows (at `version`) as read by deltalake, sorted by event id.
fn rows(table: &Path, version: Option<u64>) -> Result<Vec<Value>, String> {
    let v = version.map(|v| v.to_string());
    let mut args = vec!["read", table.to_str().unwrap()];
    if let Some(v) = &v {
        args.push(v);
    }
    Ok(py(&args)?
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect())
}

fn user(row: &Value) -> &str {
    row["user_id"].as_str().unwrap_or_default()
}

/// Every Parquet file under `root` (log included) with a `user_id` column, and the subjects'
/// rows in it.
fn subject_rows_on_disk(root: &Path, subjects: &BTreeSet<String>) -> Vec<(PathBuf, usize)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "parquet") {
                continue;
            }
            let file = std::fs::File::open(&path).unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap();
            let mut hits = 0;
            for batch in reader {
                let batch = batch.unwrap();
                let Some(col) = batch.column_by_name("user_id") else {
                    break;
                };
                let ids = arrow_cast::cast(col, &arrow_schema::DataType::Utf8).unwrap();
                let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
                hits += (0..ids.len())
                    .filter(|&i| ids.is_valid(i) && subjects.contains(ids.value(i)))
                    .count();
            }
            out.push((path, hits));
        }
    }
    out
}

fn erase(table: &Path, subjects: &[&str]) -> DeltaErase {
    let root = LakeRoot::parse(table.to_str().unwrap()).unwrap();
    DeltaErase::new(DeltaTable::new(root).unwrap(), "user_id").subjects(subjects.iter().copied())
}

#[tokio::test]
async fn an_erasure_commits_once_purges_every_copy_and_leaves_a_healthy_table() {
    let Some((_dir, table)) = fixture() else {
        return;
    };
    let subjects: BTreeSet<String> = ["u-07", "u-13"].map(String::from).into();
    let before = rows(&table, None).unwrap();
    let schema = py(&["schema", table.to_str().unwrap()]).unwrap();
    assert!(before.iter().any(|r| subjects.contains(user(r))));

    let outcome = erase(&table, &["u-07", "u-13"]).execute().await.unwrap();
    assert_eq!(outcome.read_version, 4);
    assert_eq!(outcome.commit, Some(5), "{outcome:?}");
    assert!(!outcome.has_failures(), "{outcome:?}");
    assert!(!outcome.files_purged.is_empty());
    assert!(outcome.snapshots_expired > 0);
    let expected_removed = before.iter().filter(|r| subjects.contains(user(r))).count();
    assert_eq!(outcome.metrics.rows_removed, expected_removed as u64);

    // The current table: no subject row, every other row as it was, same schema/partitions.
    let after = rows(&table, None).unwrap();
    let kept: Vec<Value> = before
        .iter()
        .filter(|r| !subjects.contains(user(r)))
        .cloned()
        .collect();
    assert_eq!(after, kept);
    assert_eq!(py(&["schema", table.to_str().unwrap()]).unwrap(), schema);

    // No Parquet file under the table root holds a subject row.
    for (path, hits) in subject_rows_on_disk(&table, &subjects) {
        assert_eq!(hits, 0, "{} holds {hits} subject rows", path.display());
    }

    // Time travel: every older version either fails or shows no subject row.
    let mut unreadable = 0;
    for version in 0..=4 {
        match rows(&table, Some(version)) {
            Ok(old) => assert!(
                old.iter().all(|r| !subjects.contains(user(r))),
                "version {version} still shows subject rows"
            ),
            Err(_) => unreadable += 1,
        }
    }
    assert!(unreadable > 0);

    // The Delta commit: DELETE by lethe, removes and adds, no subject id in it.
    let commit =
        std::fs::read_to_string(table.join("_delta_log/00000000000000000005.json")).unwrap();
    let actions: Vec<Value> = commit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(actions[0]["commitInfo"]["operation"], "DELETE");
    assert!(
        actions[0]["commitInfo"]["engineInfo"]
            .as_str()
            .unwrap()
            .starts_with("lethe/")
    );
    assert!(actions.iter().any(|a| a.get("remove").is_some()));
    for add in actions.iter().filter_map(|a| a.get("add")) {
        assert!(add["path"].as_str().unwrap().contains("-lethe-"));
        let stats: Value = serde_json::from_str(add["stats"].as_str().unwrap()).unwrap();
        assert!(stats["numRecords"].as_u64().unwrap() > 0);
        assert!(stats["minValues"]["user_id"].is_string());
        assert!(stats["nullCount"]["notes"].is_u64());
    }
    assert!(!commit.contains("u-07") && !commit.contains("u-13"));

    // deltalake appends afterwards and reads its append.
    py(&["append", table.to_str().unwrap()]).unwrap();
    let appended = rows(&table, None).unwrap();
    assert_eq!(appended.len(), kept.len() + 2);

    // A second run finds nothing and writes nothing.
    let again = erase(&table, &["u-07", "u-13"]).execute().await.unwrap();
    assert_eq!(again.commit, None);
    assert_eq!(again.metrics.rows_removed, 0);
}

#[tokio::test]
async fn new_files_of_a_run_that_never_committed_are_removed_by_the_next_run() {
    let Some((_dir, table)) = fixture() else {
        return;
    };
    let before = rows(&table, None).unwrap();
    // What a crash between the rewrite and the commit leaves: a complete new file, named with
    // Lethe's marker, that no action of the log names.
    let folder = table.join("date=2025-01-07/region=EU");
    let original = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
        .unwrap()
        .path();
    let orphan = folder.join(format!(
        "part-00000-x-c000.snappy-lethe-{}.parquet",
        "5b1c3a4e-8f0a-4d3c-9a7e-0c1d2e3f4a5b"
    ));
    std::fs::copy(&original, &orphan).unwrap();
    assert_eq!(
        rows(&table, None).unwrap(),
        before,
        "the table ignores the orphan"
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    let outcome = erase(&table, &["u-30"]).execute().await.unwrap();
    assert_eq!(outcome.orphans_removed, 1);
    assert!(!orphan.exists());
    assert!(outcome.commit.is_some());
    let after = rows(&table, None).unwrap();
    assert_eq!(
        after,
        before
            .iter()
            .filter(|r| user(r) != "u-30")
            .cloned()
            .collect::<Vec<_>>()
    );
}

/// A one-file table with this protocol / configuration / add-action extras, by hand.
fn hand_made_table(
    protocol: Value,
    configuration: Value,
    schema_metadata: bool,
    add_extra: Value,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    hand_made_table_in(
        dir.path(),
        &["u-1", "u-2"],
        protocol,
        configuration,
        schema_metadata,
        add_extra,
    );
    dir
}

/// [`hand_made_table`] in `dir`, its one file holding `ids` (in order).
fn hand_made_table_in(
    dir: &Path,
    ids: &[&str],
    protocol: Value,
    configuration: Value,
    schema_metadata: bool,
    add_extra: Value,
) {
    use arrow_array::RecordBatch;
    use std::sync::Arc;
    let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "user_id",
        arrow_schema::DataType::Utf8,
        true,
    )]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(StringArray::from(ids.to_vec()))],
    )
    .unwrap();
    let file = std::fs::File::create(dir.join("part-0.parquet")).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let size = std::fs::metadata(dir.join("part-0.parquet")).unwrap().len();
    let (min, max) = (ids.iter().min().unwrap(), ids.iter().max().unwrap());
    let field_metadata = if schema_metadata {
        serde_json::json!({"delta.columnMapping.id": 1, "delta.columnMapping.physicalName": "user_id"})
    } else {
        serde_json::json!({})
    };
    let schema_string = serde_json::json!({"type": "struct", "fields": [
        {"name": "user_id", "type": "string", "nullable": true, "metadata": field_metadata}
    ]})
    .to_string();
    let mut add = serde_json::json!({"path": "part-0.parquet", "partitionValues": {}, "size": size,
        "modificationTime": 1, "dataChange": true,
        "stats": serde_json::json!({"numRecords": ids.len(), "minValues": {"user_id": min},
            "maxValues": {"user_id": max}, "nullCount": {"user_id": 0}}).to_string()});
    if let (Some(add), Some(extra)) = (add.as_object_mut(), add_extra.as_object()) {
        add.extend(extra.clone());
    }
    let lines = [
        serde_json::json!({"commitInfo": {"timestamp": 1, "operation": "WRITE"}}),
        serde_json::json!({"protocol": protocol}),
        serde_json::json!({"metaData": {"id": "a9b0d5b5-3f1e-4c5a-9d58-1d7b6a0e7f10", "format": {"provider": "parquet", "options": {}},
            "schemaString": schema_string, "partitionColumns": [], "configuration": configuration, "createdTime": 1}}),
        serde_json::json!({"add": add}),
    ];
    std::fs::create_dir(dir.join("_delta_log")).unwrap();
    std::fs::write(
        dir.join("_delta_log/00000000000000000000.json"),
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

/// Every file under `root` with its bytes.
fn tree(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn tables_with_features_lethe_cannot_honour_are_refused_and_left_as_they_were() {
    let cases = [
        (
            "columnMapping",
            serde_json::json!({"minReaderVersion": 3, "minWriterVersion": 7,
                "readerFeatures": ["columnMapping"], "writerFeatures": ["columnMapping"]}),
            serde_json::json!({"delta.columnMapping.mode": "name", "delta.columnMapping.maxColumnId": "1"}),
            true,
            serde_json::json!({}),
        ),
        (
            "rowTracking",
            serde_json::json!({"minReaderVersion": 1, "minWriterVersion": 7,
                "writerFeatures": ["rowTracking", "domainMetadata"]}),
            serde_json::json!({"delta.enableRowTracking": "true"}),
            false,
            serde_json::json!({"baseRowId": 0, "defaultRowCommitVersion": 0}),
        ),
        (
            "aFeatureFromTheFuture",
            serde_json::json!({"minReaderVersion": 1, "minWriterVersion": 7,
                "writerFeatures": ["aFeatureFromTheFuture"]}),
            serde_json::json!({}),
            false,
            serde_json::json!({}),
        ),
    ];
    for (feature, protocol, configuration, column_mapping, extra) in cases {
        let dir = hand_made_table(protocol, configuration, column_mapping, extra);
        let before = tree(dir.path());
        let err = erase(dir.path(), &["u-1"]).execute().await.unwrap_err();
        match &err {
            LakeError::TableFeature { feature: named, .. } => {
                assert_eq!(named, feature, "{err}")
            }
            other => panic!("{feature}: expected a refusal naming the feature, got {other}"),
        }
        assert!(err.to_string().contains(feature));
        assert_eq!(tree(dir.path()), before, "{feature}: the table changed");
    }
}

/// The `user_id`s of the Delta table at `table`, sorted, as DuckDB's own `delta` reader reads
/// them (`tests/fixtures/duckdb_tables.py`, run by the Python of
/// `LETHE_TEST_DUCKDB_TABLES_PYTHON`, which `.ci/run` sets); `None` when unset off CI.
fn duckdb_users(table: &Path) -> Option<Vec<String>> {
    let Some(python) = std::env::var_os("LETHE_TEST_DUCKDB_TABLES_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "LETHE_TEST_DUCKDB_TABLES_PYTHON is not set (.ci/run sets it)"
        );
        println!("skipped: DuckDB's delta reader (LETHE_TEST_DUCKDB_TABLES_PYTHON unset)");
        return None;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/duckdb_tables.py");
    let out = Command::new(python)
        .arg(script)
        .args(["delta", table.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "duckdb_tables.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| user(&serde_json::from_str(l).unwrap()).to_string())
            .collect(),
    )
}

/// A deletion vector deleting `rows` of a file, written with the kernel's writer beside the
/// table in `dir`; returns its descriptor (storage type `p`: an absolute path).
fn deletion_vector(dir: &Path, rows: &[u64]) -> Value {
    use delta_kernel::actions::deletion_vector_writer::{
        KernelDeletionVector, StreamingDeletionVectorWriter,
    };
    let mut dv = KernelDeletionVector::new();
    dv.add_deleted_row_indexes(rows.iter().copied());
    let mut bytes = Vec::new();
    let mut writer = StreamingDeletionVectorWriter::new(&mut bytes);
    let written = writer.write_deletion_vector(dv).unwrap();
    writer.finalize().unwrap();
    let path = dir.join("deletion_vector_0.bin");
    std::fs::write(&path, &bytes).unwrap();
    serde_json::json!({"storageType": "p",
        "pathOrInlineDv": url::Url::from_file_path(&path).unwrap().to_string(),
        "offset": written.offset, "sizeInBytes": written.size_in_bytes,
        "cardinality": written.cardinality})
}

#[tokio::test]
async fn rows_a_deletion_vector_deleted_stay_deleted_after_an_erasure() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t");
    std::fs::create_dir(&table).unwrap();
    // Rows 2 (u-3) and 4 (u-4) are deleted by the deletion vector.
    let dv = deletion_vector(dir.path(), &[2, 4]);
    hand_made_table_in(
        &table,
        &["u-1", "u-2", "u-3", "u-1", "u-4", "u-5"],
        serde_json::json!({"minReaderVersion": 3, "minWriterVersion": 7,
            "readerFeatures": ["deletionVectors"], "writerFeatures": ["deletionVectors"]}),
        serde_json::json!({"delta.enableDeletionVectors": "true"}),
        false,
        serde_json::json!({"deletionVector": dv}),
    );
    // DuckDB's `delta_scan` applies the deletion vector (the deltalake Python package does
    // not read tables with deletion vectors): these are the table's rows.
    let before = duckdb_users(&table);
    if let Some(before) = &before {
        assert_eq!(before, &["u-1", "u-1", "u-2", "u-5"]);
    }
    // An export of the snapshot (access, portability) leaves the deleted rows out: u-3's
    // only row is deleted, u-1's two rows are live.
    let handle = lethe_core::lake::table::Table::Delta(
        DeltaTable::new(LakeRoot::parse(table.to_str().unwrap()).unwrap()).unwrap(),
    );
    let live = handle.live_files(true).await.unwrap();
    assert_eq!(live.deleted.len(), 1);
    for (subject, rows) in [("u-1", 2), ("u-3", 0), ("u-4", 0), ("u-5", 1)] {
        let found = lethe_core::lake::collect_subject_rows_in(
            &live.root,
            live.files.clone(),
            &["user_id".to_string()],
            subject,
            None,
            &live.deleted,
        )
        .await
        .unwrap();
        assert_eq!(found.rows, rows, "{subject}");
    }
    let outcome = erase(&table, &["u-1"]).execute().await.unwrap();
    assert_eq!(outcome.commit, Some(1), "{outcome:?}");
    if before.is_some() {
        assert_eq!(
            duckdb_users(&table).unwrap(),
            ["u-2", "u-5"],
            "DuckDB reads the rows that were live, without the subject's"
        );
    }
    let file = &outcome.files[0];
    assert_eq!(file.rows_before, 6);
    assert_eq!(file.rows_removed, 2, "the subject's two rows");
    assert_eq!(
        file.rows_already_deleted, 2,
        "the deletion vector's two rows"
    );

    // The commit removes the file *with* its deletion vector (a file is its path and its
    // deletion vector), and adds a file without one.
    let log = std::fs::read_to_string(table.join("_delta_log/00000000000000000001.json")).unwrap();
    let actions: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let remove = actions.iter().find_map(|a| a.get("remove")).unwrap();
    assert_eq!(remove["path"], "part-0.parquet");
    assert_eq!(remove["deletionVector"], dv);
    let add = actions.iter().find_map(|a| a.get("add")).unwrap();
    assert!(add.get("deletionVector").is_none_or(Value::is_null));

    // The new file holds exactly the rows that were live and not the subject's.
    let new_file = table.join(add["path"].as_str().unwrap());
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&new_file).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        ids.extend(col.iter().map(|v| v.unwrap().to_string()));
    }
    assert_eq!(ids, ["u-2", "u-5"]);
    // The replaced file is purged, and the current snapshot reads the same two rows.
    assert!(!table.join("part-0.parquet").exists());
    let live = handle.live_files(true).await.unwrap();
    assert_eq!(live.files.len(), 1);
    assert!(live.deleted.is_empty(), "no deletion vector is left");
}

/// Appends with deltalake (two rows) right before Lethe's first commit, as a concurrent
/// writer would between Lethe's plan and its commit.
struct AppendBeforeCommit {
    table: PathBuf,
    done: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl lethe_core::lake::CommitGuard for AppendBeforeCommit {
    async fn may_commit(&self, file: &str) -> Result<(), String> {
        if file == "_delta_log" && !self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let table = self.table.clone();
            tokio::task::spawn_blocking(move || py(&["append", table.to_str().unwrap()]))
                .await
                .unwrap()?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_concurrent_append_between_plan_and_commit_is_kept_and_the_commit_retried() {
    let Some((_dir, table)) = fixture() else {
        return;
    };
    let before = rows(&table, None).unwrap();
    let guard = std::sync::Arc::new(AppendBeforeCommit {
        table: table.clone(),
        done: std::sync::atomic::AtomicBool::new(false),
    });
    let outcome = erase(&table, &["u-07"])
        .commit_guard(guard)
        .execute()
        .await
        .unwrap();
    // The append took the version Lethe planned to write; Lethe read the log again and
    // committed the next one.
    assert_eq!(outcome.commit_attempts, 2, "{outcome:?}");
    assert_eq!(
        outcome.commit,
        Some(outcome.read_version + 2),
        "{outcome:?}"
    );
    let after = rows(&table, None).unwrap();
    let kept = before.iter().filter(|r| user(r) != "u-07").count();
    assert_eq!(after.len(), kept + 2, "the appended rows are kept");
    assert!(after.iter().all(|r| user(r) != "u-07"));
}

#[tokio::test]
async fn a_folder_without_a_delta_log_is_not_a_delta_table() {
    let dir = tempfile::tempdir().unwrap();
    let err = erase(dir.path(), &["u-1"]).execute().await.unwrap_err();
    assert!(matches!(err, LakeError::Table { .. }), "{err}");
}
