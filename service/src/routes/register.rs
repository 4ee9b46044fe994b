//! The register of requests for auditors (GDPR Art. 5(2) accountability; a record in the
//! spirit of Art. 30): every request received in a period, as CSV or JSON Lines, streamed page
//! by page so memory stays flat. It holds no subject id or e-mail.

use std::sync::Arc;

use actix_web::{HttpResponse, get, web};
use bytes::Bytes;
use futures::{StreamExt, stream};
use lethe_core::audit::NewAuditEntry;
use lethe_core::domain::{Role, to_db};
use lethe_core::store::{RegisterEntry, RegisterFilter, Store};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Rows read from the store per page of the stream.
const PAGE_ROWS: i64 = 1000;

/// The register's file format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RegisterFormat {
    /// JSON Lines (`application/x-ndjson`): one [`RegisterEntry`] object per line.
    #[default]
    Jsonl,
    /// CSV (`text/csv`) with a header row naming the columns.
    Csv,
}

impl RegisterFormat {
    fn as_str(self) -> &'static str {
        match self {
            RegisterFormat::Jsonl => "jsonl",
            RegisterFormat::Csv => "csv",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            RegisterFormat::Jsonl => "application/x-ndjson",
            RegisterFormat::Csv => "text/csv; charset=utf-8",
        }
    }

    /// The bytes of `entries` in this format (CSV without the header row).
    fn encode(self, entries: &[RegisterEntry]) -> Result<Vec<u8>, String> {
        match self {
            RegisterFormat::Jsonl => {
                let mut body = Vec::with_capacity(entries.len() * 500);
                for entry in entries {
                    serde_json::to_writer(&mut body, entry).map_err(|e| e.to_string())?;
                    body.push(b'\n');
                }
                Ok(body)
            }
            RegisterFormat::Csv => {
                let mut writer = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(Vec::with_capacity(entries.len() * 300));
                for entry in entries {
                    writer
                        .write_record(entry.csv_record())
                        .map_err(|e| e.to_string())?;
                }
                writer.into_inner().map_err(|e| e.to_string())
            }
        }
    }

    /// What comes before the first entry: the CSV header row.
    fn preamble(self) -> Vec<u8> {
        match self {
            RegisterFormat::Jsonl => Vec::new(),
            RegisterFormat::Csv => format!("{}\n", RegisterEntry::COLUMNS.join(",")).into_bytes(),
        }
    }
}

/// Query of `GET /v1/register`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RegisterQuery {
    /// Requests received at or after this instant (RFC 3339); default: since the first.
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Requests received before this instant (RFC 3339); default: until now.
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// `jsonl` (default) or `csv`.
    #[param(inline)]
    pub format: Option<RegisterFormat>,
}

/// The register of requests (auditor, admin): every request received in `[from, to)`, oldest
/// first, with its type, status, dates, deadline and extension (GDPR Art. 12(3)), and the
/// decision (who, when, why). Accountability evidence (GDPR Art. 5(2)).
///
/// No subject id or e-mail appears: the subject is named only by the keyed pseudonym used in
/// the audit log. CSV has a header row; JSON Lines has one object per line with the same field
/// names. Streamed as an attachment; each export is audited as `register.exported`.
#[utoipa::path(get, path = "/v1/register", tag = "register", operation_id = "register_export",
    security(("bearer" = [])),
    params(RegisterQuery),
    responses(
        (status = 200, description = "The register as an attachment (`lethe-register.jsonl` or `lethe-register.csv`)",
            content(
                (RegisterEntry = "application/x-ndjson", example = json!("{\"id\":\"1e7c…\",\"type\":\"erasure\",\"status\":\"completed\",\"subject_pseudonym\":\"9f86d0…\",\"received_at\":\"2025-01-31T09:00:00Z\",\"due_at\":\"2025-04-30T09:00:00Z\",\"extended\":true,\"original_due_at\":\"2025-02-28T09:00:00Z\",\"extended_at\":\"2025-02-03T08:00:00Z\",\"extended_by\":\"user:1b2c…\",\"extension_months\":2,\"extension_reason\":\"Twelve systems to search.\",\"decided_by\":\"user:1b2c…\",\"decided_at\":\"2025-02-11T10:00:00Z\",\"decision_reason\":null,\"completed_at\":\"2025-02-11T10:00:05Z\"}\n")),
                (String = "text/csv", example = json!("id,type,status,subject_pseudonym,received_at,due_at,extended,original_due_at,extended_at,extended_by,extension_months,extension_reason,decided_by,decided_at,decision_reason,completed_at\n1e7c…,erasure,completed,9f86d0…,2025-01-31T09:00:00Z,2025-04-30T09:00:00Z,true,2025-02-28T09:00:00Z,2025-02-03T08:00:00Z,user:1b2c…,2,Twelve systems to search.,user:1b2c…,2025-02-11T10:00:00Z,,2025-02-11T10:00:05Z\n")),
            )),
        (status = 400, description = "`validation`: unknown format, an instant that is not RFC 3339, or `from` not before `to`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither an auditor nor an admin", body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/register")]
pub async fn export(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<RegisterQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Auditor, Role::Admin])?;
    let query = query.into_inner();
    if let (Some(from), Some(to)) = (query.from, query.to)
        && from >= to
    {
        return Err(ApiError::validation("from must be before to"));
    }
    let format = query.format.unwrap_or_default();
    state
        .store
        .append_audit(
            NewAuditEntry::new(caller.actor(), "register.exported").details(json!({
                "format": format.as_str(),
                "from": query.from.map(to_db),
                "to": query.to.map(to_db),
            })),
        )
        .await?;
    let filter = RegisterFilter {
        from: query.from,
        to: query.to,
        after: None,
        limit: Some(PAGE_ROWS),
    };
    let body = pages(state.store.clone(), format, filter);
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((
            "Content-Disposition",
            format!(
                "attachment; filename=\"lethe-register.{}\"",
                format.as_str()
            ),
        ))
        .streaming(body))
}

/// The register as a stream of encoded pages of [`PAGE_ROWS`] entries, after the format's
/// preamble; a database failure mid-stream ends it with an error (logged).
fn pages(
    store: Arc<Store>,
    format: RegisterFormat,
    filter: RegisterFilter,
) -> impl futures::Stream<Item = Result<Bytes, actix_web::Error>> {
    let pages = stream::unfold(Some(filter), move |filter| {
        let store = store.clone();
        async move {
            let mut filter = filter?;
            let failed = |e: &dyn std::fmt::Display| {
                tracing::error!(error = %e, "register export failed mid-stream");
                Some((
                    Err(actix_web::error::ErrorInternalServerError(
                        "register export failed",
                    )),
                    None,
                ))
            };
            match store.register_page(&filter).await {
                Ok(entries) if entries.is_empty() => None,
                Ok(entries) => {
                    let last = entries.last().expect("not empty");
                    filter.after = Some((last.received_at, last.id.clone()));
                    match format.encode(&entries) {
                        Ok(body) => Some((Ok(Bytes::from(body)), Some(filter))),
                        Err(e) => failed(&e),
                    }
                }
                Err(e) => failed(&e),
            }
        }
    });
    let preamble = stream::once(futures::future::ready(Ok::<_, actix_web::Error>(
        Bytes::from(format.preamble()),
    )));
    preamble.chain(pages)
}
