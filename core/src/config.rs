//! Layered configuration: built-in defaults → `lethe.toml` → `LETHE__SECTION__KEY` variables.
//!
//! The defaults are the embedded mode: everything under `./lethe-data/` (SQLite database, the
//! demo lake, exports, generated secrets), the worker in-process, the service on 127.0.0.1:8080.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

mod auth;
mod dataset_roots;
mod iceberg;
mod load;
mod secret_strength;

pub use auth::{AuthSettings, JwtAlgorithm, LETHE_ISSUER, TrustedIssuerSettings};
pub use dataset_roots::roots_overlap;
pub use iceberg::{IcebergCatalogSettings, IcebergSettings};
pub use load::load_or_create_secret;

pub use secret_strength::{
    MIN_SECRET_BYTES, WeakSecret, check_base64_secret, check_text_secret, estimated_bits,
};

/// Everything Lethe reads at start.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// HTTP listener.
    pub server: ServerSettings,
    /// Database connection.
    pub database: DatabaseSettings,
    /// Local folders for data, exports and generated secrets.
    pub storage: StorageSettings,
    /// Token signing and lifetimes.
    pub auth: AuthSettings,
    /// The in-process (or standalone) worker.
    pub worker: WorkerSettings,
    /// Logging.
    pub log: LogSettings,
    /// Keys of crypto-shredding.
    pub crypto: CryptoSettings,
    /// Ingest into Lethe-managed datasets (`POST /v1/datasets/{id}/ingest`).
    pub ingest: IngestSettings,
    /// Webhook deliveries (notifications of request status changes).
    pub webhooks: WebhookSettings,
    /// The privacy-request lifecycle: approval policy, cooling-off, export expiry.
    pub requests: RequestSettings,
    /// Signed checkpoints of the audit log and where they are kept.
    pub audit: AuditSettings,
    /// Outgoing mail (e-mail verification codes).
    pub mail: MailSettings,
    /// Apache Iceberg catalogs that datasets of format `iceberg` name.
    #[serde(default)]
    pub iceberg: IcebergSettings,
}

/// Outgoing mail (`[mail]`): verification codes proving a self-registered account controls
/// its e-mail address.
#[derive(Clone, Deserialize)]
pub struct MailSettings {
    /// SMTP server URL (`LETHE__MAIL__SMTP_URL`), e.g. `smtps://user:password@smtp.example.com`
    /// (TLS on 465) or `smtp://user:password@smtp.example.com:587?tls=required` (STARTTLS).
    /// Unset (the embedded default): messages are written as `.eml` files to `outbox_dir` and
    /// the service logs where.
    pub smtp_url: Option<SecretString>,
    /// The sender, e.g. `Privacy team <privacy@example.com>` (default `Lethe <lethe@localhost>`).
    pub from: String,
    /// Folder of the `.eml` files when no SMTP server is set (default `<data_dir>/outbox`).
    pub outbox_dir: Option<PathBuf>,
    /// How long a verification code stays valid, in seconds (default 900).
    pub code_ttl_s: u64,
    /// Wrong codes accepted for one code before it is void and a new one must be sent
    /// (default 5).
    pub code_max_attempts: u32,
}

impl std::fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSettings")
            .field("smtp_url", &self.smtp_url.as_ref().map(|_| "***"))
            .field("from", &self.from)
            .field("outbox_dir", &self.outbox_dir)
            .field("code_ttl_s", &self.code_ttl_s)
            .field("code_max_attempts", &self.code_max_attempts)
            .finish()
    }
}

/// Signed audit checkpoints (`[audit]`): how often the chain's head is signed, with which
/// key, and where the checkpoints are written outside the database.
#[derive(Clone, Deserialize)]
pub struct AuditSettings {
    /// Where checkpoints are written: a folder or an object store URL (e.g.
    /// `s3://bucket/lethe-audit`, ideally a bucket with S3 Object Lock: each checkpoint is then
    /// written with a retention, see `checkpoint_retention_days`). Default `<data_dir>/audit-checkpoints`. Every replica must use the same.
    pub checkpoint_url: Option<String>,
    /// A checkpoint is made once this many entries were appended since the last one (default
    /// 1,000).
    pub checkpoint_every_entries: u64,
    /// …or once this many seconds passed since the last one and entries were appended
    /// (default 60).
    pub checkpoint_every_s: u64,
    /// Days each checkpoint stays locked when `checkpoint_url` is on an S3 bucket with Object
    /// Lock enabled (`x-amz-object-lock-retain-until-date`). Unset: the bucket's default
    /// retention period, else 2,555 days (7 years). Ignored elsewhere.
    pub checkpoint_retention_days: Option<u32>,
    /// The Ed25519 signing key as base64 of its 32-byte seed (`LETHE__AUDIT__SIGNING_KEY`).
    /// Wins over `signing_key_file`.
    pub signing_key: Option<SecretString>,
    /// A file holding the signing key (one line of base64, mode 0600). Default
    /// `<data_dir>/audit-signing.key`, generated on first start.
    pub signing_key_file: Option<PathBuf>,
    /// Public keys (base64 of 32 bytes) of earlier signing keys, kept so that checkpoints and
    /// certificates they signed still verify after a rotation. In the environment, one string
    /// with the keys separated by commas.
    #[serde(default, deserialize_with = "list_or_comma_separated")]
    pub previous_public_keys: Vec<String>,
}

