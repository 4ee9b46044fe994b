//! Delta Lake and Apache Iceberg tables as datasets (issue 12): registered by format, located
//! and exported from their current snapshot, erased by one task per table through the
//! format's own commit and purge, with the commit in the request's result, the audit log and
//! the certificate. The tables are written by the formats' own Python libraries
//! (`tests/fixtures/{delta,iceberg}/make_tables.py`), and read back after each commit by those
//! libraries and by DuckDB's `delta` and `iceberg` readers (`tests/fixtures/duckdb_tables.py`);
//! skipped off CI when those are missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow_array::{Array, StringArray};
use lethe_core::config::{IcebergCatalogSettings, IcebergSettings};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Spawn, TestApp, assert_problem, spawn_app_with};

/// Runs `tests/fixtures/<format>/make_tables.py` with `args`; `None` (skip) when the format's
/// Python package is missing off CI.
fn py(format: &str, args: &[&str]) -> Option<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(format)
        .join("make_tables.py");
    for attempt in 1..=3 {
        let out = Command::new("python3").arg(&script).args(args).output();
        let out = match out {
            Ok(out) => out,
            Err(e) if std::env::var_os("CI").is_none() => {
                println!("skipped: python3 not found: {e}");
                return None;
            }
            Err(e) => panic!("python3: {e}"),
        };
        if out.status.success() {
            return Some(String::from_utf8_lossy(&out.stdout).to_string());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if stderr.contains("No module named") && std::env::var_os("CI").is_none() {
            println!("skipped: {stderr}");
            return None;
        }
        // deltalake's runtime may abort at interpreter shutdown on a loaded machine, after
        // the work is done: reads are run again.
        if args[0] == "read" && attempt < 3 && stderr.contains("terminate called") {
            continue;
        }
        panic!("make_tables.py {args:?} failed: {stderr}");
    }
    unreachable!()
}

/// The table's rows as its own library reads them.
fn rows(format: &str, target: &Path) -> Vec<Value> {
    py(format, &["read", target.to_str().unwrap()])
        .expect("the fixture was made, so the library is there")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The table's rows as DuckDB's own `delta` / `iceberg` readers read them
/// (`tests/fixtures/duckdb_tables.py`, run by the Python of `LETHE_TEST_DUCKDB_TABLES_PYTHON`,
/// the environment `.ci/run` makes with the extensions); `None` when that is not set off CI.
fn duckdb_rows(format: &str, target: &Path) -> Option<Vec<Value>> {
    let Some(python) = std::env::var_os("LETHE_TEST_DUCKDB_TABLES_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "LETHE_TEST_DUCKDB_TABLES_PYTHON is not set (.ci/run sets it)"
        );
        println!("skipped: DuckDB's table readers (LETHE_TEST_DUCKDB_TABLES_PYTHON unset)");
        return None;
    };
    let location = match format {
        "iceberg" => {
            let snapshots: Value =
                serde_json::from_str(&py("iceberg", &["snapshots", target.to_str().unwrap()])?)
                    .unwrap();
            snapshots["metadata_location"].as_str().unwrap().to_string()
        }
        _ => target.display().to_string(),
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/duckdb_tables.py");
    let out = Command::new(python)
        .arg(script)
        .args([format, location.as_str()])
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
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

/// DuckDB reads the table as the format's own library does (when DuckDB's readers are there).
fn duckdb_agrees(format: &str, target: &Path, expected: &[Value]) {
    if let Some(read) = duckdb_rows(format, target) {
        assert_eq!(read.len(), expected.len());
        assert!(
            read == expected,
            "DuckDB reads the {format} table differently"
        );
    }
}

fn rows_of(rows: &[Value], user: &str) -> usize {
    rows.iter().filter(|r| r["user_id"] == user).count()
}

/// Every data file under `root` (recursively: the current snapshot's and any other) with the
/// `notes` of its rows of `user`, read with the parquet crate; files without such rows are
/// left out.
fn files_holding(root: &Path, user: &str) -> Vec<(PathBuf, Vec<Option<String>>)> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                // A Delta log's checkpoints are Parquet files too, of actions, not rows.
                if path.file_name().is_none_or(|n| n != "_delta_log") {
                    stack.push(path);
                }
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
            let mut notes = Vec::new();
            for batch in reader {
                let batch = batch.unwrap();
                let text = |name: &str| {
                    let column = arrow_cast::cast(
                        batch.column_by_name(name).unwrap(),
                        &arrow_schema::DataType::Utf8,
                    )
                    .unwrap();
                    let column = column.as_any().downcast_ref::<StringArray>().unwrap();
                    (0..column.len())
                        .map(|i| column.is_valid(i).then(|| column.value(i).to_string()))
                        .collect::<Vec<_>>()
                };
                let (users, row_notes) = (text("user_id"), text("notes"));
                for (u, n) in users.into_iter().zip(row_notes) {
                    if u.as_deref() == Some(user) {
                        notes.push(n);
                    }
                }
            }
            if !notes.is_empty() {
                found.push((path, notes));
            }
        }
    }
    found
}

