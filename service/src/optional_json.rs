//! [`OptionalJson`]: a JSON body that may be left out, but that must parse when it is given.
//!
//! `Option<web::Json<T>>` turns every extraction error into `None`, so a body with a misspelt
//! field was read as no body at all (a residency scan of one dataset became a scan of every
//! dataset). Here only an empty body is `None`; anything else must be a valid `T` or the call
//! is refused with 400 `malformed_json` (413 beyond the body limit).

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// An optional JSON body: `None` when the body is empty (or only whitespace).
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T> OptionalJson<T> {
    /// The parsed body, if one was given.
    pub fn into_inner(self) -> Option<T> {
        self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<crate::state::AppState>>()
            .map_or(1024 * 1024, |s| s.settings.server.max_body_bytes);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = bytes.await.map_err(|e| {
                if e.as_response_error().status_code()
                    == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE
                {
                    ApiError::PayloadTooLarge(e.to_string())
                } else {
                    ApiError::BadRequest {
                        code: "malformed_json",
                        detail: e.to_string(),
                    }
                }
            })?;
            if bytes.len() > limit {
                return Err(ApiError::PayloadTooLarge(format!(
                    "the body is {} bytes; at most {limit} are accepted",
                    bytes.len()
                )));
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(OptionalJson(None));
            }
            serde_json::from_slice(&bytes)
                .map(|v| OptionalJson(Some(v)))
                .map_err(|e| ApiError::BadRequest {
                    code: "malformed_json",
                    detail: format!("Json deserialize error: {e}"),
                })
        })
    }
}
