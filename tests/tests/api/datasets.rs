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
