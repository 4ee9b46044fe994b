//! Layered configuration: built-in defaults → `lethe.toml` → `LETHE__SECTION__KEY` variables.
//!
//! The defaults are the embedded mode: everything under `./lethe-data/` (SQLite database, the
//! demo lake, exports, generated secrets), the worker in-process, the service on 127.0.0.1:8080.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

mod dataset_roots;
mod secret_strength;

pub use dataset_roots::roots_overlap;

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

/// Authentication settings.
#[derive(Clone, Deserialize)]
pub struct AuthSettings {
    /// HS256 secret for access tokens. When absent, a random one is generated into
    /// `<data_dir>/jwt.key` on first start and reused afterwards.
    pub jwt_secret: Option<SecretString>,
    /// Lifetime of an access token, in seconds (default 900 = 15 minutes).
    pub access_token_ttl_s: u64,
    /// How long a refresh token stays usable when not used, in seconds (default 1209600 = 14
    /// days); each refresh issues a new one with a new lifetime, never past `session_max_s`.
    pub refresh_token_ttl_s: u64,
    /// Longest life of a session (a refresh-token family, started by a sign-in), in seconds
    /// (default 2592000 = 30 days); then the user signs in again.
    pub session_max_s: u64,
    /// Key of the HMAC that turns subject ids into pseudonyms for the audit log. When absent,
    /// generated into `<data_dir>/pseudonym.key` on first start. Changing it breaks the link
    /// between old and new audit entries of the same subject.
    pub pseudonym_key: Option<SecretString>,
    /// Identity providers of the company's own app whose JWTs identify data subjects
    /// (`[[auth.trusted_issuers]]` in `lethe.toml`, or `LETHE__AUTH__TRUSTED_ISSUERS` holding the
    /// same list as a JSON array). Empty by default: only Lethe's own accounts sign in.
    #[serde(default, deserialize_with = "trusted_issuers_from_list_or_json")]
    pub trusted_issuers: Vec<TrustedIssuerSettings>,
    /// Sign-in and sign-up attempts (`POST /v1/auth/login`, `/v1/auth/register`) one client
    /// IP address may make per minute, both together (default 30; a burst of that many, then
    /// one every 60/n seconds). Beyond: 429 with `Retry-After`.
    pub attempts_per_ip_per_minute: u32,
    /// Attempts per minute on one e-mail address, from any address (default 10).
    pub attempts_per_account_per_minute: u32,
    /// Consecutive failed sign-ins on one e-mail address after which it is locked (default 5).
    /// Known and unknown addresses are treated alike, so a lockout says nothing about whether
    /// an account exists.
    pub lockout_after_failures: u32,
    /// First lockout, in seconds (default 30); doubled at each further failure.
    pub lockout_base_s: u64,
    /// Longest lockout, in seconds (default 900).
    pub lockout_max_s: u64,
    /// Password hashes (argon2id, 19 MiB and a core each) computed at the same time; `0`
    /// (default): the number of cores. A sign-in or sign-up that finds none free within
    /// 500 ms gets 503 with `Retry-After`.
    pub max_concurrent_hashes: usize,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "***"))
            .field("access_token_ttl_s", &self.access_token_ttl_s)
            .field("refresh_token_ttl_s", &self.refresh_token_ttl_s)
            .field("session_max_s", &self.session_max_s)
            .field("pseudonym_key", &self.pseudonym_key.as_ref().map(|_| "***"))
            .field("trusted_issuers", &self.trusted_issuers)
            .field(
                "attempts_per_ip_per_minute",
                &self.attempts_per_ip_per_minute,
            )
            .field(
                "attempts_per_account_per_minute",
                &self.attempts_per_account_per_minute,
            )
            .field("lockout_after_failures", &self.lockout_after_failures)
            .field("lockout_base_s", &self.lockout_base_s)
            .field("lockout_max_s", &self.lockout_max_s)
            .field("max_concurrent_hashes", &self.max_concurrent_hashes)
            .finish()
    }
}

