//! The rights beyond access and erasure: portability (GDPR Art. 20), rectification (Art. 16)
//! and restriction (Art. 18), through the real service, worker and lake.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use arrow_array::{Array, RecordBatch, StringArray};
use lethe_core::store::AuditFilter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app};
use crate::ingest::{json_lines, register_managed, row};
use crate::lake_snapshot::{FileSnapshot, is_subject_row, snapshot};

/// The id of the demo lake's dataset.
async fn demo_dataset_id(app: &TestApp) -> String {
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
        .find(|d| d["name"] == "running_events")
        .and_then(|d| d["id"].as_str())
        .unwrap()
        .to_string()
}

/// A demo subject with rows in at least two files, and their row count.
fn subject_in_several_files(
    before: &BTreeMap<String, FileSnapshot>,
    app: &TestApp,
) -> (String, usize) {
    app.summary
        .subjects
        .iter()
        .map(|s| s.user_id.clone())
        .find_map(|id| {
            let files = before
                .values()
                .filter(|f| f.rows.iter().any(|r| is_subject_row(r, &id)))
                .count();
            let rows = before
                .values()
                .flat_map(|f| f.rows.iter())
                .filter(|r| is_subject_row(r, &id))
                .count();
            (files >= 2).then_some((id, rows))
        })
        .expect("a subject with rows in two files")
}

/// Files a request as `token` with `body`, has the admin approve it, and waits for its end.
async fn file_approve_wait(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app.file_request(token, &body).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let approved = app.approve(&app.admin_token, &id).await;
    assert_eq!(approved.status(), StatusCode::OK);
    app.wait_until_final(token, &id).await
}

fn zip_entry(zip: &mut zip::ZipArchive<std::io::Cursor<Vec<u8>>>, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    zip.by_name(name)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .read_to_end(&mut out)
        .unwrap();
    out
}

async fn download(
    app: &TestApp,
    token: &str,
    id: &str,
) -> zip::ZipArchive<std::io::Cursor<Vec<u8>>> {
    let response = app.export(token, id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.bytes().await.unwrap().to_vec();
    zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap()
}

#[tokio::test]
async fn a_portability_archive_holds_parquet_csv_and_json_of_exactly_the_subjects_rows() {
    let app = spawn_app().await;
    let before = snapshot(&app.lake);
    let (subject, rows) = subject_in_several_files(&before, &app);
    let token = app.subject_token("porta@example.com", &subject).await;
    let done = file_approve_wait(&app, &token, json!({"type": "portability"})).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(done["export_expires_at"].is_string(), "{done}");
    assert_eq!(done["result"]["rows"], rows as u64);

    let mut zip = download(&app, &token, done["id"].as_str().unwrap()).await;
    let mut names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "manifest.json",
            "running_events.csv",
            "running_events.json",
            "running_events.parquet"
        ]
    );
    let manifest: Value = serde_json::from_slice(&zip_entry(&mut zip, "manifest.json")).unwrap();
    assert_eq!(manifest["gdpr_article"], "20");
    assert_eq!(manifest["request_type"], "portability");
    assert_eq!(manifest["json_format"], "array");
    assert_eq!(manifest["datasets"][0]["rows"], rows as u64);

    // Parquet: exactly the subject's rows, typed, with the partition values.
    let parquet = bytes::Bytes::from(zip_entry(&mut zip, "running_events.parquet"));
    let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(parquet)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
        rows
    );
    let schema = batches[0].schema();
    assert_eq!(
        schema.field_with_name("calories").unwrap().data_type(),
        &arrow_schema::DataType::Int32
    );
    for batch in &batches {
        let users = batch.column_by_name("user_id").unwrap();
        let users = users.as_any().downcast_ref::<StringArray>().unwrap();
        assert!(users.iter().all(|u| u == Some(subject.as_str())));
        assert!(batch.column_by_name("region").is_some() && batch.column_by_name("date").is_some());
    }

    // JSON: one array of row objects; CSV: a header and one line per row.
    let json: Vec<Value> =
        serde_json::from_slice(&zip_entry(&mut zip, "running_events.json")).unwrap();
    assert_eq!(json.len(), rows);
    assert!(json.iter().all(|r| r["user_id"] == subject.as_str()));
    let csv = String::from_utf8(zip_entry(&mut zip, "running_events.csv")).unwrap();
    assert_eq!(csv.lines().count(), rows + 1);
    assert!(csv.lines().next().unwrap().starts_with("event_id,user_id,"));

    // The same rows as in the lake, event by event.
    let mut in_lake: Vec<String> = before
        .values()
        .flat_map(|f| f.rows.iter())
        .filter(|r| is_subject_row(r, &subject))
        .map(|r| {
            r.split('|')
                .next()
                .unwrap()
                .trim_start_matches("event_id=")
                .to_string()
        })
        .collect();
    let mut exported: Vec<String> = json
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect();
    in_lake.sort();
    exported.sort();
    assert_eq!(exported, in_lake);
}