async fn app_with(iceberg: IcebergSettings) -> TestApp {
    spawn_app_with(Spawn {
        subjects: 4,
        days: 1,
        register_lake: false,
        iceberg,
        ..Spawn::default()
    })
    .await
}

fn catalog_settings(dir: &Path) -> IcebergSettings {
    let mut catalogs = BTreeMap::new();
    catalogs.insert(
        "lake".to_string(),
        IcebergCatalogSettings {
            uri: format!("sqlite:///{}/catalog.db", dir.display()).into(),
            warehouse: Some("lethe".into()),
            token: None,
        },
    );
    IcebergSettings {
        catalogs,
        allow_private_networks: false,
    }
}

/// Files, approves and waits for a request of `kind` by the subject behind `token`.
async fn run(app: &TestApp, token: &str, kind: &str) -> Value {
    let id = app.file_request_ok(token, kind).await;
    approve_and_wait(app, token, &id).await
}

/// Files `body` (it must be accepted), approves it and waits for its end.
async fn file_approve_wait(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app.file_request(token, &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    approve_and_wait(app, token, &id).await
}

async fn approve_and_wait(app: &TestApp, token: &str, id: &str) -> Value {
    let approved = app.approve(&app.admin_token, id).await;
    assert_eq!(approved.status(), StatusCode::OK);
    app.wait_until_final(token, id).await
}

/// Rectification (Art. 16) of `u-08`'s `notes` through the table's commit: every row of the
/// subject has the new value, every other row is as it was, and no file under the table still
/// holds the subject's old rows (the older snapshots that read them are purged). A column the
/// table does not have, or a value its type cannot hold, changes nothing.
async fn rectify(app: &TestApp, format: &str, target: &Path, table_root: &Path, dataset: &str) {
    let user = "u-08";
    let before = rows(format, target);
    let mine = rows_of(&before, user);
    assert!(mine > 0);
    let token = app.subject_token("rectify@example.com", user).await;
    let body = |changes: Value| json!({"type": "rectification", "dataset_id": dataset, "changes": changes});
    let response = app
        .file_request(&token, &body(json!({"nickname": "x"})))
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;
    let response = app
        .file_request(&token, &body(json!({"date": "2025-02-01"})))
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;

    // A value the column's type cannot hold: every file fails, nothing is committed.
    let failed = file_approve_wait(app, &token, body(json!({"calories": "lots"}))).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(rows(format, target), before);

    let done = file_approve_wait(
        app,
        &token,
        body(json!({"notes": "corrected by the subject"})),
    )
    .await;
    assert_eq!(done["status"], "completed", "{done}");
    let result = &done["result"];
    assert_eq!(result["rows_changed"], mine as u64, "{result}");
    let dataset = &result["datasets"][0];
    assert_eq!(dataset["table"]["format"], format, "{result}");
    assert!(dataset["table"]["commit"].is_i64(), "{result}");

    let after = rows(format, target);
    duckdb_agrees(format, target, &after);
    assert_eq!(after.len(), before.len());
    for (old, new) in before.iter().zip(&after) {
        if old["user_id"] == user {
            assert_eq!(new["notes"], "corrected by the subject", "{new}");
            let mut expected = old.clone();
            expected["notes"] = json!("corrected by the subject");
            assert_eq!(new, &expected);
        } else {
            assert_eq!(new, old);
        }
    }
    // Only the new files hold the subject's rows: the old values are gone from storage.
    let holding = files_holding(table_root, user);
    assert_eq!(
        holding.len() as u64,
        dataset["files_rewritten"].as_u64().unwrap(),
        "{result}"
    );
    for (path, notes) in holding {
        assert!(
            notes
                .iter()
                .all(|n| n.as_deref() == Some("corrected by the subject")),
            "{} still holds an old value: {notes:?}",
            path.display()
        );
    }
}

/// Access, then erasure of `user` through the service; the checks every table must pass.
async fn access_and_erase(app: &TestApp, format: &str, target: &Path, table_root: &Path) {
    let user = "u-07";
    let before = rows(format, target);
    let mine = rows_of(&before, user);
    assert!(mine > 0, "the fixture gives {user} rows");
    let token = app.subject_token("tables@example.com", user).await;

    // Access (Art. 15): the subject's rows of the current snapshot, no more, no less.
    let access = run(app, &token, "access").await;
    assert_eq!(access["status"], "completed", "{access}");
    assert_eq!(access["result"]["rows"], mine as u64, "{access}");

    // Erasure (Art. 17): one table task, one commit, the purge.
    let erased = run(app, &token, "erasure").await;
    assert_eq!(erased["status"], "completed", "{erased}");
    let result = &erased["result"];
    assert_eq!(result["rows_removed"], mine as u64, "{result}");
    let dataset = &result["datasets"][0];
    assert_eq!(dataset["dataset"], "events");
    let table = &dataset["table"];
    assert_eq!(table["format"], format, "{result}");
    assert!(table["commit"].is_i64(), "{result}");
    assert!(table["snapshots_expired"].as_u64().unwrap() > 0, "{result}");
    assert!(
        !table["files_purged"].as_array().unwrap().is_empty(),
        "{result}"
    );
    for file in dataset["files"].as_array().unwrap() {
        assert!(file["before"]["size"].is_u64(), "{file}");
        if let Some(new) = file["replaced_by"].as_str() {
            assert_ne!(new, file["file"].as_str().unwrap());
            assert!(file["after"]["size"].is_u64(), "{file}");
        }
    }

    // The table: no row of the subject in the current snapshot, in any file under the table,
    // every other row intact, as the format's own library reads it.
    let after = rows(format, target);
    duckdb_agrees(format, target, &after);
    assert_eq!(rows_of(&after, user), 0);
    let others: Vec<&Value> = before.iter().filter(|r| r["user_id"] != user).collect();
    assert_eq!(after.iter().collect::<Vec<_>>(), others);
    assert_eq!(
        files_holding(table_root, user)
            .into_iter()
            .map(|(p, _)| p)
            .collect::<Vec<_>>(),
        Vec::<PathBuf>::new()
    );

    // The audit log names the commit; the certificate carries it.
    let audit = app
        .audit_export(&app.auditor_token)
        .await
        .text()
        .await
        .unwrap();
    let erased_entry = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["action"] == "file.erased" && e["details"]["table"].is_object())
        .expect("a file.erased entry for the table");
    assert_eq!(erased_entry["details"]["table"]["commit"], table["commit"]);
    let certificate: Value = app
        .client
        .get(app.url(&format!(
            "/v1/requests/{}/certificate",
            erased["id"].as_str().unwrap()
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = &certificate["datasets"][0];
    assert_eq!(listed["format"], format, "{certificate}");
    assert_eq!(listed["table_commit"]["commit"], table["commit"]);
    assert_eq!(
        listed["table_commit"]["files_purged"], table["files_purged"],
        "{certificate}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_table_is_registered_exported_and_erased_through_one_commit_and_a_purge() {
    let dir = tempfile::tempdir().unwrap();
    if py("delta", &["make", dir.path().to_str().unwrap()]).is_none() {
        return;
    }
    let table = dir.path().join("events");
    let app = app_with(IcebergSettings::default()).await;

    // As a Parquet folder it is refused (rewriting a table's files would corrupt it).
    let response = app
        .create_dataset(&json!({"name": "events", "root_url": table.display().to_string(), "subject_column": "user_id"}))
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;
    // A column the table does not have.
    let response = app
        .create_dataset(&json!({"name": "events", "format": "delta", "root_url": table.display().to_string(), "subject_column": "customer"}))
        .await;
    let body = assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;
    assert!(
        body["detail"].as_str().unwrap().contains("customer"),
        "{body}"
    );

    let response = app
        .create_dataset(&json!({"name": "events", "format": "delta", "root_url": format!("file://{}", table.display()), "subject_column": "user_id"}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["format"], "delta");
    assert_eq!(created["partition_columns"], json!(["date", "region"]));

    rectify(
        &app,
        "delta",
        &table,
        &table,
        created["id"].as_str().unwrap(),
    )
    .await;
    access_and_erase(&app, "delta", &table, &table).await;
    // The format's own writer keeps working on the table.
    py("delta", &["append", table.to_str().unwrap()]).unwrap();
    assert_eq!(rows_of(&rows("delta", &table), "u-99"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iceberg_table_of_a_configured_catalog_is_registered_exported_and_erased() {
    let dir = tempfile::tempdir().unwrap();
    if py(
        "iceberg",
        &["make", dir.path().to_str().unwrap(), "--version", "2"],
    )
    .is_none()
    {
        return;
    }
    let app = app_with(catalog_settings(dir.path())).await;

    for (body, code) in [
        // A catalog the configuration does not have.
        (
            json!({"name": "events", "format": "iceberg", "catalog": "glue", "table": "default.events", "subject_column": "user_id"}),
            "validation",
        ),
        // An Iceberg table's root is its location, read from the catalog.
        (
            json!({"name": "events", "format": "iceberg", "catalog": "lake", "table": "default.events", "root_url": "/tmp/x", "subject_column": "user_id"}),
            "validation",
        ),
        // No such table.
        (
            json!({"name": "events", "format": "iceberg", "catalog": "lake", "table": "default.nothing", "subject_column": "user_id"}),
            "table_unusable",
        ),
    ] {
        let response = app.create_dataset(&body).await;
        assert_problem(response, StatusCode::BAD_REQUEST, code).await;
    }
    let response = app
        .create_dataset(&json!({"name": "events", "format": "iceberg", "catalog": "lake", "table": "default.events", "subject_column": "user_id"}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["format"], "iceberg");
    assert_eq!(created["catalog"], "lake");
    assert_eq!(created["table"], "default.events");
    assert_eq!(created["partition_columns"], json!(["date", "region"]));
    let location = created["root_url"].as_str().unwrap().to_string();
    assert!(location.ends_with("events"), "{created}");
    // The catalog's URI is configuration: never in the dataset.
    assert!(!created.to_string().contains("catalog.db"), "{created}");

    let warehouse = dir.path().join("warehouse");
    rectify(
        &app,
        "iceberg",
        dir.path(),
        &warehouse,
        created["id"].as_str().unwrap(),
    )
    .await;
    access_and_erase(&app, "iceberg", dir.path(), &warehouse).await;
    py("iceberg", &["append", dir.path().to_str().unwrap()]).unwrap();
    assert_eq!(rows_of(&rows("iceberg", dir.path()), "u-40"), 1);
}

#[tokio::test]
async fn an_iceberg_catalog_on_a_private_address_is_refused_unless_allowed() {
    let mut catalogs = BTreeMap::new();
    catalogs.insert(
        "internal".to_string(),
        IcebergCatalogSettings {
            uri: "http://127.0.0.1:9/catalog".to_string().into(),
            warehouse: None,
            token: None,
        },
    );
    let app = app_with(IcebergSettings {
        catalogs,
        allow_private_networks: false,
    })
    .await;
    let response = app
        .create_dataset(&json!({"name": "clicks", "format": "iceberg", "catalog": "internal", "table": "web.clicks", "subject_column": "user_id"}))
        .await;
    let body = assert_problem(response, StatusCode::BAD_REQUEST, "root_not_allowed").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("iceberg.allow_private_networks"),
        "{body}"
    );
}
