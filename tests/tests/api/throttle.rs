//! Online guessing and argon2 exhaustion: rate limits per address and per account, the
//! lockout after failed sign-ins, the bound on hashes at once, and a registration that does
//! not tell whether an e-mail has an account.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, Spawn, TestApp, assert_problem, spawn_app, spawn_app_with};

async fn login_from(app: &TestApp, ip: &str, email: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/auth/login"))
        .header("X-Forwarded-For", ip)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
}

async fn assert_limited(response: reqwest::Response) -> u64 {
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    retry_after
}

#[tokio::test]
async fn registration_answers_the_same_whether_or_not_the_email_has_an_account() {
    let app = spawn_app().await;
    let first = app.register("ana@example.com", PASSWORD).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    // The address is taken now (and the admin's has been all along): the same answer.
    for email in ["ANA@example.com", "admin@example.com"] {
        let again = app.register(email, "an attacker's own password").await;
        assert_eq!(again.status(), StatusCode::ACCEPTED);
        assert_eq!(again.json::<Value>().await.unwrap(), first);
    }
    // Nothing changed for the owners.
    app.login_ok("ana@example.com").await;
    app.login_ok("admin@example.com").await;
    assert_eq!(
        app.login("admin@example.com", "an attacker's own password")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn sign_ins_from_one_address_beyond_its_limit_get_429_with_retry_after() {
    let app = spawn_app_with(Spawn {
        configure: Some(|s| {
            s.auth.attempts_per_ip_per_minute = 4;
            s.server.trust_forwarded_for = true;
        }),
        ..Spawn::default()
    })
    .await;
    // spawn_app signed in twice from 127.0.0.1; this address starts afresh.
    for i in 0..4 {
        let response =
            login_from(&app, "198.51.100.7", &format!("u{i}@example.com"), PASSWORD).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let retry_after =
        assert_limited(login_from(&app, "198.51.100.7", "admin@example.com", PASSWORD).await).await;
    assert!(retry_after <= 60, "{retry_after}");
    // Registration shares the address's budget.
    let response = app
        .client
        .post(app.url("/v1/auth/register"))
        .header("X-Forwarded-For", "198.51.100.7")
        .json(&json!({ "email": "new@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_limited(response).await;
    // Another address is not affected.
    let response = login_from(&app, "198.51.100.8", "admin@example.com", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_account_is_limited_from_every_address() {
    let app = spawn_app_with(Spawn {
        configure: Some(|s| {
            s.auth.attempts_per_account_per_minute = 3;
            s.server.trust_forwarded_for = true;
        }),
        ..Spawn::default()
    })
    .await;
    // spawn_app signed the admin in once already.
    for i in 1..3 {
        let response = login_from(
            &app,
            &format!("203.0.113.{i}"),
            "admin@example.com",
            PASSWORD,
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_limited(login_from(&app, "203.0.113.9", "Admin@Example.com", PASSWORD).await).await;
}

#[tokio::test]
async fn repeated_failures_lock_an_email_known_or_not_even_against_the_right_password() {
    let app = spawn_app_with(Spawn {
        configure: Some(|s| {
            s.auth.lockout_after_failures = 3;
            s.auth.lockout_base_s = 30;
        }),
        ..Spawn::default()
    })
    .await;
    for email in ["admin@example.com", "nobody@example.com"] {
        for _ in 0..3 {
            let response = app.login(email, "not the password at all").await;
            assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
        }
        let retry_after = assert_limited(app.login(email, PASSWORD).await).await;
        assert!((25..=30).contains(&retry_after), "{retry_after}");
    }
    // Other accounts still sign in.
    app.login_ok("auditor@example.com").await;
}

#[tokio::test]
async fn a_success_forgets_earlier_failures() {
    let app = spawn_app_with(Spawn {
        configure: Some(|s| s.auth.lockout_after_failures = 3),
        ..Spawn::default()
    })
    .await;
    for _ in 0..2 {
        app.login("admin@example.com", "not the password at all")
            .await;
    }
    app.login_ok("admin@example.com").await;
    for _ in 0..2 {
        app.login("admin@example.com", "not the password at all")
            .await;
    }
    app.login_ok("admin@example.com").await;
}

#[tokio::test]
async fn sign_ins_beyond_the_hashing_bound_get_503_with_retry_after_never_500() {
    // 96 hashes one at a time take well over the 500 ms a sign-in waits for one (argon2id at
    // 19 MiB takes at least about 10 ms on any core); 24 did not always, on a fast machine.
    // The per-IP limit is raised so that all 96 reach the hashing bound.
    let app = spawn_app_with(Spawn {
        configure: Some(|s| {
            s.auth.max_concurrent_hashes = 1;
            s.auth.attempts_per_ip_per_minute = 1000;
        }),
        ..Spawn::default()
    })
    .await;
    let attempts = (0..96).map(|i| {
        let client = app.client.clone();
        let url = app.url("/v1/auth/login");
        async move {
            client
                .post(url)
                .json(&json!({ "email": format!("u{i}@example.com"), "password": PASSWORD }))
                .send()
                .await
                .unwrap()
        }
    });
    let responses = futures::future::join_all(attempts).await;
    let mut busy = 0;
    for response in responses {
        match response.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(response.headers()["retry-after"], "1");
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        busy > 0,
        "one hash at a time: some of 96 must have waited too long"
    );
    // Once they are done, sign-ins work again.
    app.login_ok("auditor@example.com").await;
}
