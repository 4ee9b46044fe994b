//! Crash safety: a worker process is killed with SIGKILL at several points of a rewrite; a new
//! worker finishes the erasure; every file is always either the complete old one or the
//! complete new one, no temporary object is left, and the lake verifies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_cast::display::{ArrayFormatter, FormatOptions};
use lethe_core::audit::NewAuditEntry;
use lethe_core::demo::{DemoLakeOptions, generate_lake};
use lethe_core::domain::{RequestStatus, RequestType, SubjectId};
use lethe_core::store::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use secrecy::SecretString;
use serde_json::json;

/// Rows per file (rendered as text) of every visible file; panics on a temp file or an
/// unreadable file.
pub(crate) fn lake_rows(root: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if name.starts_with('.') {
                continue;
            }
            let file = std::fs::File::open(&path).unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap_or_else(|e| {
                    panic!("{} is not a complete Parquet file: {e}", path.display())
                })
                .build()
                .unwrap();
            let mut rows = Vec::new();
            for batch in reader {
                let batch = batch.unwrap();
                let options = FormatOptions::default();
                let fmts: Vec<_> = batch
                    .columns()
                    .iter()
                    .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
                    .collect();
                for r in 0..batch.num_rows() {
                    rows.push(
                        fmts.iter()
                            .map(|f| f.value(r).to_string())
                            .collect::<Vec<_>>()
                            .join("|"),
                    );
                }
            }
            out.insert(path.strip_prefix(root).unwrap().display().to_string(), rows);
        }
    }
    out
}

fn temp_objects(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().contains("lethe-tmp") {
                found.push(path);
            }
        }
    }
    found
}

pub(crate) struct Setup {
    pub dir: tempfile::TempDir,
    pub lake: PathBuf,
    pub db_url: String,
    pub store: Arc<Store>,
    pub request_id: String,
    pub subject: String,
    pub before: BTreeMap<String, Vec<String>>,
}

/// A demo lake of 3,000 subjects over two days, registered, with one approved erasure queued.
pub(crate) async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let options = DemoLakeOptions {
        subjects: 3000,
        days: 2,
        regions: vec!["EU".into()],
        events_per_subject_per_day: 3.0,
        row_group_rows: 1000,
        ..Default::default()
    };
    let summary = generate_lake(&lake, &options).unwrap();
    let before = lake_rows(&lake);
    let subject = summary
        .subjects
        .iter()
        .find(|s| {
            before
                .values()
                .filter(|rows| rows.iter().any(|r| r.contains(&s.user_id)))
                .count()
                == 2
        })
        .expect("a subject with rows on both days")
        .user_id
        .clone();
    let db_url = format!("sqlite://{}/lethe.db", dir.path().display());
    let store = Arc::new(
        Store::connect(&SecretString::from(db_url.clone()), 2)
            .await
            .unwrap(),
    );
    store
        .create_dataset(
            NewDataset {
                name: "events".into(),
                root_url: lake.display().to_string(),
                subject_column: "user_id".into(),
                partition_columns: vec!["date".into(), "region".into()],
                created_by: "test".into(),
                schema: None,
                format: Default::default(),
                iceberg: None,
            },
            NewAuditEntry::new("test", "dataset.registered"),
        )
        .await
        .unwrap();
    let (request, _) = store
        .create_request(
            NewRequest {
                request_type: RequestType::Erasure,
                subject_id: SubjectId::parse(subject.clone()).unwrap(),
                subject_pseudonym: "p".into(),
                filed_by: "test".into(),
                verification_note: None,
                idempotency_key: None,
                received_at: chrono::Utc::now(),
                details: None,
            },
            NewAuditEntry::new("test", "request.created"),
        )
        .await
        .unwrap();
    let mut approve = Transition::new(
        RequestStatus::Approved,
        "admin",
        NewAuditEntry::new("admin", "request.approved"),
    );
    approve.enqueue = Some(NewJob {
        kind: JobKind::Erasure,
        request_id: Some(request.id.clone()),
        payload: json!({}),
        max_attempts: 5,
        run_at: None,
    });
    store
        .transition_request(&request.id, approve)
        .await
        .unwrap();
    Setup {
        dir,
        lake,
        db_url,
        store,
        request_id: request.id,
        subject,
        before,
    }
}

