//! The whole story: access and erasure of one subject, end to end.

use std::collections::BTreeMap;
use std::io::Read;

use lethe_core::audit::{AuditEntry, verify_entries};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;
use crate::lake_snapshot::{is_subject_row, snapshot};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_gets_a_copy_of_their_data_and_then_is_erased_from_every_file() {
    let app = spawn_app().await;
    let before = snapshot(&app.lake);
    let count = |subject: &str| -> usize {
        before
            .values()
            .map(|f| f.rows.iter().filter(|r| is_subject_row(r, subject)).count())
            .sum()
    };
    // A subject with rows in several files (some generated subjects are inactive).
    let subject = app
        .summary
        .subjects
        .iter()
        .map(|s| s.user_id.clone())
        .find(|s| count(s) >= 3)
        .expect("the generated lake has an active subject");
    let subject_rows = count(&subject);
    let files_with_subject: Vec<&String> = before
        .iter()
        .filter(|(_, f)| f.rows.iter().any(|r| is_subject_row(r, &subject)))
        .map(|(k, _)| k)
        .collect();
    assert!(
        files_with_subject.len() < before.len(),
        "some files do not hold the subject"
    );

    // The subject signs in and files both requests.
    let token = app.subject_token("runner@example.com", &subject).await;
    let access = app.file_request_ok(&token, "access").await;
    let erasure = app.file_request_ok(&token, "erasure").await;
    let filed: Value = app
        .get_request(&token, &erasure)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        filed["status"], "pending_approval",
        "erasures are reviewed by default"
    );
    assert_eq!(filed["history"][0]["status"], "received");

    // Access: approved, exported, downloaded.
    assert_eq!(
        app.approve(&app.admin_token, &access).await.status(),
        StatusCode::OK
    );
    let done = app.wait_until_final(&token, &access).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["export_available"], true);
    let response = app.export(&token, &access).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/zip");
    let bytes = response.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut jsonl = String::new();
    zip.by_name("running_events.jsonl")
        .unwrap()
        .read_to_string(&mut jsonl)
        .unwrap();
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        subject_rows,
        "the export holds exactly the subject's rows"
    );
    assert!(lines.iter().all(|l| l["user_id"] == subject.as_str()));
    assert!(
        lines
            .iter()
            .all(|l| l["region"].is_string() && l["date"].is_string()),
        "partition values included"
    );
    let mut csv = String::new();
    zip.by_name("running_events.csv")
        .unwrap()
        .read_to_string(&mut csv)
        .unwrap();
    assert_eq!(
        csv.lines().count(),
        subject_rows + 1,
        "CSV has a header and one line per row"
    );
    let mut manifest = String::new();
    zip.by_name("manifest.json")
        .unwrap()
        .read_to_string(&mut manifest)
        .unwrap();
    let manifest: Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest["datasets"][0]["rows"], subject_rows as u64);

    // Erasure, first phase: approving destroys the subject's data key at once.
    let approved: Value = app
        .approve(&app.admin_token, &erasure)
        .await
        .json()
        .await
        .unwrap();
    assert!(approved["key_destroyed_at"].is_string(), "{approved}");
    let subject_id = lethe_core::domain::SubjectId::parse(subject.clone()).unwrap();
    assert!(matches!(
        app.state.keyring.dek_for_read(&subject_id).await,
        Err(lethe_core::keyring::KeyringError::Shredded)
    ));
    assert!(
        matches!(
            app.state.keyring.dek_for_write(&subject_id).await,
            Err(lethe_core::keyring::KeyringError::Shredded)
        ),
        "no new key can be made for an erased subject"
    );
    // Erasure: executed.
    let done = app.wait_until_final(&token, &erasure).await;
    assert_eq!(done["status"], "completed", "{done}");
    let history: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        [
            "received",
            "pending_approval",
            "approved",
            "running",
            "completed"
        ]
    );
    let dataset = &done["result"]["datasets"][0];
    assert_eq!(dataset["rows_removed"], subject_rows as u64);
    assert_eq!(dataset["files_rewritten"], files_with_subject.len() as u64);
    assert_eq!(dataset["files_scanned"], before.len() as u64);
    assert!(dataset["bytes_read"].as_u64().unwrap() > 0);
    assert!(dataset["bytes_written"].as_u64().unwrap() > 0);

    // The lake: the subject's rows are gone, every other row is unchanged, untouched files
    // are byte-identical.
    let after = snapshot(&app.lake);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    for f in before.values() {
        for r in f.rows.iter().filter(|r| !is_subject_row(r, &subject)) {
            *expected.entry(r).or_default() += 1;
        }
    }
    let mut actual: BTreeMap<&str, usize> = BTreeMap::new();
    for f in after.values() {
        for r in &f.rows {
            *actual.entry(r).or_default() += 1;
        }
    }
    assert_eq!(
        actual, expected,
        "multiset of rows after = before minus the subject's rows"
    );
    for (path, old) in &before {
        let new = &after[path];
        if files_with_subject.contains(&path) {
            assert_ne!(new.bytes, old.bytes, "{path} was rewritten");
        } else {
            assert_eq!(
                new.bytes, old.bytes,
                "{path} holds no subject row and is byte-identical"
            );
        }
    }
    let leftovers: Vec<_> = walkdir(&app.lake)
        .into_iter()
        .filter(|p| p.contains("lethe-tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary files left: {leftovers:?}"
    );

    // A second access request now finds nothing.
    let again = app.file_request_ok(&token, "access").await;
    app.approve(&app.admin_token, &again).await;
    let done = app.wait_until_final(&token, &again).await;
    assert_eq!(done["result"]["rows"], 0);
    assert_eq!(
        done["result"]["erased"], true,
        "the answer says the data was erased"
    );

    // The auditor's export verifies, tells the story, and holds no subject id.
    let response = app.audit_export(&app.auditor_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(
        !text.contains(&subject),
        "the audit log names subjects only by pseudonym"
    );
    assert!(!text.contains("runner@example.com"));
    let entries: Vec<AuditEntry> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let report = verify_entries(entries.clone(), None);
    assert!(report.is_intact(), "{report:?}");
    let actions: Vec<&str> = entries
        .iter()
        .filter(|e| e.request_id.as_deref() == Some(erasure.as_str()))
        .map(|e| e.action.as_str())
        .collect();
    // The approval destroys the key right after it commits, and the worker may start the
    // plan in between: the two entries come in either order, but both before the plan (which
    // destroys the key itself if the approval has not yet).
    let mut actions = actions;
    if let [_, _, _, a, b, ..] = actions.as_mut_slice()
        && *a == "job.started"
        && *b == "subject.key_destroyed"
    {
        std::mem::swap(a, b);
    }
    let mut expected = vec![
        "request.created",
        "request.pending_approval",
        "request.approved",
        "subject.key_destroyed",
        "job.started",
        "erasure.planned",
    ];
    expected.extend(std::iter::repeat_n("file.erased", files_with_subject.len()));
    expected.push("request.completed");
    assert_eq!(actions, expected, "one audited task per affected file");
    let pseudonym = done["subject_pseudonym"].as_str().unwrap();
    assert!(
        entries
            .iter()
            .filter(|e| e.request_id.as_deref() == Some(erasure.as_str()))
            .all(|e| e.subject.as_deref() == Some(pseudonym))
    );
    assert!(entries.iter().any(|e| e.action == "export.downloaded"));
}

fn walkdir(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}
