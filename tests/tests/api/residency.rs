//! Data residency through the API: jurisdictions, policies, ingest refusals, the residency
//! scan and remediation of a lake with planted violations, and an erasure across regions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow_array::{Array, StringArray};
use lethe_core::store::AuditFilter;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app};
use crate::ingest::{json_lines, parquet_files};

struct Lake {
    id: String,
    home: PathBuf,
    eu: PathBuf,
    us: PathBuf,
}

/// Registers `running_app` with one root per region (EU, US); none of them exists yet.
async fn register(app: &TestApp) -> Lake {
    let base = app.data_dir.path().join("residency");
    let (home, eu, us) = (base.join("home"), base.join("eu"), base.join("us"));
    let response = app
        .create_dataset(&json!({
            "name": "running_app",
            "root_url": format!("file://{}", home.display()),
            "schema": {
                "subject_columns": ["user_id"],
                "columns": [
                    {"name": "event_id", "type": "string"},
                    {"name": "user_id", "type": "string"},
                    {"name": "ts", "type": "timestamp"},
                    {"name": "region", "type": "string"},
                    {"name": "calories", "type": "int32"},
                    {"name": "email", "type": "string", "pii": "encrypt"}
                ],
                "partition_by": [{"name": "date", "source": "ts", "transform": "day"},
                                 {"name": "region", "source": "region"}],
                "region_column": "region",
                "region_roots": {
                    "EU": format!("file://{}", eu.display()),
                    "US": format!("file://{}", us.display())
                }
            }
        }))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
    let created: Value = response.json().await.unwrap();
    assert!(eu.is_dir() && us.is_dir(), "region roots created");
    Lake {
        id: created["id"].as_str().unwrap().to_string(),
        home,
        eu,
        us,
    }
}

fn row(i: usize, user: &str, region: &str) -> Value {
    json!({
        "event_id": format!("e-{i}"),
        "user_id": user,
        "ts": format!("2025-01-0{}T06:30:00Z", 1 + i % 2),
        "region": region,
        "calories": 200 + i,
        "email": format!("{user}@example.com"),
    })
}

/// Rows per user under `root`.
fn rows_by_user(root: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for f in parquet_files(root) {
        let file = std::fs::File::open(root.join(f)).unwrap();
        for batch in parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
        {
            let batch = batch.unwrap();
            let users = batch.column_by_name("user_id").unwrap();
            let users = users.as_any().downcast_ref::<StringArray>().unwrap();
            for u in users.iter().flatten() {
                *out.entry(u.to_string()).or_default() += 1;
            }
        }
    }
    out
}

