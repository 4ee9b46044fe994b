//! Layered configuration: built-in defaults → `lethe.toml` → `LETHE__SECTION__KEY` variables.
//!
//! The defaults are the embedded mode: everything under `./lethe-data/` (SQLite database, the
//! demo lake, exports, generated secrets), the worker in-process, the service on 127.0.0.1:8080.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

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
    /// Key of the HMAC that turns subject ids into pseudonyms for the audit log. When absent,
    /// generated into `<data_dir>/pseudonym.key` on first start. Changing it breaks the link
    /// between old and new audit entries of the same subject.
    pub pseudonym_key: Option<SecretString>,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "***"))
            .field("access_token_ttl_s", &self.access_token_ttl_s)
            .field("pseudonym_key", &self.pseudonym_key.as_ref().map(|_| "***"))
            .finish()
    }
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
    /// Approved erasures wait this long (seconds) before they run, so that erasures approved
    /// within the window are applied in one pass per file. `0` (embedded default): at once;
    /// production might use a day (`86400`).
    pub erasure_batch_window_s: u64,
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

[database]
url = "sqlite://./lethe-data/lethe.db"
max_connections = 8

[storage]
data_dir = "./lethe-data"

[auth]
access_token_ttl_s = 900

[worker]
in_process = true
poll_interval_ms = 500
lease_s = 60
max_attempts = 5
file_concurrency = 2
erasure_batch_window_s = 0

[log]
format = "pretty"
filter = "info"

[crypto]

[ingest]
max_body_bytes = 67108864
"#;

impl Settings {
    /// Loads defaults, then `lethe.toml` (or the file named by `LETHE_CONFIG`) if present, then
    /// `LETHE__SECTION__KEY` environment variables (e.g. `LETHE__SERVER__PORT=9000`).
    ///
    /// # Errors
    /// [`ConfigError::Load`] when a file is malformed or a value has the wrong type.
    pub fn load() -> Result<Self, ConfigError> {
        let file = std::env::var("LETHE_CONFIG").unwrap_or_else(|_| "lethe.toml".into());
        Self::load_from(Some(Path::new(&file)))
    }

    /// Like [`Settings::load`] with an explicit file (`None`: defaults and environment only).
    ///
    /// # Errors
    /// [`ConfigError::Load`] when a file is malformed or a value has the wrong type.
    pub fn load_from(file: Option<&Path>) -> Result<Self, ConfigError> {
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
                    .try_parsing(true),
            )
            .build()?;
        Ok(settings.try_deserialize()?)
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
/// [`ConfigError::SecretFile`] when the file cannot be read or written.
pub fn load_or_create_secret(path: &Path) -> Result<SecretString, ConfigError> {
    use rand::RngCore;
    let wrap = |source| ConfigError::SecretFile {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(SecretString::from(text.trim().to_string())),
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
