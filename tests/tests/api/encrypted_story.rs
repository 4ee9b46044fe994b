//! The whole story on a Lethe-managed, encrypted lake: ingest → access (decrypted with the
//! subject's key only) → erasure (key destroyed first: a backup copy of the lake is unreadable
//! at once; then the rewrite) → the resurrection guard at ingest → compaction.

use std::io::Read;
use std::path::Path;

use arrow_array::{Array, BinaryArray, StringArray};
use lethe_core::domain::SubjectId;
use lethe_core::keyring::KeyringError;
use lethe_core::keyring::cell::{CellContext, decrypt_cell};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Spawn, spawn_app_with};
use crate::ingest::{json_lines, parquet_files, register_managed, row};

/// `(user_id, email envelope)` of every row in the Parquet files under `root`.
fn email_cells(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for relative in parquet_files(root) {
        let file = std::fs::File::open(root.join(relative)).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let users = batch.column_by_name("user_id").unwrap();
            let users = users.as_any().downcast_ref::<StringArray>().unwrap();
            let emails = batch.column_by_name("email").unwrap();
            let emails = emails.as_any().downcast_ref::<BinaryArray>().unwrap();
            for i in 0..batch.num_rows() {
                out.push((users.value(i).to_string(), emails.value(i).to_vec()));
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn ingest_access_erasure_and_compaction_on_an_encrypted_lake() {
    let app = spawn_app_with(Spawn {
        register_lake: false,
        ..Spawn::default()
    })
    .await;
    let (dataset_id, root) = register_managed(&app).await;
    let (_, producer) = app.producer_token("pipeline").await;
    let rows: Vec<Value> = (0..40).map(row).collect();
    let response = app
        .ingest(
            &producer,
            &dataset_id,
            Some("application/x-ndjson"),
            json_lines(rows.clone()),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
    let subject_rows = rows.iter().filter(|r| r["user_id"] == "u-1").count();

    // Access: the export holds the subject's rows with their PII decrypted.
    let token = app.subject_token("runner@example.com", "u-1").await;
    let access = app.file_request_ok(&token, "access").await;
    app.approve(&app.admin_token, &access).await;
    let done = app.wait_until_final(&token, &access).await;
    assert_eq!(done["status"], "completed", "{done}");
    let bytes = app.export(&token, &access).await.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut jsonl = String::new();
    zip.by_name("running_app.jsonl")
        .unwrap()
        .read_to_string(&mut jsonl)
        .unwrap();
    let exported: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported.len(), subject_rows);
    for r in &exported {
        assert_eq!(r["user_id"], "u-1");
        assert_eq!(r["email"], "u-1@example.com", "PII decrypted: {r}");
        assert_eq!(r["full_name"], "Runner u-1");
        assert_eq!(r["lat"], json!(38.72), "typed again after decryption");
        assert!(r["region"].is_string() && r["date"].is_string());
    }

    // A backup of the lake taken before the erasure.
    let backup = app.data_dir.path().join("backup");
    copy_dir(&root, &backup);

    // Erasure: approval destroys the key at once.
    let erasure = app.file_request_ok(&token, "erasure").await;
    let approved: Value = app
        .approve(&app.admin_token, &erasure)
        .await
        .json()
        .await
        .unwrap();
    assert!(approved["key_destroyed_at"].is_string(), "{approved}");
    let subject = SubjectId::parse("u-1").unwrap();
    assert!(matches!(
        app.state.keyring.dek_for_read(&subject).await,
        Err(KeyringError::Shredded)
    ));
    // The backup still holds u-1's ciphertext, and nothing can open it: the key is gone, and
    // another subject's key does not fit.
    let cells: Vec<(String, Vec<u8>)> = email_cells(&backup)
        .into_iter()
        .filter(|(u, _)| u == "u-1")
        .collect();
    assert_eq!(cells.len(), subject_rows);
    let other = app
        .state
        .keyring
        .dek_for_read(&SubjectId::parse("u-2").unwrap())
        .await
        .unwrap();
    let ctx = CellContext {
        dataset: "running_app",
        column: "email",
        subject_id: &subject,
    };
    for (_, envelope) in &cells {
        assert!(!String::from_utf8_lossy(envelope).contains("example.com"));
        assert!(decrypt_cell(&other, &ctx, envelope).is_err());
    }

    // The rewrite follows and completes the request.
    let done = app.wait_until_final(&token, &erasure).await;
    assert_eq!(done["status"], "completed", "{done}");
    let live = email_cells(&root);
    assert!(live.iter().all(|(u, _)| u != "u-1"), "u-1's rows are gone");
    assert_eq!(
        live.len(),
        rows.len() - subject_rows,
        "every other row stays"
    );

    // Resurrection guard: a pipeline re-sending u-1's rows writes none of them.
    let replay: Vec<Value> = (40..60).map(row).collect();
    let replayed_u1 = replay.iter().filter(|r| r["user_id"] == "u-1").count();
    let response = app
        .ingest(
            &producer,
            &dataset_id,
            Some("application/x-ndjson"),
            json_lines(replay.clone()),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["rows_dropped_erased"], replayed_u1 as u64);
    assert_eq!(report["rows_written"], (replay.len() - replayed_u1) as u64);

    // Compaction merges each partition's two files into one.
    let before = parquet_files(&root).len();
    let response = app
        .client
        .post(app.url(&format!("/v1/datasets/{dataset_id}/compact")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let job: Value = response.json().await.unwrap();
    let job_id = job["id"].as_str().unwrap().to_string();
    let job = loop {
        let job: Value = app
            .client
            .get(app.url(&format!("/v1/jobs/{job_id}")))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["status"] == "succeeded" || job["status"] == "failed" {
            break job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(job["status"], "succeeded", "{job}");
    let after = parquet_files(&root);
    assert!(
        after.len() < before,
        "{before} files became {}",
        after.len()
    );
    assert_eq!(
        job["result"]["files_out"],
        after.len() as u64 - (before as u64 - job["result"]["files_in"].as_u64().unwrap())
    );
    let live = email_cells(&root);
    assert_eq!(
        live.len(),
        rows.len() - subject_rows + replay.len() - replayed_u1
    );
    assert!(live.iter().all(|(u, _)| u != "u-1"));

    // And an access request now says the data was erased.
    let again = app.file_request_ok(&token, "access").await;
    app.approve(&app.admin_token, &again).await;
    let done = app.wait_until_final(&token, &again).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["result"]["erased"], true);
    assert_eq!(done["result"]["rows"], 0);
}
