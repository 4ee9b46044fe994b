//! Refresh tokens: rotation on every use, reuse detection that ends the whole session, and
//! revocation by sign-out, password change and disabling (RFC 9700 §4.14.2).

use lethe_core::domain::ApiTokenSecret;
use lethe_core::store::Store;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;

use crate::helpers::{PASSWORD, TestApp, assert_problem, spawn_app};

async fn sign_in(app: &TestApp, email: &str) -> Value {
    let response = app.login(email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/auth/refresh"))
        .json(&json!({ "refresh_token": token }))
        .send()
        .await
        .unwrap()
}

async fn me(app: &TestApp, access: &str) -> StatusCode {
    app.client
        .get(app.url("/v1/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .status()
}

fn field(body: &Value, name: &str) -> String {
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {body}"))
        .to_string()
}

#[tokio::test]
async fn a_refresh_token_is_spent_on_use_and_answers_a_new_pair() {
    let app = spawn_app().await;
    app.register("ana@example.com", PASSWORD).await;
    let first = sign_in(&app, "ana@example.com").await;
    let r1 = field(&first, "refresh_token");
    assert!(r1.starts_with("lethe_rt_"), "{r1}");
    assert_eq!(first["refresh_expires_in"], 1_209_600);
    assert_eq!(first["expires_in"], 900);

    let response = refresh(&app, &r1).await;
    assert_eq!(response.status(), StatusCode::OK);
    let second: Value = response.json().await.unwrap();
    let r2 = field(&second, "refresh_token");
    assert_ne!(r1, r2);
    assert_eq!(
        me(&app, &field(&second, "access_token")).await,
        StatusCode::OK
    );
    let third: Value = refresh(&app, &r2).await.json().await.unwrap();
    assert_eq!(
        me(&app, &field(&third, "access_token")).await,
        StatusCode::OK
    );

    // Only hashes are stored (SHA-256; ApiTokenSecret::hash_of is the plain hex digest).
    let store = Store::connect(&app.state.settings.database.url, 1)
        .await
        .unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query("SELECT token_hash, family_id FROM refresh_tokens")
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get("token_hash"), row.get("family_id")))
            .collect();
    let r3 = field(&third, "refresh_token");
    let family_of = |token: &str| {
        let hash = ApiTokenSecret::hash_of(token);
        rows.iter()
            .find(|(h, _)| *h == hash)
            .map(|(_, family)| family.clone())
            .unwrap_or_else(|| panic!("no stored hash for {token}"))
    };
    let family = family_of(&r1);
    assert_eq!(family_of(&r2), family);
    assert_eq!(family_of(&r3), family);
    assert_eq!(rows.iter().filter(|(_, f)| *f == family).count(), 3);
    for token in [&r1, &r2, &r3] {
        assert!(
            rows.iter().all(|(h, _)| h != token),
            "a token stored in clear"
        );
    }
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_the_whole_family() {
    let app = spawn_app().await;
    app.register("bo@example.com", PASSWORD).await;
    let stolen = field(&sign_in(&app, "bo@example.com").await, "refresh_token");
    let other_session = field(&sign_in(&app, "bo@example.com").await, "refresh_token");
    // The legitimate client refreshes; the thief then replays the spent token.
    let next: Value = refresh(&app, &stolen).await.json().await.unwrap();
    let r2 = field(&next, "refresh_token");
    assert_problem(
        refresh(&app, &stolen).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    // Every token of that family is dead now, the unspent successor too.
    assert_problem(
        refresh(&app, &r2).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    // Another sign-in's session is untouched.
    assert_eq!(refresh(&app, &other_session).await.status(), StatusCode::OK);
    let actions: Vec<String> = app
        .state
        .store
        .audit_entries(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "account.refresh_token_reused")
            .count(),
        1
    );
}

#[tokio::test]
async fn signing_out_changing_the_password_and_disabling_revoke_refresh_tokens() {
    let app = spawn_app().await;
    app.register("cy@example.com", PASSWORD).await;
    let session = sign_in(&app, "cy@example.com").await;
    let response = app
        .client
        .post(app.url("/v1/auth/logout"))
        .bearer_auth(field(&session, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_problem(
        refresh(&app, &field(&session, "refresh_token")).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;

    let old = sign_in(&app, "cy@example.com").await;
    let response = app
        .client
        .post(app.url("/v1/auth/password"))
        .bearer_auth(field(&old, "access_token"))
        .json(&json!({ "current_password": PASSWORD, "new_password": "a brand new passphrase" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let fresh: Value = response.json().await.unwrap();
    assert_eq!(
        refresh(&app, &field(&old, "refresh_token")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let id = app.my_id(&field(&fresh, "access_token")).await;
    let response = app
        .client
        .post(app.url(&format!("/v1/users/{id}/disable")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        refresh(&app, &field(&fresh, "refresh_token"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_malformed_or_unknown_refresh_token_is_a_problem_not_a_server_error() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/auth/refresh"))
        .json(&json!({ "token": "x" }))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
    for token in ["", "eyJhbGciOiJIUzI1NiJ9.e30.x", "lethe_rt_unknown"] {
        assert_problem(
            refresh(&app, token).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    // A refresh token is never a bearer token.
    app.register("di@example.com", PASSWORD).await;
    let session = sign_in(&app, "di@example.com").await;
    assert_eq!(
        me(&app, &field(&session, "refresh_token")).await,
        StatusCode::UNAUTHORIZED
    );
}