/// The rows of `file` after a rectification, checked against `before`: the subject's rows with
/// `expected` applied (cells rendered as `col=value`), everyone else's exactly as they were.
fn assert_rectified(
    before: &FileSnapshot,
    after: &FileSnapshot,
    subject: &str,
    expected: &[(&str, &str)],
) -> usize {
    assert_eq!(
        after.rows.len(),
        before.rows.len(),
        "no row added or removed"
    );
    let mut changed = 0;
    for (old, new) in before.rows.iter().zip(&after.rows) {
        if !is_subject_row(old, subject) {
            assert_eq!(new, old, "someone else's row changed");
            continue;
        }
        changed += 1;
        for (old_cell, new_cell) in old.split('|').zip(new.split('|')) {
            let column = old_cell.split_once('=').unwrap().0;
            match expected.iter().find(|(c, _)| *c == column) {
                Some((_, value)) if !value.is_empty() => {
                    assert_eq!(new_cell, format!("{column}={value}"))
                }
                // Sealed again: a new ciphertext, checked through the access export.
                Some(_) => assert_ne!(new_cell, old_cell, "{column} was not sealed again"),
                None => assert_eq!(new_cell, old_cell, "{column} must not change"),
            }
        }
    }
    changed
}

#[tokio::test]
async fn a_rectification_on_a_foreign_lake_changes_only_the_subjects_rows() {
    let app = spawn_app().await;
    let dataset = demo_dataset_id(&app).await;
    let before = snapshot(&app.lake);
    let (subject, rows) = subject_in_several_files(&before, &app);
    let token = app.subject_token("rect@example.com", &subject).await;
    let done = file_approve_wait(
        &app,
        &token,
        json!({"type": "rectification", "dataset_id": dataset,
               "changes": {"device_id": "watch-rectified", "notes": null}}),
    )
    .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["dataset_id"], dataset.as_str());
    assert_eq!(
        done["changes"],
        json!({"device_id": "watch-rectified", "notes": null})
    );
    assert_eq!(done["result"]["rows_changed"], rows as u64);
    assert_eq!(done["result"]["columns"], json!(["device_id", "notes"]));

    let after = snapshot(&app.lake);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    let mut rewritten = 0;
    let mut changed = 0;
    for (path, old) in &before {
        let new = &after[path];
        if !old.rows.iter().any(|r| is_subject_row(r, &subject)) {
            assert_eq!(new.bytes, old.bytes, "{path} holds no row of the subject");
            continue;
        }
        rewritten += 1;
        changed += assert_rectified(
            old,
            new,
            &subject,
            &[("device_id", "watch-rectified"), ("notes", "∅")],
        );
    }
    assert_eq!(changed, rows);
    assert_eq!(done["result"]["datasets"][0]["files_rewritten"], rewritten);

    // The audit log names the columns, never the values.
    let entries = app
        .state
        .store
        .audit_entries(&AuditFilter {
            request_id: done["id"].as_str().map(String::from),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let created = entries
        .iter()
        .find(|e| e.action == "request.created")
        .unwrap();
    assert_eq!(created.details["columns"], json!(["device_id", "notes"]));
    let text =
        serde_json::to_string(&entries.iter().map(|e| &e.details).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("watch-rectified"), "{text}");
    assert!(
        entries
            .iter()
            .all(|e| e.subject.as_deref() != Some(subject.as_str()))
    );
}

#[tokio::test]
async fn a_rectification_that_does_not_fit_a_foreign_file_fails_and_writes_nothing() {
    let app = spawn_app().await;
    let dataset = demo_dataset_id(&app).await;
    let before = snapshot(&app.lake);
    let (subject, _) = subject_in_several_files(&before, &app);
    let token = app.subject_token("rect-bad@example.com", &subject).await;
    let done = file_approve_wait(
        &app,
        &token,
        json!({"type": "rectification", "dataset_id": dataset, "changes": {"calories": "many"}}),
    )
    .await;
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.contains("calories") && error.contains("Int32"),
        "{error}"
    );
    assert!(
        !error.contains("many"),
        "the value stays out of errors: {error}"
    );
    let after = snapshot(&app.lake);
    for (path, old) in &before {
        assert_eq!(after[path].bytes, old.bytes, "{path} was written");
    }
}

