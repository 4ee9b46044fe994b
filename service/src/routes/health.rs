//! Liveness and readiness probes.

use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use futures::StreamExt;
use lethe_core::lake::LakeRoot;
use lethe_core::store::Dataset;
use serde::Serialize;
use serde_json::json;

use crate::state::AppState;

/// How long one dataset's root may take to list its first page before it counts as down.
pub const LAKE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", example = json!({"status": "ok"}))))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// The readiness of one registered dataset's lake root.
#[derive(Debug, Serialize)]
struct DatasetCheck {
    name: String,
    /// `ok`, `unreachable` (the store refused or failed) or `timeout` (no answer within 5 s).
    status: &'static str,
}

/// Readiness: the database answers, and so does the object store of every registered dataset
/// (one page of its root is listed, within 5 s each, all datasets at once). 503 when any check
/// fails. Failure details are logged, not returned: the body names only what failed.
/// `audit_checkpoints` is the last comparison of the audit log with its external signed
/// checkpoints (`consistent`, `behind`, `diverged`, `unavailable`, `unknown`); `behind` or
/// `diverged` make the status `degraded` (still 200).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready, or `degraded` when the audit log does not match its external checkpoints",
            example = json!({"status": "ready", "database": "ok",
            "datasets": [{"name": "running_events", "status": "ok"}], "audit_checkpoints": "consistent"})),
        (status = 503, description = "The database or a dataset's lake root is unreachable",
            example = json!({"status": "not_ready", "database": "ok",
                "datasets": [{"name": "running_events", "status": "timeout"}], "audit_checkpoints": "consistent"}))))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let datasets = match state.store.ping().await {
        Ok(()) => state.store.list_datasets().await,
        Err(e) => Err(e),
    };
    let datasets = match datasets {
        Ok(datasets) => datasets,
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the database is unreachable");
            return HttpResponse::ServiceUnavailable()
                .json(json!({ "status": "not_ready", "database": "unreachable", "datasets": [] }));
        }
    };
    let checks: Vec<DatasetCheck> =
        futures::future::join_all(datasets.iter().map(check_dataset)).await;
    let ready = checks.iter().all(|c| c.status == "ok");
    // A log that does not match its external checkpoints degrades readiness without taking
    // the service out of rotation: requests must still be answered (GDPR Art. 12(3)).
    let audit = state.audit.comparison().state;
    let status = match (ready, audit.is_mismatch()) {
        (false, _) => "not_ready",
        (true, true) => "degraded",
        (true, false) => "ready",
    };
    let body = json!({
        "status": status,
        "database": "ok",
        "datasets": checks,
        "audit_checkpoints": audit.as_str(),
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Lists the first page of each of `dataset`'s roots, within [`LAKE_CHECK_TIMEOUT`].
async fn check_dataset(dataset: &Dataset) -> DatasetCheck {
    let probe = async {
        // Every root: the dataset's, and one per region with data residency.
        for dataset_root in dataset.roots() {
            let root = LakeRoot::parse(&dataset_root.url).map_err(|e| e.to_string())?;
            let mut listing = root.store().list(Some(root.prefix()));
            if let Some(Err(e)) = listing.next().await {
                return Err(e.to_string());
            }
        }
        Ok(())
    };
    let status = match tokio::time::timeout(LAKE_CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => "ok",
        Ok(Err(error)) => {
            tracing::warn!(dataset = %dataset.name, %error, "readiness: lake root unreachable");
            "unreachable"
        }
        Err(_) => {
            tracing::warn!(dataset = %dataset.name, timeout_s = LAKE_CHECK_TIMEOUT.as_secs(),
                "readiness: lake root did not answer in time");
            "timeout"
        }
    };
    DatasetCheck {
        name: dataset.name.clone(),
        status,
    }
}
