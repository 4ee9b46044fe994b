//! The production set-up's lake: an erasure walked through the API on a lake in S3.
//!
//! Runs when `LETHE_TEST_S3_ENDPOINT` is set (`source .ci/s3.sh` starts moto and sets it);
//! the service's worker reaches S3 through the standard AWS variables, so `AWS_ENDPOINT_URL`
//! must name the same endpoint (`.ci/run` exports it). Each test uses its own bucket.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use lethe_core::lake::LakeRoot;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Spawn, spawn_app_with};
use crate::lake_snapshot::{is_subject_row, render, snapshot};

/// The S3 endpoint to test against, or `None` (after printing why) when there is none.
fn s3_endpoint(test: &str) -> Option<String> {
    let Ok(endpoint) = std::env::var("LETHE_TEST_S3_ENDPOINT") else {
        println!("skipped {test}: LETHE_TEST_S3_ENDPOINT is not set (source .ci/s3.sh to run it)");
        return None;
    };
    assert_eq!(
        std::env::var("AWS_ENDPOINT_URL").ok().as_deref(),
        Some(endpoint.as_str()),
        "the service reaches S3 through AWS_ENDPOINT_URL: export AWS_ENDPOINT_URL=$LETHE_TEST_S3_ENDPOINT"
    );
    Some(endpoint)
}

/// Every object under `prefix`, by key.
async fn objects(store: &dyn ObjectStore, prefix: &Path) -> BTreeMap<String, bytes::Bytes> {
    let metas: Vec<_> = store.list(Some(prefix)).try_collect().await.unwrap();
    let mut out = BTreeMap::new();
    for meta in metas {
        let bytes = store
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        out.insert(meta.location.to_string(), bytes);
    }
    out
}

#[tokio::test]
async fn an_erasure_on_a_lake_in_s3_removes_only_the_subjects_rows() {
    let Some(endpoint) = s3_endpoint("an_erasure_on_a_lake_in_s3_removes_only_the_subjects_rows")
    else {
        return;
    };
    let app = spawn_app_with(Spawn {
        register_lake: false,
        ..Spawn::default()
    })
    .await;

    // A bucket of its own (object_store cannot create buckets; the S3 API's PUT /bucket can).
    let bucket = format!("lethe-api-{}", uuid::Uuid::new_v4().simple());
    let response = app
        .client
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );

    // Upload the generated lake.
    let root_url = format!("s3://{bucket}/running_events");
    let root = LakeRoot::parse(&root_url).unwrap();
    let before = snapshot(&app.lake);
    assert!(!before.is_empty());
    for (relative, file) in &before {
        let key = Path::from(format!("running_events/{relative}"));
        root.store()
            .put(&key, file.bytes.clone().into())
            .await
            .unwrap();
    }

    let response = app
        .create_dataset(&json!({
            "name": "running_events",
            "root_url": root_url,
            "subject_column": "user_id",
        }))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
    let ready: serde_json::Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["datasets"][0]["status"], "ok", "{ready}");

    // The subject files, the admin approves, the worker runs.
    let subject = app.summary.subjects[0].user_id.clone();
    let subject_rows = before
        .values()
        .flat_map(|f| &f.rows)
        .filter(|row| is_subject_row(row, &subject))
        .count();
    assert!(subject_rows > 0);
    let token = app.subject_token("s3@example.com", &subject).await;
    let id = app.file_request_ok(&token, "erasure").await;
    assert_eq!(
        app.approve(&app.admin_token, &id).await.status(),
        StatusCode::OK
    );
    let done = app.wait_until_final(&token, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["rows_removed"], subject_rows, "{done}");

    // Every object: no temporary left, the subject's rows gone, every other row as it was.
    let after = objects(root.store().as_ref(), root.prefix()).await;
    assert!(
        after.keys().all(|key| !key.contains(".lethe-tmp")),
        "temporary objects remain: {:?}",
        after.keys().collect::<Vec<_>>()
    );
    let mut rewritten = 0;
    for (relative, file) in &before {
        let key = format!("running_events/{relative}");
        let bytes = after.get(&key).unwrap_or_else(|| panic!("{key} is gone"));
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
            .unwrap()
            .build()
            .unwrap();
        let rows: Vec<String> = reader.flat_map(|batch| render(&batch.unwrap())).collect();
        let expected: Vec<String> = file
            .rows
            .iter()
            .filter(|row| !is_subject_row(row, &subject))
            .cloned()
            .collect();
        assert_eq!(rows, expected, "{key}");
        if expected.len() == file.rows.len() {
            assert_eq!(bytes.as_ref(), file.bytes.as_slice(), "{key} was touched");
        } else {
            rewritten += 1;
        }
    }
    assert!(rewritten > 0);
    assert_eq!(
        after.len(),
        before.len(),
        "{:?}",
        after.keys().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn an_access_export_is_stored_in_s3_and_downloaded_from_there() {
    let Some(endpoint) = s3_endpoint("an_access_export_is_stored_in_s3_and_downloaded_from_there")
    else {
        return;
    };
    let bucket = format!("lethe-exports-{}", uuid::Uuid::new_v4().simple());
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());
    let exports_url = format!("s3://{bucket}/exports");
    let app = spawn_app_with(Spawn {
        exports_url: Some(exports_url.clone()),
        ..Spawn::default()
    })
    .await;
    let subject = app.summary.subjects[0].user_id.clone();
    let token = app.subject_token("export-s3@example.com", &subject).await;
    let id = app.file_request_ok(&token, "access").await;
    app.approve(&app.admin_token, &id).await;
    let done = app.wait_until_final(&token, &id).await;
    assert_eq!(done["status"], "completed", "{done}");

    // The archive lives in the bucket, not on the local disk.
    let root = LakeRoot::parse(&exports_url).unwrap();
    let stored = objects(root.store().as_ref(), &Path::from("exports")).await;
    let key = format!("exports/{id}.zip");
    let archive = stored
        .get(&key)
        .unwrap_or_else(|| panic!("{key} in {stored:?}"));
    assert!(
        !app.data_dir
            .path()
            .join("exports")
            .join(format!("{id}.zip"))
            .exists()
    );

    let response = app.export(&token, &id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let downloaded = response.bytes().await.unwrap();
    // Stored sealed (encrypted at rest); the download is the archive it opens to.
    assert!(archive.starts_with(b"LETHEBL1"), "sealed in the bucket");
    let opened = app
        .state
        .keyring
        .open_blob(&lethe_core::exports::export_context(&id), archive)
        .unwrap();
    assert_eq!(
        &downloaded[..],
        &opened[..],
        "the download is the stored archive, opened"
    );
    let zip = zip::ZipArchive::new(std::io::Cursor::new(downloaded.to_vec())).unwrap();
    let mut zip = zip;
    assert!(zip.by_name("running_events.jsonl").is_ok());
}
