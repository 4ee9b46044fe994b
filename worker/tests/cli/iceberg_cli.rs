//! `lethe-worker erase --format iceberg` on a table written by pyiceberg's `SqlCatalog` on
//! SQLite (`tests/fixtures/iceberg/make_tables.py`). Skipped only when pyiceberg is missing
//! and `CI` is not set.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/iceberg/make_tables.py")
}

fn erase(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lethe-worker"))
        .arg("erase")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn erase_format_iceberg_commits_and_reports_commit_purge_and_expired_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let made = Command::new("python3")
        .arg(script())
        .args(["make", dir.path().to_str().unwrap()])
        .output();
    match made {
        Ok(out) if out.status.success() => {}
        Ok(out)
            if std::env::var_os("CI").is_none()
                && String::from_utf8_lossy(&out.stderr).contains("No module named 'pyiceberg'") =>
        {
            println!("skipped: pyiceberg is not installed");
            return;
        }
        Ok(out) => panic!(
            "make_tables.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if std::env::var_os("CI").is_none() => {
            println!("skipped: python3 not found ({e})");
            return;
        }
        Err(e) => panic!("python3 is required on CI: {e}"),
    }
    let subjects = dir.path().join("subjects.txt");
    std::fs::write(&subjects, "u-07\nu-13\n").unwrap();
    let catalog = format!("sqlite://{}/catalog.db", dir.path().display());
    let base = [
        "--format",
        "iceberg",
        "--catalog-uri",
        catalog.as_str(),
        "--catalog-name",
        "lethe",
        "--subject-column",
        "user_id",
        "--subjects",
        subjects.to_str().unwrap(),
    ];

    // A table the catalog does not have: exit code 2, nothing changed.
    let missing = erase(&[&base[..], &["--table", "default.nope"]].concat());
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("default.nope"));

    // A REST catalog that cannot be reached: bad input, nothing changed.
    let rest = erase(&[
        "--format",
        "iceberg",
        "--catalog-uri",
        "http://127.0.0.1:1/api",
        "--catalog-name",
        "lethe",
        "--table",
        "default.events",
        "--subjects",
        subjects.to_str().unwrap(),
    ]);
    assert_eq!(rest.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&rest.stderr).contains("unreachable"));

    let done = erase(&[&base[..], &["--table", "default.events"]].concat());
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&done.stdout);
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(summary["commit"].as_i64().unwrap() > 0, "{summary}");
    assert!(summary["files_purged"].as_u64().unwrap() > 0, "{summary}");
    assert!(
        summary["snapshots_expired"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert!(summary["rows_removed"].as_u64().unwrap() > 0, "{summary}");
    assert!(stderr.contains("purged: "), "{stderr}");

    let current = Command::new("python3")
        .arg(script())
        .args(["snapshots", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let snaps: Value = serde_json::from_slice(&current.stdout).unwrap();
    assert_eq!(snaps["current"], summary["commit"]);
}