/// `lethe-worker run` on the setup's database, logging to `<name>.log`, with `args` after `run`.
pub(crate) fn spawn_worker_with(
    s: &Setup,
    failpoint: Option<&str>,
    name: &str,
    args: &[&str],
) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lethe-worker"));
    cmd.arg("run")
        .args(args)
        .env("LETHE_CONFIG", s.dir.path().join("none.toml"))
        .env("LETHE__DATABASE__URL", &s.db_url)
        .env("LETHE__STORAGE__DATA_DIR", s.dir.path())
        .env("LETHE__WORKER__LEASE_S", "1")
        .env("LETHE__WORKER__POLL_INTERVAL_MS", "50")
        .env("LETHE__LOG__FILTER", "warn")
        .env("HOSTNAME", name)
        .env_remove("LETHE_FAILPOINT")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(s.dir.path().join(format!("{name}.log"))).unwrap());
    if let Some(point) = failpoint {
        cmd.env("LETHE_FAILPOINT", point)
            .env("LETHE_FAILPOINT_MARKER", s.dir.path().join("marker"));
    }
    cmd.spawn().expect("lethe-worker starts")
}

fn spawn_worker(s: &Setup, failpoint: Option<&str>, name: &str) -> Child {
    spawn_worker_with(s, failpoint, name, &[])
}

async fn crash_at(point: &str) {
    let s = setup().await;
    let marker = s.dir.path().join("marker");
    let mut doomed = spawn_worker(&s, Some(point), "doomed");
    let start = Instant::now();
    while !marker.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "failpoint {point} never reached"
        );
        if let Some(status) = doomed.try_wait().unwrap() {
            panic!(
                "the worker exited ({status}) before reaching {point}: {}",
                std::fs::read_to_string(s.dir.path().join("doomed.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.kill().unwrap(); // SIGKILL
    doomed.wait().unwrap();

    // Right after the crash every file is complete: the old one or the new one.
    let subject_rows = |rows: &Vec<String>| rows.iter().filter(|r| r.contains(&s.subject)).count();
    for (file, rows) in lake_rows(&s.lake) {
        let old = &s.before[&file];
        let new_len = old.len() - subject_rows(old);
        assert!(
            rows.len() == old.len() || rows.len() == new_len,
            "{file} is neither old nor new after a crash at {point}"
        );
    }

    // A new worker takes the task over once the lease expires and finishes the erasure.
    let mut rescuer = spawn_worker(&s, None, "rescuer");
    let start = Instant::now();
    let request = loop {
        let request = s.store.request(&s.request_id).await.unwrap();
        if request.status.is_final() {
            break request;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the erasure did not finish after a crash at {point}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    rescuer.kill().unwrap();
    rescuer.wait().unwrap();
    assert_eq!(
        request.status,
        RequestStatus::Completed,
        "{:?}",
        request.error
    );

    let after = lake_rows(&s.lake);
    assert!(
        temp_objects(&s.lake).is_empty(),
        "temporary objects left after a crash at {point}: {:?}",
        temp_objects(&s.lake)
    );
    let mut expected: Vec<String> = s
        .before
        .values()
        .flatten()
        .filter(|r| !r.contains(&s.subject))
        .cloned()
        .collect();
    let mut actual: Vec<String> = after.values().flatten().cloned().collect();
    expected.sort();
    actual.sort();
    assert_eq!(actual.len(), expected.len());
    assert!(
        actual == expected,
        "subject rows gone, all other rows intact after a crash at {point}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_writing_the_new_file_loses_nothing() {
    crash_at("rewrite.mid_write").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_writing_before_the_swap_loses_nothing() {
    crash_at("rewrite.before_swap").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_the_swap_before_the_bookkeeping_loses_nothing() {
    crash_at("rewrite.after_swap").await;
}
