//! Password hashing with argon2id at the OWASP parameters (m = 19 MiB, t = 2, p = 1).
//!
//! Hashing costs ~tens of milliseconds of CPU, so callers run it on the blocking pool
//! ([`hash_password`] and [`verify_password`] do that themselves).

use std::sync::Mutex;

use argon2::password_hash::{
    Output, ParamsString, PasswordHash, PasswordVerifier, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};

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

/// Most 19 MiB work areas kept for reuse (more concurrent hashes allocate and free their own).
const MAX_POOLED_AREAS: usize = 32;

/// argon2id work areas kept between hashes. Allocating and freeing 19 MiB per hash makes
/// glibc raise its mmap threshold and then serve these blocks from per-thread arenas that
/// are never given back: RSS grew by the gigabyte under a sign-in flood even with few hashes
/// at a time. Reused areas keep memory at (hashes at once) x 19 MiB.
static WORK_AREAS: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Runs `f` with a work area of `blocks` blocks, from the pool when one of that size is free.
fn with_work_area<R>(blocks: usize, f: impl FnOnce(&mut [Block]) -> R) -> R {
    let pooled = WORK_AREAS
        .lock()
        .map(|mut pool| pool.pop())
        .unwrap_or(None)
        .filter(|area| area.len() == blocks);
    let mut area = pooled.unwrap_or_else(|| vec![Block::default(); blocks]);
    let result = f(&mut area);
    if let Ok(mut pool) = WORK_AREAS.lock()
        && pool.len() < MAX_POOLED_AREAS
    {
        pool.push(area);
    }
    result
}

/// The argon2id output of `password` with `salt` under `hasher`, in a pooled work area.
fn hash_in_pool(
    hasher: &Argon2<'_>,
    password: &[u8],
    salt: &argon2::password_hash::Salt<'_>,
) -> Result<Output, argon2::password_hash::Error> {
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let output_len = hasher
        .params()
        .output_len()
        .unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    with_work_area(hasher.params().block_count(), |area| {
        Output::init_with(output_len, |out| {
            Ok(hasher.hash_password_into_with_memory(password, salt_bytes, out, area)?)
        })
    })
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
        let hasher = argon2();
        let hash = |salt: argon2::password_hash::Salt<'_>| {
            let output = hash_in_pool(&hasher, password.as_bytes(), &salt)?;
            Ok::<_, argon2::password_hash::Error>(
                PasswordHash {
                    algorithm: Algorithm::Argon2id.ident(),
                    version: Some(Version::V0x13.into()),
                    params: ParamsString::try_from(hasher.params())?,
                    salt: Some(salt),
                    hash: Some(output),
                }
                .to_string(),
            )
        };
        hash(salt.as_salt()).map_err(|e| PasswordError::Hash(e.to_string()))
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
        verify_in_pool(password.as_bytes(), &parsed) && known
    })
    .await
    .unwrap_or(false)
}

/// Whether `password` matches `parsed`: in a pooled work area when the hash has Lethe's
/// parameters (argon2id v19, m = 19 MiB, t = 2, p = 1), otherwise through the argon2 crate's
/// own verifier (which allocates its own work area).
fn verify_in_pool(password: &[u8], parsed: &PasswordHash<'_>) -> bool {
    let ours = argon2();
    let params = Params::try_from(parsed).ok().filter(|p| {
        parsed.algorithm == Algorithm::Argon2id.ident()
            && parsed.version == Some(Version::V0x13.into())
            && p.m_cost() == ours.params().m_cost()
            && p.t_cost() == ours.params().t_cost()
            && p.p_cost() == ours.params().p_cost()
    });
    match (params, &parsed.salt, &parsed.hash) {
        (Some(params), Some(salt), Some(expected)) => {
            // The stored hash's own output length; `Output`'s equality is constant-time.
            let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
            hash_in_pool(&hasher, password, salt).is_ok_and(|computed| computed == *expected)
        }
        _ => ours.verify_password(password, parsed).is_ok(),
    }
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
    async fn pooled_hashes_verify_with_the_crates_own_verifier_and_back() {
        let hash = hash_password("correct horse battery".into()).await.unwrap();
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(
            argon2()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
        use argon2::password_hash::PasswordHasher;
        let salt = SaltString::generate(&mut OsRng);
        let theirs = argon2()
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password("correct horse battery".into(), Some(theirs.clone())).await);
        assert!(!verify_password("wrong horse battery".into(), Some(theirs)).await);
        // Lethe's own hashes (and the dummy one) take the pooled path.
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        assert!(Params::try_from(&parsed).unwrap().m_cost() == 19 * 1024);
        // Other parameters go through the crate's verifier.
        let weaker = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"correct horse battery", &salt)
        .unwrap()
        .to_string();
        assert!(verify_password("correct horse battery".into(), Some(weaker)).await);
    }

    #[tokio::test]
    async fn short_passwords_are_refused() {
        assert!(matches!(
            hash_password("short".into()).await,
            Err(PasswordError::Policy(_))
        ));
    }
}
