//! What operators watch: `/metrics`, request ids, and readiness.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn scrape(app: &TestApp) -> String {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

/// The value of the sample whose line starts with `series` (name and labels), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_count_requests_by_route_pattern_and_status_and_show_the_job_queue() {
    let app = spawn_app().await;
    let subject = app.summary.subjects[0].user_id.clone();
    let token = app.subject_token("m@example.com", &subject).await;
    let id = app.file_request_ok(&token, "erasure").await;
    for _ in 0..2 {
        assert_eq!(app.get_request(&token, &id).await.status(), StatusCode::OK);
    }
    let missing = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        app.get_request(&app.admin_token, &missing).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.approve(&app.admin_token, &id).await.status(),
        StatusCode::OK
    );
    let done = app.wait_until_final(&token, &id).await;
    assert_eq!(done["status"], "completed", "{done}");

    let text = scrape(&app).await;
    let requests = |method: &str, route: &str, status: u16| {
        sample(
            &text,
            &format!(
                r#"lethe_http_requests_total{{method="{method}",route="{route}",status="{status}"}}"#
            ),
        )
    };
    assert_eq!(requests("POST", "/v1/requests", 201), Some(1.0), "{text}");
    assert_eq!(
        requests("POST", "/v1/requests/{id}/approve", 200),
        Some(1.0)
    );
    assert_eq!(requests("GET", "/v1/requests/{id}", 404), Some(1.0));
    // Two polls above plus those of wait_until_final.
    assert!(requests("GET", "/v1/requests/{id}", 200).unwrap() >= 3.0);
    assert_eq!(requests("POST", "/v1/auth/login", 200), Some(3.0));
    assert!(
        text.contains(r#"lethe_http_request_duration_seconds_bucket{method="GET",route="/v1/requests/{id}",status="200",le="+Inf"}"#),
        "{text}"
    );
    assert!(text.contains("# TYPE lethe_http_request_duration_seconds histogram"));

    assert_eq!(
        sample(&text, r#"lethe_jobs{kind="erasure",status="succeeded"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "lethe_requests_overdue"), Some(0.0));
    assert!(
        sample(&text, "lethe_rows_removed_total").is_some(),
        "{text}"
    );
    assert!(sample(&text, "lethe_bytes_rewritten_total").is_some());

    for concrete in [&id, &missing, &subject] {
        assert!(
            !text.contains(concrete.as_str()),
            "{concrete} leaked into {text}"
        );
    }
    // The scrape itself shows up in the next one; unknown paths are one series.
    let _ = app
        .client
        .get(app.url("/no/such/path/123"))
        .send()
        .await
        .unwrap();
    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            r#"lethe_http_requests_total{method="GET",route="/metrics",status="200"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"lethe_http_requests_total{method="GET",route="unmatched",status="404"}"#
        ),
        Some(1.0)
    );
    assert!(!text.contains("/no/such/path"));
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_sane_incoming_one_is_echoed() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    let generated = response.headers()["x-request-id"].to_str().unwrap();
    uuid::Uuid::parse_str(generated).expect("a generated id is a UUID");

    let response = app
        .client
        .get(app.url("/v1/requests"))
        .header("X-Request-Id", "trace-abc_123.4:5")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["x-request-id"], "trace-abc_123.4:5");

    for insane in ["has spaces", &"x".repeat(65), "semi;colon"] {
        let response = app
            .client
            .get(app.url("/healthz"))
            .header("X-Request-Id", insane)
            .send()
            .await
            .unwrap();
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(id, insane);
        uuid::Uuid::parse_str(id).expect("an insane id is replaced by a UUID");
    }
}

#[tokio::test]
async fn readiness_checks_the_database_and_every_datasets_root() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["database"], "ok");
    assert_eq!(
        body["datasets"],
        json!([{ "name": "running_events", "status": "ok" }])
    );

    // A second dataset whose folder disappears after registration.
    let gone = tempfile::tempdir().unwrap();
    let response = app
        .create_dataset(&json!({
            "name": "vanishing",
            "root_url": format!("file://{}", gone.path().display()),
            "subject_column": "user_id",
        }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    drop(gone);
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["database"], "ok");
    let statuses: Vec<(String, String)> = body["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&("running_events".into(), "ok".into())),
        "{body}"
    );
    assert!(
        statuses.contains(&("vanishing".into(), "unreachable".into())),
        "{body}"
    );
}
