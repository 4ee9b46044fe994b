//! `spawn_app()` and one helper per endpoint.

use std::path::PathBuf;
use std::time::Duration;

use lethe_core::audit::NewAuditEntry;
use lethe_core::config::{Settings, TrustedIssuerSettings};
use lethe_core::demo::{DemoLakeOptions, DemoLakeSummary, generate_lake};
use lethe_core::domain::{Email, Role};
use lethe_core::store::NewUser;
use lethe_service::startup::Application;
use lethe_service::state::AppState;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

pub const PASSWORD: &str = "a long enough password";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// Keeps the data folder alive as long as the app.
    #[allow(dead_code)]
    pub data_dir: tempfile::TempDir,
    pub lake: PathBuf,
    pub summary: DemoLakeSummary,
    pub state: actix_web::web::Data<AppState>,
    pub admin_token: String,
    pub auditor_token: String,
}

/// Options for [`spawn_app_with`].
pub struct Spawn {
    pub subjects: usize,
    pub days: u32,
    pub register_lake: bool,
    /// `storage.exports_url` (e.g. `s3://bucket/exports`); `None`: the local exports folder.
    pub exports_url: Option<String>,
    /// `worker.erasure_batch_window_s`.
    pub batch_window_s: u64,
    /// `ingest.max_body_bytes`; `None`: the default (64 MiB).
    pub ingest_max_body_bytes: Option<usize>,
    /// `auth.trusted_issuers`: identity providers of the company's app.
    pub trusted_issuers: Vec<TrustedIssuerSettings>,
    /// Any other settings to change before the app is built.
    pub configure: Option<fn(&mut Settings)>,
    /// `[iceberg]`: catalogs of Iceberg datasets.
    pub iceberg: lethe_core::config::IcebergSettings,
}

impl Default for Spawn {
    fn default() -> Self {
        Self {
            subjects: 40,
            days: 4,
            register_lake: true,
            exports_url: None,
            batch_window_s: 0,
            ingest_max_body_bytes: None,
            trusted_issuers: Vec::new(),
            configure: None,
            iceberg: Default::default(),
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Spawn::default()).await
}

pub async fn spawn_app_with(spawn: Spawn) -> TestApp {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let lake = data_dir.path().join("lake").join("running_events");
    let options = DemoLakeOptions {
        subjects: spawn.subjects,
        days: spawn.days,
        row_group_rows: 64,
        ..DemoLakeOptions::default()
    };
    let summary = generate_lake(&lake, &options).expect("demo lake");

    let mut settings = Settings::embedded(data_dir.path());
    settings.storage.exports_url = spawn.exports_url.clone();
    settings.worker.erasure_batch_window_s = spawn.batch_window_s;
    settings.auth.trusted_issuers = spawn.trusted_issuers.clone();
    if let Some(limit) = spawn.ingest_max_body_bytes {
        settings.ingest.max_body_bytes = limit;
    }
    if let Some(url) = postgres_database().await {
        settings.database.url = url;
    }
    settings.server.port = 0;
    settings.worker.poll_interval_ms = 50;
    settings.worker.lease_s = 10;
    settings.worker.max_attempts = 2;
    // Webhook retries after 100 ms, 200 ms; a delivery fails for good at the third attempt.
    settings.webhooks.poll_interval_ms = 50;
    settings.webhooks.retry_base_ms = 100;
    settings.webhooks.max_attempts = 3;
    // Lakes of the tests live in temporary folders and buckets (Lethe's own folders stay
    // refused); the default allow-list has tests of its own.
    settings.storage.allowed_roots = Some(vec!["/".into(), "s3://".into()]);
    // The receivers of the webhook tests listen on 127.0.0.1.
    settings.webhooks.allow_private_networks = true;
    settings.log.filter = "warn".into();
    // The suite signs in many times from 127.0.0.1; the limits have tests of their own.
    settings.auth.attempts_per_ip_per_minute = 100_000;
    settings.auth.attempts_per_account_per_minute = 100_000;
    settings.auth.lockout_after_failures = 1_000;
    settings.iceberg = spawn.iceberg.clone();
    if let Some(configure) = spawn.configure {
        configure(&mut settings);
    }
    let app = Application::build(settings)
        .await
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut test = TestApp {
        address,
        client,
        data_dir,
        lake,
        summary,
        state,
        admin_token: String::new(),
        auditor_token: String::new(),
    };
    test.create_account("admin@example.com", Role::Admin).await;
    test.create_account("auditor@example.com", Role::Auditor)
        .await;
    test.admin_token = test.login_ok("admin@example.com").await;
    test.auditor_token = test.login_ok("auditor@example.com").await;
    if spawn.register_lake {
        let response = test
            .create_dataset(&json!({
                "name": "running_events",
                "root_url": format!("file://{}", test.lake.display()),
                "subject_column": "user_id",
            }))
            .await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{}",
            response.text().await.unwrap()
        );
    }
    test
}

