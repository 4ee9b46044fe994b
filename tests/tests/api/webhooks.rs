//! Webhooks: a real receiving HTTP server in the test gets signed events of every status
//! change; failing receivers are retried; the delivery log tells what happened.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use lethe_core::webhooks::{DEFAULT_TOLERANCE, SEALED_SECRET_PREFIX, verify_signature};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{Spawn, TestApp, assert_problem, spawn_app, spawn_app_with};

/// One POST the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    signature: String,
    event_id: String,
    event_type: String,
    content_type: String,
    body: Vec<u8>,
    answered: u16,
}

impl Hit {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct ReceiverState {
    hits: Mutex<Vec<Hit>>,
    /// Requests still to answer with 500.
    failures_left: AtomicUsize,
}

/// The company's app: a real HTTP server on a free port that records every POST and answers
/// 500 to the first `fail_first`, then 200.
struct Receiver {
    url: String,
    state: web::Data<ReceiverState>,
}

async fn receive(
    state: web::Data<ReceiverState>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let fail = state
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let answered = if fail { 500 } else { 200 };
    state.hits.lock().unwrap().push(Hit {
        signature: header("lethe-signature"),
        event_id: header("lethe-event-id"),
        event_type: header("lethe-event-type"),
        content_type: header("content-type"),
        body: body.to_vec(),
        answered,
    });
    if fail {
        HttpResponse::InternalServerError().body("receiver is down for maintenance")
    } else {
        HttpResponse::Ok().finish()
    }
}

impl Receiver {
    async fn spawn(fail_first: usize) -> Self {
        let state = web::Data::new(ReceiverState {
            failures_left: AtomicUsize::new(fail_first),
            ..Default::default()
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .route("/hooks/lethe", web::post().to(receive))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self {
            url: format!("http://127.0.0.1:{port}/hooks/lethe"),
            state,
        }
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until a hit satisfies `done`, and returns every hit so far.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        for _ in 0..200 {
            let hits = self.hits();
            if done(&hits) {
                return hits;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the receiver never got {what}; it got {:#?}", self.hits());
    }
}

/// Polls the delivery log until `done` holds for it (up to 10 s).
async fn wait_for_log(
    app: &TestApp,
    webhook_id: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    for _ in 0..200 {
        let log = app.deliveries(webhook_id).await;
        if done(&log) {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "delivery log never settled: {:#?}",
        app.deliveries(webhook_id).await
    );
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn an_endpoint_receives_every_status_change_signed_and_without_the_subject_id() {
    let app = spawn_app().await;
    let receiver = Receiver::spawn(0).await;
    let (webhook_id, secret) = app.webhook_ok(&receiver.url, json!(["*"])).await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    // At rest the secret is sealed under the KEK: a copy of the database cannot sign events.
    let stored = app
        .state
        .store
        .webhook(&webhook_id)
        .await
        .unwrap()
        .stored_secret;
    let stored = stored.expose_secret();
    assert!(stored.starts_with(SEALED_SECRET_PREFIX), "{stored}");
    assert!(!stored.contains(secret.trim_start_matches("whsec_")));

    let subject = app.summary.subjects[0].user_id.clone();
    let token = app.subject_token("ana@example.com", &subject).await;
    let id = app.file_request_ok(&token, "access").await;
    let response = app.approve(&app.admin_token, &id).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        app.wait_until_final(&token, &id).await["status"],
        "completed"
    );

    let hits = receiver
        .wait_for("request.completed", |hits| {
            hits.iter().any(|h| h.event_type == "request.completed")
        })
        .await;
    let mut types = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for hit in &hits {
        verify_signature(
            &secret,
            &hit.signature,
            &hit.body,
            now_s(),
            DEFAULT_TOLERANCE,
        )
        .unwrap_or_else(|e| panic!("{e}: {hit:?}"));
        assert!(
            verify_signature(
                "whsec_wrong",
                &hit.signature,
                &hit.body,
                now_s(),
                DEFAULT_TOLERANCE
            )
            .is_err()
        );
        let body = hit.json();
        assert_eq!(hit.content_type, "application/json");
        assert_eq!(body["id"], hit.event_id.as_str());
        assert_eq!(body["type"], hit.event_type.as_str());
        assert_eq!(body["data"]["request_id"], id.as_str());
        assert_eq!(body["data"]["request_type"], "access");
        assert_eq!(
            format!("request.{}", body["data"]["status"].as_str().unwrap()),
            hit.event_type
        );
        assert!(
            body["data"]["subject_pseudonym"]
                .as_str()
                .is_some_and(|p| !p.is_empty())
        );
        let text = String::from_utf8(hit.body.clone()).unwrap();
        assert!(
            !text.contains(&subject),
            "the subject id left the system: {text}"
        );
        assert!(ids.insert(hit.event_id.clone()), "one event, one delivery");
        types.push(hit.event_type.clone());
    }
    // In the order they happened (other statuses may come between, e.g. awaiting approval).
    let wanted = [
        "request.received",
        "request.approved",
        "request.running",
        "request.completed",
    ];
    let mut positions = wanted.iter().map(|w| {
        types
            .iter()
            .position(|t| t == w)
            .unwrap_or_else(|| panic!("no {w} in {types:?}"))
    });
    let first = positions.next().unwrap();
    assert!(
        positions
            .try_fold(first, |prev, p| (p > prev).then_some(p))
            .is_some(),
        "out of order: {types:?}"
    );
    assert_eq!(hits[0].json()["data"]["previous_status"], Value::Null);

    let log = wait_for_log(&app, &webhook_id, |log| {
        log.len() == hits.len() && log.iter().all(|d| d["status"] == "delivered")
    })
    .await;
    for delivery in &log {
        assert_eq!(delivery["attempts"], 1);
        assert_eq!(delivery["last_status_code"], 200);
        assert_eq!(delivery["last_error"], Value::Null);
        assert!(delivery["delivered_at"].is_string());
        assert_eq!(delivery["request_id"], id.as_str());
    }
}

#[tokio::test]
async fn a_failing_receiver_is_retried_until_it_accepts_and_the_log_shows_the_attempts() {
    let app = spawn_app().await;
    let receiver = Receiver::spawn(2).await;
    let (webhook_id, secret) = app
        .webhook_ok(&receiver.url, json!(["request.rejected"]))
        .await;
    let token = app
        .subject_token("ben@example.com", &app.summary.subjects[1].user_id)
        .await;
    let id = app.file_request_ok(&token, "erasure").await;
    let reason = "We hold no data about this account.";
    assert_eq!(
        app.reject(&app.admin_token, &id, reason).await.status(),
        StatusCode::OK
    );

    let hits = receiver
        .wait_for("a request answered 200", |hits| {
            hits.iter().any(|h| h.answered == 200)
        })
        .await;
    assert_eq!(
        hits.iter().map(|h| h.answered).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    for hit in &hits {
        assert_eq!(
            hit.event_type, "request.rejected",
            "only what it subscribed to"
        );
        assert_eq!(hit.event_id, hits[0].event_id, "a retry is the same event");
        assert_eq!(hit.body, hits[0].body, "and the same body");
        verify_signature(
            &secret,
            &hit.signature,
            &hit.body,
            now_s(),
            DEFAULT_TOLERANCE,
        )
        .unwrap();
    }
    let data = &hits[0].json()["data"];
    assert_eq!(data["status"], "rejected");
    assert_eq!(
        data["reason"], reason,
        "the reason the subject must be told"
    );

    let log = wait_for_log(&app, &webhook_id, |log| {
        log.first().is_some_and(|d| d["status"] == "delivered")
    })
    .await;
    assert_eq!(
        log.len(),
        1,
        "request.received was not subscribed: {log:#?}"
    );
    let delivery = &log[0];
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["last_status_code"], 200);
    assert_eq!(delivery["last_error"], Value::Null);
    assert_eq!(delivery["event_id"], hits[0].event_id.as_str());
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_is_marked_failed_and_an_admin_can_requeue_it() {
    let app = spawn_app().await;
    // Three failures: all the attempts the test settings allow.
    let receiver = Receiver::spawn(3).await;
    let (webhook_id, _) = app
        .webhook_ok(&receiver.url, json!(["request.received"]))
        .await;
    let token = app
        .subject_token("cy@example.com", &app.summary.subjects[2].user_id)
        .await;
    app.file_request_ok(&token, "access").await;

    let log = wait_for_log(&app, &webhook_id, |log| {
        log.first().is_some_and(|d| d["status"] == "failed")
    })
    .await;
    let delivery = &log[0];
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["last_status_code"], 500);
    let error = delivery["last_error"].as_str().unwrap();
    assert!(error.starts_with("HTTP 500"), "{error}");
    // Only the status: the receiver's answer body never reaches the delivery log.
    assert!(!error.contains("down for maintenance"), "{error}");
    let delivery_id = delivery["id"].as_str().unwrap();

    assert_problem(
        app.retry_delivery(&app.auditor_token, delivery_id).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let response = app.retry_delivery(&app.admin_token, delivery_id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let requeued: Value = response.json().await.unwrap();
    assert_eq!(requeued["attempts"], 0);
    let log = wait_for_log(&app, &webhook_id, |log| log[0]["status"] == "delivered").await;
    assert_eq!(log[0]["attempts"], 1);
    assert_eq!(receiver.hits().len(), 4);
    assert_problem(
        app.retry_delivery(&app.admin_token, delivery_id).await,
        StatusCode::CONFLICT,
        "invalid_webhook_state",
    )
    .await;
    assert_problem(
        app.retry_delivery(&app.admin_token, "no-such-delivery")
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let response = app
        .client
        .get(app.url("/v1/audit"))
        .bearer_auth(&app.auditor_token)
        .query(&[("action", "webhook.delivery_retried")])
        .send()
        .await
        .unwrap();
    let entries: Vec<Value> = response.json().await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["details"]["delivery_id"], delivery_id);
}

#[tokio::test]
async fn only_admins_register_webhooks_and_only_http_urls_and_known_events_are_accepted() {
    let app = spawn_app().await;
    let token = app
        .subject_token("dee@example.com", &app.summary.subjects[3].user_id)
        .await;
    let body = json!({ "url": "https://app.example.com/hooks" });
    for caller in [&token, &app.auditor_token] {
        assert_problem(
            app.create_webhook(caller, &body).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
    }
    assert_problem(
        app.create_webhook("not-a-token", &body).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_problem(
        app.list_webhooks(&token).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    for bad in [
        json!({ "url": "ftp://files.example.com/in" }),
        json!({ "url": "file:///etc/passwd" }),
        json!({ "url": "app.example.com/hooks" }),
        json!({ "url": "https://app.example.com/hooks", "events": ["request.exploded"] }),
        json!({ "url": "https://app.example.com/hooks", "events": [] }),
    ] {
        let problem = assert_problem(
            app.create_webhook(&app.admin_token, &bad).await,
            StatusCode::BAD_REQUEST,
            "validation",
        )
        .await;
        assert!(
            problem["detail"].as_str().unwrap().contains("invalid"),
            "{problem}"
        );
    }
    assert!(
        app.list_webhooks(&app.admin_token)
            .await
            .json::<Vec<Value>>()
            .await
            .unwrap()
            .is_empty()
    );

    let response = app.create_webhook(&app.admin_token, &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["events"], json!(["*"]), "all events by default");
    assert_eq!(created["active"], true);
    let listed: Vec<Value> = app
        .list_webhooks(&app.auditor_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["url"], "https://app.example.com/hooks");
    assert!(
        listed[0].get("secret").is_none(),
        "the secret is shown once only"
    );
}

#[tokio::test]
async fn a_deactivated_endpoint_gets_nothing_more_and_the_secret_is_never_audited() {
    let app = spawn_app().await;
    let receiver = Receiver::spawn(0).await;
    let url = format!("{}?token=receiver-credential", receiver.url);
    let (webhook_id, secret) = app.webhook_ok(&url, json!(["*"])).await;
    let token = app
        .subject_token("eve@example.com", &app.summary.subjects[4].user_id)
        .await;

    // Queued in the transaction of the change: the log holds it as soon as the API answers.
    let first = app.file_request_ok(&token, "erasure").await;
    let queued = app.deliveries(&webhook_id).await;
    let received = queued.last().expect("queued with the filing");
    assert_eq!(received["event_type"], "request.received");
    assert_eq!(received["request_id"], first.as_str());

    let response = app.deactivate_webhook(&app.admin_token, &webhook_id).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let again = app.deactivate_webhook(&app.admin_token, &webhook_id).await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT, "idempotent");
    let listed: Vec<Value> = app
        .list_webhooks(&app.admin_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["active"], false);
    assert!(listed[0]["deactivated_at"].is_string());

    app.reject(&app.admin_token, &first, "Identity could not be verified.")
        .await;
    let log = app.deliveries(&webhook_id).await;
    assert_eq!(
        log.len(),
        queued.len(),
        "nothing queued after deactivation: {log:#?}"
    );
    assert_problem(
        app.deactivate_webhook(&app.admin_token, "no-such-webhook")
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let audit = app
        .audit_export(&app.auditor_token)
        .await
        .text()
        .await
        .unwrap();
    assert!(audit.contains("webhook.created") && audit.contains("webhook.deactivated"));
    assert_eq!(
        audit.matches("webhook.deactivated").count(),
        1,
        "a no-op is not audited"
    );
    assert!(!audit.contains(&secret), "the secret is in the audit log");
    assert!(
        !audit.contains("receiver-credential"),
        "the URL's query is in the audit log"
    );
}

#[tokio::test]
async fn a_deadline_extension_is_announced_with_its_reason() {
    let app = spawn_app().await;
    let receiver = Receiver::spawn(0).await;
    let (webhook_id, _) = app
        .webhook_ok(&receiver.url, json!(["request.deadline_extended"]))
        .await;
    let token = app
        .subject_token("fay@example.com", &app.summary.subjects[5].user_id)
        .await;
    let id = app.file_request_ok(&token, "erasure").await;
    let reason = "Many datasets hold this account; the search needs more time.";
    let response = app
        .extend(
            &app.admin_token,
            &id,
            &json!({ "months": 2, "reason": reason }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    let hits = receiver
        .wait_for("request.deadline_extended", |hits| !hits.is_empty())
        .await;
    let body = hits[0].json();
    assert_eq!(body["type"], "request.deadline_extended");
    assert_eq!(body["data"]["extension"]["months"], 2);
    assert_eq!(body["data"]["extension"]["reason"], reason);
    assert!(body["data"]["extension"]["original_due_at"].is_string());
    assert_eq!(app.deliveries(&webhook_id).await.len(), 1);
}

#[tokio::test]
async fn webhooks_to_loopback_link_local_or_private_addresses_are_refused() {
    let app = spawn_app_with(Spawn {
        configure: Some(|s| s.webhooks.allow_private_networks = false),
        ..Spawn::default()
    })
    .await;
    for url in [
        "http://127.0.0.1:9/hooks",
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://10.0.0.5/hooks",
        "http://192.168.1.10:8080/hooks",
        "http://[::1]/hooks",
        "http://[fd00::5]/hooks",
        "http://localhost:8080/hooks",
    ] {
        let response = app
            .create_webhook(&app.admin_token, &json!({ "url": url }))
            .await;
        assert_problem(response, StatusCode::BAD_REQUEST, "url_not_allowed").await;
    }
    let listed: Vec<Value> = app
        .list_webhooks(&app.admin_token)
        .await
        .json()
        .await
        .unwrap();
    assert!(listed.is_empty());
}

#[tokio::test]
async fn a_delivery_to_a_host_that_is_now_private_is_refused_and_nothing_is_sent() {
    let app = spawn_app_with(Spawn {
        configure: Some(|s| s.webhooks.allow_private_networks = false),
        ..Spawn::default()
    })
    .await;
    let receiver = Receiver::spawn(0).await;
    // Registered behind the API's back (as if its name resolved to a public address then).
    let url = lethe_core::webhooks::WebhookUrl::parse(&receiver.url).unwrap();
    let secret = lethe_core::webhooks::generate_secret();
    let endpoint = app
        .state
        .store
        .create_webhook(
            lethe_core::webhooks::NewWebhook {
                sealed_secret: lethe_core::webhooks::seal_secret(
                    &app.state.keyring,
                    url.as_str(),
                    &secret,
                ),
                url,
                events: lethe_core::webhooks::EventSelection::parse(Some(&[
                    "request.received".to_string()
                ]))
                .unwrap(),
                description: None,
                created_by: "system:test".into(),
            },
            lethe_core::audit::NewAuditEntry::new("system:test", "webhook.created"),
        )
        .await
        .unwrap();
    let token = app
        .subject_token("ssrf@example.com", &app.summary.subjects[3].user_id)
        .await;
    app.file_request_ok(&token, "access").await;
    let log = wait_for_log(&app, &endpoint.id, |log| {
        log.first().is_some_and(|d| d["status"] == "failed")
    })
    .await;
    let error = log[0]["last_error"].as_str().unwrap();
    assert!(error.starts_with("refused:"), "{error}");
    assert!(
        receiver.hits().is_empty(),
        "nothing reached the private address"
    );
}
