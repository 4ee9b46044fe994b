//! Lethe-managed datasets: registration with a schema, producer tokens, and ingest.

use std::path::{Path, PathBuf};

use lethe_core::store::AuditFilter;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Spawn, TestApp, assert_problem, spawn_app, spawn_app_with};

fn running_app_schema() -> Value {
    json!({
        "subject_columns": ["user_id"],
        "columns": [
            {"name": "event_id", "type": "string"},
            {"name": "user_id", "type": "string"},
            {"name": "ts", "type": "timestamp"},
            {"name": "region", "type": "string"},
            {"name": "calories", "type": "int32"},
            {"name": "email", "type": "string", "pii": "encrypt"},
            {"name": "full_name", "type": "string", "pii": "encrypt"},
            {"name": "lat", "type": "float64", "pii": "encrypt"},
            {"name": "lon", "type": "float64", "pii": "encrypt"},
            {"name": "notes", "type": "string", "nullable": true}
        ],
        "partition_by": [{"name": "date", "source": "ts", "transform": "day"},
                         {"name": "region", "source": "region"}],
        "region_column": "region",
        "regions": ["EU", "US", "APAC"]
    })
}

/// Registers `running_app` with the running-app schema under a root that does not exist yet;
/// returns its id and root folder.
pub(crate) async fn register_managed(app: &TestApp) -> (String, PathBuf) {
    let root = app.data_dir.path().join("managed").join("running_app");
    assert!(!root.exists());
    let response = app
        .create_dataset(&json!({
            "name": "running_app",
            "root_url": format!("file://{}", root.display()),
            "schema": running_app_schema(),
        }))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["managed"], true);
    assert_eq!(created["subject_column"], "user_id");
    assert_eq!(created["partition_columns"], json!(["date", "region"]));
    assert_eq!(created["schema"]["regions"], json!(["EU", "US", "APAC"]));
    assert!(root.is_dir(), "the root was created");
    (created["id"].as_str().unwrap().to_string(), root)
}

pub(crate) fn row(i: usize) -> Value {
    let user = format!("u-{}", i % 4);
    let region = ["EU", "US", "APAC"][i % 3];
    json!({
        "event_id": format!("e-{i}"),
        "user_id": user,
        "ts": format!("2025-01-0{}T06:30:00Z", 1 + i % 2),
        "region": region,
        "calories": 200 + i,
        "email": format!("{user}@example.com"),
        "full_name": format!("Runner {user}"),
        "lat": 38.72,
        "lon": -9.14,
        "notes": if i.is_multiple_of(2) { Value::Null } else { json!("felt good") },
    })
}

pub(crate) fn json_lines(rows: impl IntoIterator<Item = Value>) -> String {
    rows.into_iter().map(|r| format!("{r}\n")).collect()
}

/// Parquet files under `root`, as paths relative to it.
pub(crate) fn parquet_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                let relative = path.strip_prefix(root).unwrap();
                out.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

