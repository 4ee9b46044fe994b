//! Two workers on the same erase task: the one whose lease expired must not swap its file in.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_cast::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use lethe_core::audit::NewAuditEntry;
use lethe_core::demo::{DemoLakeOptions, generate_lake};
use lethe_core::domain::{RequestStatus, RequestType, SubjectId};
use lethe_core::jobs::{ExecuteContext, JobError, LeaseGuard, Worker, WorkerConfig, execute_job};
use lethe_core::lake::CommitGuard;
use lethe_core::store::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::oneshot;

/// Holds worker A at the commit point until the test lets it go, then asks the real lease.
struct StallingGuard {
    inner: LeaseGuard,
    at_commit: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    resume: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

#[async_trait]
impl CommitGuard for StallingGuard {
    async fn may_commit(&self, file: &str) -> Result<(), String> {
        if let Some(tx) = self.at_commit.lock().unwrap().take() {
            let _ = tx.send(());
        }
        if let Some(rx) = self.resume.lock().await.take() {
            let _ = rx.await;
        }
        self.inner.may_commit(file).await
    }
}

fn rows(lake: &std::path::Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut stack = vec![lake.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                stack.push(path);
            } else if !name.starts_with('.') {
                let file = std::fs::File::open(&path).unwrap();
                for batch in ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap()
                {
                    let batch = batch.unwrap();
                    let options = FormatOptions::default();
                    let fmts: Vec<_> = batch
                        .columns()
                        .iter()
                        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
                        .collect();
                    for r in 0..batch.num_rows() {
                        let row: Vec<String> =
                            fmts.iter().map(|f| f.value(r).to_string()).collect();
                        *out.entry(row.join("|")).or_default() += 1;
                    }
                }
            } else {
                assert!(
                    !name.contains("lethe-tmp"),
                    "temporary file left behind: {name}"
                );
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_lease_expired_cannot_swap_in_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let summary = generate_lake(
        &lake,
        &DemoLakeOptions {
            subjects: 30,
            days: 1,
            regions: vec!["EU".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let url = SecretString::from(format!("sqlite://{}/t.db", dir.path().display()));
    let store: Arc<Store> = Arc::new(Store::connect(&url, 4).await.unwrap());
    store
        .create_dataset(
            NewDataset {
                name: "events".into(),
                root_url: lake.display().to_string(),
                subject_column: "user_id".into(),
                partition_columns: vec![],
                created_by: "test".into(),
                schema: None,
                format: Default::default(),
                iceberg: None,
            },
            NewAuditEntry::new("test", "dataset.registered"),
        )
        .await
        .unwrap();
    let before = rows(&lake);
    let subject = summary
        .subjects
        .iter()
        .find(|s| before.keys().any(|r| r.contains(&s.user_id)))
        .unwrap()
        .user_id
        .clone();
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
        max_attempts: 3,
        run_at: None,
    });
    store
        .transition_request(&request.id, approve)
        .await
        .unwrap();

    let config = |id: &str| WorkerConfig {
        worker_id: id.into(),
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(10),
        exports_url: dir.path().join("exports").display().to_string(),
        file_concurrency: 1,
        job_concurrency: 1,
        export_ttl: Duration::from_secs(3600),
        settings: std::sync::Arc::new(lethe_core::config::Settings::load_from(None).unwrap()),
    };
    let worker_b = Worker::new(store.clone(), config("B"));
    // B plans the erasure: one task for the lake's single file.
    worker_b
        .try_execute_job()
        .await
        .unwrap()
        .expect("the plan ran");

    // A claims the task with a short lease and starts rewriting; it stalls at the commit point.
    let task_a = store
        .claim_job("A", Duration::from_millis(300))
        .await
        .unwrap()
        .expect("a task");
    assert_eq!(task_a.kind, JobKind::EraseFile);
    let (at_commit_tx, at_commit_rx) = oneshot::channel();
    let (resume_tx, resume_rx) = oneshot::channel();
    let guard = Arc::new(StallingGuard {
        inner: LeaseGuard::new(
            store.clone(),
            task_a.id.clone(),
            task_a.lease_token.clone().unwrap(),
            Duration::from_millis(300),
        ),
        at_commit: std::sync::Mutex::new(Some(at_commit_tx)),
        resume: tokio::sync::Mutex::new(Some(resume_rx)),
    });
    let a = {
        let (store, task_a, request) = (store.clone(), task_a.clone(), request.clone());
        let ctx = ExecuteContext {
            exports_url: dir.path().join("exports").display().to_string(),
            file_concurrency: 1,
            keyring: None,
            settings: std::sync::Arc::new(lethe_core::config::Settings::load_from(None).unwrap()),
        };
        tokio::spawn(async move { execute_job(&store, &ctx, &task_a, &request, guard).await })
    };
    at_commit_rx.await.expect("A reached the commit point");

    // A's lease runs out; B takes the task over and completes the erasure.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = worker_b.try_execute_job().await.unwrap();
    assert_eq!(
        taken.as_deref(),
        Some(task_a.id.as_str()),
        "B took over A's task"
    );
    assert_eq!(
        store.request(&request.id).await.unwrap().status,
        RequestStatus::Completed
    );
    let after_b = rows(&lake);

    // A wakes up: its commit is refused, the lake keeps B's result, A cannot finish the job.
    resume_tx.send(()).unwrap();
    let outcome = a.await.unwrap();
    assert!(
        matches!(outcome, Err(JobError::Transient(ref e)) if e.contains("lease")),
        "{outcome:?}"
    );
    assert_eq!(rows(&lake), after_b, "A swapped nothing in");
    let stale = store
        .finish_task(
            &task_a.id,
            task_a.lease_token.as_deref().unwrap(),
            JobFinish::new(JobOutcome::Succeeded),
            &|_, _, _| Vec::new(),
        )
        .await
        .unwrap();
    assert!(!stale, "A's finish is fenced");

    let mut expected = before.clone();
    expected.retain(|row, _| !row.contains(&subject));
    assert_eq!(
        after_b, expected,
        "the subject's rows are gone exactly once; all others intact"
    );
}
