//! Dataset registration.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Spawn, assert_problem, spawn_app_with};

#[tokio::test]
async fn an_admin_registers_a_dataset_and_partitions_are_discovered() {
    let app = spawn_app_with(Spawn {
        register_lake: false,
        ..Spawn::default()
    })
    .await;
    let response = app
        .create_dataset(&json!({ "name": "running_events", "root_url": app.lake.display().to_string(), "subject_column": "user_id" }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["partition_columns"], json!(["date", "region"]));
    let listed: Vec<Value> = app
        .client
        .get(app.url("/v1/datasets"))
        .bearer_auth(&app.auditor_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let response = app
        .create_dataset(&json!({ "name": "running_events", "root_url": app.lake.display().to_string(), "subject_column": "user_id" }))
        .await;
    assert_problem(response, StatusCode::CONFLICT, "dataset_exists").await;
}

#[tokio::test]
async fn a_missing_root_or_a_delta_table_is_refused() {
    let app = spawn_app_with(Spawn {
        register_lake: false,
        ..Spawn::default()
    })
    .await;
    let response = app
        .create_dataset(&json!({ "name": "nowhere", "root_url": "/does/not/exist", "subject_column": "user_id" }))
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;
    std::fs::create_dir_all(app.lake.join("_delta_log")).unwrap();
    std::fs::write(app.lake.join("_delta_log/00000000000000000000.json"), "{}").unwrap();
    let response = app
        .create_dataset(&json!({ "name": "delta", "root_url": app.lake.display().to_string(), "subject_column": "user_id" }))
        .await;
    let body = assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;
    assert!(body["detail"].as_str().unwrap().contains("Delta"), "{body}");
    let response = app
        .create_dataset(&json!({ "name": "Bad Name", "root_url": app.lake.display().to_string(), "subject_column": "user_id" }))
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;
}

#[tokio::test]
async fn dataset_roots_must_be_allowed_and_never_lethes_own_folders() {
    // The embedded default: the lake folder under the data folder only.
    let app = spawn_app_with(Spawn {
        register_lake: false,
        configure: Some(|s| s.storage.allowed_roots = None),
        ..Spawn::default()
    })
    .await;
    let data = app.data_dir.path().to_path_buf();
    for root in [
        "/etc".to_string(),
        data.display().to_string(),
        format!("file://{}", data.join("exports").display()),
        data.join("tombstones").display().to_string(),
        format!("{}/lake/../exports", data.display()),
        "s3://some-bucket/lake".to_string(),
    ] {
        let response = app
            .create_dataset(
                &json!({ "name": "sneaky", "root_url": root, "subject_column": "user_id" }),
            )
            .await;
        assert_problem(response, StatusCode::BAD_REQUEST, "root_not_allowed").await;
    }
    let response = app
        .create_dataset(&json!({ "name": "running_events", "root_url": format!("file://{}", app.lake.display()), "subject_column": "user_id" }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // Requests kept working: nothing was registered on /etc.
    let listed: Vec<serde_json::Value> = app
        .client
        .get(app.url("/v1/datasets"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn an_allow_list_never_opens_lethes_own_folders() {
    let app = spawn_app_with(Spawn {
        register_lake: false,
        ..Spawn::default()
    })
    .await;
    // The test settings allow every local path; the data folder and its exports still not.
    for root in [
        "/".to_string(),
        app.data_dir.path().display().to_string(),
        app.data_dir
            .path()
            .join("exports")
            .join("x")
            .display()
            .to_string(),
    ] {
        let response = app
            .create_dataset(
                &json!({ "name": "sneaky", "root_url": root, "subject_column": "user_id" }),
            )
            .await;
        assert_problem(response, StatusCode::BAD_REQUEST, "root_not_allowed").await;
    }
}

#[tokio::test]
async fn a_root_belongs_to_one_dataset_only() {
    let app = spawn_app_with(Spawn::default()).await;
    for root in [
        app.lake.display().to_string(),
        format!("file://{}", app.lake.display()),
        app.lake.join("date=2025-01-01").display().to_string(),
        app.lake.parent().unwrap().display().to_string(),
    ] {
        let response = app
            .create_dataset(
                &json!({ "name": "again", "root_url": root, "subject_column": "user_id" }),
            )
            .await;
        assert_problem(response, StatusCode::CONFLICT, "root_taken").await;
    }
}
