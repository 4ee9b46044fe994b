//! Object stores from URLs: the one place where schemes, credentials, timeouts and retries of
//! the lake engine's stores are configured.
//!
//! | URL | store |
//! |---|---|
//! | `memory://` | a fresh, empty [`InMemory`] store (tests) |
//! | `file:///abs/path`, `/abs/path`, `rel/path` | [`LocalFileSystem`] rooted at an existing folder |
//! | `s3://bucket/prefix` (or `s3a://`) | [`AmazonS3`](object_store::aws::AmazonS3), path-style by default |
//!
//! S3 settings come first from the standard AWS environment variables (`AWS_ENDPOINT_URL`,
//! `AWS_REGION` / `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP`, …, see `AmazonS3Builder::from_env`), then from
//! [`S3Options`], whose fields (when set) win over the environment.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, RetryConfig};
use secrecy::{ExposeSecret, SecretString};

use super::error::LakeError;
use super::s3::S3Client;

pub use super::timeouts::{CONNECT_TIMEOUT, MAX_RETRIES, REQUEST_TIMEOUT};
/// Default size of one part of a multipart upload, and the size above which a new file is
/// uploaded in parts rather than with one PUT: 10 MiB.
pub const DEFAULT_UPLOAD_PART_SIZE: usize = 10 * 1024 * 1024;
/// The smallest part S3 accepts (all parts but the last): 5 MiB.
pub const MIN_S3_PART_SIZE: usize = 5 * 1024 * 1024;

/// Explicit S3 settings the service passes from its configuration. Each field, when `Some`,
/// overrides the corresponding AWS environment variable.
///
/// `Debug` never shows the secret key.
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    /// Endpoint URL of an S3-compatible API, e.g. `http://127.0.0.1:9000` (MinIO, moto, Ceph);
    /// `None`: AWS (`https://s3.<region>.amazonaws.com`) unless `AWS_ENDPOINT_URL` is set.
    pub endpoint: Option<String>,
    /// Region, e.g. `eu-central-1` (default `us-east-1`).
    pub region: Option<String>,
    /// Access key id of static credentials (with `secret_access_key`); `None`: environment,
    /// then the instance / container / web-identity credential providers.
    pub access_key_id: Option<String>,
    /// Secret access key of static credentials.
    pub secret_access_key: Option<SecretString>,
    /// Allows plain `http://` endpoints (local test servers); default `false`.
    pub allow_http: Option<bool>,
    /// Virtual-hosted-style requests (`https://bucket.endpoint/key`) instead of path-style
    /// (`https://endpoint/bucket/key`); `None`: `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`, else
    /// `false` (path-style), which works with every S3-compatible server. With `true` and an
    /// explicit endpoint, the endpoint must already name the bucket.
    pub virtual_hosted_style: Option<bool>,
}

/// How stores are built from URLs (see [`object_store_for_url_with`]).
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    /// Settings of `s3://` stores.
    pub s3: S3Options,
    /// Size in bytes of one part of a multipart upload; a new file larger than this is uploaded
    /// in parts, a smaller one with one PUT. `None`: [`DEFAULT_UPLOAD_PART_SIZE`] (10 MiB).
    /// S3 refuses parts below [`MIN_S3_PART_SIZE`] (5 MiB), so smaller values are raised to
    /// it for `s3://` roots.
    pub upload_part_size: Option<usize>,
}

/// What kind of store a root is on; decides how a rewritten file is swapped in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// A local file system: `rename(2)` is atomic.
    Local,
    /// The in-memory store (tests).
    Memory,
    /// Amazon S3 or an S3-compatible API: rename is copy-then-delete.
    S3,
    /// A store built elsewhere ([`LakeRoot::from_store`](super::LakeRoot::from_store)).
    Other,
}

