//! Erasure from an Apache Iceberg table through a REST catalog: a small in-test server
//! implementing the endpoints Lethe uses (`GET /v1/config`, load table, commit table with
//! `assert-table-uuid` / `assert-ref-snapshot-id` requirements and `add-snapshot`,
//! `set-snapshot-ref`, `remove-snapshots`, `remove-snapshot-ref` updates), backed by the SQL
//! catalog of a pyiceberg fixture. Skipped like `iceberg.rs` when pyiceberg is missing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use lethe_core::lake::table::iceberg::{Catalog, Change, IcebergErase, IcebergTable, SqlCatalog};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::iceberg::{AppendBeforeCommit, fixture, rows, snapshots, subject_rows_on_disk, user};

/// What the server saw.
#[derive(Default)]
struct Seen {
    commits: AtomicUsize,
    conflicts: AtomicUsize,
}

/// Starts the server for the fixture in `dir`; returns its base URI.
async fn serve(dir: PathBuf, seen: Arc<Seen>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (dir, seen) = (dir.clone(), Arc::clone(&seen));
            tokio::spawn(async move { handle(stream, &dir, &seen).await });
        }
    });
    format!("http://{addr}")
}

async fn read_request(stream: &mut TcpStream) -> Option<(String, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut first = head.lines().next()?.split_whitespace();
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    Some((method, path, buf[head_end..].to_vec()))
}