/// Every email envelope and row of the managed lake, by file.
fn managed_snapshot(root: &Path) -> BTreeMap<String, FileSnapshot> {
    snapshot(root)
}

#[tokio::test]
async fn a_rectification_of_an_encrypted_dataset_seals_the_new_values_with_the_subjects_key() {
    let app = spawn_app().await;
    let (dataset, root) = register_managed(&app).await;
    let (_, producer) = app.producer_token("pipeline").await;
    let rows: Vec<Value> = (0..40).map(row).collect();
    let response = app
        .ingest(
            &producer,
            &dataset,
            Some("application/x-ndjson"),
            json_lines(rows.clone()),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let subject_rows = rows.iter().filter(|r| r["user_id"] == "u-1").count();
    let before = managed_snapshot(&root);

    let token = app.subject_token("sealed@example.com", "u-1").await;
    let done = file_approve_wait(
        &app,
        &token,
        json!({"type": "rectification", "dataset_id": dataset,
               "changes": {"email": "ana.new@example.com", "lat": 51.5, "notes": "rectified"}}),
    )
    .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["rows_changed"], subject_rows as u64);

    let after = managed_snapshot(&root);
    let mut changed = 0;
    for (path, old) in &before {
        let new = &after[path];
        if !old.rows.iter().any(|r| is_subject_row(r, "u-1")) {
            assert_eq!(new.bytes, old.bytes, "{path} holds no row of u-1");
            continue;
        }
        // Encrypted cells are new ciphertexts (""), plain ones the new value.
        changed += assert_rectified(
            old,
            new,
            "u-1",
            &[("email", ""), ("lat", ""), ("notes", "rectified")],
        );
    }
    assert_eq!(changed, subject_rows);

    // The locator index follows the new sizes: every indexed file is known at its size.
    let indexed = app.state.store.indexed_files(&dataset).await.unwrap();
    assert_eq!(indexed.len(), after.len());
    for (path, bytes) in indexed {
        assert_eq!(bytes, after[&path].bytes.len() as u64, "{path}");
    }

    // A later access export opens the new cells with the subject's key.
    let access = file_approve_wait(&app, &token, json!({"type": "access"})).await;
    assert_eq!(access["status"], "completed", "{access}");
    assert_eq!(access["result"]["rows"], subject_rows as u64);
    let mut zip = download(&app, &token, access["id"].as_str().unwrap()).await;
    let jsonl = String::from_utf8(zip_entry(&mut zip, "running_app.jsonl")).unwrap();
    let exported: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported.len(), subject_rows);
    for r in &exported {
        assert_eq!(r["email"], "ana.new@example.com", "{r}");
        assert_eq!(r["lat"], json!(51.5));
        assert_eq!(r["notes"], "rectified");
        assert_eq!(
            r["full_name"], "Runner u-1",
            "an unchanged encrypted column"
        );
        assert_eq!(r["lon"], json!(-9.14));
    }
}

