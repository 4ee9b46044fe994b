//! Erasure from Apache Iceberg tables written by pyiceberg's `SqlCatalog` on SQLite
//! (`tests/fixtures/iceberg/make_tables.py`, generated into a temporary folder): one
//! `overwrite` commit, the expiry of the snapshots that could still read the rows, the purge,
//! and the table read back by pyiceberg itself (current and every remaining snapshot).
//! Skipped (with a message) only when pyiceberg is missing and `CI` is not set; `.ci/run`
//! installs it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_array::{Array, RecordBatchReader, StringArray};
use lethe_core::lake::table::iceberg::{IcebergErase, IcebergTable, SqlCatalog};
use lethe_core::lake::{CommitGuard, LakeError};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/iceberg/make_tables.py")
}

/// Runs the fixture script; `Err(stderr)` when it fails.
pub(crate) fn py(args: &[&str]) -> Result<String, String> {
    let out = Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .map_err(|e| format!("python3 not found: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// A fresh fixture (catalog and warehouse in a temporary folder), or `None` (skip) when
/// pyiceberg is missing off CI.
pub(crate) fn fixture(version: &str) -> Option<tempfile::TempDir> {
    let dir = tempfile::tempdir().unwrap();
    match py(&["make", dir.path().to_str().unwrap(), "--version", version]) {
        Ok(_) => Some(dir),
        Err(e)
            if std::env::var_os("CI").is_none()
                && (e.contains("No module named 'pyiceberg'")
                    || e.contains("python3 not found")) =>
        {
            println!(
                "skipped: pyiceberg is not installed (pip install 'pyiceberg[sql-sqlite,pyarrow]')"
            );
            None
        }
        Err(e) => panic!("make_tables.py failed: {e}"),
    }
}

/// The table's rows (of `snapshot`) as read by pyiceberg, sorted by event id.
pub(crate) fn rows(dir: &Path, snapshot: Option<i64>) -> Result<Vec<Value>, String> {
    let s = snapshot.map(|s| s.to_string());
    let mut args = vec!["read", dir.to_str().unwrap()];
    if let Some(s) = &s {
        args.push(s);
    }
    Ok(py(&args)?
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect())
}

pub(crate) fn snapshots(dir: &Path) -> Value {
    serde_json::from_str(&py(&["snapshots", dir.to_str().unwrap()]).unwrap()).unwrap()
}

pub(crate) fn user(row: &Value) -> &str {
    row["user_id"].as_str().unwrap_or_default()
}

/// Every Parquet file under `root` with a `user_id` column, and the subjects' rows in it.
pub(crate) fn subject_rows_on_disk(
    root: &Path,
    subjects: &BTreeSet<String>,
) -> Vec<(PathBuf, usize)> {
    let mut out = Vec::new();
    for (path, _) in tree(root) {
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
            let ids = col.as_any().downcast_ref::<StringArray>().unwrap();
            hits += (0..ids.len())
                .filter(|&i| ids.is_valid(i) && subjects.contains(ids.value(i)))
                .count();
        }
        out.push((path, hits));
    }
    out
}

/// Every file under `root` with its bytes, sorted.
pub(crate) fn tree(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
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

async fn erase(dir: &Path, subjects: &[&str]) -> IcebergErase {
    let uri = format!("sqlite://{}/catalog.db", dir.display());
    let catalog = SqlCatalog::connect(&uri, "lethe").await.unwrap();
    let table = IcebergTable::new(catalog, "default.events").unwrap();
    IcebergErase::new(table, "user_id").subjects(subjects.iter().copied())
}

async fn erase_and_check(version: &str) {
    let Some(dir) = fixture(version) else {
        return;
    };
    let dir = dir.path();
    let subjects: BTreeSet<String> = ["u-07", "u-13"].map(String::from).into();
    let before = rows(dir, None).unwrap();
    let schema = py(&["schema", dir.to_str().unwrap()]).unwrap();
    let snaps_before = snapshots(dir);
    assert_eq!(snaps_before["snapshots"].as_array().unwrap().len(), 4);
    assert!(before.iter().any(|r| subjects.contains(user(r))));

    let outcome = erase(dir, &["u-07", "u-13"]).await.execute().await.unwrap();
    assert!(!outcome.has_failures(), "{outcome:?}");
    assert_eq!(outcome.commit_attempts, 1);
    let commit = outcome.commit.expect("a commit");
    assert!(!outcome.files_purged.is_empty());
    assert!(outcome.snapshots_expired > 0, "{outcome:?}");
    let expected_removed = before.iter().filter(|r| subjects.contains(user(r))).count();
    assert_eq!(outcome.metrics.rows_removed, expected_removed as u64);

    // The current table: no subject row, every other row as it was, same schema and spec.
    let after = rows(dir, None).unwrap();
    let kept: Vec<Value> = before
        .iter()
        .filter(|r| !subjects.contains(user(r)))
        .cloned()
        .collect();
    assert_eq!(after, kept);
    assert_eq!(py(&["schema", dir.to_str().unwrap()]).unwrap(), schema);
    let snaps = snapshots(dir);
    assert_eq!(snaps["current"], commit);

    // Every snapshot still listed reads no subject row; the others were expired.
    let listed: Vec<i64> = snaps["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_i64().unwrap())
        .collect();
    assert_eq!(
        listed.len() as u64,
        4 + 1 - outcome.snapshots_expired,
        "{snaps}"
    );
    for id in &listed {
        let old = rows(dir, Some(*id)).unwrap();
        assert!(
            old.iter().all(|r| !subjects.contains(user(r))),
            "snapshot {id} still shows subject rows"
        );
    }

    // No Parquet file under the table location holds a subject row.
    for (path, hits) in subject_rows_on_disk(dir, &subjects) {
        assert_eq!(hits, 0, "{} holds {hits} subject rows", path.display());
    }

    // The manifest entries as pyiceberg reads them: the new files ADDED by Lethe's snapshot
    // with its sequence number, their partition tuple, counts and bounds (cut to 16
    // characters, the default metrics mode) from their footers, never a subject's id.
    let entries: Vec<Value> = py(&["entries", dir.to_str().unwrap()])
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let added: Vec<&Value> = entries
        .iter()
        .filter(|e| e["status"] == 1 && e["snapshot_id"] == commit)
        .collect();
    assert_eq!(
        added.len() as u64,
        outcome.metrics.files_rewritten,
        "{entries:?}"
    );
    let live_rows: i64 = entries
        .iter()
        .filter(|e| e["status"] != 2)
        .map(|e| e["record_count"].as_i64().unwrap())
        .sum();
    assert_eq!(live_rows as usize, kept.len());
    for e in &added {
        assert!(e["file_path"].as_str().unwrap().contains("-lethe-"));
        assert!(e["partition"]["date"].is_string(), "{e}");
        assert!(e["null_value_counts"]["7"].is_i64(), "{e}");
        for bounds in [&e["lower_bounds"], &e["upper_bounds"]] {
            let user_bound = hex::decode(bounds["2"].as_str().unwrap()).unwrap();
            assert!(!subjects.contains(&String::from_utf8(user_bound).unwrap()));
            let email = hex::decode(bounds["6"].as_str().unwrap()).unwrap();
            assert!(email.len() <= 16, "{e}");
        }
    }

    // No subject id in the new metadata files (manifests' bounds, summaries).
    let current_location = snaps["metadata_location"].as_str().unwrap();
    let metadata = std::fs::read_to_string(current_location.trim_start_matches("file://")).unwrap();
    assert!(metadata.contains("\"operation\":\"overwrite\""));
    assert!(!metadata.contains("u-07") && !metadata.contains("u-13"));

    // pyiceberg appends afterwards and reads everything.
    py(&["append", dir.to_str().unwrap()]).unwrap();
    let appended = rows(dir, None).unwrap();
    assert_eq!(appended.len(), kept.len() + 2);

    // A second run finds nothing and writes nothing.
    let again = erase(dir, &["u-07", "u-13"]).await.execute().await.unwrap();
    assert_eq!(again.commit, None);
    assert_eq!(again.metrics.rows_removed, 0);

    // A second erasure on top of Lethe's manifests and pyiceberg's append.
    let third = erase(dir, &["u-40"]).await.execute().await.unwrap();
    assert!(third.commit.is_some());
    let last = rows(dir, None).unwrap();
    assert_eq!(last.len(), kept.len() + 1);
    assert!(last.iter().all(|r| user(r) != "u-40"));
}

#[tokio::test]
async fn an_erasure_from_a_v2_table_commits_once_expires_purges_and_leaves_a_healthy_table() {
    erase_and_check("2").await;
}

#[tokio::test]
async fn an_erasure_from_a_v1_table_commits_once_expires_purges_and_leaves_a_healthy_table() {
    erase_and_check("1").await;
}

/// The `event_id`s of a Parquet data file, in order.
fn event_ids(file: &Path) -> Vec<(String, String)> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let (events, users) = (col("event_id"), col("user_id"));
        for i in 0..batch.num_rows() {
            out.push((events.value(i).to_string(), users.value(i).to_string()));
        }
    }
    out
}

#[tokio::test]
async fn rows_position_deletes_deleted_stay_deleted_after_an_erasure() {
    deleted_rows_stay_deleted("delete-file").await;
}

#[tokio::test]
async fn rows_equality_deletes_deleted_stay_deleted_after_an_erasure() {
    deleted_rows_stay_deleted("delete-equality").await;
}

/// Commits a delete file (`command` of the fixture script: position or equality) deleting row
/// e-0-0011 (u-11), which shares its data file with rows of u-07, then erases u-07: the new
/// file must hold neither u-07's rows nor the deleted row.
async fn deleted_rows_stay_deleted(command: &str) {
    let Some(dir) = fixture("2") else {
        return;
    };
    let dir = dir.path();
    py(&[command, dir.to_str().unwrap(), "e-0-0011"]).unwrap();
    // An export of the snapshot (access, portability) leaves the deleted row out.
    let uri = format!("sqlite://{}/catalog.db", dir.display());
    let catalog = SqlCatalog::connect(&uri, "lethe").await.unwrap();
    let handle = lethe_core::lake::table::Table::Iceberg(
        IcebergTable::new(catalog, "default.events").unwrap(),
    );
    let export = |live: lethe_core::lake::table::LiveFiles, deleted: bool| async move {
        let none = std::collections::BTreeMap::new();
        lethe_core::lake::collect_subject_rows_in(
            &live.root,
            live.files.clone(),
            &["user_id".to_string()],
            "u-11",
            None,
            if deleted { &live.deleted } else { &none },
        )
        .await
        .unwrap()
        .rows
    };
    let live = handle.live_files(true).await.unwrap();
    assert_eq!(live.deleted.len(), 1, "one data file has a deleted row");
    let (all, kept) = (export(live.clone(), false).await, export(live, true).await);
    assert_eq!(kept, all - 1, "u-11's deleted row is not exported");
    let outcome = erase(dir, &["u-07"]).await.execute().await.unwrap();
    assert!(outcome.commit.is_some());
    let with_delete: Vec<_> = outcome
        .files
        .iter()
        .filter(|f| f.rows_already_deleted > 0)
        .collect();
    assert_eq!(with_delete.len(), 1, "{:?}", outcome.files);
    let file = with_delete[0];
    assert_eq!(file.rows_already_deleted, 1);
    let location = PathBuf::from(
        snapshots(dir)["location"]
            .as_str()
            .unwrap()
            .trim_start_matches("file://"),
    );
    let new_rows = event_ids(&location.join(file.replaced_by.as_ref().unwrap()));
    assert_eq!(
        new_rows.len() as u64,
        file.rows_before - file.rows_removed - 1,
        "the new file holds the old one's rows but the subject's and the deleted one"
    );
    assert!(new_rows.iter().all(|(_, user)| user != "u-07"));
    assert!(
        new_rows.iter().all(|(event, _)| event != "e-0-0011"),
        "the row the position delete file deleted came back"
    );
    assert!(
        new_rows.iter().any(|(_, user)| user == "u-11"),
        "other rows of u-11 are kept"
    );
}

#[tokio::test]
async fn a_format_v3_table_is_refused_and_left_as_it_was() {
    let Some(dir) = fixture("2") else {
        return;
    };
    let dir = dir.path();
    let location = snapshots(dir)["metadata_location"]
        .as_str()
        .unwrap()
        .trim_start_matches("file://")
        .to_string();
    let text = std::fs::read_to_string(&location).unwrap();
    std::fs::write(
        &location,
        text.replace("\"format-version\":2", "\"format-version\":3"),
    )
    .unwrap();
    let warehouse = dir.join("warehouse");
    let before = tree(&warehouse);
    let err = erase(dir, &["u-07"]).await.execute().await.unwrap_err();
    match &err {
        LakeError::TableFeature { feature, .. } => assert_eq!(feature, "format-version 3"),
        other => panic!("expected a refusal naming the feature, got {other}"),
    }
    assert_eq!(tree(&warehouse), before, "the table changed");
}

/// Appends with pyiceberg right before Lethe's first commit: the catalog swap then fails.
pub(crate) struct AppendBeforeCommit {
    pub(crate) dir: PathBuf,
    pub(crate) done: AtomicBool,
}

#[async_trait::async_trait]
impl CommitGuard for AppendBeforeCommit {
    async fn may_commit(&self, file: &str) -> Result<(), String> {
        if file == "metadata" && !self.done.swap(true, Ordering::SeqCst) {
            let dir = self.dir.clone();
            tokio::task::spawn_blocking(move || py(&["append", dir.to_str().unwrap()]))
                .await
                .unwrap()?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_concurrent_append_between_plan_and_commit_is_kept_and_the_commit_retried() {
    let Some(dir) = fixture("2") else {
        return;
    };
    let dir = dir.path();
    let before = rows(dir, None).unwrap();
    let guard = Arc::new(AppendBeforeCommit {
        dir: dir.to_path_buf(),
        done: AtomicBool::new(false),
    });
    let outcome = erase(dir, &["u-07"])
        .await
        .commit_guard(guard)
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome.commit_attempts, 2, "{outcome:?}");
    let after = rows(dir, None).unwrap();
    let kept = before.iter().filter(|r| user(r) != "u-07").count();
    assert_eq!(after.len(), kept + 2, "the appended rows are kept");
    assert!(after.iter().all(|r| user(r) != "u-07"));
}

/// The JDBC catalog's table, as Java's `JdbcCatalog` creates it (pyiceberg's is the same).
const CATALOG_DDL: &str = "CREATE TABLE IF NOT EXISTS iceberg_tables (\
    catalog_name VARCHAR(255) NOT NULL, table_namespace VARCHAR(255) NOT NULL, \
    table_name VARCHAR(255) NOT NULL, metadata_location VARCHAR(1000), \
    previous_metadata_location VARCHAR(1000), \
    PRIMARY KEY (catalog_name, table_namespace, table_name))";

/// Load and compare-and-swap on a catalog database at `uri`.
async fn catalog_contract(uri: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(uri).await.unwrap();
    sqlx::query(CATALOG_DDL).execute(&pool).await.unwrap();
    let name = format!("c{}", uuid::Uuid::new_v4().simple());
    sqlx::query(
        "INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, metadata_location) \
         VALUES ($1, 'a.b', 't', 'file:///w/t/metadata/00000-x.metadata.json')",
    )
    .bind(&name)
    .execute(&pool)
    .await
    .unwrap();
    let catalog = SqlCatalog::connect(uri, &name).await.unwrap();
    let first = catalog.metadata_location("a.b", "t").await.unwrap();
    assert!(first.ends_with("00000-x.metadata.json"));
    assert!(
        catalog
            .swap(
                "a.b",
                "t",
                &first,
                "file:///w/t/metadata/00001-y.metadata.json"
            )
            .await
            .unwrap()
    );
    // A writer that read the old location loses.
    assert!(
        !catalog
            .swap(
                "a.b",
                "t",
                &first,
                "file:///w/t/metadata/00001-z.metadata.json"
            )
            .await
            .unwrap()
    );
    assert!(
        catalog
            .metadata_location("a.b", "t")
            .await
            .unwrap()
            .ends_with("00001-y.metadata.json")
    );
    let previous: (Option<String>,) = sqlx::query_as(
        "SELECT previous_metadata_location FROM iceberg_tables WHERE catalog_name = $1",
    )
    .bind(&name)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(previous.0.as_deref(), Some(first.as_str()));
    assert!(matches!(
        catalog.metadata_location("a.b", "nope").await,
        Err(LakeError::Table { .. })
    ));
    // The table identifier: the namespace may hold dots.
    let table = IcebergTable::new(catalog, "a.b.t").unwrap();
    assert_eq!(table.identifier(), "a.b.t");
}

#[tokio::test]
async fn the_sql_catalog_swaps_only_from_the_location_it_read_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    std::fs::File::create(&path).unwrap();
    catalog_contract(&format!("sqlite://{}", path.display())).await;
}

#[tokio::test]
async fn the_sql_catalog_swaps_only_from_the_location_it_read_on_postgres() {
    match std::env::var("LETHE_TEST_POSTGRES_URL") {
        Ok(uri) => catalog_contract(&uri).await,
        Err(_) => eprintln!("skipped: LETHE_TEST_POSTGRES_URL is not set"),
    }
}

#[tokio::test]
async fn files_of_a_run_that_never_committed_are_removed_by_the_next_run() {
    let Some(dir) = fixture("2") else {
        return;
    };
    let dir = dir.path();
    let before = rows(dir, None).unwrap();
    // What a crash between the rewrite and the catalog swap leaves: a complete new data file
    // and a manifest, named with Lethe's marker, that no snapshot references.
    let folder = dir.join("warehouse/default/events/data/date=2025-01-07/region=EU");
    let original = tree(&folder).into_iter().next().unwrap().0;
    let orphan = folder.join("00000-0-x-lethe-5b1c3a4e-8f0a-4d3c-9a7e-0c1d2e3f4a5b.parquet");
    std::fs::copy(&original, &orphan).unwrap();
    let manifest = dir.join(
        "warehouse/default/events/metadata/5b1c3a4e-8f0a-4d3c-9a7e-0c1d2e3f4a5b-lethe-m0.avro",
    );
    std::fs::write(&manifest, b"Obj\x01").unwrap();
    assert_eq!(rows(dir, None).unwrap(), before, "the table ignores them");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    let outcome = erase(dir, &["u-30"]).await.execute().await.unwrap();
    assert_eq!(outcome.orphans_removed, 2);
    assert!(!orphan.exists() && !manifest.exists());
    assert_eq!(outcome.commit, None, "u-30 has no rows");
    assert_eq!(rows(dir, None).unwrap(), before);
}

#[tokio::test]
async fn rows_a_format_delete_left_in_older_snapshots_are_purged_without_a_commit() {
    let Some(dir) = fixture("2") else {
        return;
    };
    let dir = dir.path();
    let subjects: BTreeSet<String> = ["u-13".to_string()].into();
    // pyiceberg's own delete: the current snapshot no longer reads u-13, every older one does
    // (and so would a run of Lethe interrupted between its commit and its purge).
    py(&["delete-user", dir.to_str().unwrap(), "u-13"]).unwrap();
    let before = rows(dir, None).unwrap();
    assert!(before.iter().all(|r| user(r) != "u-13"));
    let first = snapshots(dir)["snapshots"][0].as_i64().unwrap();
    assert!(
        rows(dir, Some(first))
            .unwrap()
            .iter()
            .any(|r| user(r) == "u-13")
    );

    let outcome = erase(dir, &["u-13"]).await.execute().await.unwrap();
    assert_eq!(outcome.commit, None);
    assert!(outcome.snapshots_expired > 0, "{outcome:?}");
    assert!(!outcome.files_purged.is_empty());
    assert_eq!(rows(dir, None).unwrap(), before);
    for id in snapshots(dir)["snapshots"].as_array().unwrap() {
        let old = rows(dir, id.as_i64()).unwrap();
        assert!(old.iter().all(|r| user(r) != "u-13"), "snapshot {id}");
    }
    for (path, hits) in subject_rows_on_disk(dir, &subjects) {
        assert_eq!(hits, 0, "{} holds {hits} subject rows", path.display());
    }
}

#[tokio::test]
async fn partition_values_and_bounds_spare_files_and_a_file_losing_every_row_is_only_deleted() {
    let Some(dir) = fixture("2") else {
        return;
    };
    let dir = dir.path();
    let before = rows(dir, None).unwrap();

    // No file's bounds of user_id can hold this id: nothing is read, nothing written.
    let none = erase(dir, &["zz-nobody"]).await.execute().await.unwrap();
    assert_eq!(none.metrics.files_scanned, 0, "{:?}", none.metrics);
    assert_eq!(none.commit, None);

    // By an identity partition's source column: only the files of that partition are read,
    // and each loses every row, so the commit deletes them without new files.
    let uri = format!("sqlite://{}/catalog.db", dir.display());
    let catalog = SqlCatalog::connect(&uri, "lethe").await.unwrap();
    let table = IcebergTable::new(catalog, "default.events").unwrap();
    let outcome = IcebergErase::new(table, "region")
        .subjects(["EU"])
        .execute()
        .await
        .unwrap();
    let eu_files = outcome
        .files
        .iter()
        .filter(|f| f.relative.contains("region=EU"))
        .count();
    assert_eq!(
        outcome.metrics.files_scanned as usize, eu_files,
        "{outcome:?}"
    );
    assert_eq!(outcome.metrics.bytes_written, 0);
    assert!(outcome.commit.is_some());
    let after = rows(dir, None).unwrap();
    let us: Vec<Value> = before.into_iter().filter(|r| r["region"] == "US").collect();
    assert_eq!(after, us);
}

#[tokio::test]
async fn a_tag_on_an_expired_snapshot_is_removed_and_a_branch_is_refused() {
    let Some(dir) = fixture("2") else {
        return;
    };
    let dir = dir.path();
    py(&["ref", dir.to_str().unwrap(), "tag", "first-load"]).unwrap();
    let outcome = erase(dir, &["u-07"]).await.execute().await.unwrap();
    assert_eq!(outcome.refs_removed, vec!["first-load".to_string()]);
    assert!(rows(dir, None).unwrap().iter().all(|r| user(r) != "u-07"));

    let Some(other) = fixture("2") else {
        return;
    };
    let other = other.path();
    py(&["ref", other.to_str().unwrap(), "branch", "audit"]).unwrap();
    let warehouse = other.join("warehouse");
    let before = tree(&warehouse);
    let err = erase(other, &["u-07"]).await.execute().await.unwrap_err();
    match &err {
        LakeError::TableFeature {
            feature, reason, ..
        } => {
            assert_eq!(feature, "branches");
            assert!(reason.contains("audit"), "{reason}");
        }
        e => panic!("expected a refusal naming the feature, got {e}"),
    }
    assert_eq!(tree(&warehouse), before, "the table changed");
}

#[tokio::test]
async fn a_v1_manifest_of_an_upgraded_table_with_delete_files_is_refused() {
    let Some(dir) = fixture("1") else {
        return;
    };
    let dir = dir.path();
    py(&["upgrade", dir.to_str().unwrap()]).unwrap();
    py(&["delete-file", dir.to_str().unwrap()]).unwrap();
    let warehouse = dir.join("warehouse");
    let before = tree(&warehouse);
    // u-02's rows are all in one file of the first append, which no delete file applies to,
    // listed by a manifest written in format v1.
    let err = erase(dir, &["u-02"]).await.execute().await.unwrap_err();
    match &err {
        LakeError::TableFeature { feature, .. } => {
            assert_eq!(feature, "v1 manifests with delete files")
        }
        e => panic!("expected a refusal naming the feature, got {e}"),
    }
    assert_eq!(tree(&warehouse), before, "the table changed");
}

/// A data file whose manifest `lower_bounds` / `upper_bounds` leave out a subject's row (here a
/// row planted after pyiceberg wrote the bounds) is skipped by the search, which trusts them;
/// the check after the commit reads every live file and fails the erasure rather than report
/// it done with that row left.
#[tokio::test]
async fn a_row_the_manifest_bounds_hide_fails_the_erasure_instead_of_passing() {
    use arrow_array::{ArrayRef, RecordBatch};
    use parquet::arrow::ArrowWriter;

    let Some(dir) = fixture("2") else {
        return;
    };
    let dir = dir.path();
    // A file of the third append (users u-10 to u-19): its bounds of user_id exclude u-07.
    let planted = tree(dir)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .find(|p| event_ids(p).iter().all(|(_, u)| u.as_str() >= "u-10"))
        .expect("a file of the third append");
    // Its first row now belongs to u-07; the Arrow schema (field ids included) is kept.
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&planted).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    let all = arrow_select::concat::concat_batches(&schema, &batches).unwrap();
    let mut ids: Vec<String> = event_ids(&planted).into_iter().map(|(_, u)| u).collect();
    ids[0] = "u-07".into();
    let mut columns: Vec<ArrayRef> = all.columns().to_vec();
    columns[schema.index_of("user_id").unwrap()] = Arc::new(StringArray::from(ids));
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, Arc::clone(&schema), None).unwrap();
    w.write(&RecordBatch::try_new(schema, columns).unwrap())
        .unwrap();
    w.close().unwrap();
    std::fs::write(&planted, out).unwrap();

    match erase(dir, &["u-07"]).await.execute().await {
        Err(LakeError::NotErased { file, rows, .. }) => {
            assert!(planted.ends_with(&file), "{file} is not {planted:?}");
            assert_eq!(rows, 1);
        }
        other => panic!("the erasure must fail on the hidden row: {other:?}"),
    }
}
