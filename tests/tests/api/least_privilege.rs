//! Least privilege in what requests show: subjects never see an admin's account id or a
//! worker's host; auditors never see free-text notes that may name people.

use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_subject_sees_admin_and_system_not_account_ids_or_hosts() {
    let app = spawn_app().await;
    let subject = app.summary.subjects[4].user_id.clone();
    let token = app.subject_token("dee@example.com", &subject).await;
    let access = app.file_request_ok(&token, "access").await;
    app.approve(&app.admin_token, &access).await;
    let done = app.wait_until_final(&token, &access).await;
    assert_eq!(done["status"], "completed", "{done}");
    let admin_id = app.my_id(&app.admin_token).await;
    let text = done.to_string();
    assert!(!text.contains(&admin_id), "{text}");
    assert!(!text.contains("worker:"), "{text}");
    assert_eq!(done["decided_by"], "admin");
    let actors: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert!(
        actors.contains(&"admin") && actors.contains(&"system"),
        "{actors:?}"
    );
    // The subject's own actions keep their own actor; admins see everything.
    let admin_view: Value = app
        .get_request(&app.admin_token, &access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(admin_view["decided_by"], format!("user:{admin_id}"));
}

#[tokio::test]
async fn an_auditor_sees_no_free_text_notes() {
    let app = spawn_app().await;
    let subject = app.summary.subjects[5].user_id.clone();
    let response = app
        .file_request(
            &app.admin_token,
            &json!({ "type": "access", "subject_id": subject, "verification_note": "passport no. X1234567 checked at the desk" }),
        )
        .await;
    let filed: Value = response.json().await.unwrap();
    let id = filed["id"].as_str().unwrap();
    app.client
        .post(app.url(&format!("/v1/requests/{id}/cancel")))
        .bearer_auth(&app.admin_token)
        .json(&json!({ "reason": "the subject called: Ana Ruiz, +34 600 000 000" }))
        .send()
        .await
        .unwrap();
    let seen: Value = app
        .get_request(&app.auditor_token, id)
        .await
        .json()
        .await
        .unwrap();
    let text = seen.to_string();
    assert!(!text.contains("X1234567"), "{text}");
    assert!(!text.contains("Ana Ruiz"), "{text}");
    assert!(
        seen["verification_note"]
            .as_str()
            .unwrap()
            .starts_with("[redacted")
    );
    let admin: Value = app
        .get_request(&app.admin_token, id)
        .await
        .json()
        .await
        .unwrap();
    assert!(admin.to_string().contains("Ana Ruiz"));
}

#[tokio::test]
async fn repetitive_requests_beyond_the_bound_are_refused_and_the_refusal_is_recorded() {
    let app = spawn_app().await;
    let subject = app.summary.subjects[6].user_id.clone();
    let token = app.subject_token("eve@example.com", &subject).await;
    let mut first = None;
    for i in 0..3 {
        let response = app
            .client
            .post(app.url("/v1/requests"))
            .bearer_auth(&token)
            .header("Idempotency-Key", format!("k{i}"))
            .json(&json!({ "type": "access" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        first.get_or_insert(response.json::<Value>().await.unwrap()["id"].clone());
    }
    let response = app.file_request(&token, &json!({ "type": "access" })).await;
    let body = crate::helpers::assert_problem(
        response,
        reqwest::StatusCode::CONFLICT,
        "excessive_requests",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("12(5)"), "{body}");
    // A retry of an open one is not a new request; another type is not bounded by this one.
    let retry = app
        .client
        .post(app.url("/v1/requests"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "k0")
        .json(&json!({ "type": "access" }))
        .send()
        .await
        .unwrap();
    assert!(retry.status().is_success(), "{}", retry.status());
    assert_eq!(retry.json::<Value>().await.unwrap()["id"], first.unwrap());
    app.file_request_ok(&token, "erasure").await;
    let refusals = app
        .state
        .store
        .audit_entries(&lethe_core::store::AuditFilter {
            action: Some("request.refused_excessive".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(refusals.len(), 1);
    assert!(
        refusals[0].details["reason"]
            .as_str()
            .unwrap()
            .contains("Art. 12(5)")
    );
}