#[tokio::test]
async fn invalid_rectifications_are_refused_when_filed() {
    let app = spawn_app().await;
    let (managed, _) = register_managed(&app).await;
    let demo = demo_dataset_id(&app).await;
    let token = app.subject_token("bad-rect@example.com", "u-1").await;
    let cases = [
        json!({"type": "rectification", "changes": {"notes": "x"}}),
        json!({"type": "rectification", "dataset_id": managed}),
        json!({"type": "rectification", "dataset_id": managed, "changes": {}}),
        json!({"type": "rectification", "dataset_id": "no-such-dataset", "changes": {"notes": "x"}}),
        json!({"type": "rectification", "dataset_id": managed, "changes": {"user_id": "u-2"}}),
        json!({"type": "rectification", "dataset_id": managed, "changes": {"region": "US"}}),
        json!({"type": "rectification", "dataset_id": managed, "changes": {"ts": "2025-01-01T00:00:00Z"}}),
        json!({"type": "rectification", "dataset_id": managed, "changes": {"shoe_size": 42}}),
        json!({"type": "rectification", "dataset_id": managed, "changes": {"calories": "lots"}}),
        json!({"type": "rectification", "dataset_id": managed, "changes": {"email": null}}),
        json!({"type": "rectification", "dataset_id": managed, "changes": {"notes": {"nested": true}}}),
        json!({"type": "rectification", "dataset_id": demo, "changes": {"user_id": "u-2"}}),
        json!({"type": "rectification", "dataset_id": demo, "changes": {"date": "2025-01-01"}}),
        json!({"type": "access", "dataset_id": managed}),
        json!({"type": "erasure", "changes": {"notes": "x"}}),
    ];
    for body in cases {
        let response = app.file_request(&token, &body).await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;
        assert!(
            !problem["detail"].as_str().unwrap().contains("lots"),
            "values stay out of messages: {problem}"
        );
    }
    let listed: Vec<Value> = app.list_requests(&token).await.json().await.unwrap();
    assert!(listed.is_empty(), "nothing was filed");
}

#[tokio::test]
async fn a_rectification_of_an_erased_subject_fails_with_a_clear_error() {
    let app = spawn_app().await;
    let (dataset, root) = register_managed(&app).await;
    let (_, producer) = app.producer_token("pipeline").await;
    let response = app
        .ingest(
            &producer,
            &dataset,
            Some("application/x-ndjson"),
            json_lines((0..12).map(row)),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let token = app.subject_token("gone@example.com", "u-2").await;
    let rectification = app
        .file_request(
            &token,
            &json!({"type": "rectification", "dataset_id": dataset, "changes": {"notes": "late"}}),
        )
        .await;
    assert_eq!(rectification.status(), StatusCode::CREATED);
    let rectification = rectification.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The erasure is approved first: the key is destroyed at once.
    let erasure = app.file_request_ok(&token, "erasure").await;
    let approved: Value = app
        .approve(&app.admin_token, &erasure)
        .await
        .json()
        .await
        .unwrap();
    assert!(approved["key_destroyed_at"].is_string(), "{approved}");
    app.wait_until_final(&token, &erasure).await;
    let before = snapshot(&root);

    app.approve(&app.admin_token, &rectification).await;
    let done = app.wait_until_final(&token, &rectification).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["error"].as_str().unwrap().contains("erased"), "{done}");
    let after = snapshot(&root);
    for (path, old) in &before {
        assert_eq!(after[path].bytes, old.bytes, "{path} was written");
    }
}

