//! Loading the settings: the built-in defaults (the embedded mode), `lethe.toml`, then
//! `LETHE__SECTION__KEY` variables; and the secret files generated on first start.

use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

use super::*;

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
job_concurrency = 6
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
    pub(super) fn load_with_env(
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
