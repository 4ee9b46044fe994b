//! The request lifecycle: approval policy, cancellation and the erasure cooling-off period,
//! legal holds (GDPR Art. 17(3)) and export expiry.

use std::time::Duration;

use lethe_core::config::{ApprovalPolicy, Settings};
use lethe_core::domain::SubjectId;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Spawn, TestApp, assert_problem, spawn_app, spawn_app_with};

/// An active subject of the demo lake (with rows), and a token for them.
async fn subject(app: &TestApp, email: &str, nth: usize) -> (String, String) {
    let id = app.summary.subjects[nth].user_id.clone();
    let token = app.subject_token(email, &id).await;
    (id, token)
}

async fn cancel(app: &TestApp, token: &str, id: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/requests/{id}/cancel")))
        .bearer_auth(token)
        .json(&json!({ "reason": "changed my mind" }))
        .send()
        .await
        .unwrap()
}

async fn place_hold(app: &TestApp, body: Value) -> Value {
    let response = app
        .client
        .post(app.url("/v1/legal-holds"))
        .bearer_auth(&app.admin_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
    response.json().await.unwrap()
}

fn statuses(request: &Value) -> Vec<String> {
    request["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn access_is_approved_by_policy_and_erasure_waits_for_review() {
    let app = spawn_app_with(Spawn {
        configure: Some(|s: &mut Settings| s.requests.access_approval = ApprovalPolicy::Auto),
        ..Spawn::default()
    })
    .await;
    let (_, token) = subject(&app, "a@example.com", 0).await;
    let access = app.file_request_ok(&token, "access").await;
    let done = app.wait_until_final(&token, &access).await;
    assert_eq!(done["status"], "completed", "no admin needed: {done}");
    assert_eq!(done["decided_by"], "policy:auto");
    assert_eq!(statuses(&done)[..2], ["received", "approved"]);

    let erasure = app.file_request_ok(&token, "erasure").await;
    let filed: Value = app
        .get_request(&token, &erasure)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(filed["status"], "pending_approval");
    assert_eq!(statuses(&filed), ["received", "pending_approval"]);
}

#[tokio::test]
async fn an_erasure_can_be_cancelled_during_its_cooling_off_period_and_keeps_its_key() {
    let app = spawn_app_with(Spawn {
        configure: Some(|s: &mut Settings| s.requests.erasure_cooling_off_s = 3600),
        ..Spawn::default()
    })
    .await;
    let (id, token) = subject(&app, "b@example.com", 1).await;
    let erasure = app.file_request_ok(&token, "erasure").await;
    let approved: Value = app
        .approve(&app.admin_token, &erasure)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(approved["status"], "approved");
    assert!(approved["cooling_off_until"].is_string(), "{approved}");
    assert!(
        approved["key_destroyed_at"].is_null(),
        "the key waits for the cooling-off"
    );

    // Another subject cannot cancel it; the subject can.
    let (_, other) = subject(&app, "c@example.com", 2).await;
    assert_eq!(
        cancel(&app, &other, &erasure).await.status(),
        StatusCode::NOT_FOUND
    );
    let response = cancel(&app, &token, &erasure).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cancelled: Value = response.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(
        cancelled["history"].as_array().unwrap().last().unwrap()["note"],
        "changed my mind"
    );
    let jobs: Vec<Value> = app
        .client
        .get(app.url("/v1/jobs?status=cancelled"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jobs.iter().any(|j| j["request_id"] == erasure.as_str()),
        "its job is cancelled too"
    );
    // The key was never destroyed, and a cancelled request stays cancelled.
    let subject_id = SubjectId::parse(&id).unwrap();
    assert!(
        app.state
            .keyring
            .shredded_among([subject_id.as_str()])
            .await
            .unwrap()
            .is_empty()
    );
    assert_problem(
        app.approve(&app.admin_token, &erasure).await,
        StatusCode::CONFLICT,
        "invalid_transition",
    )
    .await;
    assert_problem(
        cancel(&app, &token, &erasure).await,
        StatusCode::CONFLICT,
        "invalid_transition",
    )
    .await;
}

#[tokio::test]
async fn a_pending_request_can_be_cancelled_but_not_a_finished_one() {
    let app = spawn_app().await;
    let (_, token) = subject(&app, "d@example.com", 3).await;
    let pending = app.file_request_ok(&token, "access").await;
    let response = cancel(&app, &token, &pending).await;
    assert_eq!(response.status(), StatusCode::OK);
    let access = app.file_request_ok(&token, "access").await;
    app.approve(&app.admin_token, &access).await;
    let done = app.wait_until_final(&token, &access).await;
    assert_eq!(done["status"], "completed");
    assert_problem(
        cancel(&app, &token, &access).await,
        StatusCode::CONFLICT,
        "invalid_transition",
    )
    .await;
}

#[tokio::test]
async fn erasure_under_a_legal_hold_is_partial_and_says_what_was_kept() {
    let app = spawn_app().await;
    let (id, token) = subject(&app, "e@example.com", 4).await;
    let hold = place_hold(
        &app,
        json!({"subject_id": id, "legal_basis": "Art. 17(3)(e): legal claims",
               "reason": "Litigation hold, case 2025-117"}),
    )
    .await;
    assert!(hold["subject_pseudonym"].is_string() && hold["dataset_id"].is_null());
    assert!(
        !hold.to_string().contains(&id),
        "a hold never stores the subject id"
    );

    let jurisdiction = app.url(&format!("/v1/subjects/{id}/jurisdiction"));
    let response = app
        .client
        .put(&jurisdiction)
        .bearer_auth(&app.admin_token)
        .json(&json!({"jurisdiction": "EU"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let jurisdiction_status = || async {
        app.client
            .get(&jurisdiction)
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .unwrap()
            .status()
    };

    let erasure = app.file_request_ok(&token, "erasure").await;
    let approved: Value = app
        .approve(&app.admin_token, &erasure)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        approved["key_destroyed_at"].is_null(),
        "a held subject keeps their key"
    );
    let done = app.wait_until_final(&token, &erasure).await;
    assert_eq!(done["status"], "partially_completed", "{done}");
    let kept = &done["result"]["kept"][0];
    assert_eq!(kept["scope"], "subject");
    assert_eq!(kept["legal_basis"], "Art. 17(3)(e): legal claims");
    assert_eq!(done["result"]["rows_removed"], 0);
    // The partial erasure has a signed certificate naming the hold it respected.
    let certificate: Value = app
        .client
        .get(app.url(&format!("/v1/requests/{erasure}/certificate")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        certificate["status"], "partially_completed",
        "{certificate}"
    );
    assert_eq!(
        certificate["legal_holds_respected"][0]["legal_basis"],
        "Art. 17(3)(e): legal claims"
    );
    assert!(
        certificate["key_destroyed_at"].is_null(),
        "the key was kept"
    );
    assert!(!certificate.to_string().contains(&id), "no subject id");
    assert_eq!(
        jurisdiction_status().await,
        StatusCode::OK,
        "kept data keeps its residency"
    );

    // Released, the next erasure goes through.
    let response = app
        .client
        .post(app.url(&format!(
            "/v1/legal-holds/{}/release",
            hold["id"].as_str().unwrap()
        )))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let active: Vec<Value> = app
        .client
        .get(app.url("/v1/legal-holds?active=true"))
        .bearer_auth(&app.auditor_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(active.is_empty());
    let again = app.file_request_ok(&token, "erasure").await;
    app.approve(&app.admin_token, &again).await;
    let done = app.wait_until_final(&token, &again).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        jurisdiction_status().await,
        StatusCode::NOT_FOUND,
        "nothing of the subject is left: their jurisdiction went with it"
    );
}

#[tokio::test]
async fn a_dataset_hold_keeps_the_dataset_and_a_subject_cannot_place_holds() {
    let app = spawn_app().await;
    let datasets: Vec<Value> = app
        .client
        .get(app.url("/v1/datasets"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dataset_id = datasets[0]["id"].as_str().unwrap();
    place_hold(
        &app,
        json!({"dataset_id": dataset_id, "legal_basis": "Art. 17(3)(b): legal obligation",
               "reason": "Tax records, 10 years", "ends_at": "2099-01-01T00:00:00Z"}),
    )
    .await;
    let (_, token) = subject(&app, "f@example.com", 5).await;
    let refused = app
        .client
        .post(app.url("/v1/legal-holds"))
        .bearer_auth(&token)
        .json(&json!({"dataset_id": dataset_id, "legal_basis": "x", "reason": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let both = app
        .client
        .post(app.url("/v1/legal-holds"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"dataset_id": dataset_id, "subject_id": "u-1", "legal_basis": "x", "reason": "y"}))
        .send()
        .await
        .unwrap();
    assert_problem(both, StatusCode::BAD_REQUEST, "validation").await;

    let erasure = app.file_request_ok(&token, "erasure").await;
    app.approve(&app.admin_token, &erasure).await;
    let done = app.wait_until_final(&token, &erasure).await;
    assert_eq!(done["status"], "partially_completed", "{done}");
    assert_eq!(done["result"]["kept"][0]["scope"], "dataset");
    assert_eq!(done["result"]["kept"][0]["dataset_id"], dataset_id);
}

#[tokio::test]
async fn an_export_expires_and_is_deleted_by_the_sweep() {
    let app = spawn_app_with(Spawn {
        configure: Some(|s: &mut Settings| s.requests.export_ttl_s = 3),
        ..Spawn::default()
    })
    .await;
    let (_, token) = subject(&app, "g@example.com", 6).await;
    let access = app.file_request_ok(&token, "access").await;
    app.approve(&app.admin_token, &access).await;
    let done = app.wait_until_final(&token, &access).await;
    assert!(done["export_expires_at"].is_string(), "{done}");
    let exports = app.data_dir.path().join("exports");
    let file = exports.join(format!("{access}.zip"));
    // Encrypted at rest: the stored archive is a sealed blob, not a zip, and names nobody.
    let at_rest = std::fs::read(&file).unwrap();
    assert!(at_rest.starts_with(b"LETHEBL1"), "sealed at rest");
    let subject_id = app.summary.subjects[6].user_id.clone();
    assert!(
        !at_rest
            .windows(subject_id.len())
            .any(|w| w == subject_id.as_bytes())
    );
    let response = app.export(&token, &access).await;
    assert_eq!(response.status(), StatusCode::OK);
    let zip = response.bytes().await.unwrap();
    assert!(zip.starts_with(b"PK"), "the download is the plain zip");

    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_problem(
        app.export(&token, &access).await,
        StatusCode::GONE,
        "export_expired",
    )
    .await;
    let mut gone = false;
    for _ in 0..100 {
        if !file.exists() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the sweep deleted the expired export");
    let entries = app
        .state
        .store
        .audit_entries(&lethe_core::store::AuditFilter {
            action: Some("export.deleted".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    let view: Value = app.get_request(&token, &access).await.json().await.unwrap();
    assert_eq!(view["export_available"], false);
}

#[tokio::test]
async fn an_erasure_whose_key_is_destroyed_can_no_longer_be_cancelled() {
    // The batch window keeps the erasure's job queued after approval; without a cooling-off
    // period the key is destroyed at approval.
    let app = spawn_app_with(Spawn {
        batch_window_s: 3600,
        ..Spawn::default()
    })
    .await;
    let (id, token) = subject(&app, "k@example.com", 7).await;
    let erasure = app.file_request_ok(&token, "erasure").await;
    let approved: Value = app
        .approve(&app.admin_token, &erasure)
        .await
        .json()
        .await
        .unwrap();
    assert!(approved["key_destroyed_at"].is_string(), "{approved}");
    for caller in [&token, &app.admin_token] {
        let body = assert_problem(
            cancel(&app, caller, &erasure).await,
            StatusCode::CONFLICT,
            "key_destroyed",
        )
        .await;
        assert!(!body["detail"].as_str().unwrap().contains(&id), "{body}");
    }
    let view: Value = app
        .get_request(&token, &erasure)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "approved", "the erasure still runs");
    let jobs: Vec<Value> = app
        .client
        .get(app.url("/v1/jobs?status=queued"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jobs.iter().any(|j| j["request_id"] == erasure.as_str()),
        "its job stays queued"
    );
}

#[tokio::test]
async fn a_rejected_erasure_never_destroys_the_key() {
    let app = spawn_app().await;
    let (id, token) = subject(&app, "l@example.com", 8).await;
    let erasure = app.file_request_ok(&token, "erasure").await;
    app.reject(&app.admin_token, &erasure, "identity not verified")
        .await;
    let request = app.state.store.request(&erasure).await.unwrap();
    let destroyed = lethe_core::requests::destroy_subject_key(
        app.state.store.as_ref(),
        &app.state.keyring,
        &request,
        "system:test",
    )
    .await
    .unwrap();
    assert!(!destroyed);
    assert!(
        app.state
            .keyring
            .shredded_among([id.as_str()])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_erasure_deletes_the_subjects_earlier_exports_and_downloads_answer_410() {
    let app = spawn_app().await;
    let (_, token) = subject(&app, "m@example.com", 9).await;
    let access = app.file_request_ok(&token, "access").await;
    app.approve(&app.admin_token, &access).await;
    let done = app.wait_until_final(&token, &access).await;
    assert_eq!(done["status"], "completed", "{done}");
    let file = app
        .data_dir
        .path()
        .join("exports")
        .join(format!("{access}.zip"));
    assert!(file.exists());
    assert_eq!(app.export(&token, &access).await.status(), StatusCode::OK);

    let erasure = app.file_request_ok(&token, "erasure").await;
    let approved: Value = app
        .approve(&app.admin_token, &erasure)
        .await
        .json()
        .await
        .unwrap();
    assert!(approved["key_destroyed_at"].is_string(), "{approved}");
    assert!(!file.exists(), "the export went with the key");
    assert_problem(
        app.export(&app.admin_token, &access).await,
        StatusCode::GONE,
        "export_erased",
    )
    .await;
    let view: Value = app
        .get_request(&app.admin_token, &access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["export_available"], false);
    let entries = app
        .state
        .store
        .audit_entries(&lethe_core::store::AuditFilter {
            action: Some("export.deleted".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].details["reason"], "erased");
    assert_eq!(entries[0].request_id.as_deref(), Some(access.as_str()));
}
