//! Ingest: pipelines (producer tokens) and admins write rows into a Lethe-managed dataset,
//! which validates them against its schema, encrypts the PII per subject and writes sorted Hive
//! partitions (see `lethe_core::ingest`).

use actix_web::{HttpRequest, HttpResponse, post, web};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use lethe_core::domain::Role;
use lethe_core::ingest::{IngestError, InputFormat, ingest as ingest_rows};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Ingests one batch of rows (producer, admin) into a dataset registered with a schema.
///
/// The body is CSV (`text/csv`, with a header row), JSON Lines (`application/x-ndjson`, one
/// object per line) or a Parquet file (`application/vnd.apache.parquet`), of at most
/// `ingest.max_body_bytes` (default 64 MiB). Every row is validated before anything is
/// written: one bad row refuses the whole batch (422, naming the row and column). Rows of
/// subjects whose data was erased are dropped (the resurrection guard, GDPR Art. 17) and
/// counted in the report. Audited as `dataset.ingested`.
#[utoipa::path(post, path = "/v1/datasets/{id}/ingest", tag = "ingest",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Dataset id")),
    request_body(description = "Rows in one of three formats",
        content(
            (String = "application/x-ndjson", example = json!("{\"event_id\": \"e-1\", \"user_id\": \"u-42\", \"ts\": \"2025-01-07T06:30:00Z\", \"region\": \"EU\", \"calories\": 312, \"email\": \"ana@example.com\", \"full_name\": \"Ana Silva\", \"lat\": 38.72, \"lon\": -9.14, \"notes\": null}\n")),
            (String = "text/csv", example = json!("event_id,user_id,ts,region,calories,email,full_name,lat,lon,notes\ne-1,u-42,2025-01-07T06:30:00Z,EU,312,ana@example.com,Ana Silva,38.72,-9.14,\n")),
            ("application/vnd.apache.parquet"),
        )),
    responses(
        (status = 201, description = "Written", body = lethe_core::ingest::IngestReport),
        (status = 400, description = "`unreadable_input`: not in the format named by Content-Type; `empty_input`: no rows", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No, an invalid or a revoked token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither a producer nor an admin, or a producer token not granted this dataset", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`dataset_not_managed`: the dataset has no schema (written by others)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: larger than `ingest.max_body_bytes`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: missing or unknown Content-Type", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_row`: a row does not match the schema; nothing was written", body = crate::error::RowProblem, content_type = "application/problem+json")))]
#[post("/datasets/{id}/ingest")]
pub async fn ingest(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    http: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Producer, Role::Admin])?;
    caller.require_dataset(&path)?;
    let dataset = state.store.dataset(&path).await?;
    if dataset.schema.is_none() {
        return Err(IngestError::NotManaged {
            dataset: dataset.name,
        }
        .into());
    }
    let content_type = http
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let format = InputFormat::from_content_type(content_type).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "Content-Type {content_type:?} is not accepted; send text/csv, \
             application/x-ndjson or application/vnd.apache.parquet"
        ))
    })?;
    let limit = state.settings.ingest.max_body_bytes;
    let body = read_body(&http, payload, limit).await?;
    let report = ingest_rows(
        &state.store,
        &state.keyring,
        &dataset,
        format,
        body,
        &caller.actor(),
    )
    .await?;
    Ok(HttpResponse::Created().json(report))
}

/// Reads the whole body, refusing one over `limit` bytes: at once when `Content-Length` says
/// so, otherwise as soon as the streamed bytes pass it.
///
/// # Errors
/// [`ApiError::PayloadTooLarge`] past the limit; `unreadable_input` (400) when the body cannot
/// be read (a broken chunked encoding, a connection closed early).
async fn read_body(
    http: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "the body is larger than {limit} bytes (ingest.max_body_bytes); split the batch"
        ))
    };
    let declared = http
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => too_large(),
            other => ApiError::BadRequest {
                code: "unreadable_input",
                detail: format!("the request body could not be read: {other}"),
            },
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Queues a compaction of a Lethe-managed dataset (admin): each partition's small files are
/// merged into files of the target size, sorted by subject, and rows of erased subjects
/// (pending erasures) are removed in the same pass. The job's result holds the
/// `CompactReport`; follow it at `GET /v1/jobs/{id}`.
#[utoipa::path(post, path = "/v1/datasets/{id}/compact", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path, description = "Dataset id")),
    responses(
        (status = 202, description = "Compaction queued", body = lethe_core::store::Job),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The dataset has no schema (written by others)", body = crate::error::Problem, content_type = "application/problem+json")))]
#[actix_web::post("/datasets/{id}/compact")]
pub async fn compact(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let dataset = state.store.dataset(&path).await?;
    if dataset.schema.is_none() {
        return Err(ApiError::Conflict {
            code: "dataset_not_managed",
            detail: format!(
                "dataset {} has no declared schema; only datasets Lethe writes are compacted",
                dataset.name
            ),
        });
    }
    let job = state
        .store
        .enqueue_job(
            lethe_core::store::NewJob::new(
                lethe_core::store::JobPayload::Compact {
                    dataset_id: dataset.id.clone(),
                },
                None,
                state.settings.worker.max_attempts,
                None,
            ),
            lethe_core::audit::NewAuditEntry::new(caller.actor(), "dataset.compaction_queued")
                .details(serde_json::json!({ "dataset_id": dataset.id, "dataset": dataset.name })),
        )
        .await?;
    Ok(HttpResponse::Accepted().json(job))
}
