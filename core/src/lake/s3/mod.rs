//! The S3 requests object_store 0.14 does not make, signed with its own SigV4
//! ([`AwsAuthorizer`]) and sent through its own HTTP client, with the same endpoint, region,
//! credentials, path style and HTTP settings as the root's `AmazonS3` store:
//!
//! - a multipart upload whose parts are uploaded (`UploadPart`) or **copied server-side** from
//!   a byte range of another object (`UploadPartCopy`, with `x-amz-copy-source-range` and
//!   `x-amz-copy-source-if-match`), then completed (`CompleteMultipartUpload`) or aborted
//!   (`AbortMultipartUpload`); `ListMultipartUploads` finds incomplete ones;
//! - the bucket's Object Lock configuration (`GetObjectLockConfiguration`), a
//!   create-if-absent `PutObject` with an Object Lock retention (the audit checkpoint sink),
//!   an object's retention (`HeadObject`) and the delete of one version (`DeleteObject`).
//!
//! Every request gets the lake's timeouts ([`CONNECT_TIMEOUT`], [`REQUEST_TIMEOUT`]) and is
//! retried up to [`MAX_RETRIES`] times (100 ms doubling up to 15 s) on a connection error, a
//! timeout, `429` or a `5xx`, and on a `200` whose body is an `<Error>` (S3 may answer
//! `CompleteMultipartUpload` so). Errors are `object_store::Error`s, so callers wrap them
//! like any other store error: `412` (a failed precondition) is
//! [`object_store::Error::Precondition`], `404` is [`object_store::Error::NotFound`].
//!
//! References: Amazon S3 API Reference, `UploadPartCopy`, `CompleteMultipartUpload`,
//! `GetObjectLockConfiguration`, `PutObject`; multipart limits: parts 1..=10000, each but the
//! last at least 5 MiB and at most 5 GiB.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{
    AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer, AwsCredentialProvider,
};
use object_store::client::{
    ClientConfigKey, ClientOptions, HttpClient, HttpConnector, HttpRequest, HttpRequestBody,
    ReqwestConnector,
};
use object_store::path::Path;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

use super::timeouts::{CONNECT_TIMEOUT, MAX_RETRIES, REQUEST_TIMEOUT};

mod lock;
mod multipart;

pub use lock::{LockMode, ObjectLockConfig};
pub use multipart::UploadedPart;

/// The largest part S3 accepts: 5 GiB.
pub const MAX_S3_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// The most parts one multipart upload may have (numbered 1..=10000).
pub const MAX_S3_PARTS: u32 = 10_000;

