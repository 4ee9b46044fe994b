//! Sessions that can be ended: sign-out everywhere, a password change, a disabled account.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_problem, spawn_app};

async fn me(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .get(app.url("/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn post(app: &TestApp, path: &str, token: &str, body: Option<Value>) -> reqwest::Response {
    let request = app.client.post(app.url(path)).bearer_auth(token);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    request.send().await.unwrap()
}

#[tokio::test]
async fn signing_out_ends_every_session_of_the_account_at_once() {
    let app = spawn_app().await;
    app.register("ana@example.com", PASSWORD).await;
    let phone = app.login_ok("ana@example.com").await;
    let laptop = app.login_ok("ana@example.com").await;
    assert_eq!(me(&app, &laptop).await.status(), StatusCode::OK);
    let response = post(&app, "/v1/auth/logout", &phone, None).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for token in [&phone, &laptop] {
        assert_problem(
            me(&app, token).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    let again = app.login_ok("ana@example.com").await;
    assert_eq!(me(&app, &again).await.status(), StatusCode::OK);
    // Other accounts keep their sessions.
    assert_eq!(me(&app, &app.admin_token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_password_change_ends_every_other_session() {
    let app = spawn_app().await;
    app.register("bo@example.com", PASSWORD).await;
    let old = app.login_ok("bo@example.com").await;
    let other = app.login_ok("bo@example.com").await;
    let wrong = post(
        &app,
        "/v1/auth/password",
        &old,
        Some(json!({ "current_password": "not the password at all", "new_password": "a brand new passphrase" })),
    )
    .await;
    assert_problem(wrong, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let weak = post(
        &app,
        "/v1/auth/password",
        &old,
        Some(json!({ "current_password": PASSWORD, "new_password": "short" })),
    )
    .await;
    assert_problem(weak, StatusCode::BAD_REQUEST, "validation").await;
    let response = post(
        &app,
        "/v1/auth/password",
        &old,
        Some(json!({ "current_password": PASSWORD, "new_password": "a brand new passphrase" })),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let fresh = response.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(me(&app, &fresh).await.status(), StatusCode::OK);
    for token in [&old, &other] {
        assert_eq!(me(&app, token).await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        app.login("bo@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("bo@example.com", "a brand new passphrase")
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_admin_disables_an_account_and_its_tokens_are_refused_at_once() {
    let app = spawn_app().await;
    app.register("cy@example.com", PASSWORD).await;
    let token = app.login_ok("cy@example.com").await;
    let id = app.my_id(&token).await;
    // Only admins, and not on themselves.
    let response = post(&app, &format!("/v1/users/{id}/disable"), &token, None).await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let admin_id = app.my_id(&app.admin_token).await;
    let response = post(
        &app,
        &format!("/v1/users/{admin_id}/disable"),
        &app.admin_token,
        None,
    )
    .await;
    assert_problem(response, StatusCode::CONFLICT, "own_account").await;

    let response = post(
        &app,
        &format!("/v1/users/{id}/disable"),
        &app.admin_token,
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.unwrap();
    assert!(user["disabled_at"].is_string(), "{user}");
    assert_problem(
        me(&app, &token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_problem(
        app.login("cy@example.com", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;

    let response = post(
        &app,
        &format!("/v1/users/{id}/enable"),
        &app.admin_token,
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        me(&app, &token).await.status(),
        StatusCode::UNAUTHORIZED,
        "tokens from before stay refused"
    );
    let again = app.login_ok("cy@example.com").await;
    assert_eq!(me(&app, &again).await.status(), StatusCode::OK);
    let actions: Vec<String> = app
        .state
        .store
        .audit_entries(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.contains(&"account.disabled".to_string()));
    assert!(actions.contains(&"account.enabled".to_string()));
}

#[tokio::test]
async fn an_account_is_linked_only_after_it_proves_it_controls_its_email() {
    let app = spawn_app().await;
    // An attacker pre-registers the victim's address; the code goes to the victim's mailbox.
    app.register("victim@example.com", PASSWORD).await;
    let attacker = app.login_ok("victim@example.com").await;
    let id = app.my_id(&attacker).await;
    let response = app.link_subject(&id, "u-42").await;
    assert_problem(response, StatusCode::CONFLICT, "email_not_verified").await;

    // Guessing is bounded: five wrong codes void the code.
    let code = app.mailed_code("victim@example.com", 1).await.unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let response = app.verify_email(&attacker, wrong).await;
        assert_problem(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    }
    let response = app.verify_email(&attacker, &code).await;
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    let response = app.link_subject(&id, "u-42").await;
    assert_problem(response, StatusCode::CONFLICT, "email_not_verified").await;

    // Only the hash of a code is stored.
    let response = post(&app, "/v1/auth/email/code", &attacker, None).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let code = app.mailed_code("victim@example.com", 2).await.unwrap();
    let store = lethe_core::store::Store::connect(&app.state.settings.database.url, 1)
        .await
        .unwrap();
    let stored: String = sqlx::query_scalar("SELECT code_hash FROM email_codes WHERE user_id = $1")
        .bind(&id)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(!stored.contains(&code) && stored.len() == 64);

    // The owner of the mailbox enters the code: now the admin may link the account.
    assert_eq!(
        app.verify_email(&attacker, &code).await.status(),
        StatusCode::NO_CONTENT
    );
    let me: Value = me(&app, &attacker).await.json().await.unwrap();
    assert_eq!(me["email_verified"], true);
    assert_eq!(app.link_subject(&id, "u-42").await.status(), StatusCode::OK);
    assert_problem(
        app.verify_email(&attacker, &code).await,
        StatusCode::CONFLICT,
        "already_verified",
    )
    .await;
}
