//! Proof an auditor need not take on trust (issue 13): signed checkpoints kept outside the
//! database, tampering by direct SQL caught by the API and offline, a database restored from
//! an older copy caught at start.

use lethe_core::audit::{
    AuditEntry, ExportScope, NewAuditEntry, ProblemKind, PublicKeys, entry_hash, parse_checkpoints,
    verify_entries, verify_with_checkpoints,
};
use lethe_core::store::{AuditFilter, Backend, Store};
use lethe_service::startup::Application;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Spawn, TestApp, spawn_app_with};

async fn app() -> TestApp {
    spawn_app_with(Spawn {
        subjects: 4,
        days: 1,
        register_lake: false,
        ..Spawn::default()
    })
    .await
}

/// Appends `n` entries straight through the store (as the service's own writes do).
async fn append(app: &TestApp, n: usize) {
    for i in 0..n {
        app.state
            .store
            .append_audit(NewAuditEntry::new("system:test", "test.step").details(json!({ "i": i })))
            .await
            .unwrap();
    }
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(&app.auditor_token)
        .send()
        .await
        .unwrap()
}

async fn export_text(app: &TestApp) -> String {
    let response = get(app, "/v1/audit/export").await;
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

fn entries(text: &str) -> Vec<AuditEntry> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The checkpoints and public keys, as an auditor downloads them.
async fn proof(app: &TestApp) -> (String, String) {
    let checkpoints = get(app, "/v1/audit/checkpoints").await;
    assert_eq!(checkpoints.status(), StatusCode::OK);
    assert_eq!(
        checkpoints.headers()["content-type"],
        "application/x-ndjson"
    );
    let keys = get(app, "/v1/audit/public-keys").await;
    assert_eq!(keys.status(), StatusCode::OK);
    (
        checkpoints.text().await.unwrap(),
        keys.text().await.unwrap(),
    )
}

fn offline(export: &str, checkpoints: &str, keys: &str) -> lethe_core::audit::VerifyReport {
    verify_with_checkpoints(
        entries(export),
        &parse_checkpoints(checkpoints).unwrap(),
        &PublicKeys::parse(keys).unwrap(),
        ExportScope::WholeAnchored,
    )
}

async fn readyz(app: &TestApp) -> Value {
    app.client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_whole_export_ends_at_a_signed_checkpoint_and_verifies_offline() {
    let app = app().await;
    append(&app, 30).await;
    let export = export_text(&app).await;
    let (checkpoints, keys) = proof(&app).await;
    let report = offline(&export, &checkpoints, &keys);
    assert!(report.is_intact(), "{report:?}");
    let last = entries(&export).last().unwrap().seq;
    assert_eq!(report.anchored_through_seq, Some(last));
    assert!(report.checkpoints_checked >= 1);
    // The checkpoint is in the sink outside the database, one file per checkpoint.
    let sink = app.data_dir.path().join("audit-checkpoints");
    let files: Vec<_> = std::fs::read_dir(&sink).unwrap().collect();
    assert_eq!(files.len() as u64, report.checkpoints_checked);
    // The signing key is a 0600 file beside the other keys, never in the database.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = app.data_dir.path().join("audit-signing.key");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let keys: Value = serde_json::from_str(&keys).unwrap();
    assert_eq!(keys["keys"][0]["algorithm"], "Ed25519");
    assert_eq!(keys["keys"][0]["current"], true);
    // Cutting the tail, or checking against another key, fails.
    let cut: String = export.lines().take(10).map(|l| format!("{l}\n")).collect();
    let p = offline(&cut, &checkpoints, &keys.to_string())
        .problem
        .unwrap();
    assert_eq!(p.kind, ProblemKind::Missing);
    let other = lethe_core::audit::AuditSigner::generate();
    let other_keys = PublicKeys::new(&other, &[]).unwrap();
    let other_keys = json!({ "keys": other_keys.list() }).to_string();
    assert_eq!(
        offline(&export, &checkpoints, &other_keys)
            .problem
            .unwrap()
            .kind,
        ProblemKind::Checkpoint
    );
    // The database verifies against the sink, and readiness says so.
    let verified: Value = get(&app, "/v1/audit/verify").await.json().await.unwrap();
    assert_eq!(verified["problem"], Value::Null, "{verified}");
    assert!(verified["checkpoints_checked"].as_u64().unwrap() >= 1);
    assert_eq!(readyz(&app).await["audit_checkpoints"], "consistent");
}

#[tokio::test]
async fn the_checkpoint_endpoints_are_for_auditors() {
    let app = app().await;
    for path in ["/v1/audit/checkpoints", "/v1/audit/public-keys"] {
        let response = app
            .client
            .get(app.url(path))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
    }
}

#[tokio::test]
async fn checkpoints_are_made_every_n_entries_in_the_background() {
    let app = spawn_app_with(Spawn {
        subjects: 4,
        days: 1,
        register_lake: false,
        configure: Some(|s| s.audit.checkpoint_every_entries = 5),
        ..Spawn::default()
    })
    .await;
    append(&app, 12).await;
    let mut made = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        made = app.state.audit.checkpoints().await.unwrap();
        if made.last().is_some_and(|c| c.seq >= 12) {
            break;
        }
    }
    let (head, _) = app.state.store.audit_head().await.unwrap();
    assert!(
        made.last().is_some_and(|c| c.seq == head),
        "checkpoint of the head: {made:?}"
    );
    assert!(
        made.windows(2)
            .all(|w| w[1].prev_checkpoint_hash == w[0].hash)
    );
}

/// What a DBA can do first: remove the append-only guard.
async fn remove_guard(pool: &sqlx::AnyPool, backend: Backend) {
    let statements: &[&str] = match backend {
        Backend::Sqlite => &[
            "DROP TRIGGER audit_log_no_update",
            "DROP TRIGGER audit_log_no_delete",
        ],
        Backend::Postgres => &["ALTER TABLE audit_log DISABLE TRIGGER USER"],
    };
    for statement in statements {
        sqlx::query(*statement).execute(pool).await.unwrap();
    }
}

async fn exec(pool: &sqlx::AnyPool, sql: String) {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .unwrap();
}

#[derive(Debug, Clone, Copy)]
enum Tamper {
    Update,
    Delete,
    Insert,
    Reorder,
    Truncate,
    RewriteChainAndHead,
}

async fn tamper(app: &TestApp, how: Tamper, all: &[AuditEntry]) {
    let store = Store::connect(&app.state.settings.database.url, 1)
        .await
        .unwrap();
    let pool = store.pool();
    remove_guard(pool, store.backend()).await;
    match how {
        Tamper::Update => {
            exec(
                pool,
                "UPDATE audit_log SET details = '{\"i\":99}' WHERE seq = 10".into(),
            )
            .await
        }
        Tamper::Delete => exec(pool, "DELETE FROM audit_log WHERE seq = 10".into()).await,
        Tamper::Insert => {
            // Make room at 11 and put a forged entry there that links to entry 10.
            exec(
                pool,
                "UPDATE audit_log SET seq = -(seq + 1) WHERE seq > 10".into(),
            )
            .await;
            exec(pool, "UPDATE audit_log SET seq = -seq WHERE seq < 0".into()).await;
            exec(
                pool,
                "UPDATE audit_head SET seq = seq + 1 WHERE id = 1".into(),
            )
            .await;
            let prev = &all[9];
            let at = prev.at;
            let details = json!({"forged": true});
            let hash = entry_hash(
                &prev.hash,
                11,
                at,
                "system",
                "export.downloaded",
                None,
                None,
                &details,
            );
            exec(
                pool,
                format!(
                    "INSERT INTO audit_log (seq, at, actor, action, request_id, subject, details, prev_hash, hash) \
                     VALUES (11, '{}', 'system', 'export.downloaded', NULL, NULL, '{details}', '{}', '{hash}')",
                    lethe_core::domain::to_db(at),
                    prev.hash
                ),
            )
            .await;
        }
        Tamper::Reorder => {
            exec(pool, "UPDATE audit_log SET seq = -1 WHERE seq = 10".into()).await;
            exec(pool, "UPDATE audit_log SET seq = 10 WHERE seq = 11".into()).await;
            exec(pool, "UPDATE audit_log SET seq = 11 WHERE seq = -1".into()).await;
        }
        Tamper::Truncate => {
            let statement = match store.backend() {
                Backend::Sqlite => "DELETE FROM audit_log",
                Backend::Postgres => "TRUNCATE audit_log",
            };
            exec(pool, statement.into()).await;
            exec(
                pool,
                format!(
                    "UPDATE audit_head SET seq = 0, hash = '{}' WHERE id = 1",
                    lethe_core::audit::GENESIS_HASH
                ),
            )
            .await;
        }
        Tamper::RewriteChainAndHead => {
            // Remove entry 10, renumber the rest, recompute every hash and the head: the chain
            // in the database is perfect again.
            let mut rewritten: Vec<AuditEntry> = Vec::new();
            for e in all.iter().filter(|e| e.seq != 10) {
                let mut e = e.clone();
                e.seq = rewritten.len() as i64 + 1;
                e.prev_hash = rewritten
                    .last()
                    .map_or(lethe_core::audit::GENESIS_HASH.to_string(), |p| {
                        p.hash.clone()
                    });
                e.hash = e.computed_hash();
                rewritten.push(e);
            }
            exec(pool, "DELETE FROM audit_log".into()).await;
            for e in &rewritten {
                sqlx::query(
                    "INSERT INTO audit_log (seq, at, actor, action, request_id, subject, details, prev_hash, hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(e.seq)
                .bind(lethe_core::domain::to_db(e.at))
                .bind(&e.actor)
                .bind(&e.action)
                .bind(&e.request_id)
                .bind(&e.subject)
                .bind(e.details.to_string())
                .bind(&e.prev_hash)
                .bind(&e.hash)
                .execute(pool)
                .await
                .unwrap();
            }
            let last = rewritten.last().unwrap();
            exec(
                pool,
                format!(
                    "UPDATE audit_head SET seq = {}, hash = '{}' WHERE id = 1",
                    last.seq, last.hash
                ),
            )
            .await;
            let db = app
                .state
                .store
                .audit_entries(&AuditFilter::default())
                .await
                .unwrap();
            let (head_seq, head_hash) = app.state.store.audit_head().await.unwrap();
            assert!(
                verify_entries(db, Some((head_seq, &head_hash))).is_intact(),
                "the rewritten chain alone verifies: only the checkpoints can tell"
            );
        }
    }
}

#[tokio::test]
async fn tampering_by_direct_sql_is_detected_by_the_api_and_offline() {
    for how in [
        Tamper::Update,
        Tamper::Delete,
        Tamper::Insert,
        Tamper::Reorder,
        Tamper::Truncate,
        Tamper::RewriteChainAndHead,
    ] {
        let app = app().await;
        append(&app, 30).await;
        let before = export_text(&app).await;
        assert!(offline(&before, &proof(&app).await.0, &proof(&app).await.1).is_intact());
        tamper(&app, how, &entries(&before)).await;

        // The API's verification fails, and the mismatch is reported four ways.
        let report: Value = get(&app, "/v1/audit/verify").await.json().await.unwrap();
        assert!(!report["problem"].is_null(), "{how:?}: {report}");
        let ready = readyz(&app).await;
        assert_eq!(ready["status"], "degraded", "{how:?}: {ready}");
        assert!(
            matches!(
                ready["audit_checkpoints"].as_str(),
                Some("behind" | "diverged")
            ),
            "{how:?}: {ready}"
        );
        let metrics = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("lethe_audit_checkpoint_mismatch 1"),
            "{how:?}: {metrics}"
        );
        let mismatches = app
            .state
            .store
            .audit_entries(&AuditFilter {
                action: Some("audit.checkpoint_mismatch".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(mismatches.len(), 1, "{how:?}: audited once");

        // Offline: the export taken now fails against the checkpoints taken now.
        let after = export_text(&app).await;
        let (checkpoints, keys) = proof(&app).await;
        let offline_report = offline(&after, &checkpoints, &keys);
        assert!(!offline_report.is_intact(), "{how:?}: {offline_report:?}");
    }
}

#[tokio::test]
async fn a_database_restored_from_an_older_copy_is_detected_at_start() {
    let app = app().await;
    append(&app, 5).await;
    // An older copy of the database: a snapshot on SQLite, a fresh database on PostgreSQL
    // (which holds even less).
    let older_url = match app.state.store.backend() {
        Backend::Sqlite => {
            let copy = app.data_dir.path().join("backup.db");
            let store = Store::connect(&app.state.settings.database.url, 1)
                .await
                .unwrap();
            exec(store.pool(), format!("VACUUM INTO '{}'", copy.display())).await;
            secrecy::SecretString::from(format!("sqlite://{}", copy.display()))
        }
        Backend::Postgres => crate::helpers::postgres_database().await.unwrap(),
    };
    append(&app, 20).await;
    let _ = export_text(&app).await; // signs the head
    let (head, _) = app.state.store.audit_head().await.unwrap();
    assert!(
        app.state
            .audit
            .checkpoints()
            .await
            .unwrap()
            .last()
            .unwrap()
            .seq
            == head
    );

    // Start again on the older copy, with the same sink and key.
    let mut settings = app.state.settings.clone();
    settings.database.url = older_url;
    settings.server.port = 0;
    let restored = Application::build(settings).await.unwrap();
    let state = restored.state();
    let comparison = state.audit.comparison();
    assert_eq!(
        comparison.state,
        lethe_service::checkpoints::SinkState::Behind,
        "{comparison:?}"
    );
    let audited = state
        .store
        .audit_entries(&AuditFilter {
            action: Some("audit.checkpoint_mismatch".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].details["state"], "behind");
    assert_eq!(audited[0].details["last_checkpoint_seq"], head);
}

/// Runs `tools/verify_audit.py` with `args`; `None` when Python or its `cryptography` package
/// is missing (required on CI).
fn python_verifier(args: &[&std::path::Path], flags: &[&str]) -> Option<(bool, String)> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/verify_audit.py");
    let on_ci = std::env::var_os("CI").is_some();
    let mut command = std::process::Command::new("python3");
    command.arg(&script);
    for (flag, path) in flags.iter().zip(args) {
        command.arg(flag).arg(path);
    }
    match command.output() {
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            if stderr.contains("No module named 'cryptography'") && !on_ci {
                println!("skipped the Python verifier: the cryptography package is not installed");
                return None;
            }
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            Some((out.status.success(), format!("{stdout}{stderr}")))
        }
        Err(e) if !on_ci => {
            println!("skipped the Python verifier: python3 not found ({e})");
            None
        }
        Err(e) => panic!("python3 is required on CI: {e}"),
    }
}

#[tokio::test]
async fn the_python_verifier_accepts_a_real_export_and_catches_one_changed_byte() {
    let app = app().await;
    // Details as varied as real ones: floats in every layout, escapes, non-ASCII text.
    for details in [
        json!({"elapsed_s": 0.1, "rows_per_s": 123456.789, "tiny": 1.2e-7, "huge": 1e20, "whole": 3.0}),
        json!({"note": "é – \u{1}\t\"quoted\" / back\\slash", "nested": {"b": [1, {"z": null, "a": true}]}}),
        json!({"small": 0.00001, "neg": -2.5, "big_int": 9007199254740993_i64}),
    ] {
        app.state
            .store
            .append_audit(NewAuditEntry::new("system:test", "test.varied").details(details))
            .await
            .unwrap();
    }
    append(&app, 20).await;
    let export = export_text(&app).await;
    let (checkpoints, keys) = proof(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, cps, pubkey) = (
        dir.path().join("audit.jsonl"),
        dir.path().join("checkpoints.jsonl"),
        dir.path().join("audit.pub"),
    );
    std::fs::write(&file, &export).unwrap();
    std::fs::write(&cps, &checkpoints).unwrap();
    std::fs::write(&pubkey, &keys).unwrap();
    let flags = ["--file", "--checkpoints", "--public-key"];
    let Some((ok, out)) = python_verifier(&[&file, &cps, &pubkey], &flags) else {
        return;
    };
    assert!(ok, "the Python verifier accepts the real export: {out}");
    assert!(out.contains("\"problem\": null"), "{out}");

    // One byte changed in one entry: refused.
    let changed = export.replacen("test.step", "test.stop", 1);
    std::fs::write(&file, &changed).unwrap();
    let (ok, out) = python_verifier(&[&file, &cps, &pubkey], &flags).unwrap();
    assert!(!ok, "a changed byte is caught: {out}");
    // The tail cut: refused.
    let cut: String = export.lines().take(5).map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, &cut).unwrap();
    let (ok, out) = python_verifier(&[&file, &cps, &pubkey], &flags).unwrap();
    assert!(
        !ok && out.contains("missing"),
        "a cut tail is caught: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_erasure_gets_a_signed_certificate_that_fails_with_one_byte_changed() {
    let app = crate::helpers::spawn_app_with(Spawn {
        subjects: 8,
        days: 2,
        ..Spawn::default()
    })
    .await;
    let subject = app.summary.subjects[0].user_id.clone();
    let token = app.subject_token("erased@example.com", &subject).await;
    let erasure = app.file_request_ok(&token, "erasure").await;
    // Not yet completed: no certificate.
    let early = app
        .client
        .get(app.url(&format!("/v1/requests/{erasure}/certificate")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), StatusCode::CONFLICT);
    app.approve(&app.admin_token, &erasure).await;
    let done = app.wait_until_final(&token, &erasure).await;
    assert_eq!(done["status"], "completed", "{done}");

    let fetch = |who: String| {
        let app = &app;
        let erasure = erasure.clone();
        async move {
            app.client
                .get(app.url(&format!("/v1/requests/{erasure}/certificate")))
                .bearer_auth(who)
                .send()
                .await
                .unwrap()
        }
    };
    // The admin may not; the subject and the auditor may.
    assert_eq!(
        fetch(app.admin_token.clone()).await.status(),
        StatusCode::FORBIDDEN
    );
    let response = fetch(app.auditor_token.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = fetch(token.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let certificate: Value = serde_json::from_str(&text).unwrap();

    // What it says, and what it must not hold.
    assert!(!text.contains(&subject), "no subject id in the certificate");
    assert!(!text.contains("erased@example.com"));
    assert_eq!(certificate["kind"], "lethe.erasure_certificate.v1");
    assert_eq!(certificate["request_id"], erasure.as_str());
    assert_eq!(certificate["subject_pseudonym"], done["subject_pseudonym"]);
    assert_eq!(certificate["status"], "completed");
    assert!(certificate["key_destroyed_at"].is_string());
    assert_eq!(certificate["rows_removed"], done["result"]["rows_removed"]);
    let datasets = certificate["datasets"].as_array().unwrap();
    assert_eq!(datasets[0]["dataset"], "running_events");
    assert!(
        datasets[0]["rows_removed"].as_u64().unwrap() > 0,
        "{certificate}"
    );
    let files = datasets[0]["files"].as_array().unwrap();
    assert!(!files.is_empty());
    for file in files {
        let (before, after) = (&file["before"], &file["after"]);
        assert!(
            file["file"].as_str().unwrap().ends_with(".parquet"),
            "{file}"
        );
        assert!(
            before["size"].as_u64().unwrap() > after["size"].as_u64().unwrap(),
            "{file}"
        );
        assert!(
            before["e_tag"].is_string() && after["e_tag"] != before["e_tag"],
            "{file}"
        );
        // The size after is the file in the lake now.
        let on_disk = std::fs::metadata(app.lake.join(file["file"].as_str().unwrap())).unwrap();
        assert_eq!(after["size"].as_u64().unwrap(), on_disk.len());
    }
    let audit = &certificate["audit"];
    let checkpoint_seq = audit["checkpoint"]["seq"].as_i64().unwrap();
    assert!(checkpoint_seq >= audit["last_seq"].as_i64().unwrap());
    let checkpoints = parse_checkpoints(&proof(&app).await.0).unwrap();
    assert!(
        checkpoints
            .iter()
            .any(|c| c.seq == checkpoint_seq && c.hash == audit["checkpoint"]["hash"]),
        "the covering checkpoint is in the sink"
    );

    // Verifies with the public keys; one byte changed does not.
    let keys = PublicKeys::parse(&proof(&app).await.1).unwrap();
    assert_eq!(
        lethe_core::audit::verify_document(&certificate, &keys),
        Ok(())
    );
    let changed_text = text.replacen("\"rows_removed\":", "\"rows_removed\":1", 1);
    let changed: Value = serde_json::from_str(&changed_text).unwrap();
    assert!(lethe_core::audit::verify_document(&changed, &keys).is_err());
    let mut one_byte = certificate.clone();
    let sig = one_byte["request_id"]
        .as_str()
        .unwrap()
        .replacen('-', "_", 1);
    one_byte["request_id"] = json!(sig);
    assert!(lethe_core::audit::verify_document(&one_byte, &keys).is_err());

    // The Python verifier agrees.
    let dir = tempfile::tempdir().unwrap();
    let (cert, pubkey) = (dir.path().join("cert.json"), dir.path().join("audit.pub"));
    std::fs::write(&cert, &text).unwrap();
    std::fs::write(&pubkey, proof(&app).await.1).unwrap();
    let flags = ["--certificate", "--public-key"];
    if let Some((ok, out)) = python_verifier(&[&cert, &pubkey], &flags) {
        assert!(ok, "{out}");
        std::fs::write(&cert, &changed_text).unwrap();
        let (ok, out) = python_verifier(&[&cert, &pubkey], &flags).unwrap();
        assert!(!ok, "{out}");
    }
}

#[tokio::test]
async fn a_time_range_export_verifies_against_the_checkpoints_it_spans() {
    let app = spawn_app_with(Spawn {
        subjects: 4,
        days: 1,
        register_lake: false,
        configure: Some(|s| s.audit.checkpoint_every_entries = 10),
        ..Spawn::default()
    })
    .await;
    for _ in 0..4 {
        append(&app, 10).await;
        app.state
            .audit
            .checkpoint_now(app.state.store.as_ref())
            .await
            .unwrap();
    }
    let all = entries(&export_text(&app).await);
    let (from, to) = (all[11].at, all[36].at);
    let response = app
        .client
        .get(app.url("/v1/audit/export"))
        .bearer_auth(&app.auditor_token)
        .query(&[("from", from.to_rfc3339()), ("to", to.to_rfc3339())])
        .send()
        .await
        .unwrap();
    let range = response.text().await.unwrap();
    let slice = entries(&range);
    assert!(slice.first().unwrap().seq > 1 && slice.len() < all.len());
    let (checkpoints, keys) = proof(&app).await;
    let (checkpoints, keys) = (
        parse_checkpoints(&checkpoints).unwrap(),
        PublicKeys::parse(&keys).unwrap(),
    );
    let report = verify_with_checkpoints(slice.clone(), &checkpoints, &keys, ExportScope::Range);
    assert!(report.is_intact(), "{report:?}");
    let spanned: Vec<i64> = checkpoints
        .iter()
        .map(|c| c.seq)
        .filter(|s| (slice[0].seq..=slice.last().unwrap().seq).contains(s))
        .collect();
    assert!(!spanned.is_empty());
    assert_eq!(report.anchored_through_seq, spanned.last().copied());
    // Any entry changed inside the slice up to its last checkpoint fails.
    for i in 0..slice.len() {
        if slice[i].seq > *spanned.last().unwrap() {
            break;
        }
        let mut changed = slice.clone();
        changed[i].actor = "someone else".into();
        changed[i].hash = changed[i].computed_hash();
        let mut prev = changed[i].hash.clone();
        for e in changed.iter_mut().skip(i + 1) {
            e.prev_hash = prev;
            e.hash = e.computed_hash();
            prev = e.hash.clone();
        }
        assert!(
            !verify_with_checkpoints(changed, &checkpoints, &keys, ExportScope::Range).is_intact(),
            "rewritten from entry {}",
            slice[i].seq
        );
    }
    // As a whole-log export it is refused: it does not start at entry 1.
    assert!(!verify_with_checkpoints(slice, &checkpoints, &keys, ExportScope::Whole).is_intact());
}

#[tokio::test]
async fn after_a_key_rotation_old_checkpoints_still_verify_with_the_kept_public_key() {
    let app = app().await;
    append(&app, 10).await;
    let _ = export_text(&app).await; // checkpoint 1 under the first key
    let old_keys = PublicKeys::parse(&proof(&app).await.1).unwrap();
    let old_public = old_keys.list()[0].public_key.clone();

    // Restart with a new signing key and the old public key kept.
    let mut settings = app.state.settings.clone();
    settings.server.port = 0;
    settings.audit.signing_key = Some(secrecy::SecretString::from(
        "bmV3LWF1ZGl0LXNpZ25pbmcta2V5LWZvci10ZXN0cyE=".to_string(),
    ));
    settings.audit.previous_public_keys = vec![old_public.clone()];
    let rotated = Application::build(settings).await.unwrap();
    let state = rotated.state();
    assert_eq!(
        state.audit.comparison().state,
        lethe_service::checkpoints::SinkState::Consistent
    );
    append(&app, 5).await;
    let second = state
        .audit
        .checkpoint_now(state.store.as_ref())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.n, 2);
    assert_ne!(second.key_id, old_keys.list()[0].key_id);
    let list = state.audit.public_keys().list();
    assert_eq!(list.len(), 2);
    assert!(list[0].current && list[1].public_key == old_public);
    let keys = PublicKeys::parse(&json!({ "keys": list }).to_string()).unwrap();
    let checkpoints = state.audit.checkpoints().await.unwrap();
    let all = app
        .state
        .store
        .audit_entries(&AuditFilter {
            until_seq: Some(second.seq),
            ..Default::default()
        })
        .await
        .unwrap();
    let report =
        verify_with_checkpoints(all.clone(), &checkpoints, &keys, ExportScope::WholeAnchored);
    assert!(report.is_intact(), "{report:?}");
    // Without the old key the first checkpoint no longer verifies.
    let only_new = PublicKeys::parse(&list[0].public_key).unwrap();
    assert!(!verify_with_checkpoints(all, &checkpoints, &only_new, ExportScope::Whole).is_intact());
}