async fn dataset_id(app: &TestApp, name: &str) -> String {
    let listed: Vec<Value> = app
        .client
        .get(app.url("/v1/datasets"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    listed
        .iter()
        .find(|d| d["name"] == name)
        .and_then(|d| d["id"].as_str())
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_producer_ingests_json_lines_into_encrypted_hive_partitions() {
    let app = spawn_app().await;
    let (dataset, root) = register_managed(&app).await;
    let (token_id, token) = app.producer_token("events-pipeline").await;

    let response = app
        .ingest(
            &token,
            &dataset,
            Some("application/x-ndjson"),
            json_lines((0..12).map(row)),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["dataset"], "running_app");
    assert_eq!(report["rows_read"], 12);
    assert_eq!(report["rows_written"], 12);
    assert_eq!(report["subjects"], 4);

    let files = parquet_files(&root);
    assert!(!files.is_empty());
    let reported: Vec<&str> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(reported.len(), files.len(), "{reported:?} vs {files:?}");
    for file in &files {
        assert!(reported.contains(&file.as_str()), "{file} reported");
        let parts: Vec<&str> = file.split('/').collect();
        assert_eq!(parts.len(), 3, "{file}");
        assert!(
            ["date=2025-01-01", "date=2025-01-02"].contains(&parts[0]),
            "{file}"
        );
        assert!(
            ["region=EU", "region=US", "region=APAC"].contains(&parts[1]),
            "{file}"
        );
    }
    // PII is sealed per cell: the email column is binary in the file.
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(root.join(&files[0])).unwrap(),
    )
    .unwrap();
    let email = reader.schema().field_with_name("email").unwrap().clone();
    assert_eq!(email.data_type(), &arrow_schema::DataType::Binary);

    // An admin may ingest too, as CSV.
    let csv = "event_id,user_id,ts,region,calories,email,full_name,lat,lon,notes\n\
               e-100,u-9,2025-01-03T07:00:00Z,EU,150,u9@example.com,Runner Nine,52.37,4.89,\n";
    let response = app
        .ingest(&app.admin_token, &dataset, Some("text/csv"), csv)
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
    assert!(
        parquet_files(&root)
            .iter()
            .any(|f| f.starts_with("date=2025-01-03/region=EU/"))
    );

    let ingested = app
        .state
        .store
        .audit_entries(&AuditFilter {
            action: Some("dataset.ingested".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ingested.len(), 2);
    assert_eq!(ingested[0].actor, format!("token:{token_id}"));
    assert_eq!(ingested[0].details["rows_written"], 12);
}

#[tokio::test]
async fn a_bad_row_is_refused_with_its_row_and_column_and_nothing_is_written() {
    let app = spawn_app().await;
    let (dataset, root) = register_managed(&app).await;
    let (_, token) = app.producer_token("events-pipeline").await;
    let response = app
        .ingest(
            &token,
            &dataset,
            Some("application/x-ndjson"),
            json_lines((0..3).map(row)),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let before = parquet_files(&root);

    let mut rows: Vec<Value> = (10..15).map(row).collect();
    rows[2]["calories"] = json!("lots");
    let response = app
        .ingest(
            &token,
            &dataset,
            Some("application/x-ndjson"),
            json_lines(rows),
        )
        .await;
    let body = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_row").await;
    assert_eq!(body["row"], 3, "{body}");
    assert_eq!(body["column"], "calories", "{body}");
    assert_eq!(parquet_files(&root), before, "nothing was written");

    let response = app
        .ingest(&token, &dataset, Some("application/x-ndjson"), "")
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST, "empty_input").await;
    let response = app
        .ingest(
            &token,
            &dataset,
            Some("application/vnd.apache.parquet"),
            "not parquet at all",
        )
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST, "unreadable_input").await;
    assert_eq!(parquet_files(&root), before);
}

#[tokio::test]
async fn a_wrong_content_type_is_415_and_a_body_over_the_limit_is_413() {
    let app = spawn_app_with(Spawn {
        ingest_max_body_bytes: Some(4096),
        ..Spawn::default()
    })
    .await;
    let (dataset, root) = register_managed(&app).await;
    let (_, token) = app.producer_token("events-pipeline").await;
    let small = json_lines((0..3).map(row));
    assert!(small.len() < 4096);

    let response = app
        .ingest(&token, &dataset, Some("application/json"), small.clone())
        .await;
    assert_problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let response = app.ingest(&token, &dataset, None, small.clone()).await;
    assert_problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    let large = json_lines((0..40).map(row));
    assert!(large.len() > 4096);
    let response = app
        .ingest(
            &token,
            &dataset,
            Some("application/x-ndjson"),
            large.clone(),
        )
        .await;
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    // Without a Content-Length (chunked), the limit holds while the body streams in.
    let chunks: Vec<Result<String, std::io::Error>> =
        large.lines().map(|l| Ok(format!("{l}\n"))).collect();
    let response = app
        .ingest(
            &token,
            &dataset,
            Some("application/x-ndjson"),
            reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
        )
        .await;
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert!(parquet_files(&root).is_empty());

    let response = app
        .ingest(&token, &dataset, Some("application/x-ndjson"), small)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn subjects_revoked_tokens_and_unmanaged_datasets_cannot_be_ingested_into() {
    let app = spawn_app().await;
    let (dataset, _) = register_managed(&app).await;
    let body = json_lines((0..2).map(row));

    let subject = app.subject_token("ana@example.com", "u-1").await;
    let response = app
        .ingest(
            &subject,
            &dataset,
            Some("application/x-ndjson"),
            body.clone(),
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app
        .ingest(
            &app.auditor_token,
            &dataset,
            Some("application/x-ndjson"),
            body.clone(),
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;

    let (token_id, token) = app.producer_token("events-pipeline").await;
    let unmanaged = dataset_id(&app, "running_events").await;
    let response = app
        .ingest(
            &token,
            &unmanaged,
            Some("application/x-ndjson"),
            body.clone(),
        )
        .await;
    assert_problem(response, StatusCode::CONFLICT, "dataset_not_managed").await;
    let response = app
        .ingest(
            &token,
            "no-such-dataset",
            Some("application/x-ndjson"),
            body.clone(),
        )
        .await;
    // A producer token learns nothing of datasets it is not granted, existing or not.
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;

    let response = app.revoke_token(&app.admin_token, &token_id).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .ingest(&token, &dataset, Some("application/x-ndjson"), body.clone())
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let unknown = format!("lethe_pat_{}", "A".repeat(43));
    let response = app
        .ingest(&unknown, &dataset, Some("application/x-ndjson"), body)
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let response = app.revoke_token(&app.admin_token, "no-such-token").await;
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn only_admins_manage_tokens_and_the_secret_is_shown_once() {
    let app = spawn_app().await;
    let response = app.create_token("events-pipeline").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let secret = created["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("lethe_pat_"), "{created}");
    assert_eq!(created["role"], "producer");

    let response = app.list_tokens(&app.admin_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(!text.contains(&secret), "the list never shows the secret");
    let listed: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], created["id"]);
    assert!(listed[0].get("token").is_none());
    assert_eq!(listed[0]["revoked_at"], Value::Null);

    let response = app
        .client
        .post(app.url("/v1/tokens"))
        .bearer_auth(&app.auditor_token)
        .json(&json!({ "name": "sneaky", "datasets": [] }))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app.create_token("  ").await;
    assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;
    // A producer may ingest, and nothing else.
    for path in [
        "/v1/tokens",
        "/v1/requests",
        "/v1/me",
        "/v1/datasets",
        "/v1/audit",
    ] {
        let response = app
            .client
            .get(app.url(path))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    }

    let id = created["id"].as_str().unwrap();
    let response = app.revoke_token(&app.admin_token, id).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let listed: Vec<Value> = app
        .list_tokens(&app.admin_token)
        .await
        .json()
        .await
        .unwrap();
    assert!(listed[0]["revoked_at"].is_string());

    let entries = app
        .state
        .store
        .audit_entries(&AuditFilter::default())
        .await
        .unwrap();
    let token_entries: Vec<_> = entries
        .iter()
        .filter(|e| e.action.starts_with("token."))
        .collect();
    assert_eq!(token_entries.len(), 2);
    assert_eq!(token_entries[0].action, "token.created");
    assert_eq!(token_entries[1].action, "token.revoked");
    for entry in entries {
        assert!(
            !serde_json::to_string(&entry).unwrap().contains(&secret),
            "the secret is never audited"
        );
    }
}

#[tokio::test]
async fn a_schema_is_validated_and_its_dataset_starts_empty() {
    let app = spawn_app_with(Spawn {
        register_lake: false,
        ..Spawn::default()
    })
    .await;
    let root = app.data_dir.path().join("managed");
    let root_url = format!("file://{}", root.display());

    let mut bad = running_app_schema();
    bad["subject_columns"] = json!(["email"]);
    let response = app
        .create_dataset(&json!({ "name": "running_app", "root_url": root_url, "schema": bad }))
        .await;
    let body = assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;
    assert!(body["detail"].as_str().unwrap().contains("email"), "{body}");

    let response = app
        .create_dataset(&json!({ "name": "running_app", "root_url": root_url,
            "subject_column": "event_id", "schema": running_app_schema() }))
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;
    let response = app
        .create_dataset(&json!({ "name": "running_app", "root_url": root_url,
            "partition_columns": ["region"], "schema": running_app_schema() }))
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;

    // A lake that already holds files is not Lethe's to manage.
    let response = app
        .create_dataset(
            &json!({ "name": "running_app", "root_url": app.lake.display().to_string(),
            "schema": running_app_schema() }),
        )
        .await;
    let body = assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;
    assert!(body["detail"].as_str().unwrap().contains("empty"), "{body}");

    // Without a schema the subject column is still required.
    let response = app
        .create_dataset(&json!({ "name": "plain", "root_url": app.lake.display().to_string() }))
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;

    let response = app
        .create_dataset(&json!({ "name": "running_app", "root_url": root_url,
            "subject_column": "user_id", "schema": running_app_schema() }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let fetched: Value = app
        .client
        .get(app.url(&format!("/v1/datasets/{}", created["id"].as_str().unwrap())))
        .bearer_auth(&app.auditor_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["managed"], true);
    assert_eq!(fetched["schema"]["columns"].as_array().unwrap().len(), 10);
}