impl AuthSettings {
    /// Checks every trusted issuer ([`TrustedIssuerSettings::validate`]) and that no issuer is
    /// configured twice.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the entry (`auth.trusted_issuers[i]`) and the rule broken.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, issuer) in self.trusted_issuers.iter().enumerate() {
            let invalid = |reason: String| {
                ConfigError::Invalid(format!("auth.trusted_issuers[{i}]: {reason}"))
            };
            issuer.validate().map_err(invalid)?;
            if self.trusted_issuers[..i]
                .iter()
                .any(|other| other.issuer == issuer.issuer)
            {
                return Err(invalid(format!(
                    "issuer {:?} is configured twice",
                    issuer.issuer
                )));
            }
        }
        Ok(())
    }
}

/// The issuer Lethe puts in its own access tokens; no trusted issuer may use it.
pub const LETHE_ISSUER: &str = "lethe";

/// One identity provider of the company's own app: JWTs (RFC 7519) it signs with `RS256`,
/// `ES256` or `EdDSA` (RFC 7518 §3, RFC 8037) identify a data subject by one claim (`sub` by
/// default), and may be used as bearer tokens for Lethe in place of a Lethe account.
///
/// Exactly one key source: `jwks_file`, `jwks_url` (a JWK Set, RFC 7517 §5) or
/// `public_key_pem` (with `algorithm`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuerSettings {
    /// Must equal the token's `iss` claim exactly, e.g. `https://login.example.com/`.
    pub issuer: String,
    /// Must be one of the token's `aud` values, e.g. `lethe`.
    pub audience: String,
    /// A file holding the issuer's JWK Set (`{"keys": [...]}`), read once at start.
    pub jwks_file: Option<PathBuf>,
    /// An `https://` URL serving the issuer's JWK Set (`http://` only for a loopback host).
    /// Fetched with a 5 s timeout, cached, refreshed every 10 minutes and when a token names
    /// an unknown `kid` (at most once per 30 s); never fetched per request.
    pub jwks_url: Option<String>,
    /// The issuer's one public key as PEM text (`-----BEGIN PUBLIC KEY-----…`); needs
    /// `algorithm`.
    pub public_key_pem: Option<String>,
    /// The algorithm of `public_key_pem`: `RS256`, `ES256` or `EdDSA`. Not allowed with a JWK
    /// Set, whose keys say what they are.
    pub algorithm: Option<JwtAlgorithm>,
    /// Clock skew allowed when checking `exp` and `nbf`, in seconds (default 60).
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u64,
    /// The claim holding the subject id (default `sub`); its value must be a string that
    /// passes [`crate::domain::SubjectId::parse`].
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
}

fn default_leeway_s() -> u64 {
    60
}

fn default_subject_claim() -> String {
    "sub".into()
}

/// The asymmetric JWS algorithms accepted from trusted issuers. HMAC (`HS*`) never is: its key
/// is a shared secret, and accepting it would let anyone holding the public key forge tokens
/// (algorithm confusion); `none` never is either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3).
    RS256,
    /// ECDSA on P-256 with SHA-256 (RFC 7518 §3.4).
    ES256,
    /// Ed25519 (RFC 8037 §3.1).
    EdDSA,
}

impl TrustedIssuerSettings {
    /// Checks the entry on its own: non-empty `issuer` (not Lethe's own `lethe`), `audience`
    /// and `subject_claim`; exactly one key source; `algorithm` given with `public_key_pem`
    /// and only then; a `jwks_url` that is `https://` (or `http://` on a loopback host). Key
    /// files and PEM text are read and parsed when the service starts.
    ///
    /// # Errors
    /// A sentence saying which rule the entry breaks.
    pub fn validate(&self) -> Result<(), String> {
        if self.issuer.trim().is_empty() {
            return Err("issuer must not be empty".into());
        }
        if self.issuer == LETHE_ISSUER {
            return Err(format!(
                "issuer {LETHE_ISSUER:?} is Lethe's own; a trusted issuer must have another name"
            ));
        }
        if self.audience.trim().is_empty() {
            return Err(format!(
                "issuer {:?}: audience must not be empty",
                self.issuer
            ));
        }
        if self.subject_claim.trim().is_empty() {
            return Err(format!(
                "issuer {:?}: subject_claim must not be empty",
                self.issuer
            ));
        }
        let sources = [
            self.jwks_file.is_some(),
            self.jwks_url.is_some(),
            self.public_key_pem.is_some(),
        ]
        .into_iter()
        .filter(|given| *given)
        .count();
        if sources != 1 {
            return Err(format!(
                "issuer {:?}: give exactly one of jwks_file, jwks_url, public_key_pem (found {sources})",
                self.issuer
            ));
        }
        match (&self.public_key_pem, self.algorithm) {
            (Some(_), None) => {
                return Err(format!(
                    "issuer {:?}: public_key_pem needs algorithm = \"RS256\", \"ES256\" or \"EdDSA\"",
                    self.issuer
                ));
            }
            (None, Some(_)) => {
                return Err(format!(
                    "issuer {:?}: algorithm applies to public_key_pem only; a JWK Set names each key's algorithm",
                    self.issuer
                ));
            }
            _ => {}
        }
        if let Some(url) = &self.jwks_url {
            check_jwks_url(url).map_err(|e| format!("issuer {:?}: jwks_url {e}", self.issuer))?;
        }
        Ok(())
    }
}

