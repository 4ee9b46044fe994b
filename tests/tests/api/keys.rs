//! Crypto-shredding across a database restore: the resurrection guard.

use std::sync::Arc;

use lethe_core::domain::SubjectId;
use lethe_core::keyring::cell::{CellContext, decrypt_cell, encrypt_cell};
use lethe_core::keyring::{KeyringError, keyring_from_settings};
use lethe_core::store::Store;
use lethe_core::webhooks::open_secret;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_a_database_backup_from_before_an_erasure_does_not_bring_the_key_back() {
    let app = spawn_app().await;
    if app
        .state
        .settings
        .database
        .url
        .expose_secret()
        .starts_with("postgres")
    {
        println!("skipped: the backup in this test is a SQLite file copy");
        return;
    }
    let subject = app.summary.subjects[1].user_id.clone();
    let subject_id = SubjectId::parse(subject.clone()).unwrap();
    let ctx = CellContext {
        dataset: "running_events",
        column: "email",
        subject_id: &subject_id,
    };
    let dek = app.state.keyring.dek_for_write(&subject_id).await.unwrap();
    let cell = encrypt_cell(&dek, &ctx, b"runner@example.com");

    // A backup taken before the erasure.
    let data_dir = app.data_dir.path().to_path_buf();
    let backup = data_dir.join("backup-before-erasure.db");
    let live = Store::connect_raw(app.state.settings.database.url.expose_secret())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "VACUUM INTO '{}'",
        backup.display()
    )))
    .execute(&live)
    .await
    .unwrap();

    // The erasure is approved: the key is destroyed at once.
    let response = app
        .file_request(
            &app.admin_token,
            &json!({ "type": "erasure", "subject_id": subject, "verification_note": "by post" }),
        )
        .await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        app.approve(&app.admin_token, &id).await.status(),
        StatusCode::OK
    );
    assert!(matches!(
        app.state.keyring.dek_for_read(&subject_id).await,
        Err(KeyringError::Shredded)
    ));

    // The old backup does hold the key: restored as is, it would bring the subject back.
    let mut restored = app.state.settings.clone();
    restored.database.url = SecretString::from(format!("sqlite://{}", backup.display()));
    let raw = Arc::new(Store::connect(&restored.database.url, 2).await.unwrap());
    let mut unjournaled = restored.clone();
    unjournaled.crypto.tombstone_journal = Some(data_dir.join("no-journal").display().to_string());
    let naive = keyring_from_settings(&unjournaled, raw.clone()).unwrap();
    let resurrected = naive.dek_for_read(&subject_id).await.unwrap();
    assert_eq!(
        decrypt_cell(&resurrected, &ctx, &cell).unwrap(),
        b"runner@example.com"
    );
    drop(naive);

    // Starting Lethe on the restored database re-applies the journaled tombstone.
    let state = lethe_service::state::open_state(&restored).await.unwrap();
    assert!(matches!(
        state.keyring.dek_for_read(&subject_id).await,
        Err(KeyringError::Shredded)
    ));
    assert!(matches!(
        state.keyring.dek_for_write(&subject_id).await,
        Err(KeyringError::Shredded)
    ));
    let audit = state
        .store
        .audit_entries(&lethe_core::store::AuditFilter {
            action: Some("keys.tombstones_reapplied".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].details["keys_destroyed"], 1);
    // A second start has nothing left to repair.
    let again = lethe_service::state::open_state(&restored).await.unwrap();
    let audit = again
        .store
        .audit_entries(&lethe_core::store::AuditFilter {
            action: Some("keys.tombstones_reapplied".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_kek_keeps_every_cell_readable_under_the_new_key_only() {
    let app = spawn_app().await;
    let subject_id = SubjectId::parse(app.summary.subjects[2].user_id.clone()).unwrap();
    let ctx = CellContext {
        dataset: "running_events",
        column: "full_name",
        subject_id: &subject_id,
    };
    let dek = app.state.keyring.dek_for_write(&subject_id).await.unwrap();
    let cell = encrypt_cell(&dek, &ctx, "Ana Lima".as_bytes());
    // An export sealed before the rotation, where the worker stores exports.
    let exports = std::path::PathBuf::from(app.state.settings.storage.exports_location());
    std::fs::create_dir_all(&exports).unwrap();
    let zip = b"PK\x03\x04 an access export".to_vec();
    let context = lethe_core::exports::export_context("r-rotated");
    let sealed = app.state.keyring.seal_blob(&context, &zip);
    std::fs::write(exports.join("r-rotated.zip"), &sealed).unwrap();
    // A webhook endpoint, whose secret is sealed under the old KEK.
    let hook_url = "http://127.0.0.1:9/hooks";
    let (hook_id, hook_secret) = app.webhook_ok(hook_url, json!(["*"])).await;

    let new_kek = app.data_dir.path().join("kek-2.key");
    let code = lethe_service::cli::rotate_kek(app.state.settings.clone(), new_kek.clone())
        .await
        .unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    assert!(new_kek.exists());

    // A replica configured with the new KEK reads the cell; the old KEK unwraps nothing.
    let mut rotated = app.state.settings.clone();
    rotated.crypto.kek_file = Some(new_kek);
    let store = Arc::new(Store::connect(&rotated.database.url, 2).await.unwrap());
    let keyring = keyring_from_settings(&rotated, store.clone()).unwrap();
    let dek = keyring.dek_for_read(&subject_id).await.unwrap();
    assert_eq!(
        decrypt_cell(&dek, &ctx, &cell).unwrap(),
        "Ana Lima".as_bytes()
    );
    let old = keyring_from_settings(&app.state.settings, store).unwrap();
    assert!(
        old.dek_for_read(&subject_id).await.is_err(),
        "the old KEK no longer unwraps"
    );

    // The export's key was re-wrapped in place: it opens with the new KEK alone, to the same
    // archive, and no longer with the old one.
    let rewrapped = std::fs::read(exports.join("r-rotated.zip")).unwrap();
    assert_ne!(rewrapped, sealed);
    assert_eq!(keyring.open_blob(&context, &rewrapped).unwrap(), zip);
    assert!(old.open_blob(&context, &rewrapped).is_err());
    let rotated = app
        .state
        .store
        .audit_entries(&lethe_core::store::AuditFilter {
            action: Some("keys.kek_rotated".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rotated[0].details["exports_rewrapped"], 1);
    assert_eq!(rotated[0].details["exports_failed"], 0);
    assert_eq!(rotated[0].details["webhook_secrets_resealed"], 1);

    // The webhook secret was re-sealed: the new KEK alone opens it, to the same secret.
    let stored = app
        .state
        .store
        .webhook(&hook_id)
        .await
        .unwrap()
        .stored_secret;
    let opened = open_secret(&keyring, hook_url, stored.expose_secret()).unwrap();
    assert_eq!(opened.expose_secret(), hook_secret);
    assert!(open_secret(&old, hook_url, stored.expose_secret()).is_err());
}
