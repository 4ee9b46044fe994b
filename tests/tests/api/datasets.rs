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

async fn delete_dataset(app: &crate::helpers::TestApp, token: &str, id: &str) -> reqwest::Response {
    app.client
        .delete(app.url(&format!("/v1/datasets/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dataset_is_deleted_only_when_no_hold_and_no_open_erasure_needs_it() {
    let app = spawn_app_with(Spawn {
        register_lake: false,
        ..Spawn::default()
    })
    .await;
    let body = json!({ "name": "running_events", "root_url": app.lake.display().to_string(), "subject_column": "user_id" });
    let created: Value = app.create_dataset(&body).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_problem(
        delete_dataset(&app, &app.auditor_token, &id).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    // A legal hold on the dataset keeps it.
    let hold: Value = app
        .client
        .post(app.url("/v1/legal-holds"))
        .bearer_auth(&app.admin_token)
        .json(&json!({ "dataset_id": id, "legal_basis": "Art. 17(3)(e)", "reason": "audit 2025" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_problem(
        delete_dataset(&app, &app.admin_token, &id).await,
        StatusCode::CONFLICT,
        "dataset_held",
    )
    .await;
    let released = app
        .client
        .post(app.url(&format!(
            "/v1/legal-holds/{}/release",
            hold["id"].as_str().unwrap()
        )))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(released.status(), StatusCode::OK);

    // An open erasure would skip a deleted dataset and report done: refused while it is open.
    let subject = app.summary.subjects[0].user_id.clone();
    let filed: Value = app
        .file_request(
            &app.admin_token,
            &json!({ "type": "erasure", "subject_id": subject, "verification_note": "desk" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let request = filed["id"].as_str().unwrap();
    assert_problem(
        delete_dataset(&app, &app.admin_token, &id).await,
        StatusCode::CONFLICT,
        "dataset_in_use",
    )
    .await;
    assert_eq!(
        app.reject(&app.admin_token, request, "filed by mistake")
            .await
            .status(),
        StatusCode::OK
    );

    let files_before = std::fs::read_dir(&app.lake).unwrap().count();
    let response = delete_dataset(&app, &app.admin_token, &id).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .client
        .get(app.url(&format!("/v1/datasets/{id}")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    assert_problem(
        delete_dataset(&app, &app.admin_token, &id).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(
        std::fs::read_dir(&app.lake).unwrap().count(),
        files_before,
        "the lake's files are not touched"
    );
    // The name and root are free again.
    assert_eq!(
        app.create_dataset(&body).await.status(),
        StatusCode::CREATED
    );
    let actions: Vec<String> = app
        .state
        .store
        .audit_entries(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.contains(&"dataset.deleted".to_string()));
}