impl std::fmt::Debug for AuditSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSettings")
            .field("checkpoint_url", &self.checkpoint_url)
            .field("checkpoint_every_entries", &self.checkpoint_every_entries)
            .field("checkpoint_every_s", &self.checkpoint_every_s)
            .field("checkpoint_retention_days", &self.checkpoint_retention_days)
            .field("signing_key", &self.signing_key.as_ref().map(|_| "***"))
            .field("signing_key_file", &self.signing_key_file)
            .field("previous_public_keys", &self.previous_public_keys)
            .finish()
    }
}

impl AuditSettings {
    /// The checkpoint sink: `checkpoint_url`, or the absolute `<data_dir>/audit-checkpoints`.
    pub fn checkpoint_location(&self, data_dir: &Path) -> String {
        match &self.checkpoint_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                let dir = data_dir.join("audit-checkpoints");
                std::path::absolute(&dir)
                    .unwrap_or(dir)
                    .display()
                    .to_string()
            }
        }
    }

    /// The signing key file: `signing_key_file`, or `<data_dir>/audit-signing.key`.
    pub fn signing_key_path(&self, data_dir: &Path) -> PathBuf {
        self.signing_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("audit-signing.key"))
    }
}

/// Reads a list of strings either as a list or as one comma-separated string (the form an
/// environment variable can hold).
fn list_or_comma_separated<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        Text(String),
    }
    Ok(match ListOrString::deserialize(deserializer)? {
        ListOrString::List(list) => list,
        ListOrString::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// How an approval policy treats a request type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalPolicy {
    /// Approved on receipt (`decided_by = policy:auto`), its job queued at once.
    Auto,
    /// Waits in `pending_approval` for an admin.
    Review,
}

/// Privacy-request lifecycle settings (`[requests]`).
#[derive(Debug, Clone, Deserialize)]
pub struct RequestSettings {
    /// Approval policy of access requests (GDPR Art. 15): `review` (default) or `auto`.
    pub access_approval: ApprovalPolicy,
    /// Approval policy of erasure requests (GDPR Art. 17): `review` (default) or `auto`.
    pub erasure_approval: ApprovalPolicy,
    /// Approval policy of portability requests (GDPR Art. 20): `review` (default, like
    /// access) or `auto`.
    pub portability_approval: ApprovalPolicy,
    /// Approval policy of rectification requests (GDPR Art. 16): `review` (default) or `auto`.
    pub rectification_approval: ApprovalPolicy,
    /// Approval policy of restriction requests and of their lifting (GDPR Art. 18): `review`
    /// (default) or `auto`.
    pub restriction_approval: ApprovalPolicy,
    /// Seconds after approval during which an erasure waits and the subject can still cancel
    /// it (default 0: none). The data key is destroyed when it ends, not at approval.
    pub erasure_cooling_off_s: u64,
    /// Seconds an access export stays downloadable (default 604,800 = 7 days); a sweep then
    /// deletes it.
    pub export_ttl_s: u64,
    /// Open (not final) requests of one type a subject may have at once (default 3; `0`: no
    /// bound). Beyond, filing is refused as manifestly excessive (GDPR Art. 12(5)) and the
    /// refusal is audited with its reason.
    #[serde(default = "default_max_open_per_type")]
    pub max_open_per_type: u32,
}

fn default_max_open_per_type() -> u32 {
    3
}

/// Webhook delivery settings (`[webhooks]`). The dispatcher runs wherever a worker runs: in the
/// service when `worker.in_process`, and in every `lethe-worker run`.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    /// Attempts before a delivery is marked `failed` (default 8: the last one about 21 minutes
    /// after the first with the default backoff).
    pub max_attempts: u32,
    /// Sleep between polls of the outbox when nothing is due, in milliseconds (default 1000).
    pub poll_interval_ms: u64,
    /// Timeout of one attempt (connect, send, answer), in seconds (default 10).
    pub timeout_s: u64,
    /// Delay after the first failed attempt, in milliseconds (default 10,000); doubled after
    /// each further failure.
    pub retry_base_ms: u64,
    /// Longest delay between two attempts, in seconds (default 3600).
    pub retry_max_s: u64,
    /// Allow webhook URLs whose host is (or resolves to) a loopback, private, link-local or
    /// unique-local address (default `false`: refused at registration and at each delivery,
    /// against server-side request forgery). Set it when the receiving app runs on the same
    /// private network.
    #[serde(default)]
    pub allow_private_networks: bool,
}

