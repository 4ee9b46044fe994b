//! Deadlines (GDPR Art. 12(3)): one extension with a reason the subject sees, the overdue and
//! due-date filters, and the register of requests for auditors (Art. 5(2)).

use chrono::{DateTime, Months, Utc};
use lethe_core::audit::NewAuditEntry;
use lethe_core::domain::{RequestStatus, RequestType, SubjectId};
use lethe_core::store::{NewRequest, Transition};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app};

const REASON: &str =
    "Your data is held in twelve systems, \"some\" archived; searching takes longer.";

fn ts(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("an instant"))
        .unwrap()
        .with_timezone(&Utc)
}

/// Files a request for `subject` as if it had been received `days_ago` days ago: waiting a
/// month is not possible, so it goes straight into the store, as the API would file it.
async fn file_received_days_ago(app: &TestApp, subject: &str, days_ago: i64) -> String {
    let subject = SubjectId::parse(subject).unwrap();
    let pseudonym = app.state.pseudonyms.pseudonym(&subject);
    let (request, _) = app
        .state
        .store
        .create_request(
            NewRequest {
                request_type: RequestType::Access,
                subject_id: subject,
                subject_pseudonym: pseudonym.clone(),
                filed_by: "system:test".into(),
                verification_note: Some("test fixture".into()),
                idempotency_key: None,
                received_at: Utc::now() - chrono::Duration::days(days_ago),
                details: None,
            },
            NewAuditEntry::new("system:test", "request.created").subject(&pseudonym),
        )
        .await
        .unwrap();
    request.id
}