/// A built store with what the lake engine needs to know about it.
pub(crate) struct BuiltStore {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) prefix: Path,
    pub(crate) kind: StoreKind,
    pub(crate) upload_part_size: usize,
    /// The signed requests object_store lacks, on an `s3://` root (see [`S3Client::new`]).
    pub(crate) s3: Option<Arc<S3Client>>,
}

/// The local folder a URL names (a plain path, or `file://` + path), or `None` for an object
/// store URL (`s3://…`, `memory://`).
pub fn local_folder(url: &str) -> Option<&str> {
    if !url.contains("://") {
        Some(url)
    } else {
        url.strip_prefix("file://")
    }
}

/// Builds the object store for a lake URL with the default [`StoreOptions`] (S3 settings from
/// the environment only). See [`object_store_for_url_with`].
///
/// # Errors
/// [`LakeError::InvalidRoot`] as for [`object_store_for_url_with`].
pub fn object_store_for_url(url: &str) -> Result<(Arc<dyn ObjectStore>, Path), LakeError> {
    object_store_for_url_with(url, &StoreOptions::default())
}

/// Builds the object store for a lake URL: `memory://`, `file:///absolute/path`, a plain local
/// path (absolute or relative to the working directory) or `s3://bucket/prefix`. Returns the
/// store and the prefix of the lake inside it (the store's root for local and memory stores,
/// `prefix` for S3).
///
/// Remote stores get a connect timeout of [`CONNECT_TIMEOUT`], a request timeout of
/// [`REQUEST_TIMEOUT`] and [`MAX_RETRIES`] retries with exponential backoff (100 ms doubling
/// up to 15 s); local and in-memory stores have no network to time out.
///
/// Nothing is contacted here: a wrong endpoint or missing bucket shows up on the first listing.
///
/// # Errors
/// [`LakeError::InvalidRoot`] for an unknown scheme, a URL that does not parse, an S3 URL
/// without a bucket or with incomplete credentials, or a local folder that does not exist or is
/// not a folder (roots are never created).
pub fn object_store_for_url_with(
    url: &str,
    options: &StoreOptions,
) -> Result<(Arc<dyn ObjectStore>, Path), LakeError> {
    let built = build(url, options)?;
    Ok((built.store, built.prefix))
}

/// The HTTP client settings of every remote store: the timeouts, as configuration values
/// layered over the ones read from the environment (so `AWS_ALLOW_HTTP`, proxies… stay).
fn client_settings() -> [(ClientConfigKey, String); 2] {
    let secs = |d: Duration| format!("{}s", d.as_secs());
    [
        (ClientConfigKey::ConnectTimeout, secs(CONNECT_TIMEOUT)),
        (ClientConfigKey::Timeout, secs(REQUEST_TIMEOUT)),
    ]
}

/// The retry policy of every remote store.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: MAX_RETRIES,
        retry_timeout: Duration::from_secs(180),
    }
}

pub(crate) fn build(url: &str, options: &StoreOptions) -> Result<BuiltStore, LakeError> {
    let invalid = |reason: String| LakeError::InvalidRoot {
        url: url.to_string(),
        reason,
    };
    let part_size = options
        .upload_part_size
        .unwrap_or(DEFAULT_UPLOAD_PART_SIZE)
        .max(1);
    if url.starts_with("memory://") {
        return Ok(BuiltStore {
            store: Arc::new(InMemory::new()),
            prefix: Path::default(),
            kind: StoreKind::Memory,
            upload_part_size: part_size,
            s3: None,
        });
    }
    if url.starts_with("s3://") || url.starts_with("s3a://") {
        return build_s3(url, &options.s3, part_size.max(MIN_S3_PART_SIZE)).map_err(invalid);
    }
    let local = if url.starts_with("file://") {
        let parsed = url::Url::parse(url).map_err(|e| invalid(format!("not a valid URL: {e}")))?;
        parsed
            .to_file_path()
            .map_err(|()| invalid("a file:// URL must hold an absolute local path".into()))?
    } else if let Some((scheme, _)) = url.split_once("://") {
        return Err(invalid(format!(
            "unsupported scheme {scheme:?} (supported: s3://, file://, memory://, a local path)"
        )));
    } else {
        std::path::PathBuf::from(url)
    };
    let meta = std::fs::metadata(&local)
        .map_err(|e| invalid(format!("cannot open {}: {e}", local.display())))?;
    if !meta.is_dir() {
        return Err(invalid(format!("{} is not a folder", local.display())));
    }
    let local = local
        .canonicalize()
        .map_err(|e| invalid(format!("cannot resolve {}: {e}", local.display())))?;
    let store = LocalFileSystem::new_with_prefix(&local)
        .map_err(|e| invalid(format!("cannot use {} as a store: {e}", local.display())))?;
    Ok(BuiltStore {
        store: Arc::new(store),
        prefix: Path::default(),
        kind: StoreKind::Local,
        upload_part_size: part_size,
        s3: None,
    })
}

