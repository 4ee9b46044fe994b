//! HTTP-level guards every endpoint gets: security headers, CORS for configured origins only,
//! a deadline on request bodies, and 405 (not 404) for a known path called with a method it
//! does not have.

use std::sync::LazyLock;
use std::task::Poll;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse};
use futures::{Stream, StreamExt};

use crate::error::problem_response;

/// The CSP of API answers: they are data, never a page to render or frame.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";
/// The CSP of the docs UI (Swagger UI): its own scripts and styles only (it sets inline style
/// attributes and uses data: images), fetches the document from the same origin, is never framed.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Adds `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
/// `X-Frame-Options: DENY`, a `Content-Security-Policy` (the docs UI's own under `/docs`) and,
/// unless the handler chose one, `Cache-Control: no-store` (answers hold personal data). CORS
/// headers come only from [`cors`], for configured origins. No HSTS:
/// Lethe serves plain HTTP and TLS ends at the proxy in front of it, which should send it.
///
/// # Errors
/// Those of the inner service.
pub async fn security_headers<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let docs = req.path() == "/docs" || req.path().starts_with("/docs/");
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(if docs { DOCS_CSP } else { API_CSP }),
    );
    if !docs && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

/// CORS for the origins of `server.cors_allowed_origins` only (exact match): a preflight
/// (`OPTIONS` with `Access-Control-Request-Method`) from such an origin is answered 204 with
/// the path's methods and the headers the API reads; other answers to it carry
/// `Access-Control-Allow-Origin`. Any other origin gets no CORS header at all. Bearer tokens
/// travel in a header, so credentials (cookies) are never allowed.
///
/// # Errors
/// Those of the inner service.
pub async fn cors<B: MessageBody>(
    origins: std::sync::Arc<Vec<String>>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|o| origins.iter().any(|allowed| allowed == o))
        .and_then(|o| HeaderValue::from_str(o).ok());
    let Some(origin) = origin else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let methods = allowed_methods(req.path())
            .unwrap_or_default()
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let mut response = HttpResponse::NoContent();
        response
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, methods))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "authorization, content-type, idempotency-key, x-request-id",
            ))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
            .insert_header((header::VARY, "Origin"));
        return Ok(req.into_response(response.finish()).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-request-id, retry-after, location"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    Ok(response.map_into_left_body())
}

/// Why a body read was cut short: the whole body did not arrive within the deadline.
pub const BODY_TIMEOUT_MESSAGE: &str = "the request body did not arrive in time";

/// Limits the time a request body may take to arrive to `timeout` from the end of the
/// headers: a client that sends less than its `Content-Length`, or trickles it, gets
/// `408 request_timeout` (through the body extractors) instead of holding a connection and a
/// handler forever.
///
/// # Errors
/// Those of the inner service.
pub async fn body_deadline<B: MessageBody>(
    timeout: Duration,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let (http, payload) = req.into_parts();
    let mut inner = payload;
    let mut deadline = Box::pin(tokio::time::sleep(timeout));
    let mut expired = false;
    let stream = futures::stream::poll_fn(move |cx| {
        if expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = inner.poll_next_unpin(cx) {
            return Poll::Ready(item);
        }
        if deadline.as_mut().poll(cx).is_ready() {
            expired = true;
            return Poll::Ready(Some(Err(actix_web::error::PayloadError::Io(
                std::io::Error::new(std::io::ErrorKind::TimedOut, BODY_TIMEOUT_MESSAGE),
            ))));
        }
        Poll::Pending
    });
    let boxed: std::pin::Pin<
        Box<dyn Stream<Item = Result<bytes::Bytes, actix_web::error::PayloadError>>>,
    > = Box::pin(stream);
    next.call(ServiceRequest::from_parts(http, Payload::from(boxed)))
        .await
}

/// Whether `error` is a body cut short by [`body_deadline`].
pub fn is_body_timeout(error: &actix_web::error::PayloadError) -> bool {
    matches!(error, actix_web::error::PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut)
}

/// Every documented path (`{param}` segments match any one segment) with its methods.
static ROUTES: LazyLock<Vec<(Vec<String>, Vec<Method>)>> = LazyLock::new(|| {
    let doc: serde_json::Value =
        serde_json::from_str(&crate::openapi::openapi_json()).unwrap_or_default();
    let Some(paths) = doc["paths"].as_object() else {
        return Vec::new();
    };
    paths
        .iter()
        .map(|(path, item)| {
            let segments = path.split('/').map(str::to_string).collect();
            let methods = item
                .as_object()
                .map(|ops| {
                    ops.keys()
                        .filter_map(|m| Method::from_bytes(m.to_uppercase().as_bytes()).ok())
                        .collect()
                })
                .unwrap_or_default();
            (segments, methods)
        })
        .collect()
});

/// The methods a documented path accepts, if `path` is one.
fn allowed_methods(path: &str) -> Option<Vec<Method>> {
    let segments: Vec<&str> = path.split('/').collect();
    let mut methods: Vec<Method> = ROUTES
        .iter()
        .filter(|(pattern, _)| {
            pattern.len() == segments.len()
                && pattern.iter().zip(&segments).all(|(p, s)| {
                    (p.starts_with('{') && p.ends_with('}') && !s.is_empty()) || p == s
                })
        })
        .flat_map(|(_, methods)| methods.iter().cloned())
        .collect();
    if methods.is_empty() {
        return None;
    }
    methods.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    methods.dedup();
    Some(methods)
}

/// The answer for a request no route took: `405 method_not_allowed` with `Allow` for a known
/// path, `404 not_found` otherwise.
pub async fn no_route(req: HttpRequest) -> HttpResponse {
    match allowed_methods(req.path()) {
        Some(methods) => {
            let allow = methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            let mut response = problem_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!(
                    "{} {} is not an endpoint; this path takes {allow}",
                    req.method(),
                    req.path()
                ),
            );
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            response
        }
        None => problem_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_paths_and_their_methods_are_known() {
        assert_eq!(
            allowed_methods("/v1/requests/abc/approve"),
            Some(vec![Method::POST])
        );
        let methods = allowed_methods("/v1/requests").unwrap();
        assert!(methods.contains(&Method::GET) && methods.contains(&Method::POST));
        assert_eq!(allowed_methods("/v1/nothing-here"), None);
        assert_eq!(allowed_methods("/v1/requests//approve"), None);
    }
}