/// `https://…`, or `http://` to `localhost`, `127.0.0.1` or `::1` (a sidecar, a test).
fn check_jwks_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(host)) => host == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(format!("{url:?} has no host")),
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!(
            "{url:?} must use https (plain http only to a loopback host)"
        )),
        other => Err(format!("{url:?}: unsupported scheme {other:?}")),
    }
}

/// Reads `auth.trusted_issuers` either as a list (TOML `[[auth.trusted_issuers]]`) or as one
/// string holding a JSON array (the only practical form for an environment variable).
fn trusted_issuers_from_list_or_json<'de, D>(
    deserializer: D,
) -> Result<Vec<TrustedIssuerSettings>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(text) if text.trim().is_empty() => Ok(Vec::new()),
        serde_json::Value::String(text) => serde_json::from_str(&text)
            .map_err(|e| D::Error::custom(format!("a JSON array of trusted issuers: {e}"))),
        value => serde_json::from_value(value).map_err(D::Error::custom),
    }
}

fn default_job_concurrency() -> usize {
    4
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
    /// at least 1. Each job holds about one row group in memory.
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

const DEFAULTS: &str = r#"
[server]
host = "127.0.0.1"
port = 8080
max_body_bytes = 1048576
trust_forwarded_for = false
body_timeout_s = 60

[database]
url = "sqlite://./lethe-data/lethe.db"
max_connections = 8

[storage]
data_dir = "./lethe-data"

[auth]
access_token_ttl_s = 900
refresh_token_ttl_s = 1209600
session_max_s = 2592000
attempts_per_ip_per_minute = 30
attempts_per_account_per_minute = 10
lockout_after_failures = 5
lockout_base_s = 30
lockout_max_s = 900
max_concurrent_hashes = 0

[worker]
in_process = true
poll_interval_ms = 500
lease_s = 60
max_attempts = 5
file_concurrency = 2
job_concurrency = 4
erasure_batch_window_s = 0

[log]
format = "pretty"
filter = "info"

[crypto]

[ingest]
max_body_bytes = 67108864

[webhooks]
max_attempts = 8
poll_interval_ms = 1000
timeout_s = 10
retry_base_ms = 10000
retry_max_s = 3600
allow_private_networks = false

[mail]
from = "Lethe <lethe@localhost>"
code_ttl_s = 900
code_max_attempts = 5

[audit]
checkpoint_every_entries = 1000
checkpoint_every_s = 60

[requests]
access_approval = "review"
erasure_approval = "review"
portability_approval = "review"
rectification_approval = "review"
restriction_approval = "review"
erasure_cooling_off_s = 0
export_ttl_s = 604800
max_open_per_type = 3
"#;

impl Settings {
    /// Loads defaults, then `lethe.toml` (or the file named by `LETHE_CONFIG`) if present, then
    /// `LETHE__SECTION__KEY` environment variables (e.g. `LETHE__SERVER__PORT=9000`).
    ///
    /// # Errors
    /// [`ConfigError::Load`] when a file is malformed or a value has the wrong type;
    /// [`ConfigError::Invalid`] when a value breaks a rule.
    pub fn load() -> Result<Self, ConfigError> {
        let file = std::env::var("LETHE_CONFIG").unwrap_or_else(|_| "lethe.toml".into());
        Self::load_from(Some(Path::new(&file)))
    }

    /// Like [`Settings::load`] with an explicit file (`None`: defaults and environment only).
    ///
    /// # Errors
    /// [`ConfigError::Load`] when a file is malformed or a value has the wrong type;
    /// [`ConfigError::Invalid`] when a value breaks a rule (see [`AuthSettings::validate`]).
    pub fn load_from(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, None)
    }

    /// [`Settings::load_from`] with the environment taken from `env` instead of the process
    /// (`None`: the process environment), so tests need not change process-wide variables.
    fn load_with_env(
        file: Option<&Path>,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(file) = file {
            builder = builder.add_source(config::File::from(file).required(false));
        }
        let settings = builder
            .add_source(
                config::Environment::with_prefix("LETHE")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(env),
            )
            .build()?;
        let settings: Self = settings.try_deserialize()?;
        settings.auth.validate()?;
        settings.check_secrets()?;
        Ok(settings)
    }

    /// Refuses configured secrets that anybody could know or guess: `auth.jwt_secret`,
    /// `auth.pseudonym_key`, `crypto.subject_key` (text, at least 32 bytes) and `crypto.kek`
    /// (base64 of 32 bytes) must not hold a placeholder, repeat a short pattern or look
    /// predictable ([`check_text_secret`]). Unset secrets are generated into files under
    /// `data_dir` (the embedded default) and need no check here.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the setting and the rule it breaks, never its value.
    pub fn check_secrets(&self) -> Result<(), ConfigError> {
        let weak = |name: &str, e: WeakSecret| {
            ConfigError::Invalid(format!(
                "{name} {e}; refusing to start with a secret that could be known or guessed"
            ))
        };
        let texts = [
            ("auth.jwt_secret", &self.auth.jwt_secret),
            ("auth.pseudonym_key", &self.auth.pseudonym_key),
            ("crypto.subject_key", &self.crypto.subject_key),
        ];
        for (name, secret) in texts {
            if let Some(secret) = secret {
                check_text_secret(secret.expose_secret()).map_err(|e| weak(name, e))?;
            }
        }
        if let Some(kek) = &self.crypto.kek {
            check_base64_secret(kek.expose_secret()).map_err(|e| weak("crypto.kek", e))?;
        }
        Ok(())
    }

    /// Defaults with every path under `data_dir` and a SQLite database there; used by tests
    /// and the demo.
    pub fn embedded(data_dir: &Path) -> Self {
        let mut settings = Self::load_from(None).expect("built-in defaults parse");
        settings.storage.data_dir = data_dir.to_path_buf();
        settings.database.url =
            SecretString::from(format!("sqlite://{}/lethe.db", data_dir.display()));
        settings
    }
}