/// Ingest settings.
#[derive(Debug, Clone, Deserialize)]
pub struct IngestSettings {
    /// Largest accepted ingest body, in bytes (default 64 MiB = 67,108,864); larger bodies
    /// are refused with 413 before anything is parsed. The whole body is held in memory while
    /// it is validated, so this bounds the memory one ingest call takes.
    pub max_body_bytes: usize,
}

/// Crypto-shredding keys: the key encryption key (KEK) that wraps every subject's data key,
/// and the key that turns subject ids into the references keys and tombstones are stored under.
#[derive(Clone, Deserialize)]
pub struct CryptoSettings {
    /// The KEK as base64 of 32 bytes (`LETHE__CRYPTO__KEK`). Wins over `kek_file`.
    pub kek: Option<SecretString>,
    /// A file holding the KEK as one line of base64 (mode 0600). Default
    /// `<data_dir>/kek.key`, generated on first start with a loud warning.
    pub kek_file: Option<PathBuf>,
    /// Key of the HMAC that turns subject ids into key references (≥ 16 bytes). Default:
    /// generated into `<data_dir>/subject-ref.key`. It must never change: keys and tombstones
    /// are found through it.
    pub subject_key: Option<SecretString>,
    /// Where every tombstone is also journaled, outside the database: a folder or an object
    /// store URL (e.g. `s3://bucket/lethe-tombstones`) that database backups do not roll back.
    /// At start, journaled tombstones are re-applied, so a database restored from before an
    /// erasure cannot bring the subject's key back. Default `<data_dir>/tombstones`.
    pub tombstone_journal: Option<String>,
}

impl std::fmt::Debug for CryptoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptoSettings")
            .field("kek", &self.kek.as_ref().map(|_| "***"))
            .field("kek_file", &self.kek_file)
            .field("subject_key", &self.subject_key.as_ref().map(|_| "***"))
            .field("tombstone_journal", &self.tombstone_journal)
            .finish()
    }
}

/// HTTP listener settings.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// Interface to bind, e.g. `127.0.0.1` or `0.0.0.0`.
    pub host: String,
    /// TCP port; `0` picks a free port (tests).
    pub port: u16,
    /// Largest accepted JSON body, in bytes.
    pub max_body_bytes: usize,
    /// Take the client's address from `Forwarded` / `X-Forwarded-For` (default `false`: the
    /// TCP peer). Set it only behind a reverse proxy that overwrites those headers, or every
    /// client can pick the address its rate limits are counted under.
    pub trust_forwarded_for: bool,
    /// Seconds a request body may take to arrive after the headers (default 60); a body that
    /// is short of its `Content-Length`, or trickles in, is cut off with 408.
    pub body_timeout_s: u64,
    /// Origins (`https://app.example.com`) whose browser pages may call the API (CORS); a
    /// list, or one comma-separated string in the environment. Empty (default): no CORS
    /// header is ever sent, so browsers keep other origins from reading answers.
    #[serde(default, deserialize_with = "optional_list_or_comma_separated")]
    pub cors_allowed_origins: Option<Vec<String>>,
}

/// Database settings. The URL's scheme selects the backend (`sqlite:` or `postgres:`).
#[derive(Clone, Deserialize)]
pub struct DatabaseSettings {
    /// e.g. `sqlite://./lethe-data/lethe.db` or `postgres://lethe:…@db:5432/lethe`.
    pub url: SecretString,
    /// Upper bound on pooled connections.
    pub max_connections: u32,
}