async fn restricted(app: &TestApp, token: &str, query: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .get(app.url("/v1/subjects/restricted"))
        .bearer_auth(token)
        .query(query)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_restriction_lists_the_subject_for_pipelines_until_it_is_lifted() {
    let app = spawn_app().await;
    let subject = app.summary.subjects[3].user_id.clone();
    let token = app.subject_token("restrict@example.com", &subject).await;
    let (_, producer) = app.producer_token("pipeline").await;

    let done = file_approve_wait(&app, &token, json!({"type": "restriction"})).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["restricted"], true);
    let statuses: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "received",
            "pending_approval",
            "approved",
            "running",
            "completed"
        ]
    );

    // Pipelines (producer tokens) and admins read the list; nobody else does.
    for reader in [&producer, &app.admin_token] {
        let response = restricted(&app, reader, &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap();
        assert_eq!(page["subjects"].as_array().unwrap().len(), 1, "{page}");
        assert_eq!(page["subjects"][0]["subject_id"], subject.as_str());
        assert_eq!(page["subjects"][0]["request_id"], done["id"]);
        assert!(page["subjects"][0]["restricted_since"].is_string());
        assert!(page["next_after"].is_null());
    }
    assert_problem(
        restricted(&app, &token, &[]).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        restricted(&app, &app.auditor_token, &[]).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        restricted(&app, &producer, &[("limit", "0")]).await,
        StatusCode::BAD_REQUEST,
        "validation",
    )
    .await;

    // The audit entries name the subject by pseudonym only.
    let entries = app
        .state
        .store
        .audit_entries(&AuditFilter {
            action: Some("subject.restricted".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].subject.as_deref(),
        done["subject_pseudonym"].as_str()
    );
    assert!(
        !serde_json::to_string(&entries[0].details)
            .unwrap()
            .contains(&subject)
    );

    // Lifting it is a request too.
    let lifted = file_approve_wait(&app, &token, json!({"type": "restriction_lift"})).await;
    assert_eq!(lifted["status"], "completed", "{lifted}");
    assert_eq!(lifted["result"]["was_restricted"], true);
    let page: Value = restricted(&app, &producer, &[]).await.json().await.unwrap();
    assert_eq!(page["subjects"], json!([]));
}

#[tokio::test]
async fn the_restricted_list_is_paginated_by_subject_id() {
    let app = spawn_app().await;
    let mut subjects: Vec<String> = app.summary.subjects[..3]
        .iter()
        .map(|s| s.user_id.clone())
        .collect();
    for subject in &subjects {
        let done = file_approve_wait(
            &app,
            &app.admin_token,
            json!({"type": "restriction", "subject_id": subject,
                   "verification_note": "signed letter received"}),
        )
        .await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    // Restricting a restricted subject again keeps the first entry.
    let again = file_approve_wait(
        &app,
        &app.admin_token,
        json!({"type": "restriction", "subject_id": subjects[0],
               "verification_note": "second letter"}),
    )
    .await;
    assert_eq!(again["result"]["already_restricted"], true);
    subjects.sort();
    let first: Value = restricted(&app, &app.admin_token, &[("limit", "2")])
        .await
        .json()
        .await
        .unwrap();
    let ids = |page: &Value| -> Vec<String> {
        page["subjects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["subject_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&first), subjects[..2]);
    let after = first["next_after"].as_str().unwrap();
    let second: Value = restricted(&app, &app.admin_token, &[("limit", "2"), ("after", after)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&second), subjects[2..]);
    assert!(second["next_after"].is_null());
}

#[tokio::test]
async fn only_access_and_portability_requests_have_an_export() {
    let app = spawn_app().await;
    let subject = app.summary.subjects[1].user_id.clone();
    let token = app.subject_token("noexport@example.com", &subject).await;
    let done = file_approve_wait(&app, &token, json!({"type": "restriction"})).await;
    assert_eq!(done["export_available"], false);
    assert_problem(
        app.export(&token, done["id"].as_str().unwrap()).await,
        StatusCode::CONFLICT,
        "no_export",
    )
    .await;
    // The auditor sees that a rectification names a dataset, not the new values.
    let dataset = demo_dataset_id(&app).await;
    let response = app
        .file_request(
            &token,
            &json!({"type": "rectification", "dataset_id": dataset, "changes": {"notes": "private"}}),
        )
        .await;
    let filed: Value = response.json().await.unwrap();
    assert_eq!(filed["status"], "pending_approval");
    let seen: Value = app
        .get_request(&app.auditor_token, filed["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["dataset_id"], dataset.as_str());
    assert!(seen["changes"].is_null(), "{seen}");
}

#[tokio::test]
async fn an_erasure_lifts_the_restriction_of_the_erased_subject() {
    let app = spawn_app().await;
    let subject = app.summary.subjects[2].user_id.clone();
    let token = app
        .subject_token("restricted-then-erased@example.com", &subject)
        .await;
    let done = file_approve_wait(&app, &token, json!({"type": "restriction"})).await;
    assert_eq!(done["status"], "completed", "{done}");
    let listed: Value = restricted(&app, &app.admin_token, &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["subjects"].as_array().unwrap().len(), 1);

    let erased = file_approve_wait(&app, &token, json!({"type": "erasure"})).await;
    assert_eq!(erased["status"], "completed", "{erased}");
    let listed: Value = restricted(&app, &app.admin_token, &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["subjects"],
        json!([]),
        "an erased subject's id is not kept"
    );
    let lifted = app
        .state
        .store
        .audit_entries(&AuditFilter {
            action: Some("subject.restriction_lifted".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(lifted.len(), 1);
    assert_eq!(lifted[0].details["reason"], "erased");
}