async fn ids(response: reqwest::Response) -> Vec<String> {
    assert_eq!(response.status(), StatusCode::OK);
    let mut ids: Vec<String> = response
        .json::<Vec<Value>>()
        .await
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn an_admin_extends_a_deadline_once_and_the_subject_sees_why() {
    let app = spawn_app().await;
    let subject = app.summary.subjects[0].user_id.clone();
    let token = app.subject_token("ext@example.com", &subject).await;
    let id = app.file_request_ok(&token, "access").await;
    let before: Value = app.get_request(&token, &id).await.json().await.unwrap();
    assert!(before["extended_at"].is_null() && before["extension_reason"].is_null());

    let response = app
        .extend(
            &app.admin_token,
            &id,
            &json!({ "months": 2, "reason": REASON }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let extended: Value = response.json().await.unwrap();
    let received = ts(&extended["received_at"]);
    assert_eq!(
        ts(&extended["due_at"]),
        received.checked_add_months(Months::new(3)).unwrap(),
        "receipt + 1 + 2 calendar months"
    );
    assert_eq!(ts(&extended["original_due_at"]), ts(&before["due_at"]));
    assert_eq!(extended["extension_months"], 2);
    assert!(
        extended["extended_by"]
            .as_str()
            .unwrap()
            .starts_with("user:")
    );
    let days_left = extended["days_left"].as_i64().unwrap();
    assert!((87..=92).contains(&days_left), "{days_left}");

    // The subject sees the extension and its reason (Art. 12(3)).
    let seen: Value = app.get_request(&token, &id).await.json().await.unwrap();
    assert_eq!(seen["extension_reason"], REASON);
    assert_eq!(seen["due_at"], extended["due_at"]);
    assert!(seen["extended_at"].is_string());
    assert_eq!(seen["days_left"], extended["days_left"]);

    // Once only.
    assert_problem(
        app.extend(
            &app.admin_token,
            &id,
            &json!({ "months": 1, "reason": "again" }),
        )
        .await,
        StatusCode::CONFLICT,
        "already_extended",
    )
    .await;
    let after: Value = app.get_request(&token, &id).await.json().await.unwrap();
    assert_eq!(after["due_at"], extended["due_at"]);

    // Audited once, with the months and dates, never the subject id.
    let response = app
        .client
        .get(app.url("/v1/audit"))
        .bearer_auth(&app.auditor_token)
        .query(&[("action", "request.deadline_extended")])
        .send()
        .await
        .unwrap();
    let entries: Vec<Value> = response.json().await.unwrap();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry["request_id"], json!(id));
    assert_eq!(entry["details"]["months"], 2);
    assert_eq!(ts(&entry["details"]["due_at"]), ts(&extended["due_at"]));
    assert_eq!(
        ts(&entry["details"]["original_due_at"]),
        ts(&before["due_at"])
    );
    assert!(!entry.to_string().contains(&subject));
}

#[tokio::test]
async fn months_outside_one_or_two_or_a_missing_reason_are_refused() {
    let app = spawn_app().await;
    let token = app
        .subject_token("bad@example.com", &app.summary.subjects[0].user_id)
        .await;
    let id = app.file_request_ok(&token, "erasure").await;
    for body in [
        json!({ "months": 0, "reason": "r" }),
        json!({ "months": 3, "reason": "r" }),
        json!({ "months": -1, "reason": "r" }),
        json!({ "reason": "r" }),
        json!({ "months": 1, "reason": "" }),
        json!({ "months": 1, "reason": "  \n " }),
        json!({ "months": 1 }),
        json!({ "months": 1, "reason": "x".repeat(2001) }),
    ] {
        let response = app.extend(&app.admin_token, &id, &body).await;
        assert_problem(response, StatusCode::BAD_REQUEST, "validation").await;
    }
    let request: Value = app.get_request(&token, &id).await.json().await.unwrap();
    assert!(request["extended_at"].is_null());
    assert_problem(
        app.extend(
            &app.admin_token,
            "no-such-id",
            &json!({ "months": 1, "reason": "r" }),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_subject_or_an_auditor_cannot_extend_a_deadline() {
    let app = spawn_app().await;
    let token = app
        .subject_token("self@example.com", &app.summary.subjects[0].user_id)
        .await;
    let id = app.file_request_ok(&token, "access").await;
    let body = json!({ "months": 2, "reason": "I would like more time" });
    assert_problem(
        app.extend(&token, &id, &body).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.extend(&app.auditor_token, &id, &body).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let request: Value = app.get_request(&token, &id).await.json().await.unwrap();
    assert!(request["extended_at"].is_null());
}

#[tokio::test]
async fn an_extension_after_the_first_month_or_of_a_finished_request_is_refused() {
    let app = spawn_app().await;
    let body = json!({ "months": 1, "reason": "complex request" });
    let late = file_received_days_ago(&app, "subject-late", 40).await;
    assert_problem(
        app.extend(&app.admin_token, &late, &body).await,
        StatusCode::CONFLICT,
        "extension_too_late",
    )
    .await;

    let token = app
        .subject_token("fin@example.com", &app.summary.subjects[0].user_id)
        .await;
    let rejected = app.file_request_ok(&token, "erasure").await;
    assert_eq!(
        app.reject(&app.admin_token, &rejected, "Identity not verified.")
            .await
            .status(),
        StatusCode::OK
    );
    assert_problem(
        app.extend(&app.admin_token, &rejected, &body).await,
        StatusCode::CONFLICT,
        "request_final",
    )
    .await;

    // A completed request, within its first month, is finished too.
    let completed = app.file_request_ok(&token, "access").await;
    assert_eq!(
        app.approve(&app.admin_token, &completed).await.status(),
        StatusCode::OK
    );
    let request = app.wait_until_final(&app.admin_token, &completed).await;
    assert_eq!(request["status"], "completed");
    assert_problem(
        app.extend(&app.admin_token, &completed, &body).await,
        StatusCode::CONFLICT,
        "request_final",
    )
    .await;
}

#[tokio::test]
async fn overdue_and_due_before_find_requests_by_their_deadline() {
    let app = spawn_app().await;
    // Received 40 days ago: due about 10 days ago, still open.
    let overdue = file_received_days_ago(&app, "subject-overdue", 40).await;
    // Received 40 days ago too, but answered: not overdue.
    let answered = file_received_days_ago(&app, "subject-answered", 40).await;
    let mut reject = Transition::new(
        RequestStatus::Rejected,
        "user:admin",
        NewAuditEntry::new("system:test", "request.rejected"),
    );
    reject.decision = true;
    reject.decision_reason = Some("manifestly unfounded".into());
    app.state
        .store
        .transition_request(&answered, reject)
        .await
        .unwrap();
    // Received now: due in about a month.
    let token = app
        .subject_token("due@example.com", &app.summary.subjects[0].user_id)
        .await;
    let fresh = app.file_request_ok(&token, "access").await;

    for caller in [&app.admin_token, &app.auditor_token] {
        assert_eq!(
            ids(app
                .list_requests_where(caller, &[("overdue", "true")])
                .await)
            .await,
            [overdue.as_str()]
        );
    }
    assert_eq!(
        ids(app
            .list_requests_where(&app.admin_token, &[("overdue", "false")])
            .await)
        .await,
        sorted(vec![answered.clone(), fresh.clone()])
    );
    let now = Utc::now().to_rfc3339();
    assert_eq!(
        ids(app
            .list_requests_where(&app.admin_token, &[("due_before", now.as_str())])
            .await)
        .await,
        sorted(vec![overdue.clone(), answered.clone()])
    );
    let in_45_days = (Utc::now() + chrono::Duration::days(45)).to_rfc3339();
    assert_eq!(
        ids(app
            .list_requests_where(&app.admin_token, &[("due_before", in_45_days.as_str())])
            .await)
        .await,
        sorted(vec![overdue.clone(), answered.clone(), fresh.clone()])
    );
    assert_eq!(
        ids(app
            .list_requests_where(
                &app.admin_token,
                &[("due_before", in_45_days.as_str()), ("status", "received")]
            )
            .await)
        .await,
        // `fresh` was filed through the API and waits in pending_approval.
        sorted(vec![overdue.clone()])
    );

    // Extended by two months, the fresh request is no longer due within 45 days.
    let response = app
        .extend(
            &app.admin_token,
            &fresh,
            &json!({ "months": 2, "reason": REASON }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        ids(app
            .list_requests_where(&app.admin_token, &[("due_before", in_45_days.as_str())])
            .await)
        .await,
        sorted(vec![overdue.clone(), answered.clone()])
    );
    // A subject's filters apply to their own requests only.
    assert_eq!(
        ids(app
            .list_requests_where(&token, &[("overdue", "true")])
            .await)
        .await,
        Vec::<String>::new()
    );

    for bad in [("due_before", "next week"), ("overdue", "maybe")] {
        assert_problem(
            app.list_requests_where(&app.admin_token, &[bad]).await,
            StatusCode::BAD_REQUEST,
            "validation",
        )
        .await;
    }
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

const COLUMNS: [&str; 16] = [
    "id",
    "type",
    "status",
    "subject_pseudonym",
    "received_at",
    "due_at",
    "extended",
    "original_due_at",
    "extended_at",
    "extended_by",
    "extension_months",
    "extension_reason",
    "decided_by",
    "decided_at",
    "decision_reason",
    "completed_at",
];

#[tokio::test]
async fn the_register_lists_every_request_as_jsonl_and_csv_without_subject_ids() {
    let app = spawn_app().await;
    let subject = app.summary.subjects[0].user_id.clone();
    let token = app.subject_token("reg@example.com", &subject).await;
    let extended = app.file_request_ok(&token, "access").await;
    assert_eq!(
        app.extend(
            &app.admin_token,
            &extended,
            &json!({ "months": 1, "reason": REASON })
        )
        .await
        .status(),
        StatusCode::OK
    );
    let rejected = app.file_request_ok(&token, "erasure").await;
    assert_eq!(
        app.reject(&app.admin_token, &rejected, "Identity, not verified.")
            .await
            .status(),
        StatusCode::OK
    );

    // JSON Lines, the default.
    let response = app.register_export(&app.auditor_token, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "application/x-ndjson");
    assert_eq!(
        header(&response, "content-disposition"),
        "attachment; filename=\"lethe-register.jsonl\""
    );
    let body = response.text().await.unwrap();
    assert!(!body.contains(&subject), "no subject id in the register");
    assert!(!body.contains("reg@example.com"));
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        let mut keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut columns = COLUMNS.to_vec();
        columns.sort_unstable();
        assert_eq!(keys, columns);
    }
    let by_id = |id: &str| lines.iter().find(|l| l["id"] == id).unwrap().clone();
    let ext = by_id(&extended);
    assert_eq!(ext["type"], "access");
    assert_eq!(ext["extended"], true);
    assert_eq!(ext["extension_months"], 1);
    assert_eq!(ext["extension_reason"], REASON);
    assert_eq!(
        ts(&ext["due_at"]),
        ts(&ext["received_at"])
            .checked_add_months(Months::new(2))
            .unwrap()
    );
    let rej = by_id(&rejected);
    assert_eq!(rej["status"], "rejected");
    assert_eq!(rej["extended"], false);
    assert_eq!(rej["decision_reason"], "Identity, not verified.");
    assert!(rej["decided_by"].as_str().unwrap().starts_with("user:"));
    assert!(rej["decided_at"].is_string());
    assert!(rej["completed_at"].is_null());
    let pseudonym = app
        .state
        .pseudonyms
        .pseudonym(&SubjectId::parse(subject.clone()).unwrap());
    assert_eq!(rej["subject_pseudonym"], json!(pseudonym));

    // CSV with a header row, by an admin.
    let response = app
        .register_export(&app.admin_token, &[("format", "csv")])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(&response, "content-type").starts_with("text/csv"));
    assert_eq!(
        header(&response, "content-disposition"),
        "attachment; filename=\"lethe-register.csv\""
    );
    let body = response.text().await.unwrap();
    assert!(!body.contains(&subject));
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let columns: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(columns, COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    let col = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
    let row = |id: &str| rows.iter().find(|r| &r[col("id")] == id).unwrap();
    let ext = row(&extended);
    assert_eq!(&ext[col("extended")], "true");
    assert_eq!(
        &ext[col("extension_reason")],
        REASON,
        "quotes and commas survive"
    );
    assert_eq!(&ext[col("extension_months")], "1");
    assert_eq!(&ext[col("decided_by")], "");
    let rej = row(&rejected);
    assert_eq!(&rej[col("status")], "rejected");
    assert_eq!(&rej[col("extended")], "false");
    assert_eq!(&rej[col("decision_reason")], "Identity, not verified.");
    assert_eq!(&rej[col("subject_pseudonym")], pseudonym);

    // Each export is audited.
    let response = app
        .client
        .get(app.url("/v1/audit"))
        .bearer_auth(&app.auditor_token)
        .query(&[("action", "register.exported")])
        .send()
        .await
        .unwrap();
    let entries: Vec<Value> = response.json().await.unwrap();
    let formats: Vec<&str> = entries
        .iter()
        .map(|e| e["details"]["format"].as_str().unwrap())
        .collect();
    assert_eq!(formats, ["jsonl", "csv"]);
}

#[tokio::test]
async fn the_register_period_selects_requests_by_receipt() {
    let app = spawn_app().await;
    let old = file_received_days_ago(&app, "subject-old", 60).await;
    let middle = file_received_days_ago(&app, "subject-middle", 40).await;
    let recent = file_received_days_ago(&app, "subject-recent", 5).await;
    let days_ago = |d: i64| (Utc::now() - chrono::Duration::days(d)).to_rfc3339();
    let register_ids = |query: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let response = app.register_export(&app.auditor_token, &query).await;
            assert_eq!(response.status(), StatusCode::OK);
            let body = response.text().await.unwrap();
            body.lines()
                .map(|l| {
                    serde_json::from_str::<Value>(l).unwrap()["id"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        register_ids(vec![]).await,
        [old.clone(), middle.clone(), recent.clone()],
        "oldest first"
    );
    assert_eq!(
        register_ids(vec![("from", days_ago(50)), ("to", days_ago(10))]).await,
        [middle.as_str()]
    );
    assert_eq!(
        register_ids(vec![("from", days_ago(50))]).await,
        [middle.clone(), recent.clone()]
    );
    assert_eq!(
        register_ids(vec![("to", days_ago(50))]).await,
        [old.as_str()]
    );
    // An empty period still has its CSV header.
    let response = app
        .register_export(
            &app.auditor_token,
            &[("format", "csv"), ("from", &days_ago(3))],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.text().await.unwrap(),
        format!("{}\n", COLUMNS.join(","))
    );

    for bad in [
        vec![("format", "xlsx".to_string())],
        vec![("from", "yesterday".to_string())],
        vec![("from", days_ago(10)), ("to", days_ago(50))],
    ] {
        let query: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_problem(
            app.register_export(&app.auditor_token, &query).await,
            StatusCode::BAD_REQUEST,
            "validation",
        )
        .await;
    }
}

#[tokio::test]
async fn a_subject_cannot_read_the_register() {
    let app = spawn_app().await;
    let token = app
        .subject_token("nosy@example.com", &app.summary.subjects[0].user_id)
        .await;
    app.file_request_ok(&token, "access").await;
    assert_problem(
        app.register_export(&token, &[]).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.client
            .get(app.url("/v1/register"))
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let response = app.register_export(&app.auditor_token, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
}
