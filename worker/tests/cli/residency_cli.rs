//! `lethe-worker scan-residency` and `remediate-residency`, run as the real binary against a
//! deployment's SQLite database and one local root per region — including a remediation killed
//! (SIGKILL) right after it copied the misplaced rows, finished by the next run without copying
//! them twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_cast::display::{ArrayFormatter, FormatOptions};
use lethe_core::audit::NewAuditEntry;
use lethe_core::store::{NewDataset, Store};
use secrecy::SecretString;
use serde_json::{Value, json};

fn worker(dir: &Path, db_url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lethe-worker"));
    cmd.args(args)
        .env("LETHE_CONFIG", dir.join("none.toml"))
        .env("LETHE__DATABASE__URL", db_url)
        .env("LETHE__STORAGE__DATA_DIR", dir)
        .env("LETHE__LOG__FILTER", "warn")
        .env_remove("LETHE_FAILPOINT");
    cmd
}

fn run(dir: &Path, db_url: &str, args: &[&str]) -> Output {
    worker(dir, db_url, args)
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

/// Rows per user in the Parquet files under `root` (hidden folders aside).
fn rows_by_user(root: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('_') || name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let file = std::fs::File::open(&p).unwrap();
            for batch in
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap()
            {
                let batch = batch.unwrap();
                let users = batch.column_by_name("user_id").unwrap();
                let format =
                    ArrayFormatter::try_new(users.as_ref(), &FormatOptions::default()).unwrap();
                for i in 0..batch.num_rows() {
                    *out.entry(format.value(i).to_string()).or_default() += 1;
                }
            }
        }
    }
    out
}

fn rows(range: std::ops::Range<usize>, user: &str, region: &str, country: Option<&str>) -> String {
    range
        .map(|i| {
            format!(
                "{}\n",
                json!({"event_id": format!("e-{user}-{i}"), "user_id": user,
                       "ts": "2025-03-01T08:00:00Z", "region": region, "country": country,
                       "email": format!("{user}@example.com")})
            )
        })
        .collect()
}

#[tokio::test]
async fn a_remediation_killed_after_its_copy_is_finished_by_the_next_run_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("lethe.db").display());
    let (home, eu, us) = (
        dir.path().join("home"),
        dir.path().join("eu"),
        dir.path().join("us"),
    );
    for root in [&home, &eu, &us] {
        std::fs::create_dir_all(root).unwrap();
    }
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
            {"name": "country", "type": "string", "nullable": true},
            {"name": "email", "type": "string", "pii": "encrypt"}
        ],
        "partition_by": [{"name": "date", "source": "ts", "transform": "day"},
                         {"name": "region", "source": "region"}],
        "region_column": "region",
        "jurisdiction_column": "country",
        "region_roots": {"EU": eu.display().to_string(), "US": us.display().to_string()}
    }))
    .unwrap();
    store
        .create_dataset(
            NewDataset {
                name: "events".into(),
                root_url: home.display().to_string(),
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

    // Before any policy: u-eu (EU, learned from the country column) has rows in both roots.
    let input = dir.path().join("batch.jsonl");
    std::fs::write(
        &input,
        rows(0..5, "u-eu", "US", Some("EU"))
            + &rows(5..8, "u-eu", "EU", Some("EU"))
            + &rows(8..12, "u-us", "US", None),
    )
    .unwrap();
    let out = run(
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
    store
        .set_residency_policy(
            "EU",
            &["EU".to_string()],
            "test",
            NewAuditEntry::new("test", "residency.policy_set"),
        )
        .await
        .unwrap();

    // The scan reports the five rows; exit code 3.
    let out = run(dir.path(), &db_url, &["scan-residency"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scans = summary(&out);
    assert_eq!(scans[0]["scan"]["status"], "violations");
    assert_eq!(scans[0]["violations"][0]["rows"], 5, "{scans}");
    assert_eq!(scans[0]["violations"][0]["jurisdictions"], json!(["EU"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("5 rows of 1 subjects (EU) stored in US"),
        "{stderr}"
    );

    // A remediation killed right after its copy: the rows are in both roots for now.
    let marker = dir.path().join("marker");
    let mut child = worker(
        dir.path(),
        &db_url,
        &["remediate-residency", "--dataset", "events"],
    )
    .env("LETHE_FAILPOINT", "residency.after_copy")
    .env("LETHE_FAILPOINT_MARKER", &marker)
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let started = Instant::now();
    while !marker.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the failpoint was not reached"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the remediation ended before its failpoint: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(rows_by_user(&eu), [("u-eu".into(), 8)].into());
    assert_eq!(
        rows_by_user(&us),
        [("u-eu".into(), 5), ("u-us".into(), 4)].into()
    );
    assert_eq!(std::fs::read_dir(us.join("_lethe")).unwrap().count(), 1);

    // The next run finishes it: the source is rewritten, nothing is copied twice.
    let out = run(dir.path(), &db_url, &["remediate-residency"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports = summary(&out);
    assert_eq!(reports[0]["recovered"], 1, "{reports}");
    assert_eq!(reports[0]["rows_moved"], 0);
    assert_eq!(rows_by_user(&eu), [("u-eu".into(), 8)].into());
    assert_eq!(rows_by_user(&us), [("u-us".into(), 4)].into());
    assert_eq!(std::fs::read_dir(us.join("_lethe")).unwrap().count(), 0);

    let out = run(
        dir.path(),
        &db_url,
        &["scan-residency", "--dataset", "events"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary(&out)[0]["scan"]["status"], "clean");
    let out = run(
        dir.path(),
        &db_url,
        &["scan-residency", "--dataset", "nope"],
    );
    assert_eq!(out.status.code(), Some(2));
}
