//! HTTP hygiene: security headers, no CORS, 405 for a known path, bodies that must parse, a
//! deadline on slow bodies, no 5xx for an unreachable dataset root, private database files.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Spawn, assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn answers_carry_security_headers_and_no_cors_grant() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/v1/requests"))
        .bearer_auth(&app.admin_token)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    assert!(headers.get("access-control-allow-origin").is_none());
    // A preflight gets no grant either.
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/v1/requests"))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    assert!(!preflight.status().is_server_error());
    // Errors too.
    let response = app
        .client
        .get(app.url("/v1/requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn the_docs_link_without_a_slash_redirects_and_the_ui_has_its_own_csp() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/docs")).send().await.unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(response.headers()["location"], "/docs/");
    let response = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let page = response.text().await.unwrap();
    assert!(
        !page.contains("<script>"),
        "the UI's scripts are files, allowed by script-src 'self'"
    );
}

#[tokio::test]
async fn a_known_path_with_an_unknown_method_is_405_with_allow() {
    let app = spawn_app().await;
    let response = app
        .client
        .delete(app.url("/v1/requests"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    let allow = response.headers()["allow"].to_str().unwrap().to_string();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_problem(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    let response = app
        .client
        .get(app.url("/v1/requests/abc/approve"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let response = app.client.get(app.url("/v1/nothing")).send().await.unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn bodies_with_unknown_fields_are_refused_not_half_read() {
    let app = spawn_app().await;
    let dataset = app.state.store.list_datasets().await.unwrap()[0].id.clone();
    // A misspelt `dataset_id` used to queue a scan of every dataset.
    let response = app
        .client
        .post(app.url("/v1/residency/scan"))
        .bearer_auth(&app.admin_token)
        .json(&json!({ "datset_id": dataset }))
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
    assert!(
        body["detail"].as_str().unwrap().contains("datset_id"),
        "{body}"
    );
    let response = app
        .client
        .post(app.url("/v1/residency/scan"))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
    let jobs = app.state.store.list_jobs(None, 100).await.unwrap();
    assert!(jobs.is_empty(), "nothing was queued: {jobs:?}");
    // No body at all still means every dataset.
    let response = app
        .client
        .post(app.url("/v1/residency/scan"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // Other bodies too.
    let response = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({ "email": "admin@example.com", "password": "x", "remember": true }))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_cut_off_with_408() {
    let app = spawn_app_with(Spawn {
        configure: Some(|s| s.server.body_timeout_s = 1),
        ..Spawn::default()
    })
    .await;
    let address = app.address.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "POST /v1/auth/login HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"email\":"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("the server answers instead of waiting forever")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_dataset_on_an_unreachable_bucket_is_a_400_not_a_500() {
    let app = spawn_app().await;
    let started = Instant::now();
    let response = app
        .create_dataset(&json!({
            "name": "running_app",
            "root_url": "s3://lethe-no-such-bucket-for-tests/running_app",
            "subject_column": "user_id",
        }))
        .await;
    let body = assert_problem(response, StatusCode::BAD_REQUEST, "root_unreachable").await;
    assert!(body["detail"].as_str().unwrap().len() < 500, "{body}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app().await;
    if std::env::var("LETHE_TEST_API_BACKEND").as_deref() == Ok("postgres") {
        return;
    }
    let mut checked = 0;
    for name in ["lethe.db", "lethe.db-wal", "lethe.db-shm"] {
        let path = app.data_dir.path().join(name);
        if let Ok(meta) = std::fs::metadata(&path) {
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
            checked += 1;
        }
    }
    assert!(checked >= 1);
}

#[tokio::test]
async fn cors_opens_to_configured_origins_only() {
    let app = spawn_app_with(Spawn {
        configure: Some(|s| {
            s.server.cors_allowed_origins = Some(vec!["https://app.example.com".into()])
        }),
        ..Spawn::default()
    })
    .await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/v1/requests"))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    let headers = preflight.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    assert!(headers.get("access-control-allow-credentials").is_none());
    let response = app
        .client
        .get(app.url("/v1/requests"))
        .bearer_auth(&app.admin_token)
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    for origin in [
        "https://evil.example",
        "https://app.example.com.evil.example",
    ] {
        let response = app
            .client
            .get(app.url("/v1/requests"))
            .bearer_auth(&app.admin_token)
            .header("Origin", origin)
            .send()
            .await
            .unwrap();
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
        let preflight = app
            .client
            .request(reqwest::Method::OPTIONS, app.url("/v1/requests"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .send()
            .await
            .unwrap();
        assert!(
            preflight
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
    }
}
