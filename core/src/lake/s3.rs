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

use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
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

use super::store::{CONNECT_TIMEOUT, MAX_RETRIES, REQUEST_TIMEOUT};

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

/// One part of a multipart upload as S3 acknowledged it.
#[derive(Debug, Clone)]
pub struct UploadedPart {
    /// Its number, 1..=10000.
    pub number: u32,
    /// The ETag S3 returned for it.
    pub e_tag: String,
}

/// Object Lock retention mode (S3 `x-amz-object-lock-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Nobody, not even the root account, can delete or shorten the retention.
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can.
    Governance,
}

impl LockMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Compliance => "COMPLIANCE",
            Self::Governance => "GOVERNANCE",
        }
    }
}

/// A bucket's Object Lock configuration (`GetObjectLockConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLockConfig {
    /// Object Lock is enabled on the bucket (it then is versioned).
    pub enabled: bool,
    /// The bucket's default retention, when it has one: mode and days (years × 365).
    pub default_retention: Option<(LockMode, u32)>,
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

    /// `CreateMultipartUpload` of `key`; returns the upload id.
    ///
    /// # Errors
    /// The store error.
    pub async fn create_multipart(&self, key: &Path) -> Result<String, object_store::Error> {
        let r = self
            .send(Request {
                method: Method::POST,
                url: format!("{}?uploads=", self.url(key)),
                headers: self.create_headers.clone(),
                body: Bytes::new(),
                what: "CreateMultipartUpload",
                path: key.as_ref(),
            })
            .await?;
        xml_value(&String::from_utf8_lossy(&r.body), "UploadId").ok_or_else(|| {
            generic(
                "CreateMultipartUpload",
                format!("no UploadId in the answer for {key}"),
            )
        })
    }

    /// `UploadPart`: part `number` of upload `upload_id` of `key` holds `bytes`.
    ///
    /// # Errors
    /// The store error.
    pub async fn upload_part(
        &self,
        key: &Path,
        upload_id: &str,
        number: u32,
        bytes: Bytes,
    ) -> Result<UploadedPart, object_store::Error> {
        let r = self
            .send(Request {
                method: Method::PUT,
                url: format!(
                    "{}?partNumber={number}&uploadId={}",
                    self.url(key),
                    encode_key(upload_id)
                ),
                headers: Vec::new(),
                body: bytes,
                what: "UploadPart",
                path: key.as_ref(),
            })
            .await?;
        let e_tag = r
            .headers
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| generic("UploadPart", format!("no ETag for part {number} of {key}")))?;
        Ok(UploadedPart {
            number,
            e_tag: e_tag.to_string(),
        })
    }

    /// `UploadPartCopy`: part `number` of upload `upload_id` of `key` is bytes `range`
    /// (end exclusive) of object `source`, copied by S3 itself, and only while `source`'s
    /// ETag is `if_match`.
    ///
    /// # Errors
    /// [`object_store::Error::Precondition`] when `source` changed (`412`),
    /// [`object_store::Error::NotFound`] when it is gone, other store errors.
    pub async fn upload_part_copy(
        &self,
        key: &Path,
        upload_id: &str,
        number: u32,
        source: &Path,
        range: std::ops::Range<u64>,
        if_match: &str,
    ) -> Result<UploadedPart, object_store::Error> {
        let header = |v: String| {
            HeaderValue::from_str(&v).map_err(|e| generic("UploadPartCopy", e.to_string()))
        };
        let headers = vec![
            (
                HeaderName::from_static("x-amz-copy-source"),
                header(format!(
                    "/{}/{}",
                    encode_key(&self.bucket),
                    encode_key(source.as_ref())
                ))?,
            ),
            (
                HeaderName::from_static("x-amz-copy-source-range"),
                header(format!("bytes={}-{}", range.start, range.end - 1))?,
            ),
            (
                HeaderName::from_static("x-amz-copy-source-if-match"),
                header(if_match.to_string())?,
            ),
        ];
        let r = self
            .send(Request {
                method: Method::PUT,
                url: format!(
                    "{}?partNumber={number}&uploadId={}",
                    self.url(key),
                    encode_key(upload_id)
                ),
                headers,
                body: Bytes::new(),
                what: "UploadPartCopy",
                path: key.as_ref(),
            })
            .await?;
        let e_tag = xml_value(&String::from_utf8_lossy(&r.body), "ETag").ok_or_else(|| {
            generic(
                "UploadPartCopy",
                format!("no ETag for part {number} of {key}"),
            )
        })?;
        Ok(UploadedPart { number, e_tag })
    }

    /// `CompleteMultipartUpload` of `key` from `parts` (in order).
    ///
    /// # Errors
    /// The store error (also when S3 answers `200` with an error document).
    pub async fn complete(
        &self,
        key: &Path,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<(), object_store::Error> {
        let mut body = String::from("<CompleteMultipartUpload>");
        for part in parts {
            body.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                part.number,
                xml_escape(&part.e_tag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        self.send(Request {
            method: Method::POST,
            url: format!("{}?uploadId={}", self.url(key), encode_key(upload_id)),
            headers: Vec::new(),
            body: Bytes::from(body),
            what: "CompleteMultipartUpload",
            path: key.as_ref(),
        })
        .await?;
        Ok(())
    }

    /// `AbortMultipartUpload`; an upload already gone is fine.
    ///
    /// # Errors
    /// The store error.
    pub async fn abort(&self, key: &Path, upload_id: &str) -> Result<(), object_store::Error> {
        match self
            .send(Request {
                method: Method::DELETE,
                url: format!("{}?uploadId={}", self.url(key), encode_key(upload_id)),
                headers: Vec::new(),
                body: Bytes::new(),
                what: "AbortMultipartUpload",
                path: key.as_ref(),
            })
            .await
        {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `ListMultipartUploads` under folder `prefix` (the whole bucket when empty): the keys of
    /// the incomplete multipart uploads (the first 1000; no pagination).
    ///
    /// # Errors
    /// The store error.
    pub async fn incomplete_uploads(
        &self,
        prefix: &Path,
    ) -> Result<Vec<String>, object_store::Error> {
        let folder = match prefix.as_ref() {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let r = self
            .send(Request {
                method: Method::GET,
                url: format!(
                    "{}?prefix={}&uploads=",
                    self.bucket_endpoint,
                    encode_key(&folder).replace('/', "%2F")
                ),
                headers: Vec::new(),
                body: Bytes::new(),
                what: "ListMultipartUploads",
                path: prefix.as_ref(),
            })
            .await?;
        let text = String::from_utf8_lossy(&r.body).to_string();
        Ok(text
            .split("<Upload>")
            .skip(1)
            .filter_map(|upload| xml_value(upload, "Key"))
            .collect())
    }

    /// `GetObjectLockConfiguration` of the bucket; a bucket without Object Lock answers
    /// `404 ObjectLockConfigurationNotFoundError`, returned as not enabled.
    ///
    /// # Errors
    /// The store error (e.g. `403` when the credentials may not read the configuration).
    pub async fn object_lock_configuration(&self) -> Result<ObjectLockConfig, object_store::Error> {
        let r = self
            .send(Request {
                method: Method::GET,
                url: format!("{}?object-lock=", self.bucket_endpoint),
                headers: Vec::new(),
                body: Bytes::new(),
                what: "GetObjectLockConfiguration",
                path: &self.bucket,
            })
            .await;
        let r = match r {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Ok(ObjectLockConfig {
                    enabled: false,
                    default_retention: None,
                });
            }
            Err(e) => return Err(e),
        };
        let text = String::from_utf8_lossy(&r.body).to_string();
        let enabled = xml_value(&text, "ObjectLockEnabled").as_deref() == Some("Enabled");
        let mode = xml_value(&text, "Mode").and_then(|m| match m.as_str() {
            "COMPLIANCE" => Some(LockMode::Compliance),
            "GOVERNANCE" => Some(LockMode::Governance),
            _ => None,
        });
        let days = xml_value(&text, "Days")
            .and_then(|d| d.parse::<u32>().ok())
            .or_else(|| {
                xml_value(&text, "Years")
                    .and_then(|y| y.parse::<u32>().ok())
                    .map(|y| y.saturating_mul(365))
            });
        Ok(ObjectLockConfig {
            enabled,
            default_retention: mode.zip(days),
        })
    }

    /// `PutObject` of `bytes` at `key` unless it exists (`If-None-Match: *`), locked in
    /// `mode` until `retain_until` (`x-amz-object-lock-mode`,
    /// `x-amz-object-lock-retain-until-date`, with the SHA-256 checksum S3 requires of a
    /// locked write). Returns the new object's version id, if S3 gave one.
    ///
    /// # Errors
    /// [`object_store::Error::AlreadyExists`] when `key` exists (`412`), other store errors.
    pub async fn put_locked(
        &self,
        key: &Path,
        bytes: Bytes,
        mode: LockMode,
        retain_until: DateTime<Utc>,
    ) -> Result<Option<String>, object_store::Error> {
        let checksum = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes));
        let value =
            |v: &str| HeaderValue::from_str(v).map_err(|e| generic("PutObject", e.to_string()));
        let mut headers = self.create_headers.clone();
        headers.extend([
            (
                reqwest::header::IF_NONE_MATCH,
                HeaderValue::from_static("*"),
            ),
            (
                HeaderName::from_static("x-amz-object-lock-mode"),
                HeaderValue::from_static(mode.as_str()),
            ),
            (
                HeaderName::from_static("x-amz-object-lock-retain-until-date"),
                value(&retain_until.to_rfc3339_opts(SecondsFormat::Secs, true))?,
            ),
            (
                HeaderName::from_static("x-amz-sdk-checksum-algorithm"),
                HeaderValue::from_static("SHA256"),
            ),
            (
                HeaderName::from_static("x-amz-checksum-sha256"),
                value(&checksum)?,
            ),
        ]);
        let r = self
            .send(Request {
                method: Method::PUT,
                url: self.url(key),
                headers,
                body: bytes,
                what: "PutObject",
                path: key.as_ref(),
            })
            .await
            .map_err(|e| match e {
                object_store::Error::Precondition { path, source } => {
                    object_store::Error::AlreadyExists { path, source }
                }
                e => e,
            })?;
        Ok(r.headers
            .get("x-amz-version-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }

    /// The Object Lock retention of `key` as S3 reports it on `HeadObject`
    /// (`x-amz-object-lock-mode`, `x-amz-object-lock-retain-until-date`, shown to callers
    /// allowed `s3:GetObjectRetention`): mode and retain-until date, `None` when it has none.
    /// (`HeadObject` rather than `GetObjectRetention`, which moto 5.2 does not serve.)
    ///
    /// # Errors
    /// The store error ([`object_store::Error::NotFound`] when `key` does not exist).
    pub async fn object_retention(
        &self,
        key: &Path,
    ) -> Result<Option<(String, String)>, object_store::Error> {
        let r = self
            .send(Request {
                method: Method::HEAD,
                url: self.url(key),
                headers: Vec::new(),
                body: Bytes::new(),
                what: "HeadObject",
                path: key.as_ref(),
            })
            .await?;
        let header = |name: &str| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Ok(header("x-amz-object-lock-mode").zip(header("x-amz-object-lock-retain-until-date")))
    }

    /// `DeleteObject` of version `version_id` of `key` (a permanent delete, which Object Lock
    /// refuses during the retention).
    ///
    /// # Errors
    /// The store error (`403 AccessDenied` for a locked version).
    pub async fn delete_version(
        &self,
        key: &Path,
        version_id: &str,
    ) -> Result<(), object_store::Error> {
        self.send(Request {
            method: Method::DELETE,
            url: format!("{}?versionId={}", self.url(key), encode_key(version_id)),
            headers: Vec::new(),
            body: Bytes::new(),
            what: "DeleteObject",
            path: key.as_ref(),
        })
        .await?;
        Ok(())
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