async fn put(app: &TestApp, token: &str, path: &str, body: Value) -> reqwest::Response {
    app.client
        .put(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn get(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Queues a residency job at `path` and waits for it to end; returns the job.
async fn run_job(app: &TestApp, path: &str, body: Value) -> Value {
    let response = app
        .client
        .post(app.url(path))
        .bearer_auth(&app.admin_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "{}",
        response.text().await.unwrap()
    );
    let job: Value = response.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    for _ in 0..600 {
        let job: Value = get(app, &app.admin_token, &format!("/v1/jobs/{id}"))
            .await
            .json()
            .await
            .unwrap();
        if job["status"] == "succeeded" || job["status"] == "failed" {
            return job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("job {id} did not end within 30 s");
}

#[tokio::test]
async fn policies_and_jurisdictions_are_validated_audited_and_kept_by_pseudonym() {
    let app = spawn_app().await;
    let response = put(
        &app,
        &app.admin_token,
        "/v1/residency/policies/eu",
        json!({"regions": ["EU"]}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let policy: Value = response.json().await.unwrap();
    assert_eq!(
        (policy["jurisdiction"].as_str(), &policy["regions"]),
        (Some("EU"), &json!(["EU"]))
    );
    for (path, body) in [
        ("/v1/residency/policies/EU", json!({"regions": []})),
        ("/v1/residency/policies/EU", json!({"regions": ["E/U"]})),
        (
            "/v1/residency/policies/EU",
            json!({"regions": ["EU", "EU"]}),
        ),
        ("/v1/residency/policies/E", json!({"regions": ["EU"]})),
    ] {
        let response = put(&app, &app.admin_token, path, body).await;
        assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;
    }
    let response = put(
        &app,
        &app.auditor_token,
        "/v1/residency/policies/US",
        json!({"regions": ["US"]}),
    )
    .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let listed: Value = get(&app, &app.auditor_token, "/v1/residency/policies")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    let response = put(
        &app,
        &app.admin_token,
        "/v1/subjects/u-secret-7/jurisdiction",
        json!({"jurisdiction": "eu"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let set: Value = response.json().await.unwrap();
    assert_eq!(set["jurisdiction"], "EU");
    assert_eq!(set["source"], "admin");
    assert!(!set.to_string().contains("u-secret-7"), "{set}");
    let read: Value = get(
        &app,
        &app.admin_token,
        "/v1/subjects/u-secret-7/jurisdiction",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(read["jurisdiction"], "EU");
    let response = get(&app, &app.admin_token, "/v1/subjects/u-other/jurisdiction").await;
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;

    let response = app
        .client
        .delete(app.url("/v1/residency/policies/EU"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .client
        .delete(app.url("/v1/residency/policies/EU"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;

    let entries = app
        .state
        .store
        .audit_entries(&AuditFilter::default())
        .await
        .unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    for action in [
        "residency.policy_set",
        "subject.jurisdiction_set",
        "residency.policy_deleted",
    ] {
        assert!(actions.contains(&action), "{actions:?}");
    }
    let set_entry = entries
        .iter()
        .find(|e| e.action == "subject.jurisdiction_set")
        .unwrap();
    assert_eq!(
        set_entry.subject.as_deref(),
        set["subject_pseudonym"].as_str()
    );
    assert!(
        entries
            .iter()
            .all(|e| !format!("{:?}{}", e.subject, e.details).contains("u-secret-7")),
        "no subject id in the audit log"
    );
}

#[tokio::test]
async fn residency_scan_and_remediation_on_a_lake_with_planted_violations() {
    let app = spawn_app().await;
    let lake = register(&app).await;
    let (_, producer) = app.producer_token("events-pipeline").await;

    // Planted: before the EU policy exists, u-1's rows land in the US root too.
    // u-3 is not restricted and has rows in both regions.
    let rows: Vec<Value> = (0..24)
        .map(|i| match i % 3 {
            0 => row(i, "u-1", "US"),
            1 => row(i, "u-1", "EU"),
            _ => row(i, "u-2", "US"),
        })
        .chain((100..104).map(|i| row(i, "u-3", if i % 2 == 0 { "EU" } else { "US" })))
        .collect();
    let response = app
        .ingest(
            &producer,
            &lake.id,
            Some("application/x-ndjson"),
            json_lines(rows),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
    let report: Value = response.json().await.unwrap();
    assert!(
        report["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["region"] == "EU" || f["region"] == "US"),
        "{report}"
    );
    assert!(parquet_files(&lake.home).is_empty());
    assert_eq!(
        rows_by_user(&lake.us),
        [("u-1".into(), 8), ("u-2".into(), 8), ("u-3".into(), 2)].into()
    );
    assert_eq!(
        rows_by_user(&lake.eu),
        [("u-1".into(), 8), ("u-3".into(), 2)].into()
    );

    for (path, body) in [
        ("/v1/residency/policies/EU", json!({"regions": ["EU"]})),
        (
            "/v1/subjects/u-1/jurisdiction",
            json!({"jurisdiction": "EU"}),
        ),
    ] {
        let response = put(&app, &app.admin_token, path, body).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    // From now on ingest refuses u-1's rows outside the EU; nothing is written.
    let before = (parquet_files(&lake.eu), parquet_files(&lake.us));
    let response = app
        .ingest(
            &producer,
            &lake.id,
            Some("application/x-ndjson"),
            json_lines([row(30, "u-2", "US"), row(31, "u-1", "US")]),
        )
        .await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_row").await;
    assert_eq!(
        (problem["row"].as_u64(), problem["column"].as_str()),
        (Some(2), Some("region"))
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("jurisdiction EU"),
        "{problem}"
    );
    assert_eq!(before, (parquet_files(&lake.eu), parquet_files(&lake.us)));

    // The scan finds the planted rows, per file.
    let job = run_job(&app, "/v1/residency/scan", json!({})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let found: Value = get(&app, &app.auditor_token, "/v1/residency/violations")
        .await
        .json()
        .await
        .unwrap();
    let scans = found["scans"].as_array().unwrap();
    let status: BTreeMap<&str, &str> = scans
        .iter()
        .map(|s| {
            (
                s["dataset"].as_str().unwrap(),
                s["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        status,
        [
            ("running_app", "violations"),
            ("running_events", "not_scannable")
        ]
        .into()
    );
    let violations = found["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 2, "one per day: {found}");
    let mut rows_found = 0;
    for v in violations {
        assert_eq!(v["dataset"], "running_app");
        assert_eq!(v["region"], "US");
        assert_eq!(v["subjects"], 1);
        assert_eq!(v["jurisdictions"], json!(["EU"]));
        assert_eq!(v["allowed_regions"], json!(["EU"]));
        assert!(lake.us.join(v["file"].as_str().unwrap()).is_file(), "{v}");
        assert!(v["partition"].as_str().unwrap().ends_with("region=US"));
        rows_found += v["rows"].as_u64().unwrap();
    }
    assert_eq!(rows_found, 8);
    assert!(!found.to_string().contains("u-1"), "no subject id: {found}");
    let one: Value = get(
        &app,
        &app.admin_token,
        &format!("/v1/residency/violations?dataset_id={}", lake.id),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(one["scans"].as_array().unwrap().len(), 1);

    // Remediation moves them into the EU root; the other rows stay where they are.
    let job = run_job(
        &app,
        "/v1/residency/remediate",
        json!({"dataset_id": lake.id}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let done = &job["result"]["datasets"][0];
    assert_eq!(done["rows_moved"], 8, "{job}");
    assert_eq!(done["files_remediated"], 2);
    assert_eq!(
        rows_by_user(&lake.us),
        [("u-2".into(), 8), ("u-3".into(), 2)].into()
    );
    assert_eq!(
        rows_by_user(&lake.eu),
        [("u-1".into(), 16), ("u-3".into(), 2)].into()
    );
    let left: Value = get(&app, &app.admin_token, "/v1/residency/violations")
        .await
        .json()
        .await
        .unwrap();
    assert!(left["violations"].as_array().unwrap().is_empty(), "{left}");

    // The next scan is clean.
    let job = run_job(&app, "/v1/residency/scan", json!({"dataset_id": lake.id})).await;
    assert_eq!(job["result"]["datasets"][0]["status"], "clean", "{job}");

    let remediated = app
        .state
        .store
        .audit_entries(&AuditFilter {
            action: Some("residency.remediated".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(remediated.len(), 2);
    assert!(remediated.iter().all(|e| e.subject.is_none()
        && e.details["from_region"] == "US"
        && !e.details.to_string().contains("u-1")));

    // Rectification, access and erasure find the subject's rows in every region's root.
    let token = app.subject_token("u3@example.com", "u-3").await;
    let response = app
        .file_request(
            &token,
            &json!({"type": "rectification", "dataset_id": lake.id, "changes": {"calories": 999}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let rectification = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.approve(&app.admin_token, &rectification).await;
    let done = app.wait_until_final(&token, &rectification).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["rows_changed"], 4, "{done}");
    assert_eq!(
        done["result"]["datasets"][0]["files_rewritten"], 2,
        "{done}"
    );
    let access = app.file_request_ok(&token, "access").await;
    app.approve(&app.admin_token, &access).await;
    let done = app.wait_until_final(&token, &access).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["rows"], 4, "{done}");
    let erasure = app.file_request_ok(&token, "erasure").await;
    app.approve(&app.admin_token, &erasure).await;
    let done = app.wait_until_final(&token, &erasure).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["rows_removed"], 4, "{done}");
    assert_eq!(rows_by_user(&lake.eu), [("u-1".into(), 16)].into());
    assert_eq!(rows_by_user(&lake.us), [("u-2".into(), 8)].into());
}

#[tokio::test]
async fn a_second_remediation_waits_and_region_roots_must_be_new_and_distinct() {
    let app = spawn_app().await;
    let lake = register(&app).await;
    // A region root that already holds data is refused, like the dataset root.
    std::fs::create_dir_all(lake.eu.join("date=2025-01-01")).unwrap();
    std::fs::write(lake.eu.join("date=2025-01-01/x.parquet"), b"x").unwrap();
    let response = app
        .create_dataset(&json!({
            "name": "again",
            "root_url": format!("file://{}", app.data_dir.path().join("again").display()),
            "schema": {
                "subject_columns": ["user_id"],
                "columns": [{"name": "user_id", "type": "string"},
                            {"name": "region", "type": "string"}],
                "region_column": "region",
                "region_roots": {"EU": format!("file://{}", lake.eu.display())}
            }
        }))
        .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("root of EU"),
        "{problem}"
    );

    // While a remediation is queued, another is refused.
    app.state
        .store
        .enqueue_job(
            lethe_core::store::NewJob {
                kind: lethe_core::store::JobKind::ResidencyRemediate,
                request_id: None,
                payload: json!({ "dataset_id": lake.id }),
                max_attempts: 1,
                run_at: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
            },
            lethe_core::audit::NewAuditEntry::new("test", "residency.remediation_queued"),
        )
        .await
        .unwrap();
    let response = app
        .client
        .post(app.url("/v1/residency/remediate"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::CONFLICT, "remediation_in_progress").await;
    let response = app
        .client
        .post(app.url("/v1/residency/scan"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"dataset_id": "nope"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
}
