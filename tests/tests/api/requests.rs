//! The request lifecycle: due dates, rejection, idempotency, admin filings.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn a_request_is_due_one_calendar_month_after_receipt() {
    let app = spawn_app().await;
    let token = app
        .subject_token("d@example.com", &app.summary.subjects[0].user_id)
        .await;
    let id = app.file_request_ok(&token, "access").await;
    let r: Value = app.get_request(&token, &id).await.json().await.unwrap();
    let received =
        chrono::DateTime::parse_from_rfc3339(r["received_at"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(r["due_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        due,
        received.checked_add_months(chrono::Months::new(1)).unwrap()
    );
    let days_left = r["days_left"].as_i64().unwrap();
    assert!((27..=31).contains(&days_left), "{days_left}");
}

#[tokio::test]
async fn a_rejection_needs_a_reason_that_the_subject_sees_and_is_final() {
    let app = spawn_app().await;
    let token = app
        .subject_token("e@example.com", &app.summary.subjects[0].user_id)
        .await;
    let id = app.file_request_ok(&token, "erasure").await;
    assert_problem(
        app.reject(&app.admin_token, &id, "  ").await,
        StatusCode::BAD_REQUEST,
        "validation",
    )
    .await;
    let response = app
        .reject(&app.admin_token, &id, "Identity could not be verified.")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let seen: Value = app.get_request(&token, &id).await.json().await.unwrap();
    assert_eq!(seen["status"], "rejected");
    assert_eq!(seen["decision_reason"], "Identity could not be verified.");
    assert!(seen["days_left"].is_null());
    assert_problem(
        app.approve(&app.admin_token, &id).await,
        StatusCode::CONFLICT,
        "invalid_transition",
    )
    .await;
}

#[tokio::test]
async fn approving_twice_is_a_conflict() {
    let app = spawn_app().await;
    let token = app
        .subject_token("f@example.com", &app.summary.subjects[0].user_id)
        .await;
    let id = app.file_request_ok(&token, "access").await;
    assert_eq!(
        app.approve(&app.admin_token, &id).await.status(),
        StatusCode::OK
    );
    assert_problem(
        app.approve(&app.admin_token, &id).await,
        StatusCode::CONFLICT,
        "invalid_transition",
    )
    .await;
    assert_problem(
        app.approve(&app.admin_token, "no-such-id").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retried_filing_return_the_first_request() {
    let app = spawn_app().await;
    let token = app
        .subject_token("g@example.com", &app.summary.subjects[0].user_id)
        .await;
    let send = |kind: &'static str| {
        app.client
            .post(app.url("/v1/requests"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "retry-123")
            .json(&json!({ "type": kind }))
            .send()
    };
    let first = send("erasure").await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let second = send("erasure").await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    let listed: Vec<Value> = app.list_requests(&token).await.json().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_problem(
        send("access").await.unwrap(),
        StatusCode::CONFLICT,
        "idempotency_key_reused",
    )
    .await;
}

#[tokio::test]
async fn an_admin_files_for_a_subject_only_with_a_verification_note() {
    let app = spawn_app().await;
    let subject = app.summary.subjects[5].user_id.clone();
    let response = app
        .file_request(
            &app.admin_token,
            &json!({ "type": "access", "subject_id": subject }),
        )
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;
    let response = app
        .file_request(
            &app.admin_token,
            &json!({ "type": "access", "subject_id": subject, "verification_note": "called back on the phone number on file" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let r: Value = response.json().await.unwrap();
    assert_eq!(r["subject_id"], subject.as_str());
    assert_eq!(
        r["verification_note"],
        "called back on the phone number on file"
    );
    let response = app
        .file_request(
            &app.auditor_token,
            &json!({ "type": "access", "subject_id": subject, "verification_note": "x" }),
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn an_erasure_that_hits_a_corrupt_file_fails_and_leaves_that_file_untouched() {
    let app = spawn_app().await;
    let subject = app.summary.subjects[0].user_id.clone();
    let corrupt_dir = app.lake.join("date=2025-01-01").join("region=EU");
    std::fs::create_dir_all(&corrupt_dir).unwrap();
    let corrupt = corrupt_dir.join("part-99999.parquet");
    std::fs::write(&corrupt, b"PAR1 this is not really parquet PAR1").unwrap();
    let token = app.subject_token("h@example.com", &subject).await;
    let id = app.file_request_ok(&token, "erasure").await;
    app.approve(&app.admin_token, &id).await;
    let done = app.wait_until_final(&token, &id).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .contains("part-99999.parquet"),
        "{done}"
    );
    assert_eq!(
        std::fs::read(&corrupt).unwrap(),
        b"PAR1 this is not really parquet PAR1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasures_approved_together_are_applied_in_one_pass_per_file() {
    // Approved erasures wait out a 3 s window; the first plan due takes them all.
    let app = crate::helpers::spawn_app_with(crate::helpers::Spawn {
        batch_window_s: 3,
        ..Default::default()
    })
    .await;
    let before = crate::lake_snapshot::snapshot(&app.lake);
    let active: Vec<String> = app
        .summary
        .subjects
        .iter()
        .map(|s| s.user_id.clone())
        .filter(|id| {
            before.values().any(|f| {
                f.rows
                    .iter()
                    .any(|r| crate::lake_snapshot::is_subject_row(r, id))
            })
        })
        .take(3)
        .collect();
    assert_eq!(active.len(), 3);
    // The admin files and approves three erasures.
    let mut ids = Vec::new();
    for subject in &active {
        let response = app
            .file_request(
                &app.admin_token,
                &json!({ "type": "erasure", "subject_id": subject, "verification_note": "signed letter" }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        ids.push(
            response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for id in &ids {
        assert_eq!(
            app.approve(&app.admin_token, id).await.status(),
            StatusCode::OK
        );
    }
    let mut removed = 0;
    for (id, subject) in ids.iter().zip(&active) {
        let done = app.wait_until_final(&app.admin_token, id).await;
        assert_eq!(done["status"], "completed", "{done}");
        let expected: usize = before
            .values()
            .map(|f| {
                f.rows
                    .iter()
                    .filter(|r| crate::lake_snapshot::is_subject_row(r, subject))
                    .count()
            })
            .sum();
        assert_eq!(done["result"]["rows_removed"], expected as u64);
        removed += expected;
    }
    let after = crate::lake_snapshot::snapshot(&app.lake);
    let rows_after: usize = after.values().map(|f| f.rows.len()).sum();
    let rows_before: usize = before.values().map(|f| f.rows.len()).sum();
    assert_eq!(rows_after, rows_before - removed);
    for subject in &active {
        assert!(!after.values().any(|f| {
            f.rows
                .iter()
                .any(|r| crate::lake_snapshot::is_subject_row(r, subject))
        }));
    }
    // No file was rewritten more than once, whatever the batching turned out to be: count the
    // audited file rewrites per file.
    let audit: String = app
        .audit_export(&app.auditor_token)
        .await
        .text()
        .await
        .unwrap();
    let mut per_file = std::collections::BTreeMap::<String, usize>::new();
    let mut plans = 0;
    for line in audit.lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        if entry["action"] == "file.erased" && entry["details"]["status"] == "rewritten" {
            *per_file
                .entry(entry["details"]["file"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        if entry["action"] == "erasure.planned" {
            plans += 1;
        }
    }
    assert_eq!(plans, 1, "the three erasures ran as one batch");
    assert!(per_file.values().all(|n| *n == 1), "{per_file:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_retries_a_dead_lettered_erasure_after_fixing_the_lake() {
    let app = spawn_app().await;
    let subject = app.summary.subjects[0].user_id.clone();
    let corrupt = app
        .lake
        .join("date=2025-01-02")
        .join("region=US")
        .join("part-77777.parquet");
    std::fs::create_dir_all(corrupt.parent().unwrap()).unwrap();
    std::fs::write(&corrupt, b"not parquet at all").unwrap();
    let id = app
        .file_request(
            &app.admin_token,
            &json!({ "type": "erasure", "subject_id": subject, "verification_note": "in person" }),
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.approve(&app.admin_token, &id).await;
    let failed = app.wait_until_final(&app.admin_token, &id).await;
    assert_eq!(failed["status"], "failed");

    // The dead letter is visible to admins, with its last error; subjects cannot see the queue.
    let jobs = |status: &'static str| {
        app.client
            .get(app.url(&format!("/v1/jobs?status={status}")))
            .bearer_auth(&app.admin_token)
            .send()
    };
    let dead: Vec<Value> = jobs("failed").await.unwrap().json().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("part-77777.parquet")
    );
    let job_id = dead[0]["id"].as_str().unwrap().to_string();
    let cancel_running = app
        .client
        .post(app.url("/v1/jobs/does-not-exist/cancel"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_problem(cancel_running, StatusCode::NOT_FOUND, "not_found").await;

    // The operator moves the foreign file away and retries: the erasure now completes.
    std::fs::remove_file(&corrupt).unwrap();
    let response = app
        .client
        .post(app.url(&format!("/v1/jobs/{job_id}/retry")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let done = app.wait_until_final(&app.admin_token, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let history: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    // The admin's retry reopens the request; the worker that picks the job up starts it.
    assert_eq!(
        history,
        [
            "received",
            "pending_approval",
            "approved",
            "running",
            "failed",
            "running",
            "running",
            "completed"
        ]
    );
    let actors: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["actor"].as_str().unwrap())
        .collect();
    assert!(actors[5].starts_with("user:"), "{actors:?}");
    assert!(actors[6].starts_with("worker:"), "{actors:?}");
    // Retrying a finished job is a conflict.
    let again = app
        .client
        .post(app.url(&format!("/v1/jobs/{job_id}/retry")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_problem(again, StatusCode::CONFLICT, "invalid_job_state").await;
}

#[tokio::test]
async fn the_store_reads_many_requests_in_one_call_in_the_order_asked() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for (i, subject) in app.summary.subjects.iter().take(3).enumerate() {
        let token = app
            .subject_token(&format!("many{i}@example.com"), &subject.user_id)
            .await;
        ids.push(app.file_request_ok(&token, "access").await);
    }
    let asked = vec![ids[2].clone(), ids[0].clone(), ids[1].clone()];
    let read = app.state.store.requests(&asked).await.unwrap();
    let got: Vec<&str> = read.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(got, asked.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(read[1].subject_id.as_str(), app.summary.subjects[0].user_id);
    assert!(app.state.store.requests(&[]).await.unwrap().is_empty());
    let missing = app
        .state
        .store
        .requests(&[ids[0].clone(), "no-such-request".into()])
        .await
        .unwrap_err();
    assert!(
        matches!(missing, lethe_core::store::StoreError::NotFound { ref id, .. } if id == "no-such-request"),
        "{missing:?}"
    );
}
