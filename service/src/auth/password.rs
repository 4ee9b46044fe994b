//! Password hashing with argon2id at the OWASP parameters (m = 19 MiB, t = 2, p = 1).
//!
//! Hashing costs ~tens of milliseconds of CPU, so callers run it on the blocking pool
//! ([`hash_password`] and [`verify_password`] do that themselves).

use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Params, Version};

/// Password hashing failed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The password breaks the policy (length).
    #[error("{0}")]
    Policy(String),
    /// The hasher failed (bad stored hash, or the blocking task died).
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Minimum password length in characters (NIST SP 800-63B §5.1.1.2 asks for at least 8).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Maximum password length in bytes, so a huge body cannot burn CPU.
pub const MAX_PASSWORD_BYTES: usize = 1024;

fn argon2() -> Argon2<'static> {
    // OWASP Password Storage Cheat Sheet: argon2id, m=19456 KiB, t=2, p=1.
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks the policy and returns the PHC string of the argon2id hash.
///
/// # Errors
/// [`PasswordError::Policy`] for a too short or too long password.
pub async fn hash_password(password: String) -> Result<String, PasswordError> {
    hash_password_holding(password, ()).await
}

/// [`hash_password`] that keeps `guard` (e.g. a hashing slot) alive until the hash is done,
/// even when the caller stops waiting (a client that hangs up does not free the slot early).
///
/// # Errors
/// As [`hash_password`].
pub async fn hash_password_holding<G: Send + 'static>(
    password: String,
    guard: G,
) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordError::Policy(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::Policy(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    tokio::task::spawn_blocking(move || {
        let _guard = guard;
        let salt = SaltString::generate(&mut OsRng);
        argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Hash(e.to_string()))
    })
    .await
    .map_err(|e| PasswordError::Hash(e.to_string()))?
}

/// A valid hash of a random password, verified against when the account does not exist, so
/// that login takes as long for unknown e-mails as for wrong passwords.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$L9ozUMWcY6IfOCVPmJ0qVKvM9+mV0JH6JxYRTZz3J3Q";

/// Whether `password` matches `stored` (a PHC string). `None` for `stored` burns the same time
/// and returns `false`.
pub async fn verify_password(password: String, stored: Option<String>) -> bool {
    verify_password_holding(password, stored, ()).await
}

/// [`verify_password`] that keeps `guard` alive until the hash is done (see
/// [`hash_password_holding`]).
pub async fn verify_password_holding<G: Send + 'static>(
    password: String,
    stored: Option<String>,
    guard: G,
) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let known = stored.is_some();
    let stored = stored.unwrap_or_else(|| DUMMY_HASH.to_string());
    tokio::task::spawn_blocking(move || {
        let _guard = guard;
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && known
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse battery".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password("correct horse battery".into(), Some(hash.clone())).await);
        assert!(!verify_password("wrong horse battery".into(), Some(hash)).await);
        assert!(!verify_password("anything".into(), None).await);
    }

    #[tokio::test]
    async fn short_passwords_are_refused() {
        assert!(matches!(
            hash_password("short".into()).await,
            Err(PasswordError::Policy(_))
        ));
    }
}
