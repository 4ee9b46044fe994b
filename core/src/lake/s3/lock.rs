//! S3 Object Lock: the bucket's configuration, a create-if-absent write with its own
//! retention, an object's retention, and the delete of one version.

use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use object_store::path::Path;
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use super::{Request, S3Client, encode_key, generic, xml_value};

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

impl S3Client {
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
