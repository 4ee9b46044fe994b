//! `lethe-worker erase --format delta` on a table written by python deltalake
//! (`tests/fixtures/delta/make_tables.py`); `--format parquet` (the default) still refuses it.
//! Skipped only when python's deltalake is missing and `CI` is not set.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/delta/make_tables.py")
}

fn erase(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lethe-worker"))
        .arg("erase")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn erase_format_delta_commits_and_reports_commit_purge_and_expired_versions() {
    let dir = tempfile::tempdir().unwrap();
    let made = Command::new("python3")
        .arg(script())
        .args(["make", dir.path().to_str().unwrap()])
        .output();
    match made {
        Ok(out) if out.status.success() => {}
        Ok(out)
            if std::env::var_os("CI").is_none()
                && String::from_utf8_lossy(&out.stderr).contains("No module named 'deltalake'") =>
        {
            println!("skipped: the Python deltalake package is not installed");
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
    let table = dir.path().join("events");
    let subjects = dir.path().join("subjects.txt");
    std::fs::write(&subjects, "u-07\nu-13\n").unwrap();
    let table_arg = table.to_str().unwrap();
    let subjects_arg = subjects.to_str().unwrap();

    // The default format keeps refusing a Delta root (exit code 2), table untouched.
    let refused = erase(&["--root", table_arg, "--subjects", subjects_arg]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Delta Lake"));
    assert!(!table.join("_delta_log/00000000000000000005.json").exists());

    let done = erase(&[
        "--format",
        "delta",
        "--root",
        table_arg,
        "--subject-column",
        "user_id",
        "--subjects",
        subjects_arg,
    ]);
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&done.stdout);
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["commit"], 5, "{summary}");
    assert!(summary["files_purged"].as_u64().unwrap() > 0, "{summary}");
    assert!(
        summary["snapshots_expired"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert!(summary["rows_removed"].as_u64().unwrap() > 0, "{summary}");
    assert!(stderr.contains("purged: "), "{stderr}");
    assert!(table.join("_delta_log/00000000000000000005.json").exists());
}
