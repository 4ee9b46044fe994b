//! Prometheus metrics at `GET /metrics` (text exposition format 0.0.4).
//!
//! Three sources, rendered one after the other:
//! - **per application** ([`Metrics`]): the HTTP series, recorded by the request middleware
//!   ([`crate::telemetry::trace_request`]) into a recorder owned by this [`Metrics`], so every
//!   application (and every test, which builds many in one process) counts only its own requests;
//! - **read from the store at scrape time**: `lethe_jobs{kind,status}` and
//!   `lethe_requests_overdue`;
//! - **process-wide** ([`global`]): counters that code without access to the application —
//!   the job runner — increments through the `metrics` facade, e.g.
//!   `metrics::counter!("lethe_rows_removed_total").increment(n)`. The global recorder is
//!   installed once per process, the first time [`Metrics::new`] runs.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `lethe_http_requests_total` | counter | `method`, `route` (the pattern, e.g. `/v1/requests/{id}`), `status` |
//! | `lethe_http_request_duration_seconds` | histogram | `method`, `route`, `status` |
//! | `lethe_jobs` | gauge | `kind`, `status` |
//! | `lethe_requests_overdue` | gauge | — |
//! | `lethe_audit_checkpoint_mismatch` | gauge | — (1 when the audit log does not match its external checkpoints) |
//! | `lethe_rows_removed_total` | counter | — |
//! | `lethe_bytes_rewritten_total` | counter | — |
//! | `lethe_jobs_ended_total` | counter | `kind`, `outcome` (`succeeded`, `retry`, `deferred`, `failed`) |
//! | `lethe_webhook_attempts_total` | counter | `outcome` (`delivered`, `retry`, `failed`) |
//!
//! The endpoint needs no token: serve it to the internal network only.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, web};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::error::problem_response;
use crate::state::AppState;

/// Requests served, by method, route pattern and status.
pub const HTTP_REQUESTS: &str = "lethe_http_requests_total";
/// Request latency in seconds, by method, route pattern and status.
pub const HTTP_DURATION: &str = "lethe_http_request_duration_seconds";
/// Jobs by kind and status, read from the store at scrape time.
pub const JOBS: &str = "lethe_jobs";
/// Open privacy requests past their due date (GDPR Art. 12(3)), read at scrape time.
pub const REQUESTS_OVERDUE: &str = "lethe_requests_overdue";
/// 1 when the audit log is behind or diverges from its external signed checkpoints, else 0.
pub const AUDIT_CHECKPOINT_MISMATCH: &str = "lethe_audit_checkpoint_mismatch";
pub use lethe_core::process_metrics::{
    BYTES_REWRITTEN, JOBS_ENDED, ROWS_REMOVED, WEBHOOK_ATTEMPTS,
};

/// Upper bounds of the latency histogram's buckets, in seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The metrics of one application: its own recorder for HTTP series and scrape-time gauges.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// `(kind, status)` pairs of `lethe_jobs` reported so far, so a pair that disappears from
    /// the store's counts is reported as 0 rather than keeping its last value.
    job_labels: Mutex<BTreeSet<(String, String)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh recorder for this application; installs the process-wide recorder if no one has.
    pub fn new() -> Self {
        global();
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), DURATION_BUCKETS)
            .expect("the latency buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::describe_counter!(
                HTTP_REQUESTS,
                "HTTP requests served, by method, route pattern and status"
            );
            metrics::describe_histogram!(
                HTTP_DURATION,
                metrics::Unit::Seconds,
                "HTTP request latency in seconds, by method, route pattern and status"
            );
            metrics::describe_gauge!(JOBS, "Jobs in the queue, by kind and status");
            metrics::describe_gauge!(
                REQUESTS_OVERDUE,
                "Open privacy requests past their due date (GDPR Art. 12(3))"
            );
            metrics::describe_gauge!(
                AUDIT_CHECKPOINT_MISMATCH,
                "1 when the audit log does not match its external signed checkpoints"
            );
        });
        Self {
            recorder,
            handle,
            job_labels: Mutex::new(BTreeSet::new()),
        }
    }

    /// Counts one served request. `route` must be the route *pattern* (or `unmatched`), never
    /// the concrete path, so ids do not become labels.
    pub fn record_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let labels = [
            ("method", method.to_string()),
            ("route", route.to_string()),
            ("status", status.to_string()),
        ];
        metrics::with_local_recorder(&self.recorder, || {
            metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
            metrics::histogram!(HTTP_DURATION, &labels).record(elapsed.as_secs_f64());
        });
    }

    /// Sets the store-derived gauges: jobs per `(kind, status)` and overdue requests.
    fn set_store_gauges(&self, jobs: &[(String, String, i64)], overdue: i64, audit_mismatch: bool) {
        let mut seen = self.job_labels.lock().unwrap_or_else(|e| e.into_inner());
        metrics::with_local_recorder(&self.recorder, || {
            let now: BTreeSet<(String, String)> = jobs
                .iter()
                .map(|(k, s, _)| (k.clone(), s.clone()))
                .collect();
            for (kind, status) in seen.difference(&now) {
                metrics::gauge!(JOBS, "kind" => kind.clone(), "status" => status.clone()).set(0.0);
            }
            for (kind, status, count) in jobs {
                metrics::gauge!(JOBS, "kind" => kind.clone(), "status" => status.clone())
                    .set(*count as f64);
            }
            seen.extend(now);
            metrics::gauge!(REQUESTS_OVERDUE).set(overdue as f64);
            metrics::gauge!(AUDIT_CHECKPOINT_MISMATCH).set(if audit_mismatch { 1.0 } else { 0.0 });
        });
    }

    /// Drains histogram samples into their buckets; run it now and then (the server does every
    /// 5 s) so memory does not grow between scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The exposition text: this application's series, then the process-wide ones.
    pub fn render(&self) -> String {
        let mut text = self.handle.render();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&global().render());
        text
    }
}

/// The process-wide recorder behind the `metrics` facade (the job runner's counters), installed
/// on first use. If another recorder was installed first, this handle renders nothing.
pub fn global() -> &'static PrometheusHandle {
    static GLOBAL: OnceLock<PrometheusHandle> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a global metrics recorder was already installed; runner counters will not appear at /metrics");
        }
        lethe_core::process_metrics::describe();
        handle
    })
}

/// Prometheus metrics in the text exposition format. No token needed: expose it to the
/// internal network only (e.g. do not route `/metrics` through the public ingress).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain; version=0.0.4",
            body = String,
            example = "# TYPE lethe_http_requests_total counter\nlethe_http_requests_total{method=\"GET\",route=\"/v1/requests/{id}\",status=\"200\"} 3\n"),
        (status = 503, description = "The database did not answer", body = crate::error::Problem,
            content_type = "application/problem+json")))]
#[get("/metrics")]
pub async fn metrics_endpoint(
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
) -> HttpResponse {
    let counts = state.store.job_counts().await;
    let overdue = state.store.overdue_requests().await;
    match (counts, overdue) {
        (Ok(counts), Ok(overdue)) => {
            let jobs: Vec<(String, String, i64)> = counts
                .into_iter()
                .map(|(kind, status, n)| {
                    (kind.as_str().to_string(), status.as_str().to_string(), n)
                })
                .collect();
            let mismatch = state.audit.comparison().state.is_mismatch();
            metrics.set_store_gauges(&jobs, overdue, mismatch);
            HttpResponse::Ok()
                .content_type("text/plain; version=0.0.4; charset=utf-8")
                .body(metrics.render())
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "metrics: the store did not answer");
            problem_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database did not answer".into(),
            )
        }
    }
}