/// Signed S3 requests on one bucket (see the module documentation). Cheap to clone.
#[derive(Clone)]
pub struct S3Client {
    http: HttpClient,
    credentials: AwsCredentialProvider,
    region: String,
    bucket: String,
    /// `https://endpoint/bucket` (path style) or `https://bucket.endpoint` (virtual-hosted).
    bucket_endpoint: String,
    /// Headers every object-creating request carries (server-side encryption).
    create_headers: Vec<(HeaderName, HeaderValue)>,
    request_payer: bool,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("bucket_endpoint", &self.bucket_endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// A store error about `what` that has no better variant.
fn generic(what: &str, detail: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: format!("{what}: {detail}").into(),
    }
}

/// Percent-encodes an object key for a URL path and a copy source: everything but
/// `A-Z a-z 0-9 - _ . ~ /` (the encoding SigV4's canonical URI expects).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text of the first `<tag>…</tag>` of an XML answer, entities decoded.
fn xml_value(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = start + body[start..].find(&format!("</{tag}>"))?;
    Some(
        body[start..end]
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A request before signing.
struct Request<'a> {
    method: Method,
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    /// For messages: the operation and the key.
    what: &'a str,
    path: &'a str,
}

/// A response: status, headers, body.
struct Response {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Bytes,
}

impl S3Client {
    /// The client of the bucket `builder` is configured for, sharing `store`'s credential
    /// provider. `None` where these requests cannot follow the store's settings (S3 Express
    /// One Zone, customer-provided encryption keys, unsigned requests): callers then fall back
    /// to object_store's own requests.
    ///
    /// # Errors
    /// A sentence when the HTTP client cannot be built.
    pub(crate) fn new(builder: &AmazonS3Builder, store: &AmazonS3) -> Result<Option<Self>, String> {
        let get = |key: AmazonS3ConfigKey| builder.get_config_value(&key);
        // The encryption keys' enum is not exported: name them as configuration strings.
        let encryption = |name: &str| {
            name.parse::<AmazonS3ConfigKey>()
                .ok()
                .and_then(|key| builder.get_config_value(&key))
        };
        let is_true = |v: Option<String>| v.is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if is_true(get(AmazonS3ConfigKey::S3Express))
            || is_true(get(AmazonS3ConfigKey::SkipSignature))
            || encryption("aws_sse_customer_key_base64").is_some()
        {
            return Ok(None);
        }
        let Some(bucket) = get(AmazonS3ConfigKey::Bucket) else {
            return Ok(None);
        };
        let region = get(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
        let endpoint = get(AmazonS3ConfigKey::S3Endpoint).or(get(AmazonS3ConfigKey::Endpoint));
        let virtual_hosted = is_true(get(AmazonS3ConfigKey::VirtualHostedStyleRequest));
        let bucket_endpoint = match (endpoint, virtual_hosted) {
            (Some(e), true) => e.trim_end_matches('/').to_string(),
            (Some(e), false) => format!("{}/{bucket}", e.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        let mut options = ClientOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        for key in [
            ClientConfigKey::AllowHttp,
            ClientConfigKey::AllowInvalidCertificates,
            ClientConfigKey::ConnectTimeout,
            ClientConfigKey::Timeout,
            ClientConfigKey::ProxyUrl,
            ClientConfigKey::ProxyCaCertificate,
            ClientConfigKey::ProxyExcludes,
            ClientConfigKey::Http1Only,
            ClientConfigKey::Http2Only,
            ClientConfigKey::NoSystemCertificates,
        ] {
            if let Some(value) = get(AmazonS3ConfigKey::Client(key)) {
                options = options.with_config(key, value);
            }
        }
        let http = ReqwestConnector::default()
            .connect(&options)
            .map_err(|e| format!("cannot build the S3 HTTP client: {e}"))?;
        let mut create_headers = Vec::new();
        if let Some(kind) = encryption("aws_server_side_encryption") {
            let kind = match kind.as_str() {
                "aws:kms" | "sse:kms" => "aws:kms",
                "aws:kms:dsse" | "sse:kms:dsse" => "aws:kms:dsse",
                _ => "AES256",
            };
            create_headers.push((
                HeaderName::from_static("x-amz-server-side-encryption"),
                HeaderValue::from_static(kind),
            ));
            if let Some(key) = encryption("aws_sse_kms_key_id") {
                let value = HeaderValue::from_str(&key).map_err(|e| e.to_string())?;
                create_headers.push((
                    HeaderName::from_static("x-amz-server-side-encryption-aws-kms-key-id"),
                    value,
                ));
            }
            if is_true(encryption("aws_sse_bucket_key_enabled")) {
                create_headers.push((
                    HeaderName::from_static("x-amz-server-side-encryption-bucket-key-enabled"),
                    HeaderValue::from_static("true"),
                ));
            }
        }
        Ok(Some(Self {
            http,
            credentials: Arc::clone(store.credentials()),
            region,
            bucket,
            bucket_endpoint,
            create_headers,
            request_payer: is_true(get(AmazonS3ConfigKey::RequestPayer)),
        }))
    }

    /// The URL of object `key`.
    fn url(&self, key: &Path) -> String {
        format!("{}/{}", self.bucket_endpoint, encode_key(key.as_ref()))
    }

    /// Signs and sends `request`, retrying transient failures (see the module documentation).
    async fn send(&self, request: Request<'_>) -> Result<Response, object_store::Error> {
        let digest = Sha256::digest(&request.body);
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            let result = self.send_once(&request, &digest).await;
            let retry = match &result {
                Ok(r) => {
                    r.status.is_server_error()
                        || r.status == StatusCode::TOO_MANY_REQUESTS
                        || (r.status.is_success() && is_error_document(&r.body))
                }
                Err(_) => true,
            };
            if !retry || attempt >= MAX_RETRIES {
                return match result {
                    Ok(r) if r.status.is_success() && !is_error_document(&r.body) => Ok(r),
                    Ok(r) => Err(status_error(&request, &r)),
                    Err(e) => Err(e),
                };
            }
            attempt += 1;
            tracing::debug!(
                what = request.what,
                key = request.path,
                attempt,
                "S3 request retried"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(15));
        }
    }

    async fn send_once(
        &self,
        request: &Request<'_>,
        digest: &[u8],
    ) -> Result<Response, object_store::Error> {
        let credential = self.credentials.get_credential().await?;
        let mut http = HttpRequest::new(HttpRequestBody::from(request.body.clone()));
        *http.method_mut() = request.method.clone();
        *http.uri_mut() = request
            .url
            .parse()
            .map_err(|e| generic(request.what, format!("invalid URL {}: {e}", request.url)))?;
        for (name, value) in &request.headers {
            http.headers_mut().insert(name.clone(), value.clone());
        }
        http.headers_mut().insert(
            reqwest::header::CONTENT_LENGTH,
            HeaderValue::from(request.body.len()),
        );
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .with_request_payer(self.request_payer)
            .try_authorize(&mut http, Some(digest))?;
        let response = self.http.execute(http).await.map_err(|e| {
            generic(
                request.what,
                format!("{} {}: {e}", request.method, request.path),
            )
        })?;
        let (parts, body) = response.into_parts();
        let body = body.bytes().await.map_err(|e| {
            generic(
                request.what,
                format!("reading the answer for {}: {e}", request.path),
            )
        })?;
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// Whether `body` is an S3 error document (`<Error>…`, after an optional XML declaration).
fn is_error_document(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
    let mut rest = text.trim_start();
    if rest.starts_with("<?xml")
        && let Some(end) = rest.find("?>")
    {
        rest = rest[end + 2..].trim_start();
    }
    rest.starts_with("<Error>")
}

/// The `object_store::Error` of an unsuccessful answer.
fn status_error(request: &Request<'_>, r: &Response) -> object_store::Error {
    let text = String::from_utf8_lossy(&r.body);
    let code = xml_value(&text, "Code").unwrap_or_default();
    let message = xml_value(&text, "Message").unwrap_or_default();
    let source: Box<dyn std::error::Error + Send + Sync> = format!(
        "{} {}: {} {code} {message}",
        request.what, request.path, r.status
    )
    .into();
    let path = request.path.to_string();
    match r.status {
        StatusCode::PRECONDITION_FAILED => object_store::Error::Precondition { path, source },
        StatusCode::NOT_FOUND => object_store::Error::NotFound { path, source },
        _ => object_store::Error::Generic {
            store: "S3",
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_as_sigv4_expects() {
        assert_eq!(
            encode_key("events/date=2025-01-07/part 1.parquet"),
            "events/date%3D2025-01-07/part%201.parquet"
        );
    }

    #[test]
    fn xml_values_are_found_and_decoded() {
        let body =
            "<?xml version=\"1.0\"?><CopyPartResult><ETag>&quot;abc&quot;</ETag></CopyPartResult>";
        assert_eq!(xml_value(body, "ETag").as_deref(), Some("\"abc\""));
        assert_eq!(xml_value(body, "UploadId"), None);
    }

    #[test]
    fn error_documents_are_recognised_behind_a_200() {
        let error = Bytes::from_static(
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code></Error>",
        );
        assert!(is_error_document(&error));
        let fine = Bytes::from_static(
            b"<?xml version=\"1.0\"?><CompleteMultipartUploadResult></CompleteMultipartUploadResult>",
        );
        assert!(!is_error_document(&fine));
        assert!(!is_error_document(b""));
    }
}
