//! Least privilege in what requests show: subjects never see an admin's account id or a
//! worker's host; auditors never see free-text notes that may name people; producer tokens
//! reach only the datasets (and the restricted list) they are granted.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app};
use crate::ingest::{json_lines, register_managed, row};

#[tokio::test]
async fn a_subject_sees_admin_and_system_not_account_ids_or_hosts() {
    let app = spawn_app().await;
    let subject = app.summary.subjects[4].user_id.clone();
    let token = app.subject_token("dee@example.com", &subject).await;
    let access = app.file_request_ok(&token, "access").await;
    app.approve(&app.admin_token, &access).await;
    let done = app.wait_until_final(&token, &access).await;
    assert_eq!(done["status"], "completed", "{done}");
    let admin_id = app.my_id(&app.admin_token).await;
    let text = done.to_string();
    assert!(!text.contains(&admin_id), "{text}");
    assert!(!text.contains("worker:"), "{text}");
    assert_eq!(done["decided_by"], "admin");
    let actors: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert!(
        actors.contains(&"admin") && actors.contains(&"system"),
        "{actors:?}"
    );
    // The subject's own actions keep their own actor; admins see everything.
    let admin_view: Value = app
        .get_request(&app.admin_token, &access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(admin_view["decided_by"], format!("user:{admin_id}"));
}

#[tokio::test]
async fn an_auditor_sees_no_free_text_notes() {
    let app = spawn_app().await;
    let subject = app.summary.subjects[5].user_id.clone();
    let response = app
        .file_request(
            &app.admin_token,
            &json!({ "type": "access", "subject_id": subject, "verification_note": "passport no. X1234567 checked at the desk" }),
        )
        .await;
    let filed: Value = response.json().await.unwrap();
    let id = filed["id"].as_str().unwrap();
    app.client
        .post(app.url(&format!("/v1/requests/{id}/cancel")))
        .bearer_auth(&app.admin_token)
        .json(&json!({ "reason": "the subject called: Ana Ruiz, +34 600 000 000" }))
        .send()
        .await
        .unwrap();
    let seen: Value = app
        .get_request(&app.auditor_token, id)
        .await
        .json()
        .await
        .unwrap();
    let text = seen.to_string();
    assert!(!text.contains("X1234567"), "{text}");
    assert!(!text.contains("Ana Ruiz"), "{text}");
    assert!(
        seen["verification_note"]
            .as_str()
            .unwrap()
            .starts_with("[redacted")
    );
    let admin: Value = app
        .get_request(&app.admin_token, id)
        .await
        .json()
        .await
        .unwrap();
    assert!(admin.to_string().contains("Ana Ruiz"));
}

#[tokio::test]
async fn repetitive_requests_beyond_the_bound_are_refused_and_the_refusal_is_recorded() {
    let app = spawn_app().await;
    let subject = app.summary.subjects[6].user_id.clone();
    let token = app.subject_token("eve@example.com", &subject).await;
    let mut first = None;
    for i in 0..3 {
        let response = app
            .client
            .post(app.url("/v1/requests"))
            .bearer_auth(&token)
            .header("Idempotency-Key", format!("k{i}"))
            .json(&json!({ "type": "access" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        first.get_or_insert(response.json::<Value>().await.unwrap()["id"].clone());
    }
    let response = app.file_request(&token, &json!({ "type": "access" })).await;
    let body = crate::helpers::assert_problem(
        response,
        reqwest::StatusCode::CONFLICT,
        "excessive_requests",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("12(5)"), "{body}");
    // A retry of an open one is not a new request; another type is not bounded by this one.
    let retry = app
        .client
        .post(app.url("/v1/requests"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "k0")
        .json(&json!({ "type": "access" }))
        .send()
        .await
        .unwrap();
    assert!(retry.status().is_success(), "{}", retry.status());
    assert_eq!(retry.json::<Value>().await.unwrap()["id"], first.unwrap());
    app.file_request_ok(&token, "erasure").await;
    let refusals = app
        .state
        .store
        .audit_entries(&lethe_core::store::AuditFilter {
            action: Some("request.refused_excessive".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(refusals.len(), 1);
    assert!(
        refusals[0].details["reason"]
            .as_str()
            .unwrap()
            .contains("Art. 12(5)")
    );
}

async fn token_with(app: &TestApp, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/tokens"))
        .bearer_auth(&app.admin_token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn secret_of(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    created["token"].as_str().unwrap().to_string()
}

async fn restricted_list(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .get(app.url("/v1/subjects/restricted"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_producer_token_ingests_only_into_the_datasets_it_is_granted() {
    let app = spawn_app().await;
    let (managed, _) = register_managed(&app).await;
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
    let other = datasets
        .iter()
        .find(|d| d["name"] == "running_events")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let elsewhere = secret_of(
        token_with(
            &app,
            json!({ "name": "other-pipeline", "datasets": [other] }),
        )
        .await,
    )
    .await;
    let rows = json_lines((0..3).map(row));
    let response = app
        .ingest(
            &elsewhere,
            &managed,
            Some("application/x-ndjson"),
            rows.clone(),
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let granted = secret_of(
        token_with(
            &app,
            json!({ "name": "events-pipeline", "datasets": [managed] }),
        )
        .await,
    )
    .await;
    let response = app
        .ingest(&granted, &managed, Some("application/x-ndjson"), rows)
        .await;
    assert!(response.status().is_success(), "{}", response.status());

    // A token names its datasets, and only registered ones.
    let response = token_with(&app, json!({ "name": "p" })).await;
    assert_problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
    let response = token_with(
        &app,
        json!({ "name": "p", "datasets": ["no-such-dataset"] }),
    )
    .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("no-such-dataset")
    );
}

#[tokio::test]
async fn a_producer_token_reads_the_restricted_list_only_when_granted() {
    let app = spawn_app().await;
    let plain = secret_of(token_with(&app, json!({ "name": "etl", "datasets": [] })).await).await;
    assert_problem(
        restricted_list(&app, &plain).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let granted = secret_of(
        token_with(
            &app,
            json!({ "name": "etl-2", "datasets": [], "list_restricted": true }),
        )
        .await,
    )
    .await;
    assert_eq!(
        restricted_list(&app, &granted).await.status(),
        StatusCode::OK
    );
    let listed: Vec<Value> = app
        .list_tokens(&app.admin_token)
        .await
        .json()
        .await
        .unwrap();
    let scopes: Vec<&Value> = listed
        .iter()
        .map(|t| &t["scope"]["list_restricted"])
        .collect();
    assert!(
        scopes.contains(&&json!(false)) && scopes.contains(&&json!(true)),
        "{listed:?}"
    );
}

#[tokio::test]
async fn a_rectification_naming_no_column_of_a_foreign_lake_is_refused_before_the_audit_log() {
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
    let demo = datasets[0]["id"].as_str().unwrap().to_string();
    let subject = app.summary.subjects[2].user_id.clone();
    let token = app.subject_token("rect-col@example.com", &subject).await;
    let before = app
        .state
        .store
        .audit_entries(&Default::default())
        .await
        .unwrap()
        .len();
    let column = "Ana Ruiz, born 1984-02-03";
    let response = app
        .file_request(
            &token,
            &json!({"type": "rectification", "dataset_id": demo, "changes": {column: "x"}}),
        )
        .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;
    assert!(
        problem["detail"].as_str().unwrap().contains(column),
        "the problem names the column: {problem}"
    );
    let entries = app
        .state
        .store
        .audit_entries(&Default::default())
        .await
        .unwrap();
    assert_eq!(entries.len(), before, "nothing was audited");
    assert!(
        entries
            .iter()
            .all(|e| !e.details.to_string().contains("Ana Ruiz")),
        "the name never reached the audit log"
    );
    // A real column of the files is accepted.
    let response = app
        .file_request(
            &token,
            &json!({"type": "rectification", "dataset_id": demo, "changes": {"notes": "x"}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn an_auditor_sees_legal_hold_reasons_redacted() {
    let app = spawn_app().await;
    let reason = "litigation against Ana Ruiz, case 2025/117";
    let response = app
        .client
        .post(app.url("/v1/legal-holds"))
        .bearer_auth(&app.admin_token)
        .json(&json!({ "subject_id": "u-7", "legal_basis": "Art. 17(3)(e)", "reason": reason }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let list = |token: String| {
        let app = &app;
        async move {
            let holds: Vec<Value> = app
                .client
                .get(app.url("/v1/legal-holds"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            holds
        }
    };
    let admin = list(app.admin_token.clone()).await;
    assert_eq!(admin[0]["reason"], reason);
    let auditor = list(app.auditor_token.clone()).await;
    assert_eq!(
        auditor[0]["reason"],
        format!("[redacted: {} characters]", reason.chars().count())
    );
    assert_eq!(auditor[0]["legal_basis"], "Art. 17(3)(e)");
    // Reasons are bounded.
    let response = app
        .client
        .post(app.url("/v1/legal-holds"))
        .bearer_auth(&app.admin_token)
        .json(&json!({ "subject_id": "u-7", "legal_basis": "Art. 17(3)(e)", "reason": "x".repeat(2001) }))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;
}
