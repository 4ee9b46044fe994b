//! A standalone worker serves its own Prometheus metrics (`--metrics-addr`).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use lethe_core::domain::RequestStatus;

use crate::crash::{setup, spawn_worker_with};

/// `GET /metrics` over a plain TCP connection; the body.
fn scrape(addr: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}

/// The value of the series named exactly `series` (with its labels), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_worker_serves_its_job_and_erasure_counters() {
    let s = setup().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut worker = spawn_worker_with(&s, None, "metrics", &["--metrics-addr", &addr]);
    let start = Instant::now();
    loop {
        let request = s.store.request(&s.request_id).await.unwrap();
        if request.status.is_final() {
            assert_eq!(
                request.status,
                RequestStatus::Completed,
                "{:?}",
                request.error
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the erasure did not finish: {}",
            std::fs::read_to_string(s.dir.path().join("metrics.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = scrape(&addr).expect("the worker serves metrics");
    worker.kill().unwrap();
    worker.wait().unwrap();

    let removed: usize = s
        .before
        .values()
        .flatten()
        .filter(|r| r.contains(&s.subject))
        .count();
    assert!(removed > 0);
    assert_eq!(
        value(&text, "lethe_rows_removed_total"),
        Some(removed as f64),
        "{text}"
    );
    assert!(
        value(&text, "lethe_bytes_rewritten_total").is_some_and(|b| b > 0.0),
        "{text}"
    );
    // The plan, and one task per file holding the subject (one per day).
    assert_eq!(
        value(
            &text,
            r#"lethe_jobs_ended_total{kind="erasure",outcome="succeeded"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"lethe_jobs_ended_total{kind="erase_file",outcome="succeeded"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert!(text.contains("# HELP lethe_jobs_ended_total"), "{text}");
}
