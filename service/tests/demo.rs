//! The quick start as a newcomer meets it: `lethe-service demo` starts, prints a walk-through,
//! and the walk-through runs as printed, from another folder, to a verified audit log.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn the_printed_walk_through_runs_as_printed_from_any_folder() {
    if !["bash", "curl", "jq"].iter().all(|t| have(t)) {
        eprintln!("skipped: the walk-through needs bash, curl and jq");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lethe-service"))
        .args(["demo", "--subjects", "20", "--days", "2"])
        .current_dir(home.path())
        .env("LETHE__SERVER__PORT", port.to_string())
        .env("LETHE__LOG__FILTER", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _demo = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut printed = Vec::new();
    while !printed
        .iter()
        .any(|l: &String| l.starts_with("Credentials are kept"))
    {
        let line = rx
            .recv_timeout(Duration::from_secs(180).saturating_sub(started.elapsed()))
            .expect("the demo prints its walk-through");
        printed.push(line);
    }
    let text = printed.join("\n");
    assert!(
        text.contains(&format!("http://127.0.0.1:{port}/docs")),
        "{text}"
    );
    let begin = printed.iter().position(|l| l == "(").expect("a ( block");
    let end = printed.iter().rposition(|l| l == ")").expect("a ) block");
    let script = printed[begin..=end].join("\n");
    assert!(
        !script.contains("sleep 2"),
        "it waits on status, not on time"
    );
    assert!(script.contains("curl -fsS"), "{script}");

    // The printed docs link works (redirected to the UI).
    let docs = Command::new("curl")
        .args(["-fsSL", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/docs"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&docs.stdout), "200");

    let run = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "walk-through failed:\n{out}\n{err}");
    assert!(out.contains("completed"), "{out}");
    assert!(err.contains("audit chain intact"), "{out}\n{err}");
    assert!(elsewhere.path().join("my-data.zip").exists());

    // A failing step stops the block: a wrong password fails the first curl.
    let broken = script.replacen("login '", "login 'nobody-", 1);
    let run = Command::new("bash")
        .arg("-c")
        .arg(&broken)
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stdout).trim().is_empty());
}
