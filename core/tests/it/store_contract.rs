//! The store contract: every backend must pass these. SQLite always; PostgreSQL when
//! `LETHE_TEST_POSTGRES_URL` points at a server where this user may create databases
//! (each test gets a fresh database).

use std::sync::Arc;
use std::time::Duration;

use lethe_core::audit::{NewAuditEntry, verify_entries};
use lethe_core::domain::{
    Email, ExtensionMonths, ExtensionReason, ExtensionRefusal, RequestStatus, RequestType, Role,
    SubjectId, extended_due_date,
};
use lethe_core::store::*;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

struct Db {
    store: Arc<Store>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = SecretString::from(format!("sqlite://{}/t.db", dir.path().display()));
    Db {
        store: Arc::new(Store::connect(&url, 4).await.unwrap()),
        _dir: Some(dir),
    }
}

async fn postgres() -> Option<Db> {
    let base = std::env::var("LETHE_TEST_POSTGRES_URL").ok()?;
    let name = format!("lethe_test_{}", uuid::Uuid::new_v4().simple());
    let admin = Store::connect_raw(&base).await.expect("postgres reachable");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let url = SecretString::from(format!("{prefix}/{name}"));
    Some(Db {
        store: Arc::new(Store::connect(&url, 4).await.unwrap()),
        _dir: None,
    })
}

/// Runs `body` against every available backend.
macro_rules! contract {
    ($name:ident, |$store:ident| $body:block) => {
        mod $name {
            use super::*;
            async fn run($store: Arc<Store>) $body
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(super::sqlite().await.store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match super::postgres().await {
                    Some(db) => run(db.store).await,
                    None => eprintln!("skipped: LETHE_TEST_POSTGRES_URL is not set"),
                }
            }
        }
    };
}

fn audit(action: &str) -> NewAuditEntry {
    NewAuditEntry::new("test", action)
}

fn subject(id: &str) -> SubjectId {
    SubjectId::parse(id).unwrap()
}

fn new_request(filed_by: &str, key: Option<&str>) -> NewRequest {
    NewRequest {
        request_type: RequestType::Erasure,
        subject_id: subject("u-1"),
        subject_pseudonym: "ps-1".into(),
        filed_by: filed_by.into(),
        verification_note: None,
        idempotency_key: key.map(String::from),
        received_at: chrono::Utc::now(),
        details: None,
    }
}

async fn approved_request(store: &Store) -> String {
    approved_request_of(store, JobKind::Erasure).await
}

async fn approved_request_of(store: &Store, kind: JobKind) -> String {
    let (r, _) = store
        .create_request(new_request("user:a", None), audit("request.created"))
        .await
        .unwrap();
    let mut t = Transition::new(
        RequestStatus::Approved,
        "user:admin",
        audit("request.approved"),
    );
    t.decision = true;
    t.enqueue = Some(NewJob {
        kind,
        request_id: Some(r.id.clone()),
        payload: json!({}),
        max_attempts: 3,
        run_at: None,
    });
    store.transition_request(&r.id, t).await.unwrap();
    r.id
}