impl std::fmt::Debug for DatabaseSettings {
    /// Shows the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(self.url.expose_secret()))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Replaces the password of `scheme://user:password@host/…` with `***`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// Local folders.
#[derive(Debug, Clone, Deserialize)]
pub struct StorageSettings {
    /// Root of everything local: `lethe.db`, `lake/`, `exports/`, generated key files.
    pub data_dir: PathBuf,
    /// Where access-request export archives are written (default `<data_dir>/exports`).
    pub exports_dir: Option<PathBuf>,
    /// Where export archives are stored when not on the local disk, e.g.
    /// `s3://bucket/lethe-exports` (S3 credentials from the standard `AWS_*` variables). Wins
    /// over `exports_dir`. Every service and worker replica must see the same location.
    pub exports_url: Option<String>,
    /// URL prefixes a dataset root may be registered under (`file:///srv/lake/`,
    /// `s3://company-lake/`); a list, or one comma-separated string in the environment
    /// (`LETHE__STORAGE__ALLOWED_ROOTS`). Unset (default): the local folder `<data_dir>/lake`
    /// only. Whatever it says, the folders holding Lethe's database, keys, tombstone journal and
    /// exports are never allowed (see [`Settings::check_dataset_root`]).
    #[serde(default, deserialize_with = "optional_list_or_comma_separated")]
    pub allowed_roots: Option<Vec<String>>,
}

/// Reads an optional list of strings either as a list or as one comma-separated string
/// ([`list_or_comma_separated`]); absent or null: `None`.
fn optional_list_or_comma_separated<'de, D>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Listed(#[serde(deserialize_with = "list_or_comma_separated")] Vec<String>);
    Ok(Option::<Listed>::deserialize(deserializer)?.map(|l| l.0))
}

impl StorageSettings {
    /// The exports folder, defaulting to `<data_dir>/exports`.
    pub fn exports_dir(&self) -> PathBuf {
        self.exports_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("exports"))
    }

    /// The export location as a URL or absolute path: `exports_url`, or the absolute
    /// exports folder.
    pub fn exports_location(&self) -> String {
        match &self.exports_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                let dir = self.exports_dir();
                std::path::absolute(&dir)
                    .unwrap_or(dir)
                    .display()
                    .to_string()
            }
        }
    }
}

fn default_job_concurrency() -> usize {
    6
}

/// Worker settings.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSettings {
    /// Run the worker inside the service process (embedded default: `true`).
    pub in_process: bool,
    /// How long the worker sleeps when the queue is empty, in milliseconds.
    pub poll_interval_ms: u64,
    /// Lease length, in seconds; the worker heartbeats every third of it. A job whose lease
    /// expired is taken over by another worker.
    pub lease_s: u64,
    /// Attempts before a job is marked failed.
    pub max_attempts: u32,
    /// Files read in parallel while locating subjects.
    pub file_concurrency: usize,
    /// Jobs one worker runs at the same time (the tasks of a large erasure, one file each,
    /// share the cores this way, and one task's queue bookkeeping overlaps another's rewrite);
    /// at least 1. Each job holds about one row group in memory. Default 6: a task waits on
    /// the database and the store for part of its time, so more tasks than cores keep them
    /// busy (on 2 cores, 100 erasures through the queue: 2 → 1.55 x the offline command's
    /// time, 4 → 1.34 x, 6 → 1.20 x; `bench/production.md`).
    #[serde(default = "default_job_concurrency")]
    pub job_concurrency: usize,
    /// Approved erasures wait this long (seconds) before they run, so that erasures approved
    /// within the window are applied in one pass per file. `0` (embedded default): at once;
    /// production might use a day (`86400`).
    pub erasure_batch_window_s: u64,
    /// Where a standalone `lethe-worker run` serves Prometheus metrics (`host:port`, e.g.
    /// `0.0.0.0:9464`); unset: not served. The service serves them at its own `/metrics`.
    #[serde(default)]
    pub metrics_addr: Option<String>,
}

/// Logging settings.
#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// `pretty` (human, default) or `json` (production).
    pub format: String,
    /// A `tracing` filter such as `info` or `lethe_core=debug,info`; `RUST_LOG` overrides it.
    pub filter: String,
}

/// Errors while loading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or a value has the wrong type.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value is well-formed but breaks a rule (e.g. two key sources for one issuer).
    #[error("configuration: {0}")]
    Invalid(String),
    /// A generated secret file could not be read or written.
    #[error("configuration: secret file {path}: {source}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests;
