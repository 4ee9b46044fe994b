//! Sign-up, sign-in and who may do what.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, assert_problem, spawn_app};

#[tokio::test]
async fn an_unauthenticated_call_gets_401_with_a_problem_body() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/v1/requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let response = app
        .client
        .get(app.url("/v1/requests"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn a_registered_subject_can_sign_in_but_not_with_a_wrong_password() {
    let app = spawn_app().await;
    let response = app.register("Ana@Example.com", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let token = app.login_ok("ana@example.com").await;
    let user: Value = app
        .client
        .get(app.url("/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(user["email"], "ana@example.com");
    assert_eq!(user["role"], "subject");
    assert!(user["subject_id"].is_null(), "nobody links themselves");
    assert!(user.get("password_hash").is_none());

    let wrong = app
        .login("ana@example.com", "not the password at all")
        .await;
    assert_problem(wrong, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let unknown = app.login("nobody@example.com", PASSWORD).await;
    assert_problem(unknown, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn registration_refuses_weak_passwords_and_bad_emails() {
    let app = spawn_app().await;
    assert_problem(
        app.register("ana@example.com", "short").await,
        StatusCode::BAD_REQUEST,
        "validation",
    )
    .await;
    assert_problem(
        app.register("not-an-email", PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "validation",
    )
    .await;
    assert_eq!(
        app.register("ana@example.com", PASSWORD).await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn malformed_json_is_a_400_problem_not_a_500() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/auth/register"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
    let response = app
        .client
        .post(app.url("/v1/requests"))
        .bearer_auth(&app.admin_token)
        .json(&json!({ "type": "deletion", "subject_id": "x", "verification_note": "n" }))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
}

#[tokio::test]
async fn an_auditor_cannot_approve_a_request_and_a_subject_cannot_administer() {
    let app = spawn_app().await;
    let subject = app.summary.subjects[0].user_id.clone();
    let token = app.subject_token("s@example.com", &subject).await;
    let id = app.file_request_ok(&token, "erasure").await;
    assert_problem(
        app.approve(&app.auditor_token, &id).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.approve(&token, &id).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let response = app
        .client
        .get(app.url("/v1/users"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app
        .client
        .get(app.url("/v1/audit"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    // The request is untouched.
    let request: Value = app
        .get_request(&app.admin_token, &id)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(request["status"], "pending_approval");
}

#[tokio::test]
async fn a_subject_cannot_read_another_subjects_request_or_export() {
    let app = spawn_app().await;
    let alice = app
        .subject_token("alice@example.com", &app.summary.subjects[0].user_id)
        .await;
    let bob = app
        .subject_token("bob@example.com", &app.summary.subjects[1].user_id)
        .await;
    let id = app.file_request_ok(&alice, "access").await;
    app.approve(&app.admin_token, &id).await;
    let done = app.wait_until_final(&alice, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(app.export(&alice, &id).await.status(), StatusCode::OK);

    assert_problem(
        app.get_request(&bob, &id).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_problem(
        app.export(&bob, &id).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let listed: Vec<Value> = app.list_requests(&bob).await.json().await.unwrap();
    assert!(listed.is_empty(), "bob sees none of alice's requests");
    let listed: Vec<Value> = app.list_requests(&alice).await.json().await.unwrap();
    assert_eq!(listed.len(), 1);
    // Nor can a subject file for someone else.
    let response = app
        .file_request(
            &bob,
            &json!({ "type": "erasure", "subject_id": app.summary.subjects[0].user_id }),
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn an_unlinked_account_cannot_file_a_request() {
    let app = spawn_app().await;
    app.register("new@example.com", PASSWORD).await;
    let token = app.login_ok("new@example.com").await;
    let response = app.file_request(&token, &json!({ "type": "access" })).await;
    let body = assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(body["detail"].as_str().unwrap().contains("not linked"));
}

#[tokio::test]
async fn auditors_see_requests_by_pseudonym_only() {
    let app = spawn_app().await;
    let subject = app.summary.subjects[2].user_id.clone();
    let token = app.subject_token("c@example.com", &subject).await;
    let id = app.file_request_ok(&token, "access").await;
    let seen: Value = app
        .get_request(&app.auditor_token, &id)
        .await
        .json()
        .await
        .unwrap();
    assert!(seen["subject_id"].is_null());
    assert_eq!(seen["subject_pseudonym"].as_str().unwrap().len(), 64);
    assert_problem(
        app.export(&app.auditor_token, &id).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}