contract!(accounts_are_unique_by_email_and_linkable, |store| {
    let email = Email::parse("ana@example.com").unwrap();
    let user = store
        .create_user(
            NewUser {
                email: email.clone(),
                password_hash: "h".into(),
                role: Role::Subject,
            },
            audit("account.created"),
        )
        .await
        .unwrap();
    let again = store
        .create_user(
            NewUser {
                email: email.clone(),
                password_hash: "h".into(),
                role: Role::Admin,
            },
            audit("account.created"),
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(
        store.user_by_email(&email).await.unwrap().unwrap().id,
        user.id
    );
    let linked = store
        .link_subject(&user.id, &subject("u-9"), audit("account.subject_linked"))
        .await
        .unwrap();
    assert_eq!(linked.subject_id, Some(subject("u-9")));
    assert!(matches!(
        store.user("nope").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.list_users().await.unwrap().len(), 1);
});

contract!(datasets_are_unique_by_name, |store| {
    let d = NewDataset {
        name: "events".into(),
        root_url: "/lake".into(),
        subject_column: "user_id".into(),
        partition_columns: vec!["date".into(), "region".into()],
        created_by: "user:a".into(),
        schema: None,
        format: Default::default(),
        iceberg: None,
    };
    let created = store
        .create_dataset(d.clone(), audit("dataset.registered"))
        .await
        .unwrap();
    assert_eq!(
        store.dataset(&created.id).await.unwrap().partition_columns,
        vec!["date", "region"]
    );
    assert!(matches!(
        store.create_dataset(d, audit("dataset.registered")).await,
        Err(StoreError::Conflict(_))
    ));
});

contract!(requests_follow_the_lifecycle_and_keep_history, |store| {
    let (r, created) = store
        .create_request(new_request("user:a", None), audit("request.created"))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(r.status, RequestStatus::Received);
    assert_eq!(r.due_at, lethe_core::domain::due_date(r.received_at));
    let bad = store
        .transition_request(
            &r.id,
            Transition::new(RequestStatus::Completed, "x", audit("bad")),
        )
        .await;
    assert!(matches!(
        bad,
        Err(StoreError::InvalidTransition {
            from: RequestStatus::Received,
            to: RequestStatus::Completed
        })
    ));
    let mut reject = Transition::new(
        RequestStatus::Rejected,
        "user:admin",
        audit("request.rejected"),
    );
    reject.decision = true;
    reject.decision_reason = Some("no".into());
    let rejected = store.transition_request(&r.id, reject).await.unwrap();
    assert_eq!(rejected.decided_by.as_deref(), Some("user:admin"));
    assert_eq!(rejected.decision_reason.as_deref(), Some("no"));
    let history = store.request_history(&r.id).await.unwrap();
    let statuses: Vec<_> = history.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [RequestStatus::Received, RequestStatus::Rejected]);
    let missing = store
        .transition_request(
            "nope",
            Transition::new(RequestStatus::Approved, "x", audit("x")),
        )
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })));
    let listed = store
        .list_requests(&RequestFilter {
            subject_id: Some(subject("u-1")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let none = store
        .list_requests(&RequestFilter {
            subject_id: Some(subject("u-2")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
});

contract!(an_idempotency_key_returns_the_first_request, |store| {
    let (a, created_a) = store
        .create_request(new_request("user:a", Some("k1")), audit("request.created"))
        .await
        .unwrap();
    let (b, created_b) = store
        .create_request(new_request("user:a", Some("k1")), audit("request.created"))
        .await
        .unwrap();
    let (c, _) = store
        .create_request(new_request("user:b", Some("k1")), audit("request.created"))
        .await
        .unwrap();
    assert!(created_a && !created_b);
    assert_eq!(a.id, b.id);
    assert_ne!(a.id, c.id, "keys are per filer");
});

contract!(a_job_is_claimed_once_and_fenced_by_its_lease, |store| {
    let request_id = approved_request(&store).await;
    let job = store
        .claim_job("w1", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("a job");
    assert_eq!(job.request_id.as_deref(), Some(request_id.as_str()));
    assert_eq!(job.attempts, 1);
    assert!(
        store
            .claim_job("w2", Duration::from_secs(60))
            .await
            .unwrap()
            .is_none(),
        "held by w1"
    );
    let token = job.lease_token.clone().unwrap();
    assert!(
        store
            .heartbeat_job(&job.id, &token, Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(
        !store
            .heartbeat_job(&job.id, "stolen", Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_job(&job.id, "stolen", JobFinish::new(JobOutcome::Succeeded))
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_job(&job.id, &token, JobFinish::new(JobOutcome::Succeeded))
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_job("w2", Duration::from_secs(60))
            .await
            .unwrap()
            .is_none(),
        "done"
    );
});

contract!(
    an_expired_lease_is_taken_over_and_the_old_holder_cannot_commit,
    |store| {
        approved_request(&store).await;
        let first = store
            .claim_job("w1", Duration::from_millis(1))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = store
            .claim_job("w2", Duration::from_secs(60))
            .await
            .unwrap()
            .expect("taken over");
        assert_eq!(first.id, second.id);
        assert_eq!(second.attempts, 2);
        assert_eq!(second.lease_owner.as_deref(), Some("w2"));
        let old = first.lease_token.unwrap();
        assert!(
            !store
                .heartbeat_job(&first.id, &old, Duration::from_secs(60))
                .await
                .unwrap()
        );
        assert!(
            !store
                .finish_job(&first.id, &old, JobFinish::new(JobOutcome::Succeeded))
                .await
                .unwrap()
        );
        assert!(
            store
                .finish_job(
                    &second.id,
                    &second.lease_token.unwrap(),
                    JobFinish::new(JobOutcome::Succeeded)
                )
                .await
                .unwrap()
        );
    }
);

contract!(a_retried_job_waits_for_its_backoff, |store| {
    approved_request(&store).await;
    let job = store
        .claim_job("w1", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let later = chrono::Utc::now() + chrono::Duration::seconds(3600);
    store
        .finish_job(
            &job.id,
            job.lease_token.as_deref().unwrap(),
            JobFinish::new(JobOutcome::Retry {
                at: later,
                error: "s3 timeout".into(),
            }),
        )
        .await
        .unwrap();
    assert!(
        store
            .claim_job("w1", Duration::from_secs(60))
            .await
            .unwrap()
            .is_none()
    );
    let jobs = store.list_jobs(None, 10).await.unwrap();
    assert_eq!(jobs[0].status, JobStatus::Queued);
    assert_eq!(jobs[0].last_error.as_deref(), Some("s3 timeout"));
});

contract!(concurrent_claimers_never_share_a_job, |store| {
    for _ in 0..12 {
        approved_request_of(&store, JobKind::Access).await;
    }
    let mut handles = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(job) = store
                .claim_job(&format!("w{w}"), Duration::from_secs(60))
                .await
                .unwrap()
            {
                got.push(job.id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 12);
    assert_eq!(unique.len(), 12);
});

contract!(
    the_audit_chain_links_every_append_and_detects_tampering,
    |store| {
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .append_audit(audit("test.step").details(json!({ "i": i })))
                        .await
                        .unwrap()
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let (head_seq, head_hash) = store.audit_head().await.unwrap();
        assert_eq!(head_seq, 20);
        let entries = store.audit_entries(&AuditFilter::default()).await.unwrap();
        assert!(verify_entries(entries.clone(), Some((head_seq, &head_hash))).is_intact());
        // Filters.
        let page = store
            .audit_entries(&AuditFilter {
                after_seq: Some(15),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            page.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [16, 17, 18, 19, 20]
        );
        // The database itself refuses to change or remove an entry.
        for statement in [
            "UPDATE audit_log SET action = 'test.forged' WHERE seq = 7",
            "DELETE FROM audit_log WHERE seq = 20",
        ] {
            let refused = sqlx::query(statement)
                .execute(store.pool())
                .await
                .expect_err(statement);
            assert!(
                refused.to_string().contains("append-only"),
                "{statement}: {refused}"
            );
        }
        if store.backend() == Backend::Postgres {
            let refused = sqlx::query("TRUNCATE audit_log")
                .execute(store.pool())
                .await
                .expect_err("truncate refused");
            assert!(refused.to_string().contains("append-only"), "{refused}");
        }
        assert_eq!(
            store.audit_entries(&AuditFilter::default()).await.unwrap(),
            entries
        );
        // A DBA who removes the guard can tamper: the verifier names the entry.
        remove_append_only_guard(&store).await;
        sqlx::query("UPDATE audit_log SET action = 'test.forged' WHERE seq = 7")
            .execute(store.pool())
            .await
            .unwrap();
        let entries = store.audit_entries(&AuditFilter::default()).await.unwrap();
        let problem = verify_entries(entries, Some((head_seq, &head_hash)))
            .problem
            .unwrap();
        assert_eq!(problem.seq, 7);
        // Deleting the tail is caught by the head.
        sqlx::query("UPDATE audit_log SET action = 'test.step' WHERE seq = 7")
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query("DELETE FROM audit_log WHERE seq > 18")
            .execute(store.pool())
            .await
            .unwrap();
        let entries = store.audit_entries(&AuditFilter::default()).await.unwrap();
        let problem = verify_entries(entries, Some((head_seq, &head_hash)))
            .problem
            .unwrap();
        assert_eq!(problem.seq, 19);
    }
);

/// What a DBA (or anyone holding the database file) can do: drop the append-only triggers.
async fn remove_append_only_guard(store: &Store) {
    let statements: &[&str] = match store.backend() {
        Backend::Sqlite => &[
            "DROP TRIGGER audit_log_no_update",
            "DROP TRIGGER audit_log_no_delete",
        ],
        Backend::Postgres => &["ALTER TABLE audit_log DISABLE TRIGGER USER"],
    };
    for statement in statements {
        sqlx::query(*statement).execute(store.pool()).await.unwrap();
    }
}

fn task(request_id: &str, file: &str) -> NewJob {
    NewJob {
        kind: JobKind::EraseFile,
        request_id: Some(request_id.into()),
        payload: json!({ "file": file }),
        max_attempts: 3,
        run_at: None,
    }
}

/// Completes the request when every task succeeded, fails it when one failed.
/// The decision a worker makes; it also checks that the store asks only once the plan ends and
/// hands over the plan's batch.
fn decide(
    request_id: String,
) -> impl Fn(&Job, &[Job], &[PrivacyRequest]) -> Vec<(String, Transition)> {
    move |_plan, tasks, members| {
        let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, [request_id.as_str()], "the batch's requests");
        if tasks.iter().all(|t| t.status == JobStatus::Succeeded) {
            let t = Transition::new(RequestStatus::Completed, "w", audit("request.completed"));
            return vec![(request_id.clone(), t)];
        }
        assert!(
            tasks.iter().any(|t| t.status == JobStatus::Failed),
            "asked while the plan still runs: {:?}",
            tasks.iter().map(|t| t.status).collect::<Vec<_>>()
        );
        let t = Transition::new(RequestStatus::Failed, "w", audit("request.failed"));
        vec![(request_id.clone(), t)]
    }
}

contract!(
    a_plan_fans_out_tasks_and_the_last_task_completes_the_request,
    |store| {
        let request_id = approved_request(&store).await;
        let plan = store
            .claim_job("w1", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        store
            .transition_request(
                &request_id,
                Transition::new(RequestStatus::Running, "w1", audit("job.started")),
            )
            .await
            .unwrap();
        let mut finish = JobFinish::new(JobOutcome::Succeeded);
        finish.children = (0..5)
            .map(|i| task(&request_id, &format!("f{i}")))
            .collect();
        finish.result = Some(json!({ "datasets": [] }));
        assert!(
            store
                .finish_job(&plan.id, plan.lease_token.as_deref().unwrap(), finish)
                .await
                .unwrap()
        );
        assert_eq!(
            store.job(&plan.id).await.unwrap().status,
            JobStatus::Waiting
        );
        assert_eq!(store.child_jobs(&plan.id).await.unwrap().len(), 5);

        // Five workers finish the five tasks at the same time.
        let mut handles = Vec::new();
        for w in 0..5 {
            let store = store.clone();
            let request_id = request_id.clone();
            handles.push(tokio::spawn(async move {
                let job = store
                    .claim_job(&format!("w{w}"), Duration::from_secs(60))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(job.kind, JobKind::EraseFile);
                let mut finish = JobFinish::new(JobOutcome::Succeeded);
                finish.result = Some(json!({ "rows_removed": 1 }));
                let decide = decide(request_id);
                assert!(
                    store
                        .finish_task(
                            &job.id,
                            job.lease_token.as_deref().unwrap(),
                            finish,
                            &decide
                        )
                        .await
                        .unwrap()
                );
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(
            store.request(&request_id).await.unwrap().status,
            RequestStatus::Completed
        );
        assert_eq!(
            store.job(&plan.id).await.unwrap().status,
            JobStatus::Succeeded
        );
        let completed = store
            .audit_entries(&AuditFilter {
                action: Some("request.completed".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(completed.len(), 1, "exactly one task completed the request");
    }
);

contract!(
    a_failed_task_fails_the_request_and_an_admin_can_retry_it,
    |store| {
        let request_id = approved_request(&store).await;
        let plan = store
            .claim_job("w1", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        store
            .transition_request(
                &request_id,
                Transition::new(RequestStatus::Running, "w1", audit("job.started")),
            )
            .await
            .unwrap();
        let mut finish = JobFinish::new(JobOutcome::Succeeded);
        finish.children = vec![task(&request_id, "a"), task(&request_id, "b")];
        store
            .finish_job(&plan.id, plan.lease_token.as_deref().unwrap(), finish)
            .await
            .unwrap();
        let a = store
            .claim_job("w1", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        let fail = JobFinish::new(JobOutcome::Failed {
            error: "corrupt file".into(),
        });
        store
            .finish_task(
                &a.id,
                a.lease_token.as_deref().unwrap(),
                fail,
                &decide(request_id.clone()),
            )
            .await
            .unwrap();
        assert_eq!(
            store.request(&request_id).await.unwrap().status,
            RequestStatus::Failed
        );
        assert_eq!(store.job(&plan.id).await.unwrap().status, JobStatus::Failed);
        let dead = store.list_jobs(Some(JobStatus::Failed), 10).await.unwrap();
        assert!(
            dead.iter()
                .any(|j| j.id == a.id && j.last_error.as_deref() == Some("corrupt file"))
        );

        // A running job cannot be retried or cancelled.
        let b = store
            .claim_job("w2", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            store.retry_job(&b.id, audit("job.retried")).await,
            Err(StoreError::InvalidJobState { .. })
        ));
        assert!(matches!(
            store.cancel_job(&b.id, audit("job.cancelled")).await,
            Err(StoreError::InvalidJobState { .. })
        ));
        let ok = JobFinish::new(JobOutcome::Succeeded);
        store
            .finish_task(
                &b.id,
                b.lease_token.as_deref().unwrap(),
                ok,
                &decide(request_id.clone()),
            )
            .await
            .unwrap();
        assert_eq!(
            store.request(&request_id).await.unwrap().status,
            RequestStatus::Failed,
            "stays failed"
        );

        // The admin fixes the file and retries the dead-lettered task: the request runs again and completes.
        let retried = store.retry_job(&a.id, audit("job.retried")).await.unwrap();
        assert_eq!((retried.status, retried.attempts), (JobStatus::Queued, 0));
        assert_eq!(
            store.request(&request_id).await.unwrap().status,
            RequestStatus::Running
        );
        assert_eq!(
            store.job(&plan.id).await.unwrap().status,
            JobStatus::Waiting
        );
        let a = store
            .claim_job("w3", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        let ok = JobFinish::new(JobOutcome::Succeeded);
        store
            .finish_task(
                &a.id,
                a.lease_token.as_deref().unwrap(),
                ok,
                &decide(request_id.clone()),
            )
            .await
            .unwrap();
        assert_eq!(
            store.request(&request_id).await.unwrap().status,
            RequestStatus::Completed
        );
    }
);

contract!(cancelling_a_queued_job_fails_its_request, |store| {
    let request_id = approved_request(&store).await;
    let job = store
        .list_jobs(Some(JobStatus::Queued), 10)
        .await
        .unwrap()
        .remove(0);
    let cancelled = store
        .cancel_job(&job.id, audit("job.cancelled"))
        .await
        .unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert!(
        store
            .claim_job("w", Duration::from_secs(60))
            .await
            .unwrap()
            .is_none()
    );
    let request = store.request(&request_id).await.unwrap();
    assert_eq!(request.status, RequestStatus::Failed);
    assert!(request.error.unwrap().contains("cancelled"));
});

contract!(
    a_plan_absorbs_every_due_erasure_plan_into_one_batch,
    |store| {
        let a = approved_request(&store).await;
        let b = approved_request(&store).await;
        let c = approved_request(&store).await;
        let plan = store
            .claim_job("w1", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        let token = plan.lease_token.clone().unwrap();
        let batch = store
            .absorb_erasure_plans(&plan.id, &token)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(batch.len(), 3);
        assert_eq!(
            batch[0],
            plan.request_id.clone().unwrap(),
            "own request first"
        );
        for r in [&a, &b, &c] {
            assert!(batch.contains(r));
        }
        assert!(
            store
                .claim_job("w2", Duration::from_secs(60))
                .await
                .unwrap()
                .is_none(),
            "the others were merged"
        );
        // Running it again (as after a takeover) returns the recorded batch.
        let again = store
            .absorb_erasure_plans(&plan.id, &token)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again, batch);
        assert!(
            store
                .absorb_erasure_plans(&plan.id, "stale")
                .await
                .unwrap()
                .is_none(),
            "fenced"
        );
    }
);

contract!(the_key_store_keeps_destroyed_keys_destroyed, |store| {
    lethe_core::keyring::check_key_store_contract(store.as_ref())
        .await
        .unwrap_or_else(|e| panic!("key store contract: {e}"));
});

contract!(only_one_erasure_plan_runs_at_a_time, |store| {
    for _ in 0..3 {
        approved_request(&store).await;
    }
    // Four workers start together: exactly one gets a plan, nobody gets a second one.
    let mut handles = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .claim_job(&format!("w{w}"), Duration::from_secs(60))
                .await
                .unwrap()
        }));
    }
    let mut claimed = Vec::new();
    for h in handles {
        claimed.extend(h.await.unwrap());
    }
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    // Its lease expires: another worker may take the plan over.
    let plan = &claimed[0];
    let stale = store
        .claim_job("late", Duration::from_millis(1))
        .await
        .unwrap();
    assert!(stale.is_none());
    sqlx::query("UPDATE jobs SET lease_expires_at = '2000-01-01T00:00:00.000000Z' WHERE id = $1")
        .bind(&plan.id)
        .execute(store.pool())
        .await
        .unwrap();
    let taken = store
        .claim_job("rescuer", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.id, plan.id);
});

contract!(
    audit_entries_with_floats_verify_after_the_database_round_trip,
    |store| {
        // Floats that serde_json's default (best-effort) parser reads back one ULP off: without
        // its `float_roundtrip` feature these entries would fail verification as "altered".
        let floats = [
            99.38218929957843,
            122.04623355613795,
            109.33572872323643,
            1.0 / 3.0,
        ];
        for (i, f) in floats.iter().enumerate() {
            store
                .append_audit(
                    audit("test.float")
                        .details(json!({ "i": i, "x": f, "nested": [f, { "y": f * 7.0 }] })),
                )
                .await
                .unwrap();
        }
        let (seq, hash) = store.audit_head().await.unwrap();
        let entries = store.audit_entries(&AuditFilter::default()).await.unwrap();
        let report = verify_entries(entries.clone(), Some((seq, &hash)));
        assert!(report.is_intact(), "{report:?}");
        // And after an export to JSON Lines and back.
        let exported: Vec<String> = entries
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect();
        let reread = exported.iter().map(|l| serde_json::from_str(l).unwrap());
        assert!(verify_entries(reread, Some((seq, &hash))).is_intact());
    }
);

contract!(api_tokens_are_found_by_hash_and_revoked_once, |store| {
    let token = store
        .create_api_token(
            NewApiToken {
                name: "events-pipeline".into(),
                token_hash: "a".repeat(64),
                created_by: "user:a".into(),
                scope: lethe_core::store::TokenScope {
                    datasets: vec!["d1".into()],
                    list_restricted: false,
                },
            },
            audit("token.created").details(json!({ "name": "events-pipeline" })),
        )
        .await
        .unwrap();
    assert_eq!(token.role, Role::Producer);
    assert!(token.revoked_at.is_none());
    let found = store.api_token_by_hash(&"a".repeat(64)).await.unwrap();
    assert_eq!(
        found
            .as_ref()
            .and_then(|t| t.scope.as_ref())
            .map(|s| s.datasets.clone()),
        Some(vec!["d1".to_string()])
    );
    assert_eq!(found.map(|t| t.id), Some(token.id.clone()));
    assert!(
        store
            .api_token_by_hash(&"b".repeat(64))
            .await
            .unwrap()
            .is_none()
    );
    let same_hash = store
        .create_api_token(
            NewApiToken {
                name: "copy".into(),
                token_hash: "a".repeat(64),
                created_by: "user:a".into(),
                scope: lethe_core::store::TokenScope {
                    datasets: vec!["d1".into()],
                    list_restricted: false,
                },
            },
            audit("token.created"),
        )
        .await;
    assert!(
        matches!(same_hash, Err(StoreError::Conflict(_))),
        "{same_hash:?}"
    );

    let revoked = store
        .revoke_api_token(&token.id, audit("token.revoked"))
        .await
        .unwrap();
    let at = revoked.revoked_at.expect("revoked");
    let again = store
        .revoke_api_token(&token.id, audit("token.revoked"))
        .await
        .unwrap();
    assert_eq!(again.revoked_at, Some(at), "the first revocation stands");
    assert!(
        store
            .api_token_by_hash(&"a".repeat(64))
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(matches!(
        store.revoke_api_token("nope", audit("token.revoked")).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.list_api_tokens().await.unwrap().len(), 1);

    let entries = store.audit_entries(&AuditFilter::default()).await.unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["token.created", "token.revoked"]);
    assert_eq!(entries[0].details["token_id"], json!(token.id));
});

fn received_days_ago(days: i64, pseudonym: &str) -> NewRequest {
    NewRequest {
        received_at: chrono::Utc::now() - chrono::Duration::days(days),
        details: None,
        subject_pseudonym: pseudonym.into(),
        ..new_request("user:a", None)
    }
}

fn extension(months: i64, reason: &str) -> NewExtension {
    NewExtension {
        months: ExtensionMonths::parse(months).unwrap(),
        reason: ExtensionReason::parse(reason).unwrap(),
        by: "user:admin".into(),
    }
}

contract!(
    a_deadline_is_extended_once_within_the_first_month,
    |store| {
        let (r, _) = store
            .create_request(received_days_ago(3, "ps-1"), audit("request.created"))
            .await
            .unwrap();
        let extended = store
            .extend_deadline(
                &r.id,
                extension(2, "many datasets"),
                audit("request.deadline_extended")
                    .request(&r.id)
                    .details(json!({ "months": 2 })),
            )
            .await
            .unwrap();
        assert_eq!(
            extended.due_at,
            extended_due_date(r.received_at, ExtensionMonths::parse(2).unwrap())
        );
        let ext = extended.extension.clone().expect("extended");
        assert_eq!(ext.months, 2);
        assert_eq!(ext.reason, "many datasets");
        assert_eq!(ext.by, "user:admin");
        assert_eq!(ext.original_due_at, r.due_at);
        assert_eq!(
            store.request(&r.id).await.unwrap().extension,
            Some(ext.clone()),
            "stored as returned"
        );

        let again = store
            .extend_deadline(&r.id, extension(1, "more"), audit("x"))
            .await;
        assert!(
            matches!(again, Err(StoreError::ExtensionRefused(ExtensionRefusal::AlreadyExtended { at })) if at == ext.at),
            "{again:?}"
        );
        let missing = store
            .extend_deadline("nope", extension(1, "r"), audit("x"))
            .await;
        assert!(matches!(missing, Err(StoreError::NotFound { .. })));

        let entries = store
            .audit_entries(&AuditFilter {
                action: Some("request.deadline_extended".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(entries.len(), 1, "refusals append nothing");
        assert_eq!(entries[0].details["months"], json!(2));
        assert_eq!(
            entries[0].details["due_at"],
            json!(lethe_core::domain::to_db(extended.due_at))
        );
        assert_eq!(
            entries[0].details["original_due_at"],
            json!(lethe_core::domain::to_db(r.due_at))
        );
    }
);

contract!(a_late_or_final_request_is_not_extended, |store| {
    let (late, _) = store
        .create_request(received_days_ago(40, "ps-1"), audit("request.created"))
        .await
        .unwrap();
    let refused = store
        .extend_deadline(&late.id, extension(1, "too late"), audit("x"))
        .await;
    assert!(
        matches!(refused, Err(StoreError::ExtensionRefused(ExtensionRefusal::TooLate { due_at })) if due_at == late.due_at),
        "{refused:?}"
    );
    let (done, _) = store
        .create_request(received_days_ago(1, "ps-2"), audit("request.created"))
        .await
        .unwrap();
    let mut reject = Transition::new(RequestStatus::Rejected, "user:admin", audit("r"));
    reject.decision_reason = Some("no".into());
    store.transition_request(&done.id, reject).await.unwrap();
    let refused = store
        .extend_deadline(&done.id, extension(1, "final"), audit("x"))
        .await;
    assert!(
        matches!(
            refused,
            Err(StoreError::ExtensionRefused(ExtensionRefusal::Final(
                RequestStatus::Rejected
            )))
        ),
        "{refused:?}"
    );
    assert!(store.request(&late.id).await.unwrap().extension.is_none());
});

contract!(requests_are_listed_by_overdue_and_due_date, |store| {
    // Due 5 days ago and open; due 5 days ago but rejected; due in about 3 weeks.
    let (overdue, _) = store
        .create_request(received_days_ago(36, "ps-1"), audit("request.created"))
        .await
        .unwrap();
    let (closed, _) = store
        .create_request(received_days_ago(36, "ps-2"), audit("request.created"))
        .await
        .unwrap();
    let mut reject = Transition::new(RequestStatus::Rejected, "user:admin", audit("r"));
    reject.decision_reason = Some("no".into());
    store.transition_request(&closed.id, reject).await.unwrap();
    let (fresh, _) = store
        .create_request(received_days_ago(7, "ps-3"), audit("request.created"))
        .await
        .unwrap();
    let ids = |rs: Vec<PrivacyRequest>| {
        let mut ids: Vec<String> = rs.into_iter().map(|r| r.id).collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let list = |filter: RequestFilter| {
        let store = store.clone();
        async move { store.list_requests(&filter).await.unwrap() }
    };
    assert_eq!(
        ids(list(RequestFilter {
            overdue: Some(true),
            ..Default::default()
        })
        .await),
        [overdue.id.as_str()]
    );
    assert_eq!(store.overdue_requests().await.unwrap(), 1);
    assert_eq!(
        ids(list(RequestFilter {
            overdue: Some(false),
            ..Default::default()
        })
        .await),
        sorted(vec![closed.id.clone(), fresh.id.clone()])
    );
    assert_eq!(
        ids(list(RequestFilter {
            due_before: Some(chrono::Utc::now()),
            ..Default::default()
        })
        .await),
        sorted(vec![overdue.id.clone(), closed.id.clone()]),
        "any status"
    );
    assert_eq!(
        ids(list(RequestFilter {
            due_before: Some(chrono::Utc::now() + chrono::Duration::days(60)),
            status: Some(RequestStatus::Received),
            ..Default::default()
        })
        .await),
        sorted(vec![overdue.id.clone(), fresh.id.clone()])
    );
});

contract!(the_register_pages_through_a_period_oldest_first, |store| {
    let mut received = Vec::new();
    for days in [50, 40, 30, 20, 10] {
        let (r, _) = store
            .create_request(
                received_days_ago(days, &format!("ps-{days}")),
                audit("request.created"),
            )
            .await
            .unwrap();
        received.push(r);
    }
    let all = store
        .register_page(&RegisterFilter::default())
        .await
        .unwrap();
    let ids: Vec<&str> = all.iter().map(|e| e.id.as_str()).collect();
    let expected: Vec<&str> = received.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, expected);
    assert_eq!(all[0].subject_pseudonym, "ps-50");
    assert!(!all[0].extended);

    // [from, to): 40 days ago is in, 20 days ago is out.
    let period = RegisterFilter {
        from: Some(received[1].received_at),
        to: Some(received[3].received_at),
        ..Default::default()
    };
    let page = store.register_page(&period).await.unwrap();
    let ids: Vec<&str> = page.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [received[1].id.as_str(), received[2].id.as_str()]);

    // Keyset pages of one.
    let mut filter = RegisterFilter {
        limit: Some(1),
        ..period
    };
    let mut paged = Vec::new();
    loop {
        let page = store.register_page(&filter).await.unwrap();
        let Some(last) = page.last() else { break };
        filter.after = Some((last.received_at, last.id.clone()));
        paged.extend(page.into_iter().map(|e| e.id));
    }
    assert_eq!(paged, [received[1].id.clone(), received[2].id.clone()]);
});

// ---- webhooks ------------------------------------------------------------------------------

async fn webhook(
    store: &Store,
    events: Option<&[String]>,
) -> lethe_core::webhooks::WebhookEndpoint {
    use lethe_core::webhooks::{EventSelection, NewWebhook, WebhookUrl, generate_secret};
    store
        .create_webhook(
            NewWebhook {
                url: WebhookUrl::parse("https://app.example.com/hooks").unwrap(),
                events: EventSelection::parse(events).unwrap(),
                description: None,
                sealed_secret: generate_secret().expose_secret().to_string(),
                created_by: "user:admin".into(),
            },
            audit("webhook.created"),
        )
        .await
        .unwrap()
}

async fn log_of(store: &Store, endpoint_id: &str) -> Vec<lethe_core::webhooks::WebhookDelivery> {
    let filter = lethe_core::webhooks::DeliveryFilter {
        endpoint_id: endpoint_id.into(),
        status: None,
        limit: None,
    };
    let mut log = store.webhook_deliveries(&filter).await.unwrap();
    log.reverse();
    log
}

contract!(
    each_status_change_queues_one_event_per_subscribed_active_endpoint,
    |store| {
        let all = webhook(&store, None).await;
        let completed_only = webhook(&store, Some(&["request.completed".into()])).await;
        let gone = webhook(&store, None).await;
        store
            .deactivate_webhook(&gone.id, audit("webhook.deactivated"))
            .await
            .unwrap();

        let id = approved_request(&store).await;
        for to in [
            RequestStatus::Running,
            // a job taken over: the status does not change, and no event is sent
            RequestStatus::Running,
            RequestStatus::Completed,
        ] {
            store
                .transition_request(&id, Transition::new(to, "worker:w", audit("job")))
                .await
                .unwrap();
        }

        let log = log_of(&store, &all.id).await;
        let types: Vec<&str> = log.iter().map(|d| d.event_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "request.received",
                "request.approved",
                "request.running",
                "request.completed"
            ]
        );
        let completed = &log[3];
        assert_eq!(completed.request_id.as_deref(), Some(id.as_str()));
        assert_eq!(
            completed.status,
            lethe_core::webhooks::DeliveryStatus::Pending
        );
        assert_eq!(completed.attempts, 0);
        assert_eq!(completed.payload["id"], completed.event_id.as_str());
        assert_eq!(completed.payload["type"], "request.completed");
        assert_eq!(completed.payload["data"]["status"], "completed");
        assert_eq!(completed.payload["data"]["previous_status"], "running");
        assert_eq!(completed.payload["data"]["subject_pseudonym"], "ps-1");
        assert!(completed.payload["data"]["completed_at"].is_string());
        assert_eq!(
            log[0].payload["data"]["previous_status"],
            serde_json::Value::Null
        );
        for delivery in &log {
            let body = delivery.payload.to_string();
            assert!(
                !body.contains("u-1"),
                "the subject id left the system: {body}"
            );
        }

        let only = log_of(&store, &completed_only.id).await;
        assert_eq!(only.len(), 1);
        assert_eq!(
            only[0].event_id, completed.event_id,
            "one event, one id, every endpoint"
        );
        assert!(log_of(&store, &gone.id).await.is_empty());
    }
);

contract!(webhook_claims_are_leased_fenced_and_retried, |store| {
    use lethe_core::webhooks::{DeliveryOutcome, DeliveryStatus};
    let endpoint = webhook(&store, None).await;
    let (first, _) = store
        .create_request(new_request("user:a", None), audit("request.created"))
        .await
        .unwrap();
    let (second, _) = store
        .create_request(new_request("user:b", None), audit("request.created"))
        .await
        .unwrap();

    let lease = Duration::from_secs(60);
    let claimed = store.claim_webhook_deliveries(10, lease).await.unwrap();
    let requests: Vec<_> = claimed
        .iter()
        .map(|c| c.delivery.request_id.clone().unwrap())
        .collect();
    assert_eq!(
        requests,
        [first.id.clone(), second.id.clone()],
        "oldest first"
    );
    assert_eq!(claimed[0].url, "https://app.example.com/hooks");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&claimed[0].body).unwrap(),
        claimed[0].delivery.payload
    );
    assert!(
        store
            .claim_webhook_deliveries(10, lease)
            .await
            .unwrap()
            .is_empty(),
        "leased deliveries are not claimed twice"
    );

    let (a, b) = (&claimed[0], &claimed[1]);
    let retry_now = DeliveryOutcome::Retry {
        at: chrono::Utc::now() - chrono::Duration::seconds(1),
        status_code: Some(503),
        error: "HTTP 503".into(),
    };
    assert!(
        !store
            .finish_webhook_delivery(&a.delivery.id, "not-the-lease", retry_now.clone())
            .await
            .unwrap(),
        "fenced"
    );
    assert!(
        store
            .finish_webhook_delivery(&a.delivery.id, &a.lease_token, retry_now)
            .await
            .unwrap()
    );
    let released = DeliveryOutcome::Released {
        at: chrono::Utc::now() + chrono::Duration::hours(1),
    };
    assert!(
        store
            .finish_webhook_delivery(&b.delivery.id, &b.lease_token, released)
            .await
            .unwrap()
    );

    // Only the retried one is due; the released one waits, its attempt uncounted.
    let again = store.claim_webhook_deliveries(10, lease).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery.id, a.delivery.id);
    assert_eq!(again[0].delivery.attempts, 1);
    assert_eq!(again[0].delivery.last_status_code, Some(503));
    assert!(
        !store
            .finish_webhook_delivery(
                &a.delivery.id,
                &a.lease_token,
                DeliveryOutcome::Delivered { status_code: 200 }
            )
            .await
            .unwrap(),
        "the old lease no longer holds it"
    );
    let failed = DeliveryOutcome::Failed {
        status_code: None,
        error: "could not connect".into(),
    };
    assert!(
        store
            .finish_webhook_delivery(&a.delivery.id, &again[0].lease_token, failed)
            .await
            .unwrap()
    );
    let log = log_of(&store, &endpoint.id).await;
    assert_eq!(log[0].status, DeliveryStatus::Failed);
    assert_eq!(log[0].attempts, 2);
    assert_eq!(log[0].last_status_code, None);
    assert_eq!(log[1].status, DeliveryStatus::Pending);
    assert_eq!(log[1].attempts, 0);

    // An admin re-queues the failed one: due at once, with fresh attempts.
    assert!(matches!(
        store
            .retry_webhook_delivery(&log[1].id, audit("webhook.delivery_retried"))
            .await,
        Err(StoreError::InvalidWebhookState(_))
    ));
    let requeued = store
        .retry_webhook_delivery(&a.delivery.id, audit("webhook.delivery_retried"))
        .await
        .unwrap();
    assert_eq!(requeued.status, DeliveryStatus::Pending);
    assert_eq!(requeued.attempts, 0);
    let third = store.claim_webhook_deliveries(10, lease).await.unwrap();
    assert_eq!(third.len(), 1);
    assert!(
        store
            .finish_webhook_delivery(
                &a.delivery.id,
                &third[0].lease_token,
                DeliveryOutcome::Delivered { status_code: 204 }
            )
            .await
            .unwrap()
    );
    let delivered = &log_of(&store, &endpoint.id).await[0];
    assert_eq!(delivered.status, DeliveryStatus::Delivered);
    assert_eq!(
        (delivered.attempts, delivered.last_status_code),
        (1, Some(204))
    );
    assert_eq!(delivered.last_error, None);
    assert!(delivered.delivered_at.is_some());
    let audited = store
        .audit_entries(&AuditFilter {
            action: Some("webhook.delivery_retried".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].request_id.as_deref(), Some(first.id.as_str()));
});

contract!(
    deactivating_an_endpoint_fails_its_pending_deliveries_once,
    |store| {
        let endpoint = webhook(&store, None).await;
        store
            .create_request(new_request("user:a", None), audit("request.created"))
            .await
            .unwrap();
        let gone = store
            .deactivate_webhook(&endpoint.id, audit("webhook.deactivated"))
            .await
            .unwrap();
        assert!(!gone.is_active());
        let log = log_of(&store, &endpoint.id).await;
        assert_eq!(log[0].status, lethe_core::webhooks::DeliveryStatus::Failed);
        assert!(
            log[0]
                .last_error
                .as_deref()
                .unwrap()
                .contains("deactivated")
        );
        assert!(
            store
                .claim_webhook_deliveries(10, Duration::from_secs(60))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            store
                .retry_webhook_delivery(&log[0].id, audit("webhook.delivery_retried"))
                .await,
            Err(StoreError::InvalidWebhookState(_))
        ));
        // Again: nothing changes, nothing is audited.
        store
            .deactivate_webhook(&endpoint.id, audit("webhook.deactivated"))
            .await
            .unwrap();
        let audited = store
            .audit_entries(&AuditFilter {
                action: Some("webhook.deactivated".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(audited.len(), 1);
        assert_eq!(audited[0].details["pending_deliveries_dropped"], "1");
        assert!(matches!(
            store
                .deactivate_webhook("nope", audit("webhook.deactivated"))
                .await,
            Err(StoreError::NotFound { .. })
        ));
    }
);

contract!(
    request_details_round_trip_and_restrictions_are_keyed_by_subject,
    |store| {
        // A rectification's details come back as filed.
        let details =
            json!({"dataset_id": "d-1", "changes": {"notes": null, "email": "a@example.com"}});
        let (filed, _) = store
            .create_request(
                NewRequest {
                    request_type: RequestType::Rectification,
                    details: Some(details.clone()),
                    ..new_request("user:a", None)
                },
                audit("request.created"),
            )
            .await
            .unwrap();
        assert_eq!(
            store.request(&filed.id).await.unwrap().details,
            Some(details)
        );
        assert_eq!(filed.request_type, RequestType::Rectification);

        // Restrict two subjects; restricting again keeps the first entry.
        let (other, _) = store
            .create_request(
                NewRequest {
                    request_type: RequestType::Restriction,
                    subject_id: subject("u-0"),
                    ..new_request("user:b", None)
                },
                audit("request.created"),
            )
            .await
            .unwrap();
        let first = store
            .restrict_subject(&subject("u-1"), &filed.id, audit("subject.restricted"))
            .await
            .unwrap();
        let again = store
            .restrict_subject(&subject("u-1"), &other.id, audit("subject.restricted"))
            .await
            .unwrap();
        assert_eq!(again, first);
        store
            .restrict_subject(&subject("u-0"), &other.id, audit("subject.restricted"))
            .await
            .unwrap();
        let all = store.restricted_subjects(None, 10).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|r| r.subject_id.as_str()).collect();
        assert_eq!(ids, ["u-0", "u-1"]);
        let page = store.restricted_subjects(Some("u-0"), 10).await.unwrap();
        assert_eq!(page, std::slice::from_ref(&first));
        assert_eq!(store.restricted_subjects(None, 1).await.unwrap().len(), 1);
        let audited = store
            .audit_entries(&AuditFilter {
                action: Some("subject.restricted".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        let flags: Vec<&serde_json::Value> = audited
            .iter()
            .map(|e| &e.details["already_restricted"])
            .collect();
        assert_eq!(flags, [&json!(false), &json!(true), &json!(false)]);

        // Lifting removes the entry once.
        let lifted = store
            .lift_restriction(&subject("u-1"), audit("subject.restriction_lifted"))
            .await
            .unwrap();
        assert_eq!(lifted, Some(first));
        let none = store
            .lift_restriction(&subject("u-1"), audit("subject.restriction_lifted"))
            .await
            .unwrap();
        assert_eq!(none, None);
        let lifts = store
            .audit_entries(&AuditFilter {
                action: Some("subject.restriction_lifted".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(lifts.len(), 1, "a lift that lifted nothing is not audited");
        let left = store.restricted_subjects(None, 10).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].subject_id, "u-0");
    }
);

async fn some_dataset(store: &Store) -> Dataset {
    let d = NewDataset {
        name: "events".into(),
        root_url: "/lake".into(),
        subject_column: "user_id".into(),
        partition_columns: vec![],
        created_by: "user:a".into(),
        schema: None,
        format: Default::default(),
        iceberg: None,
    };
    store
        .create_dataset(d, audit("dataset.registered"))
        .await
        .unwrap()
}

fn busy_holder(result: StoreResult<DatasetLease>) -> DatasetLease {
    match result {
        Err(StoreError::DatasetBusy(lease)) => *lease,
        other => panic!("expected DatasetBusy, got {other:?}"),
    }
}

contract!(dataset_leases_exclude_as_their_mode_says, |store| {
    let ds = some_dataset(&store).await.id;
    let ttl = Duration::from_secs(60);
    let take = |holder: &'static str, mode: LeaseMode, purpose: &'static str| {
        let (store, ds) = (store.clone(), ds.clone());
        async move {
            store
                .acquire_dataset_lease(&ds, holder, mode, purpose, ttl)
                .await
        }
    };
    // Shared leases coexist; an exclusive one waits for all of them.
    let a = take("job:a", LeaseMode::Shared, "erasure").await.unwrap();
    assert_eq!((a.holder.as_str(), a.mode), ("job:a", LeaseMode::Shared));
    take("job:b", LeaseMode::Shared, "rectification")
        .await
        .unwrap();
    let blocking = busy_holder(take("cli:c", LeaseMode::Exclusive, "compaction").await);
    assert_eq!(blocking.mode, LeaseMode::Shared);
    assert!(["job:a", "job:b"].contains(&blocking.holder.as_str()));
    store.release_dataset_lease(&ds, "job:a").await.unwrap();
    store.release_dataset_lease(&ds, "job:b").await.unwrap();
    store.release_dataset_lease(&ds, "job:b").await.unwrap(); // twice: nothing to do

    // An exclusive lease keeps out shared and exclusive holders alike, and says who holds it.
    let c = take("cli:c", LeaseMode::Exclusive, "compaction")
        .await
        .unwrap();
    let blocking = busy_holder(take("job:a", LeaseMode::Shared, "erasure").await);
    assert_eq!(
        (blocking.holder.as_str(), blocking.purpose.as_str()),
        ("cli:c", "compaction")
    );
    let message = StoreError::DatasetBusy(Box::new(blocking)).to_string();
    assert!(
        message.contains("compaction") && message.contains("cli:c"),
        "{message}"
    );
    busy_holder(take("cli:d", LeaseMode::Exclusive, "residency remediation").await);
    // Its holder renews it: same start, later expiry.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let renewed = take("cli:c", LeaseMode::Exclusive, "compaction")
        .await
        .unwrap();
    assert_eq!(renewed.acquired_at, c.acquired_at);
    assert!(renewed.expires_at > c.expires_at);
    store.release_dataset_lease(&ds, "cli:c").await.unwrap();
    take("job:a", LeaseMode::Shared, "erasure").await.unwrap();
    store.release_dataset_lease(&ds, "job:a").await.unwrap();

    // A lease whose holder died lapses and blocks nobody.
    store
        .acquire_dataset_lease(
            &ds,
            "dead",
            LeaseMode::Exclusive,
            "compaction",
            Duration::from_millis(1),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    take("job:a", LeaseMode::Shared, "erasure").await.unwrap();
    take("cli:c", LeaseMode::Exclusive, "compaction")
        .await
        .map(|_| ())
        .expect_err("job:a still holds it shared");
});

contract!(concurrent_exclusive_leases_are_granted_once, |store| {
    let ds = some_dataset(&store).await.id;
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (store, ds) = (store.clone(), ds.clone());
        racers.spawn(async move {
            store
                .acquire_dataset_lease(
                    &ds,
                    &format!("racer:{i}"),
                    LeaseMode::Exclusive,
                    "compaction",
                    Duration::from_secs(60),
                )
                .await
        });
    }
    let (mut granted, mut busy) = (0, 0);
    while let Some(result) = racers.join_next().await {
        match result.unwrap() {
            Ok(_) => granted += 1,
            Err(StoreError::DatasetBusy(_)) => busy += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((granted, busy), (1, 7));
});

contract!(
    a_deferred_job_runs_again_without_spending_an_attempt,
    |store| {
        approved_request(&store).await;
        let job = store
            .claim_job("w1", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.attempts, 1);
        let finish = JobFinish::new(JobOutcome::Defer {
            at: chrono::Utc::now(),
            reason: "dataset events is busy: compaction".into(),
        });
        let token = job.lease_token.clone().unwrap();
        assert!(store.finish_job(&job.id, &token, finish).await.unwrap());
        let queued = store.job(&job.id).await.unwrap();
        assert_eq!(queued.status, JobStatus::Queued);
        assert_eq!(queued.attempts, 0);
        assert_eq!(
            queued.last_error.as_deref(),
            Some("dataset events is busy: compaction")
        );
        let again = store
            .claim_job("w2", Duration::from_secs(60))
            .await
            .unwrap()
            .expect("claimable again");
        assert_eq!((again.id.as_str(), again.attempts), (job.id.as_str(), 1));
    }
);

contract!(
    transactions_that_read_then_write_survive_concurrent_writers,
    |store| {
        // A cancellation reads the request's status, then updates it. On SQLite a deferred
        // transaction that read first cannot upgrade to a writer once another connection has
        // committed in between (SQLITE_BUSY_SNAPSHOT, not retried by busy_timeout): every
        // write transaction must take the write lock when it begins.
        let (finished, _) = store
            .create_request(new_request("user:a", None), audit("request.created"))
            .await
            .unwrap();
        store
            .transition_request(
                &finished.id,
                Transition::new(RequestStatus::Rejected, "user:admin", audit("rejected")),
            )
            .await
            .unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = tokio::task::JoinSet::new();
        for _ in 0..2 {
            let (store, stop) = (store.clone(), stop.clone());
            writers.spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    store.append_audit(audit("noise")).await.unwrap();
                    n += 1;
                }
                n
            });
        }
        for _ in 0..200 {
            let cancel = Transition::new(RequestStatus::Cancelled, "user:a", audit("cancel"));
            match store.transition_request(&finished.id, cancel).await {
                Err(StoreError::InvalidTransition { from, .. }) => {
                    assert_eq!(from, RequestStatus::Rejected);
                }
                other => panic!("expected an invalid transition, got {other:?}"),
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut noise = 0;
        while let Some(n) = writers.join_next().await {
            noise += n.unwrap();
        }
        assert!(noise > 0, "the writers ran alongside");
    }
);

contract!(
    plain_webhook_secrets_are_sealed_once_and_a_changed_row_is_not_overwritten,
    |store| {
        use lethe_core::keyring::{Kek, Keyring, MemoryKeyStore, SubjectHasher};
        use lethe_core::webhooks::{SEALED_SECRET_PREFIX, open_secret, reseal_secrets};
        let keyring = Keyring::new(
            Kek::generate(),
            Arc::new(MemoryKeyStore::new()),
            SubjectHasher::new(&[5u8; 32]).unwrap(),
        );
        // Rows as written before secrets were sealed hold the plain `whsec_…` secret.
        let legacy = webhook(&store, None).await;
        let plain = legacy.stored_secret.expose_secret().to_string();
        assert!(plain.starts_with("whsec_"));

        let first = reseal_secrets(store.as_ref(), &keyring).await.unwrap();
        assert_eq!((first.resealed, first.current), (1, 0), "{first:?}");
        let sealed = store.webhook(&legacy.id).await.unwrap().stored_secret;
        let sealed = sealed.expose_secret().to_string();
        assert!(sealed.starts_with(SEALED_SECRET_PREFIX));
        assert_eq!(
            open_secret(&keyring, &legacy.url, &sealed)
                .unwrap()
                .expose_secret(),
            plain
        );
        let again = reseal_secrets(store.as_ref(), &keyring).await.unwrap();
        assert_eq!((again.resealed, again.current), (0, 1), "{again:?}");

        // The replacement is a compare-and-swap: a row that changed since it was read stays.
        assert!(
            !store
                .replace_webhook_secret(&legacy.id, &plain, "sealed:v1:stale")
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .webhook(&legacy.id)
                .await
                .unwrap()
                .stored_secret
                .expose_secret(),
            sealed
        );
        // A row that does not open is reported, not an error.
        assert!(
            store
                .replace_webhook_secret(&legacy.id, &sealed, "sealed:v1:AAAA")
                .await
                .unwrap()
        );
        let broken = reseal_secrets(store.as_ref(), &keyring).await.unwrap();
        assert_eq!(broken.failed.len(), 1, "{broken:?}");
        assert!(broken.failed[0].starts_with(&legacy.id));
    }
);
