//! `lethe-worker ingest`, `compact` and `locate --dataset`, run as the real binary against a
//! deployment's SQLite database and a local lake.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use lethe_core::audit::NewAuditEntry;
use lethe_core::store::{NewDataset, Store};
use secrecy::SecretString;
use serde_json::{Value, json};

fn worker(dir: &Path, db_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lethe-worker"))
        .args(args)
        .env("LETHE_CONFIG", dir.join("none.toml"))
        .env("LETHE__DATABASE__URL", db_url)
        .env("LETHE__STORAGE__DATA_DIR", dir)
        .env("LETHE__LOG__FILTER", "warn")
        .output()
        .expect("lethe-worker runs")
}

fn summary(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no stdout; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(last).unwrap()
}

fn parquet_count(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            n += parquet_count(&p);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            n += 1;
        }
    }
    n
}

fn rows(from: usize, to: usize) -> String {
    (from..to)
        .map(|i| {
            format!(
                "{}\n",
                json!({"event_id": format!("e-{i}"), "user_id": format!("u-{}", i % 5),
                       "ts": "2025-03-01T08:00:00Z", "region": "EU",
                       "email": format!("u-{}@example.com", i % 5)})
            )
        })
        .collect()
}

#[tokio::test]
async fn ingest_compact_and_locate_a_registered_dataset_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("lethe.db").display());
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    let store = Arc::new(
        Store::connect(&SecretString::from(db_url.clone()), 2)
            .await
            .unwrap(),
    );
    let schema = serde_json::from_value(json!({
        "subject_columns": ["user_id"],
        "columns": [
            {"name": "event_id", "type": "string"},
            {"name": "user_id", "type": "string"},
            {"name": "ts", "type": "timestamp"},
            {"name": "region", "type": "string"},
            {"name": "email", "type": "string", "pii": "encrypt"}
        ],
        "partition_by": [{"name": "date", "source": "ts", "transform": "day"},
                         {"name": "region", "source": "region"}]
    }))
    .unwrap();
    store
        .create_dataset(
            NewDataset {
                name: "events".into(),
                root_url: lake.display().to_string(),
                subject_column: "user_id".into(),
                partition_columns: vec!["date".into(), "region".into()],
                created_by: "test".into(),
                schema: Some(schema),
                format: Default::default(),
                iceberg: None,
            },
            NewAuditEntry::new("test", "dataset.registered"),
        )
        .await
        .unwrap();
    drop(store);

    for (i, range) in [(0, 20), (20, 40)].into_iter().enumerate() {
        let input = dir.path().join(format!("batch-{i}.jsonl"));
        std::fs::write(&input, rows(range.0, range.1)).unwrap();
        let out = worker(
            dir.path(),
            &db_url,
            &[
                "ingest",
                "--dataset",
                "events",
                "--input",
                input.to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(summary(&out)["rows_written"], 20);
    }
    assert_eq!(parquet_count(&lake), 2);

    // A bad row: exit code 2, nothing written.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        rows(0, 3).replace("2025-03-01T08:00:00Z", "yesterday"),
    )
    .unwrap();
    let out = worker(
        dir.path(),
        &db_url,
        &[
            "ingest",
            "--dataset",
            "events",
            "--input",
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("row 1, column ts"), "{stderr}");
    assert_eq!(parquet_count(&lake), 2);

    // An unknown dataset: exit code 2.
    let out = worker(dir.path(), &db_url, &["compact", "--dataset", "nope"]);
    assert_eq!(out.status.code(), Some(2));

    let out = worker(dir.path(), &db_url, &["compact", "--dataset", "events"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let compacted = summary(&out);
    assert_eq!(
        (
            compacted["files_in"].as_u64(),
            compacted["files_out"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(parquet_count(&lake), 1);

    let out = worker(
        dir.path(),
        &db_url,
        &[
            "locate",
            "--dataset",
            "events",
            "--subject",
            "u-3",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = summary(&out);
    assert_eq!(found["rows"], 8);
    assert_eq!(found["metrics"]["files_answered_by_index"], 1, "{found}");
    assert_eq!(found["metrics"]["files_scanned"], 0, "the index answered");
}
