//! Logging set-up (human-readable by default, JSON lines in production) and the request
//! middleware that gives every HTTP request an id, a span and its metrics.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::metrics::Metrics;

/// The header that carries a request's id, in both directions.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest incoming request id honoured, in characters.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// Route label of requests that matched no route (so unknown paths never become labels).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Installs the global subscriber. `format` is `pretty` or `json`; `RUST_LOG` overrides
/// `filter`. Logs go to stderr. Calling it twice is harmless (the second call does nothing).
///
/// JSON lines carry the fields of the enclosing spans (`span`, `spans`), so every line logged
/// while serving a request carries its `request_id`.
pub fn init(format: &str, filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}

/// The id of an incoming request: its `X-Request-Id` when that is a sane token (1 to
/// [`MAX_REQUEST_ID_LEN`] characters of `A-Z a-z 0-9 - _ . :`), else `None`.
pub fn incoming_request_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let sane = !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    sane.then(|| value.to_string())
}

/// Middleware (for `actix_web::middleware::from_fn`): gives the request an id (the incoming
/// `X-Request-Id` if sane, else a new UUID), serves it inside an `http_request` span with
/// `request_id`, `method`, `route` (the pattern, e.g. `/v1/requests/{id}`), `status` and
/// `latency_ms`, logs one line when it is done, counts it in the app's [`Metrics`], and returns
/// the id as `X-Request-Id`.
///
/// # Errors
/// An error from the inner service is passed on (logged and counted with its status, but
/// without the header; handlers' errors arrive here as responses, so this is rare).
pub async fn trace_request<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let started = Instant::now();
    let request_id =
        incoming_request_id(req.headers()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = req.method().as_str().to_string();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_string());
    let span = tracing::info_span!(
        "http_request",
        request_id = %request_id,
        method = %method,
        route = %route,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    // The request must not be cloned before routing (the router needs it unshared).
    let result = next.call(req).instrument(span.clone()).await;

    let elapsed = started.elapsed();
    let status = match &result {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    }
    .as_u16();
    span.record("status", status);
    span.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
    if matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics") {
        tracing::debug!(parent: &span, "request served");
    } else if status >= 500 {
        tracing::warn!(parent: &span, "request served");
    } else {
        tracing::info!(parent: &span, "request served");
    }
    if let Some(metrics) = metrics {
        metrics.record_http(&method, &route, status, elapsed);
    }
    let mut response = result?;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(
            HeaderName::from_static(REQUEST_ID_HEADER),
            HeaderValue::from_str(value).unwrap(),
        );
        map
    }

    #[test]
    fn a_sane_incoming_id_is_honoured() {
        assert_eq!(
            incoming_request_id(&headers("abc-123_x.y:z")).as_deref(),
            Some("abc-123_x.y:z")
        );
        let longest = "a".repeat(MAX_REQUEST_ID_LEN);
        assert_eq!(incoming_request_id(&headers(&longest)), Some(longest));
    }

    #[test]
    fn an_insane_incoming_id_is_replaced() {
        assert_eq!(incoming_request_id(&HeaderMap::new()), None);
        assert_eq!(incoming_request_id(&headers("")), None);
        assert_eq!(incoming_request_id(&headers("has space")), None);
        assert_eq!(incoming_request_id(&headers("a\"b")), None);
        let too_long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        assert_eq!(incoming_request_id(&headers(&too_long)), None);
    }
}
