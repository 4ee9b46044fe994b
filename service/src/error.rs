//! The one API error type and its RFC 7807 `application/problem+json` body.
//!
//! Every handler returns `Result<_, ApiError>`. 4xx bodies explain what to fix; 5xx bodies say
//! nothing internal (the log line, with the request id, says everything).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use lethe_core::datasets::DatasetError;
use lethe_core::domain::{ExtensionRefusal, ParseError};
use lethe_core::exports::DownloadError;
use lethe_core::ingest::IngestError;
use lethe_core::requests::RequestError;
use lethe_core::store::StoreError;
use serde::Serialize;

/// An RFC 7807 problem document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "urn:lethe:problem:validation",
    "title": "Bad Request",
    "status": 400,
    "detail": "invalid subject_id: must not be empty",
    "code": "validation"
}))]
pub struct Problem {
    /// URI naming the problem type: `urn:lethe:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the HTTP status.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong, for a human.
    pub detail: String,
    /// Stable machine-readable code, e.g. `validation`, `unauthorized`, `invalid_transition`.
    pub code: String,
}

/// A problem naming the input row, and the column when one is to blame, that an ingest refused
/// (`invalid_row`, 422): the RFC 7807 members plus the extension members `row` and `column`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "urn:lethe:problem:invalid_row",
    "title": "Unprocessable Entity",
    "status": 422,
    "detail": "row 2, column calories: \"lots\" is not a int32",
    "code": "invalid_row",
    "row": 2,
    "column": "calories"
}))]
pub struct RowProblem {
    /// The RFC 7807 members.
    #[serde(flatten)]
    pub problem: Problem,
    /// 1-based row of the input (the line, for CSV and JSON Lines).
    pub row: u64,
    /// The column to blame; `null` when the whole row is wrong.
    pub column: Option<String>,
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or a value is invalid (400).
    #[error("{detail}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// What to fix.
        detail: String,
    },
    /// No or an invalid bearer token (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such resource, or not visible to the caller (404).
    #[error("{0}")]
    NotFound(String),
    /// The resource exists in a state that forbids the action, or a unique value is taken (409).
    #[error("{detail}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// What conflicts.
        detail: String,
    },
    /// The resource existed but is gone for good, e.g. an expired export (410).
    #[error("{detail}")]
    Gone {
        /// Stable code.
        code: &'static str,
        /// What is gone and why.
        detail: String,
    },
    /// The body is larger than the endpoint accepts (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body's `Content-Type` is not one the endpoint reads (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// One input row does not match the dataset's schema (422, code `invalid_row`); the body
    /// is a [`RowProblem`].
    #[error("{detail}")]
    InvalidRow {
        /// 1-based row.
        row: u64,
        /// The column to blame, if one is.
        column: Option<String>,
        /// What is wrong.
        detail: String,
    },
    /// Too many attempts from one address or on one account, or the account is locked after
    /// repeated failed sign-ins (429, code `too_many_requests`, with `Retry-After`).
    #[error("{detail}")]
    TooManyRequests {
        /// Seconds to wait before the next attempt may pass.
        retry_after_s: u64,
        /// What was limited.
        detail: String,
    },
    /// The database is momentarily overloaded (a lock or a pooled connection was not granted
    /// in time): 503 with `Retry-After`, code `temporarily_unavailable`. Nothing was changed.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (500). The message is logged, never returned.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 400 with code `validation`.
    pub fn validation(detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code: "validation",
            detail: detail.into(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Gone { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::InvalidRow { .. } => "invalid_row",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Unavailable(_) => "temporarily_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        ApiError::validation(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { entity, id } => {
                ApiError::NotFound(format!("{entity} {id} not found"))
            }
            StoreError::Conflict(detail) => ApiError::Conflict {
                code: "conflict",
                detail,
            },
            StoreError::InvalidTransition { from, to } => ApiError::Conflict {
                code: "invalid_transition",
                detail: format!(
                    "the request is {}; it cannot become {}",
                    from.as_str(),
                    to.as_str()
                ),
            },
            StoreError::ExtensionRefused(refusal) => ApiError::Conflict {
                code: match refusal {
                    ExtensionRefusal::Final(_) => "request_final",
                    ExtensionRefusal::AlreadyExtended { .. } => "already_extended",
                    ExtensionRefusal::TooLate { .. } => "extension_too_late",
                },
                detail: refusal.to_string(),
            },
            destroyed @ StoreError::KeyDestroyed(_) => ApiError::Conflict {
                code: "key_destroyed",
                detail: destroyed.to_string(),
            },
            StoreError::DatasetInUse { code, detail } => ApiError::Conflict { code, detail },
            StoreError::InvalidWebhookState(detail) => ApiError::Conflict {
                code: "invalid_webhook_state",
                detail,
            },
            busy @ (StoreError::DatasetBusy(_) | StoreError::DatasetLeaseLost { .. }) => {
                ApiError::Conflict {
                    code: "dataset_busy",
                    detail: busy.to_string(),
                }
            }
            transient if transient.is_transient() => {
                tracing::warn!(error = %transient, "database busy; answered 503");
                ApiError::Unavailable(
                    "the database is busy; nothing was changed, try again shortly".into(),
                )
            }
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Invalid { code, detail } => ApiError::BadRequest { code, detail },
            RequestError::Forbidden(detail) => ApiError::Forbidden(detail),
            RequestError::NotFound(detail) => ApiError::NotFound(detail),
            RequestError::Conflict { code, detail } => ApiError::Conflict { code, detail },
            RequestError::Store(e) => e.into(),
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<DownloadError> for ApiError {
    fn from(e: DownloadError) -> Self {
        let detail = e.to_string();
        match e {
            DownloadError::NoExport => ApiError::Conflict {
                code: "no_export",
                detail,
            },
            DownloadError::NotReady { .. } => ApiError::Conflict {
                code: "export_not_ready",
                detail,
            },
            DownloadError::Erased => ApiError::Gone {
                code: "export_erased",
                detail,
            },
            DownloadError::Expired { .. } => ApiError::Gone {
                code: "export_expired",
                detail,
            },
            DownloadError::Store(e) => e.into(),
            unreadable @ DownloadError::Unreadable { .. } => {
                ApiError::Internal(anyhow::Error::new(unreadable))
            }
        }
    }
}

impl From<DatasetError> for ApiError {
    fn from(e: DatasetError) -> Self {
        match e {
            DatasetError::Invalid { code, detail } => ApiError::BadRequest { code, detail },
            DatasetError::Conflict { code, detail } => ApiError::Conflict { code, detail },
            DatasetError::Store(e) => e.into(),
        }
    }
}

impl From<IngestError> for ApiError {
    /// Client errors become 4xx problems with their own codes; infrastructure failures
    /// (keyring, lake, database, Parquet encoding) become 500.
    fn from(e: IngestError) -> Self {
        let detail = e.to_string();
        match e {
            IngestError::NotManaged { .. } => ApiError::Conflict {
                code: "dataset_not_managed",
                detail,
            },
            IngestError::Invalid { row, column, .. } => ApiError::InvalidRow {
                detail,
                row,
                column,
            },
            IngestError::Unreadable(_) => ApiError::BadRequest {
                code: "unreadable_input",
                detail,
            },
            IngestError::Empty => ApiError::BadRequest {
                code: "empty_input",
                detail,
            },
            IngestError::Write(_)
            | IngestError::Keyring(_)
            | IngestError::Lake(_)
            | IngestError::Store(_) => {
                ApiError::Internal(anyhow::Error::new(e).context("ingest failed"))
            }
        }
    }
}

fn problem(status: StatusCode, code: &str, detail: String) -> Problem {
    Problem {
        kind: format!("urn:lethe:problem:{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_string(),
        status: status.as_u16(),
        detail,
        code: code.to_string(),
    }
}

fn problem_body(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    let mut builder = HttpResponse::build(status);
    builder.content_type("application/problem+json");
    if status == StatusCode::UNAUTHORIZED {
        builder.insert_header(("WWW-Authenticate", "Bearer"));
    }
    builder.body(serde_json::to_string(body).expect("problem serialises"))
}

/// Builds a problem response; used for extractor errors too.
pub fn problem_response(status: StatusCode, code: &str, detail: String) -> HttpResponse {
    problem_body(status, &problem(status, code, detail))
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::InvalidRow { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let detail = match self {
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                "an internal error occurred; the server log has the details".to_string()
            }
            other => other.to_string(),
        };
        match self {
            ApiError::InvalidRow { row, column, .. } => problem_body(
                status,
                &RowProblem {
                    problem: problem(status, self.code(), detail),
                    row: *row,
                    column: column.clone(),
                },
            ),
            ApiError::Unavailable(_) => {
                let mut response = problem_response(status, self.code(), detail);
                response.headers_mut().insert(
                    actix_web::http::header::RETRY_AFTER,
                    actix_web::http::header::HeaderValue::from_static("1"),
                );
                response
            }
            ApiError::TooManyRequests { retry_after_s, .. } => {
                let mut response = problem_response(status, self.code(), detail);
                response.headers_mut().insert(
                    actix_web::http::header::RETRY_AFTER,
                    actix_web::http::header::HeaderValue::from(*retry_after_s),
                );
                response
            }
            _ => problem_response(status, self.code(), detail),
        }
    }
}