async fn handle(mut stream: TcpStream, dir: &Path, seen: &Seen) {
    let Some((method, path, body)) = read_request(&mut stream).await else {
        return;
    };
    let (status, answer) = route(&method, &path, &body, dir, seen).await;
    let text = answer.to_string();
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn route(method: &str, path: &str, body: &[u8], dir: &Path, seen: &Seen) -> (u16, Value) {
    if path.starts_with("/v1/config") {
        return (
            200,
            json!({"defaults": {}, "overrides": {"prefix": "lethe"}}),
        );
    }
    let Some(rest) = path.strip_prefix("/v1/lethe/namespaces/") else {
        return (
            404,
            json!({"error": {"message": "no such route", "code": 404}}),
        );
    };
    let Some((ns, table)) = rest.split_once("/tables/") else {
        return (
            404,
            json!({"error": {"message": "no such route", "code": 404}}),
        );
    };
    let ns = ns.replace("%1F", ".");
    let uri = format!("sqlite://{}/catalog.db", dir.display());
    let catalog = SqlCatalog::connect(&uri, "lethe").await.unwrap();
    let handle = IcebergTable::new(catalog, &format!("{ns}.{table}")).unwrap();
    let Ok(base) = handle.load().await else {
        return (
            404,
            json!({"error": {"message": "no such table", "code": 404}}),
        );
    };
    let as_json = |m: &lethe_core::lake::table::iceberg::TableMetadata| -> Value {
        serde_json::from_slice(&m.to_bytes()).unwrap()
    };
    if method == "GET" {
        return (
            200,
            json!({"metadata-location": base.metadata_location, "metadata": as_json(&base.metadata)}),
        );
    }
    let request: Value = serde_json::from_slice(body).unwrap();
    for r in request["requirements"].as_array().unwrap() {
        let holds = match r["type"].as_str().unwrap() {
            "assert-table-uuid" => base.metadata.table_uuid() == r["uuid"].as_str(),
            "assert-ref-snapshot-id" => {
                base.metadata.current_snapshot_id() == r["snapshot-id"].as_i64()
            }
            other => panic!("requirement {other} not served"),
        };
        if !holds {
            seen.conflicts.fetch_add(1, Ordering::SeqCst);
            return (
                409,
                json!({"error": {"message": "requirement failed", "code": 409}}),
            );
        }
    }
    let now = chrono::Utc::now().timestamp_millis();
    let mut next = base.metadata.clone();
    let mut expired = BTreeSet::new();
    for u in request["updates"].as_array().unwrap() {
        match u["action"].as_str().unwrap() {
            "add-snapshot" => {
                next = next.with_snapshot(u["snapshot"].clone(), &base.metadata_location, now)
            }
            "set-snapshot-ref" => {
                assert_eq!(u["ref-name"], "main");
                assert_eq!(u["snapshot-id"], next.current_snapshot_id().unwrap());
            }
            "remove-snapshots" => expired.extend(
                u["snapshot-ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap()),
            ),
            "remove-snapshot-ref" => {}
            other => panic!("update {other} not served"),
        }
    }
    if !expired.is_empty() {
        next = next
            .without_snapshots(&expired, &base.metadata_location, now)
            .0;
    }
    let ignored = Change::Expire {
        ids: vec![],
        refs: vec![],
    };
    match handle.commit(&base, &next, &ignored).await.unwrap() {
        Some(location) => {
            seen.commits.fetch_add(1, Ordering::SeqCst);
            (
                200,
                json!({"metadata-location": location, "metadata": as_json(&next)}),
            )
        }
        None => (409, json!({"error": {"message": "lost", "code": 409}})),
    }
}

async fn rest_erase(base: &str, subjects: &[&str]) -> IcebergErase {
    let catalog = Catalog::connect(base, "lethe").await.unwrap();
    let table = IcebergTable::of(catalog, "default.events").unwrap();
    IcebergErase::new(table, "user_id").subjects(subjects.iter().copied())
}

#[tokio::test]
async fn an_erasure_through_a_rest_catalog_commits_expires_and_purges() {
    let Some(dir) = fixture("2") else {
        return;
    };
    let dir = dir.path();
    let seen = Arc::new(Seen::default());
    let base = serve(dir.to_path_buf(), Arc::clone(&seen)).await;
    let subjects: BTreeSet<String> = ["u-07".to_string()].into();
    let before = rows(dir, None).unwrap();

    let outcome = rest_erase(&base, &["u-07"]).await.execute().await.unwrap();
    assert!(outcome.commit.is_some());
    assert!(outcome.snapshots_expired > 0);
    assert_eq!(
        seen.commits.load(Ordering::SeqCst),
        2,
        "the overwrite and the expiry"
    );
    assert_eq!(snapshots(dir)["current"], outcome.commit.unwrap());
    let after = rows(dir, None).unwrap();
    let kept: Vec<Value> = before.into_iter().filter(|r| user(r) != "u-07").collect();
    assert_eq!(after, kept);
    for (path, hits) in subject_rows_on_disk(dir, &subjects) {
        assert_eq!(hits, 0, "{} holds {hits} subject rows", path.display());
    }
}

#[tokio::test]
async fn a_rest_catalogs_conflict_is_retried_without_losing_the_append() {
    let Some(dir) = fixture("2") else {
        return;
    };
    let dir = dir.path();
    let seen = Arc::new(Seen::default());
    let base = serve(dir.to_path_buf(), Arc::clone(&seen)).await;
    let before = rows(dir, None).unwrap();
    let guard = Arc::new(AppendBeforeCommit {
        dir: dir.to_path_buf(),
        done: AtomicBool::new(false),
    });
    let outcome = rest_erase(&base, &["u-07"])
        .await
        .commit_guard(guard)
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome.commit_attempts, 2);
    assert_eq!(seen.conflicts.load(Ordering::SeqCst), 1);
    let kept = before.iter().filter(|r| user(r) != "u-07").count();
    assert_eq!(rows(dir, None).unwrap().len(), kept + 2);
}

#[tokio::test]
async fn a_table_the_rest_catalog_does_not_have_is_an_error_naming_it() {
    let Some(dir) = fixture("2") else {
        return;
    };
    let seen = Arc::new(Seen::default());
    let base = serve(dir.path().to_path_buf(), seen).await;
    let catalog = Catalog::connect(&base, "lethe").await.unwrap();
    let table = IcebergTable::of(catalog, "default.nope").unwrap();
    let err = table.load().await.unwrap_err();
    assert!(err.to_string().contains("default.nope"), "{err}");
}