fn build_s3(url: &str, s3: &S3Options, part_size: usize) -> Result<BuiltStore, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
    let bucket = parsed
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or("an S3 URL must name a bucket: s3://bucket/prefix")?;
    let prefix = Path::parse(parsed.path().trim_matches('/'))
        .map_err(|e| format!("invalid prefix {:?}: {e}", parsed.path()))?;
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry_config());
    for (key, value) in client_settings() {
        builder = builder.with_config(AmazonS3ConfigKey::Client(key), value);
    }
    if let Some(endpoint) = &s3.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(region) = &s3.region {
        builder = builder.with_region(region);
    }
    if let Some(key) = &s3.access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &s3.secret_access_key {
        builder = builder.with_secret_access_key(secret.expose_secret());
    }
    if let Some(allow) = s3.allow_http {
        builder = builder.with_allow_http(allow);
    }
    if let Some(virtual_hosted) = s3.virtual_hosted_style {
        builder = builder.with_virtual_hosted_style_request(virtual_hosted);
    }
    let client_settings = builder.clone();
    let store = builder
        .build()
        .map_err(|e| format!("cannot configure S3: {e}"))?;
    let s3 = S3Client::new(&client_settings, &store)?.map(Arc::new);
    Ok(BuiltStore {
        store: Arc::new(store),
        prefix,
        kind: StoreKind::S3,
        upload_part_size: part_size,
        s3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_give_the_bucket_prefix_and_path_style_by_default() {
        let options = StoreOptions {
            s3: S3Options {
                endpoint: Some("http://127.0.0.1:1".into()),
                region: Some("eu-central-1".into()),
                access_key_id: Some("id".into()),
                secret_access_key: Some(SecretString::from("secret")),
                allow_http: Some(true),
                virtual_hosted_style: None,
            },
            upload_part_size: Some(1),
        };
        let built = build("s3://lake/events/v1/", &options).unwrap();
        assert_eq!(built.kind, StoreKind::S3);
        assert_eq!(built.prefix.as_ref(), "events/v1");
        assert_eq!(built.upload_part_size, MIN_S3_PART_SIZE);
        assert!(
            built.s3.is_some(),
            "signed S3 requests share the store's settings"
        );
        let shown = format!("{:?}", options.s3);
        assert!(!shown.contains("secret\""), "{shown}");
    }

    #[test]
    fn s3_urls_need_a_bucket_and_complete_credentials() {
        let err = build("s3:///prefix", &StoreOptions::default())
            .err()
            .unwrap();
        assert!(matches!(err, LakeError::InvalidRoot { .. }), "{err}");
        let options = StoreOptions {
            s3: S3Options {
                access_key_id: Some("id-without-secret".into()),
                ..S3Options::default()
            },
            ..StoreOptions::default()
        };
        // Only fails when the environment does not provide the secret either.
        if std::env::var_os("AWS_SECRET_ACCESS_KEY").is_none() {
            let err = build("s3://bucket", &options).err().unwrap();
            assert!(err.to_string().contains("cannot configure S3"), "{err}");
        }
    }
}
