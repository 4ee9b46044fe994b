//! Legal holds (GDPR Art. 17(3)) where the data is rewritten: holds are read when a job runs,
//! a dataset hold keeps only the keys of subjects with rows in it, and a rectification never
//! rewrites held data.

use lethe_core::config::Settings;
use lethe_core::jobs::{Worker, WorkerConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Spawn, TestApp, spawn_app, spawn_app_with};
use crate::ingest::register_managed;
use crate::lake_snapshot::{is_subject_row, snapshot};

async fn place_hold(app: &TestApp, body: Value) -> Value {
    let response = app
        .client
        .post(app.url("/v1/legal-holds"))
        .bearer_auth(&app.admin_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

async fn demo_dataset(app: &TestApp) -> String {
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
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn file_and_approve(app: &TestApp, token: &str, body: Value) -> String {
    let response = app.file_request(token, &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        app.approve(&app.admin_token, &id).await.status(),
        StatusCode::OK
    );
    id
}

#[tokio::test]
async fn a_dataset_hold_keeps_only_the_keys_of_subjects_with_rows_in_that_dataset() {
    let app = spawn_app().await;
    // A hold on a dataset the subject has no row in.
    let (empty, _) = register_managed(&app).await;
    place_hold(
        &app,
        json!({"dataset_id": empty, "legal_basis": "Art. 17(3)(b)", "reason": "tax records"}),
    )
    .await;
    let subject = app.summary.subjects[1].user_id.clone();
    let token = app.subject_token("free@example.com", &subject).await;
    let erasure = file_and_approve(&app, &token, json!({"type": "erasure"})).await;
    let done = app.wait_until_final(&token, &erasure).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(
        done["key_destroyed_at"].is_string(),
        "another dataset's hold does not keep this subject's key: {done}"
    );
    assert_eq!(done["result"]["kept"], json!([]));

    // A hold on the dataset the subject has rows in keeps their key and rows.
    let demo = demo_dataset(&app).await;
    place_hold(
        &app,
        json!({"dataset_id": demo, "legal_basis": "Art. 17(3)(e)", "reason": "claims"}),
    )
    .await;
    let held = app.summary.subjects[2].user_id.clone();
    let token = app.subject_token("held@example.com", &held).await;
    let erasure = file_and_approve(&app, &token, json!({"type": "erasure"})).await;
    let done = app.wait_until_final(&token, &erasure).await;
    assert_eq!(done["status"], "partially_completed", "{done}");
    assert!(done["key_destroyed_at"].is_null(), "{done}");
    assert_eq!(done["result"]["kept"][0]["dataset_id"], demo);
    let rows = snapshot(&app.lake)
        .values()
        .flat_map(|f| f.rows.clone())
        .filter(|r| is_subject_row(r, &held))
        .count();
    assert!(rows > 0, "the held dataset keeps the subject's rows");
}

#[tokio::test]
async fn a_hold_placed_after_the_plan_is_honoured_by_its_queued_tasks() {
    let app = spawn_app_with(Spawn {
        configure: Some(|s: &mut Settings| s.worker.in_process = false),
        ..Spawn::default()
    })
    .await;
    let worker = Worker::new(
        app.state.store.clone(),
        WorkerConfig::from_settings(&app.state.settings),
    )
    .with_keyring(app.state.keyring.clone());
    let subject = app
        .summary
        .subjects
        .iter()
        .filter(|s| s.rows > 0)
        .nth(3)
        .unwrap()
        .user_id
        .clone();
    let token = app.subject_token("late@example.com", &subject).await;
    let erasure = file_and_approve(&app, &token, json!({"type": "erasure"})).await;
    // The plan runs and queues one task per file holding the subject…
    assert!(worker.try_execute_job().await.unwrap().is_some());
    let rows_before = snapshot(&app.lake)
        .values()
        .flat_map(|f| f.rows.clone())
        .filter(|r| is_subject_row(r, &subject))
        .count();
    assert!(rows_before > 0);
    // …then a hold arrives before they run.
    let hold = place_hold(
        &app,
        json!({"subject_id": subject, "legal_basis": "Art. 17(3)(e)", "reason": "claims"}),
    )
    .await;
    while worker.try_execute_job().await.unwrap().is_some() {}
    let done: Value = app
        .get_request(&token, &erasure)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["status"], "partially_completed", "{done}");
    let kept = done["result"]["kept"].as_array().unwrap();
    assert!(!kept.is_empty(), "{done}");
    assert!(
        kept.iter()
            .all(|k| k["hold_id"] == hold["id"] && k["placed_after_plan"] == true)
    );
    assert_eq!(done["result"]["rows_removed"], 0, "{done}");
    let rows_after = snapshot(&app.lake)
        .values()
        .flat_map(|f| f.rows.clone())
        .filter(|r| is_subject_row(r, &subject))
        .count();
    assert_eq!(rows_after, rows_before, "the held rows stay");
}

#[tokio::test]
async fn a_rectification_never_rewrites_data_under_a_legal_hold() {
    let app = spawn_app().await;
    let demo = demo_dataset(&app).await;
    place_hold(
        &app,
        json!({"dataset_id": demo, "legal_basis": "Art. 17(3)(e)", "reason": "claims"}),
    )
    .await;
    let subject = app.summary.subjects[4].user_id.clone();
    let token = app.subject_token("rect-held@example.com", &subject).await;
    let before = snapshot(&app.lake);
    let id = file_and_approve(
        &app,
        &token,
        json!({"type": "rectification", "dataset_id": demo, "changes": {"notes": "new"}}),
    )
    .await;
    let done = app.wait_until_final(&token, &id).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(
        done["error"].as_str().unwrap().contains("legal hold"),
        "{done}"
    );
    let after = snapshot(&app.lake);
    for (path, old) in &before {
        assert_eq!(after[path].bytes, old.bytes, "{path} was rewritten");
    }
}

#[tokio::test]
async fn after_a_completed_erasure_lethes_database_names_the_subject_by_pseudonym_only() {
    let app = spawn_app().await;
    let subject = app.summary.subjects[5].user_id.clone();
    let token = app.subject_token("gone@example.com", &subject).await;
    let access = file_and_approve(&app, &token, json!({"type": "access"})).await;
    app.wait_until_final(&token, &access).await;
    let erasure = file_and_approve(&app, &token, json!({"type": "erasure"})).await;
    let done = app.wait_until_final(&token, &erasure).await;
    assert_eq!(done["status"], "completed", "{done}");
    // The subject still follows their requests…
    let listed: Vec<Value> = app.list_requests(&token).await.json().await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    // …but no table of Lethe's own database holds the id any more.
    let store = lethe_core::store::Store::connect(&app.state.settings.database.url, 1)
        .await
        .unwrap();
    for (table, column) in [
        ("requests", "subject_id"),
        ("users", "subject_id"),
        ("restricted_subjects", "subject_id"),
    ] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1");
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(&subject)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(count, 0, "{table}.{column} still names the subject");
    }
    let replaced: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE subject_id LIKE 'pseudonym:%'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(replaced, 2);
    let entries = app
        .state
        .store
        .audit_entries(&Default::default())
        .await
        .unwrap();
    assert!(
        entries
            .iter()
            .all(|e| !serde_json::to_string(e).unwrap().contains(&subject))
    );
    // Nor do the database's files: the write-ahead log was emptied (SQLite; on PostgreSQL
    // there are none here).
    for entry in std::fs::read_dir(app.data_dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("lethe.db") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for needle in [subject.as_bytes(), b"gone@example.com".as_slice()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{name} still holds {}",
                String::from_utf8_lossy(needle)
            );
        }
    }
    // The account keeps no e-mail in clear, and its owner still signs in with it.
    let count_users = |sql: &'static str| {
        let pool = store.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind("gone@example.com")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let in_clear = "SELECT COUNT(*) FROM users WHERE email = $1";
    assert_eq!(
        count_users(in_clear).await,
        0,
        "the e-mail is stored in clear"
    );
    let again = app.login_ok("gone@example.com").await;
    let listed: Vec<Value> = app.list_requests(&again).await.json().await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    // Registering the address again creates no second account.
    let all = "SELECT COUNT(*) FROM users WHERE $1 = $1";
    let accounts = count_users(all).await;
    assert_eq!(
        app.register("gone@example.com", "another password 123")
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(count_users(all).await, accounts);
    assert_eq!(count_users(in_clear).await, 0);
}

#[tokio::test]
async fn rows_an_erased_subject_shares_with_a_held_subject_are_kept_whole() {
    let app = spawn_app().await;
    let root = app.data_dir.path().join("managed").join("messages");
    let response = app
        .create_dataset(&json!({
            "name": "messages",
            "root_url": format!("file://{}", root.display()),
            "schema": {
                "subject_columns": ["sender", "receiver"],
                "columns": [
                    {"name": "id", "type": "string"},
                    {"name": "sender", "type": "string"},
                    {"name": "receiver", "type": "string"},
                    {"name": "body", "type": "string"}
                ],
                "erasure": "delete_row"
            },
        }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let dataset = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (ana, bob, eve) = ("msg-ana", "msg-bob", "msg-eve");
    let messages = [
        ("m1", ana, bob),
        ("m2", bob, ana),
        ("m3", ana, eve),
        ("m4", eve, ana),
        ("m5", bob, eve),
    ];
    let body: String = messages
        .iter()
        .map(|(id, s, r)| {
            json!({"id": id, "sender": s, "receiver": r, "body": "hi"}).to_string() + "\n"
        })
        .collect();
    let ingested = app
        .ingest(
            &app.admin_token,
            &dataset,
            Some("application/x-ndjson"),
            body,
        )
        .await;
    assert_eq!(ingested.status(), StatusCode::CREATED);
    // Bob is under a hold; Ana asks to be erased.
    let hold = place_hold(
        &app,
        json!({"subject_id": bob, "legal_basis": "Art. 17(3)(e)", "reason": "claims"}),
    )
    .await;
    let token = app.subject_token("ana@example.com", ana).await;
    let erasure = file_and_approve(&app, &token, json!({"type": "erasure"})).await;
    let done = app.wait_until_final(&token, &erasure).await;

    // Her messages with Bob stay as they were; those with Eve are gone.
    let ids: Vec<String> = snapshot(&root)
        .values()
        .flat_map(|f| f.rows.clone())
        .filter_map(|r| {
            r.split('|')
                .find_map(|c| c.strip_prefix("id=").map(str::to_string))
        })
        .collect();
    let mut ids = ids;
    ids.sort();
    assert_eq!(ids, ["m1", "m2", "m5"], "{done}");
    assert_eq!(done["status"], "partially_completed", "{done}");
    let kept = done["result"]["kept"].as_array().unwrap();
    assert_eq!(kept.len(), 1, "{done}");
    assert_eq!(kept[0]["hold_id"], hold["id"]);
    assert_eq!(kept[0]["shared_rows"], 2);
    assert!(kept[0].get("placed_after_plan").is_none(), "{done}");
    let in_messages = done["result"]["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dataset"] == "messages")
        .unwrap();
    assert_eq!(in_messages["rows_removed"], 2, "{done}");
}