/// With `LETHE_TEST_API_BACKEND=postgres` and `LETHE_TEST_POSTGRES_URL` set, a fresh
/// PostgreSQL database for this test; otherwise `None` (SQLite in the data folder).
pub async fn postgres_database() -> Option<secrecy::SecretString> {
    if std::env::var("LETHE_TEST_API_BACKEND").ok()?.as_str() != "postgres" {
        return None;
    }
    let base = std::env::var("LETHE_TEST_POSTGRES_URL")
        .expect("LETHE_TEST_API_BACKEND=postgres needs LETHE_TEST_POSTGRES_URL");
    let name = format!("lethe_api_{}", uuid::Uuid::new_v4().simple());
    let admin = lethe_core::store::Store::connect_raw(&base)
        .await
        .expect("postgres reachable");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create test database");
    let (prefix, _) = base.rsplit_once('/').unwrap();
    Some(secrecy::SecretString::from(format!("{prefix}/{name}")))
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Creates an admin or auditor directly in the store, as `lethe-service user create` does.
    pub async fn create_account(&self, email: &str, role: Role) {
        let hash = lethe_service::auth::hash_password(PASSWORD.into())
            .await
            .unwrap();
        self.state
            .store
            .create_user(
                NewUser {
                    email: Email::parse(email).unwrap(),
                    password_hash: hash,
                    role,
                },
                NewAuditEntry::new("system:test", "account.created"),
            )
            .await
            .unwrap();
    }

    pub async fn register(&self, email: &str, password: &str) -> Response {
        self.client
            .post(self.url("/v1/auth/register"))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.client
            .post(self.url("/v1/auth/login"))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap()
    }

    pub async fn login_ok(&self, email: &str) -> String {
        let response = self.login(email, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The account id of the caller of `token` (`GET /v1/me`).
    pub async fn my_id(&self, token: &str) -> String {
        let response = self
            .client
            .get(self.url("/v1/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let me: Value = response.json().await.unwrap();
        me["id"].as_str().unwrap().to_string()
    }

    /// The last verification code mailed to `email`, read from the outbox folder (the
    /// embedded default writes each message there as an `.eml` file); waits up to 5 s for
    /// `count` messages to `email` (codes are mailed in the background).
    pub async fn mailed_code(&self, email: &str, count: usize) -> Option<String> {
        for _ in 0..100 {
            if let Some(code) = self.mailed_code_now(email, count) {
                return Some(code);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        None
    }

    fn mailed_code_now(&self, email: &str, count: usize) -> Option<String> {
        let outbox = self.state.settings.storage.data_dir.join("outbox");
        let mut messages: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(outbox)
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let text = std::fs::read_to_string(e.path()).ok()?;
                let modified = e.metadata().ok()?.modified().ok()?;
                text.contains(&format!("To: {email}"))
                    .then_some((modified, text))
            })
            .collect();
        if messages.len() < count {
            return None;
        }
        messages.sort();
        let text = &messages.last()?.1;
        let at = text.find("code is ")? + "code is ".len();
        Some(text[at..at + 6].to_string())
    }

    /// `POST /v1/auth/email/verify` with `code`.
    pub async fn verify_email(&self, token: &str, code: &str) -> Response {
        self.client
            .post(self.url("/v1/auth/email/verify"))
            .bearer_auth(token)
            .json(&json!({ "code": code }))
            .send()
            .await
            .unwrap()
    }

    /// Registers a subject account, verifies its e-mail with the mailed code, has the admin
    /// link it to `subject_id`, and logs it in.
    pub async fn subject_token(&self, email: &str, subject_id: &str) -> String {
        let response = self.register(email, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let token = self.login_ok(email).await;
        let code = self
            .mailed_code(email, 1)
            .await
            .expect("a verification code was mailed");
        assert_eq!(
            self.verify_email(&token, &code).await.status(),
            StatusCode::NO_CONTENT
        );
        let id = self.my_id(&token).await;
        let response = self.link_subject(&id, subject_id).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{}",
            response.text().await.unwrap()
        );
        token
    }

    pub async fn link_subject(&self, user_id: &str, subject_id: &str) -> Response {
        self.client
            .put(self.url(&format!("/v1/users/{user_id}/subject")))
            .bearer_auth(&self.admin_token)
            .json(&json!({ "subject_id": subject_id, "verification_note": "checked ID document" }))
            .send()
            .await
            .unwrap()
    }

    pub async fn create_dataset(&self, body: &Value) -> Response {
        self.client
            .post(self.url("/v1/datasets"))
            .bearer_auth(&self.admin_token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/tokens` as the admin: a token granted every dataset registered so far and
    /// the restricted list.
    pub async fn create_token(&self, name: &str) -> Response {
        let datasets: Vec<Value> = self
            .client
            .get(self.url("/v1/datasets"))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids: Vec<&Value> = datasets.iter().map(|d| &d["id"]).collect();
        self.client
            .post(self.url("/v1/tokens"))
            .bearer_auth(&self.admin_token)
            .json(&json!({ "name": name, "datasets": ids, "list_restricted": true }))
            .send()
            .await
            .unwrap()
    }

    /// Creates a producer token as the admin and returns `(id, token)`.
    pub async fn producer_token(&self, name: &str) -> (String, String) {
        let response = self.create_token(name).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{}",
            response.text().await.unwrap()
        );
        let created: Value = response.json().await.unwrap();
        (
            created["id"].as_str().unwrap().to_string(),
            created["token"].as_str().unwrap().to_string(),
        )
    }

    pub async fn list_tokens(&self, token: &str) -> Response {
        self.client
            .get(self.url("/v1/tokens"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn revoke_token(&self, token: &str, id: &str) -> Response {
        self.client
            .delete(self.url(&format!("/v1/tokens/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/datasets/{id}/ingest` with `body` as `content_type` (`None`: no header).
    pub async fn ingest(
        &self,
        token: &str,
        dataset_id: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        let mut request = self
            .client
            .post(self.url(&format!("/v1/datasets/{dataset_id}/ingest")))
            .bearer_auth(token)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        request.send().await.unwrap()
    }

    pub async fn file_request(&self, token: &str, body: &Value) -> Response {
        self.client
            .post(self.url("/v1/requests"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn file_request_ok(&self, token: &str, kind: &str) -> String {
        let response = self.file_request(token, &json!({ "type": kind })).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{}",
            response.text().await.unwrap()
        );
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn get_request(&self, token: &str, id: &str) -> Response {
        self.client
            .get(self.url(&format!("/v1/requests/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn list_requests(&self, token: &str) -> Response {
        self.client
            .get(self.url("/v1/requests"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn approve(&self, token: &str, id: &str) -> Response {
        self.client
            .post(self.url(&format!("/v1/requests/{id}/approve")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn reject(&self, token: &str, id: &str, reason: &str) -> Response {
        self.client
            .post(self.url(&format!("/v1/requests/{id}/reject")))
            .bearer_auth(token)
            .json(&json!({ "reason": reason }))
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/requests/{id}/extend` with `body` (`{"months": …, "reason": …}`).
    pub async fn extend(&self, token: &str, id: &str, body: &Value) -> Response {
        self.client
            .post(self.url(&format!("/v1/requests/{id}/extend")))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `GET /v1/requests` with query parameters.
    pub async fn list_requests_where(&self, token: &str, query: &[(&str, &str)]) -> Response {
        self.client
            .get(self.url("/v1/requests"))
            .bearer_auth(token)
            .query(query)
            .send()
            .await
            .unwrap()
    }

    /// `GET /v1/register` with query parameters.
    pub async fn register_export(&self, token: &str, query: &[(&str, &str)]) -> Response {
        self.client
            .get(self.url("/v1/register"))
            .bearer_auth(token)
            .query(query)
            .send()
            .await
            .unwrap()
    }

    pub async fn export(&self, token: &str, id: &str) -> Response {
        self.client
            .get(self.url(&format!("/v1/requests/{id}/export")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn audit_export(&self, token: &str) -> Response {
        self.client
            .get(self.url("/v1/audit/export"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Polls a request until it reaches a final status (or 60 s pass) and returns it.
    pub async fn wait_until_final(&self, token: &str, id: &str) -> Value {
        for _ in 0..600 {
            let request: Value = self.get_request(token, id).await.json().await.unwrap();
            if matches!(
                request["status"].as_str(),
                Some("completed" | "partially_completed" | "failed" | "rejected" | "cancelled")
            ) {
                return request;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("request {id} did not finish within 60 s");
    }
}

impl TestApp {
    /// `POST /v1/webhooks` with `body` as `token`.
    pub async fn create_webhook(&self, token: &str, body: &Value) -> Response {
        self.client
            .post(self.url("/v1/webhooks"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Registers `url` for `events` as the admin and returns `(id, secret)`.
    pub async fn webhook_ok(&self, url: &str, events: Value) -> (String, String) {
        let response = self
            .create_webhook(&self.admin_token, &json!({ "url": url, "events": events }))
            .await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{}",
            response.text().await.unwrap()
        );
        let created: Value = response.json().await.unwrap();
        (
            created["id"].as_str().unwrap().to_string(),
            created["secret"].as_str().unwrap().to_string(),
        )
    }

    /// `GET /v1/webhooks`.
    pub async fn list_webhooks(&self, token: &str) -> Response {
        self.client
            .get(self.url("/v1/webhooks"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `DELETE /v1/webhooks/{id}`.
    pub async fn deactivate_webhook(&self, token: &str, id: &str) -> Response {
        self.client
            .delete(self.url(&format!("/v1/webhooks/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `GET /v1/webhooks/{id}/deliveries` as the admin: the delivery log, newest first.
    pub async fn deliveries(&self, webhook_id: &str) -> Vec<Value> {
        let response = self
            .client
            .get(self.url(&format!("/v1/webhooks/{webhook_id}/deliveries")))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// `POST /v1/webhooks/deliveries/{id}/retry`.
    pub async fn retry_delivery(&self, token: &str, delivery_id: &str) -> Response {
        self.client
            .post(self.url(&format!("/v1/webhooks/deliveries/{delivery_id}/retry")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

/// Asserts an RFC 7807 body with the given status and code.
pub async fn assert_problem(response: Response, status: StatusCode, code: &str) -> Value {
    let actual = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "body: {text}");
    assert_eq!(content_type, "application/problem+json");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    body
}
