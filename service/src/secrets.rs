//! `lethe-service secrets generate`: a `.env` file with fresh random values for every secret
//! `docker-compose.yml` requires, so no deployment starts with a value anybody could know.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use base64::Engine as _;
use rand::RngCore;

/// The variables written, in order, with what each value is.
const VARIABLES: &[(&str, Kind)] = &[
    ("POSTGRES_PASSWORD", Kind::Hex),
    ("MINIO_ROOT_USER", Kind::User),
    ("MINIO_ROOT_PASSWORD", Kind::Hex),
    ("LETHE_JWT_SECRET", Kind::Hex),
    ("LETHE_PSEUDONYM_KEY", Kind::Hex),
    ("LETHE_KEK", Kind::Base64),
    ("LETHE_SUBJECT_KEY", Kind::Hex),
    // The Ed25519 seed of audit checkpoints and erasure certificates (rotated with
    // `audit.previous_public_keys`, never shared with the database).
    ("LETHE_AUDIT_SIGNING_KEY", Kind::Base64),
];

#[derive(Clone, Copy)]
enum Kind {
    /// 32 random bytes as 64 hex digits (safe in a URL, e.g. the database password).
    Hex,
    /// 32 random bytes as standard base64 (the KEK's format).
    Base64,
    /// A user name with a random suffix.
    User,
}

fn value(kind: Kind) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    match kind {
        Kind::Hex => hex_encode(&bytes),
        Kind::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
        Kind::User => format!("lethe-{}", &hex_encode(&bytes)[..12]),
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The text of a fresh `.env` file.
pub fn env_file_text() -> String {
    let mut text = String::from(
        "# Written by `lethe-service secrets generate`. Keep this file private (mode 0600) and back\n\
         # it up: LETHE_PSEUDONYM_KEY, LETHE_KEK and LETHE_SUBJECT_KEY must never change once data\n\
         # is held (audit pseudonyms, wrapped data keys and tombstones depend on them).\n",
    );
    for (name, kind) in VARIABLES {
        text.push_str(&format!("{name}={}\n", value(*kind)));
    }
    text
}

/// Writes a fresh `.env` file at `path` with mode 0600. An existing file is never overwritten:
/// replacing the keys of a deployment that holds data would make it unreadable.
///
/// # Errors
/// When `path` exists or cannot be written.
pub fn generate(path: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists; it is never overwritten (its keys may already protect data). Move it away first to start afresh",
                path.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("creating {}", path.display()))
        }
    })?;
    file.write_all(env_file_text().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_value_passes_the_startup_checks() {
        let text = env_file_text();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.split_once('=').unwrap();
            match name {
                "LETHE_KEK" => lethe_core::config::check_base64_secret(value).unwrap(),
                "LETHE_AUDIT_SIGNING_KEY" => {
                    lethe_core::audit::signing::AuditSigner::from_base64(value).unwrap();
                }
                "MINIO_ROOT_USER" => assert!(value.starts_with("lethe-")),
                _ => lethe_core::config::check_text_secret(value).unwrap(),
            }
        }
        assert_ne!(text, env_file_text(), "fresh values every time");
    }
}