/// Reads a secret from `path`, or creates it with 32 random bytes (hex) when missing.
/// The file is created with mode 0600 on Unix.
///
/// # Errors
/// [`ConfigError::SecretFile`] when the file cannot be read or written;
/// [`ConfigError::Invalid`] when it holds a weak secret ([`check_text_secret`]).
pub fn load_or_create_secret(path: &Path) -> Result<SecretString, ConfigError> {
    use rand::RngCore;
    let wrap = |source| ConfigError::SecretFile {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            check_text_secret(&text).map_err(|e| {
                ConfigError::Invalid(format!(
                    "secret file {} {e}; delete it to have a new one generated",
                    path.display()
                ))
            })?;
            return Ok(SecretString::from(text.trim().to_string()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(wrap(e)),
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(wrap)?;
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    let mut file = options.open(path).map_err(wrap)?;
    file.write_all(secret.as_bytes()).map_err(wrap)?;
    tracing::warn!(path = %path.display(), "generated a new secret file; back it up");
    Ok(SecretString::from(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_mode() {
        let s = Settings::load_from(None).unwrap();
        assert_eq!(s.server.port, 8080);
        assert!(s.database.url.expose_secret().starts_with("sqlite:"));
        assert!(s.worker.in_process);
        assert_eq!(s.ingest.max_body_bytes, 64 * 1024 * 1024);
        assert_eq!(
            s.storage.exports_dir(),
            PathBuf::from("./lethe-data/exports")
        );
    }

    #[test]
    fn a_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lethe.toml");
        std::fs::write(&file, "[server]\nport = 9999\n[worker]\nlease_s = 5\n").unwrap();
        let s = Settings::load_from(Some(&file)).unwrap();
        assert_eq!(s.server.port, 9999);
        assert_eq!(s.worker.lease_s, 5);
        assert_eq!(
            s.worker.poll_interval_ms, 500,
            "untouched keys keep defaults"
        );
    }

    #[test]
    fn debug_hides_the_database_password() {
        let mut s = Settings::load_from(None).unwrap();
        s.database.url = SecretString::from("postgres://lethe:hunter2@db:5432/lethe".to_string());
        let text = format!("{:?}", s.database);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("***"));
    }

    fn issuer_toml(extra: &str) -> String {
        format!(
            "[[auth.trusted_issuers]]\nissuer = \"https://login.example.com/\"\naudience = \"lethe\"\n{extra}\n"
        )
    }

    fn load_toml(text: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lethe.toml");
        std::fs::write(&file, text).unwrap();
        Settings::load_with_env(Some(&file), Some(Default::default()))
    }

    #[test]
    fn audit_checkpoints_default_to_the_data_dir_and_read_the_environment() {
        let s = Settings::load_with_env(None, Some(Default::default())).unwrap();
        assert_eq!(s.audit.checkpoint_every_entries, 1000);
        assert_eq!(s.audit.checkpoint_every_s, 60);
        assert!(s.audit.previous_public_keys.is_empty());
        assert_eq!(s.audit.checkpoint_retention_days, None);
        assert!(
            s.audit
                .checkpoint_location(Path::new("/d"))
                .ends_with("/d/audit-checkpoints")
        );
        assert_eq!(
            s.audit.signing_key_path(Path::new("/d")),
            PathBuf::from("/d/audit-signing.key")
        );
        let env = [
            ("LETHE__AUDIT__CHECKPOINT_URL", "s3://bucket/audit"),
            ("LETHE__AUDIT__CHECKPOINT_EVERY_ENTRIES", "50"),
            ("LETHE__AUDIT__CHECKPOINT_RETENTION_DAYS", "3650"),
            ("LETHE__AUDIT__PREVIOUS_PUBLIC_KEYS", "a2V5MQ==, a2V5Mg=="),
        ];
        let env = env
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let s = Settings::load_with_env(None, Some(env)).unwrap();
        assert_eq!(
            s.audit.checkpoint_location(Path::new("/d")),
            "s3://bucket/audit"
        );
        assert_eq!(s.audit.checkpoint_every_entries, 50);
        assert_eq!(s.audit.checkpoint_retention_days, Some(3650));
        assert_eq!(s.audit.previous_public_keys, ["a2V5MQ==", "a2V5Mg=="]);
    }

    #[test]
    fn no_trusted_issuers_by_default() {
        let s = Settings::load_with_env(None, Some(Default::default())).unwrap();
        assert!(s.auth.trusted_issuers.is_empty());
    }

    #[test]
    fn a_trusted_issuer_loads_from_toml_with_defaults() {
        let s = load_toml(&issuer_toml(
            "jwks_url = \"https://login.example.com/jwks.json\"",
        ))
        .unwrap();
        let issuer = &s.auth.trusted_issuers[0];
        assert_eq!(issuer.issuer, "https://login.example.com/");
        assert_eq!(issuer.audience, "lethe");
        assert_eq!(issuer.leeway_s, 60);
        assert_eq!(issuer.subject_claim, "sub");
        assert_eq!(issuer.algorithm, None);
    }

    #[test]
    fn a_public_key_issuer_names_its_algorithm() {
        let s = load_toml(&issuer_toml(
            "public_key_pem = \"\"\"\n-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n\"\"\"\nalgorithm = \"EdDSA\"\nleeway_s = 5\nsubject_claim = \"user_id\"",
        ))
        .unwrap();
        let issuer = &s.auth.trusted_issuers[0];
        assert_eq!(issuer.algorithm, Some(JwtAlgorithm::EdDSA));
        assert_eq!(
            (issuer.leeway_s, issuer.subject_claim.as_str()),
            (5, "user_id")
        );
    }

    #[test]
    fn trusted_issuers_load_from_one_environment_variable_of_json() {
        let env = [(
            "LETHE__AUTH__TRUSTED_ISSUERS".to_string(),
            r#"[{"issuer": "https://login.example.com/", "audience": "lethe", "jwks_file": "/etc/lethe/jwks.json", "leeway_s": 30}]"#.to_string(),
        )];
        let s = Settings::load_with_env(None, Some(env.into_iter().collect())).unwrap();
        let issuer = &s.auth.trusted_issuers[0];
        assert_eq!(
            issuer.jwks_file.as_deref(),
            Some(Path::new("/etc/lethe/jwks.json"))
        );
        assert_eq!(issuer.leeway_s, 30);
    }

    fn invalid(result: Result<Settings, ConfigError>) -> String {
        match result {
            Err(e) => e.to_string(),
            Ok(_) => panic!("the configuration should have been refused"),
        }
    }

    #[test]
    fn an_unknown_algorithm_is_refused() {
        let text = invalid(load_toml(&issuer_toml(
            "public_key_pem = \"-----BEGIN PUBLIC KEY-----\"\nalgorithm = \"HS256\"",
        )));
        assert!(text.contains("unknown variant `HS256`"), "{text}");
        assert!(text.contains("RS256"), "{text}");
    }

    #[test]
    fn two_key_sources_are_refused() {
        let text = invalid(load_toml(&issuer_toml(
            "jwks_file = \"/etc/jwks.json\"\njwks_url = \"https://login.example.com/jwks.json\"",
        )));
        assert!(text.contains("auth.trusted_issuers[0]"), "{text}");
        assert!(
            text.contains("exactly one of jwks_file, jwks_url, public_key_pem (found 2)"),
            "{text}"
        );
    }

    #[test]
    fn no_key_source_is_refused() {
        let text = invalid(load_toml(&issuer_toml("")));
        assert!(text.contains("(found 0)"), "{text}");
    }

    #[test]
    fn a_pem_without_algorithm_and_an_algorithm_without_pem_are_refused() {
        let text = invalid(load_toml(&issuer_toml(
            "public_key_pem = \"-----BEGIN PUBLIC KEY-----\"",
        )));
        assert!(text.contains("public_key_pem needs algorithm"), "{text}");
        let text = invalid(load_toml(&issuer_toml(
            "jwks_file = \"/etc/jwks.json\"\nalgorithm = \"RS256\"",
        )));
        assert!(
            text.contains("algorithm applies to public_key_pem only"),
            "{text}"
        );
    }

    #[test]
    fn plain_http_jwks_urls_are_refused_unless_loopback() {
        let text = invalid(load_toml(&issuer_toml(
            "jwks_url = \"http://login.example.com/jwks.json\"",
        )));
        assert!(text.contains("must use https"), "{text}");
        for ok in [
            "http://127.0.0.1:9000/jwks.json",
            "http://localhost/jwks.json",
            "http://[::1]/jwks",
        ] {
            load_toml(&issuer_toml(&format!("jwks_url = \"{ok}\""))).unwrap();
        }
        let text = invalid(load_toml(&issuer_toml("jwks_url = \"not a url\"")));
        assert!(text.contains("is not a URL"), "{text}");
    }

    #[test]
    fn lethes_own_issuer_duplicates_and_unknown_keys_are_refused() {
        let text = invalid(load_toml(
            "[[auth.trusted_issuers]]\nissuer = \"lethe\"\naudience = \"lethe\"\njwks_file = \"/j\"\n",
        ));
        assert!(text.contains("Lethe's own"), "{text}");
        let twice = format!(
            "{}{}",
            issuer_toml("jwks_file = \"/a\""),
            issuer_toml("jwks_file = \"/b\"")
        );
        let text = invalid(load_toml(&twice));
        assert!(
            text.contains("auth.trusted_issuers[1]") && text.contains("configured twice"),
            "{text}"
        );
        let text = invalid(load_toml(&issuer_toml(
            "jwks_file = \"/a\"\njwks_uri = \"/b\"",
        )));
        assert!(text.contains("unknown field `jwks_uri`"), "{text}");
    }

    #[test]
    fn secrets_are_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/jwt.key");
        let a = load_or_create_secret(&path).unwrap();
        let b = load_or_create_secret(&path).unwrap();
        assert_eq!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().len(), 64);
    }
}
