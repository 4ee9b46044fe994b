//! Webhook signing secrets at rest. A dispatcher needs the secret itself to sign (HMAC-SHA256),
//! so it cannot be stored as a hash; it is stored **sealed under the KEK** instead, as a
//! [sealed blob](crate::keyring::Keyring::seal_blob) bound to the endpoint's URL:
//!
//! ```text
//! "sealed:v1:" ‖ base64(blob sealed for "webhook-secret:" ‖ url)
//! ```
//!
//! A copy of the database alone therefore does not let anyone forge events, and a row whose
//! URL was changed behind Lethe's back (pointing a receiver's secret at another host) no longer
//! opens: its deliveries fail rather than sign for the wrong receiver. Rows written before
//! sealing hold the `whsec_…` secret itself; they are still read, and [`reseal_secrets`] (run
//! at service start and by `lethe-service keys rotate-kek`) seals them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::SECRET_PREFIX;
use crate::keyring::{Keyring, KeyringError};
use crate::store::{Store, StoreResult};

/// First characters of a sealed secret as stored.
pub const SEALED_SECRET_PREFIX: &str = "sealed:v1:";

fn context(url: &str) -> String {
    format!("webhook-secret:{url}")
}

/// The stored form of `secret` for the endpoint at `url`: sealed under the keyring's current
/// KEK, about 330 characters.
///
/// # Panics
/// If the operating system's random generator fails.
pub fn seal_secret(keyring: &Keyring, url: &str, secret: &SecretString) -> String {
    let sealed = keyring.seal_blob(&context(url), secret.expose_secret().as_bytes());
    encode(&sealed)
}

/// The signing secret of the endpoint at `url` from its stored form (sealed, or a plain
/// `whsec_…` secret in a row written before sealing).
///
/// # Errors
/// [`KeyringError::UnwrapFailed`] when the stored value is neither, was tampered with, or was
/// sealed for another URL; [`KeyringError::UnknownKek`] when it was sealed under a KEK this
/// keyring does not hold.
pub fn open_secret(
    keyring: &Keyring,
    url: &str,
    stored: &str,
) -> Result<SecretString, KeyringError> {
    if stored.starts_with(SECRET_PREFIX) {
        return Ok(SecretString::from(stored));
    }
    let sealed = decode(stored)?;
    let plain = keyring.open_blob(&context(url), &sealed)?;
    String::from_utf8(plain)
        .map(SecretString::from)
        .map_err(|_| KeyringError::UnwrapFailed)
}

/// The stored form re-sealed under the keyring's current KEK: a plain secret is sealed, a
/// sealed one has its key re-wrapped (the ciphertext is kept). `None` when it already is.
///
/// # Errors
/// As [`open_secret`].
pub fn reseal_secret(
    keyring: &Keyring,
    url: &str,
    stored: &str,
) -> Result<Option<String>, KeyringError> {
    if stored.starts_with(SECRET_PREFIX) {
        return Ok(Some(seal_secret(keyring, url, &SecretString::from(stored))));
    }
    let sealed = decode(stored)?;
    Ok(keyring
        .rewrap_blob(&context(url), &sealed)?
        .map(|blob| encode(&blob)))
}

/// The stored form of a sealed blob; [`decode`] reverses it.
fn encode(sealed: &[u8]) -> String {
    format!("{SEALED_SECRET_PREFIX}{}", STANDARD.encode(sealed))
}

fn decode(stored: &str) -> Result<Vec<u8>, KeyringError> {
    let encoded = stored
        .strip_prefix(SEALED_SECRET_PREFIX)
        .ok_or(KeyringError::UnwrapFailed)?;
    STANDARD
        .decode(encoded)
        .map_err(|_| KeyringError::UnwrapFailed)
}

/// What [`reseal_secrets`] did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SecretResealReport {
    /// Endpoints whose secret was sealed or re-wrapped under the current KEK.
    pub resealed: u64,
    /// Endpoints already sealed under it.
    pub current: u64,
    /// `<endpoint id>: <why>` for each secret that could not be opened (its endpoint's
    /// deliveries fail until it is replaced by registering the endpoint again).
    pub failed: Vec<String>,
}

/// Seals every plain secret and re-wraps every sealed one under `keyring`'s current KEK
/// (which must also hold, as a previous KEK, any KEK a secret is still sealed under). Each
/// row is replaced only if it still holds what was read, so a concurrent change wins.
///
/// # Errors
/// When the store fails; a secret that does not open is reported in `failed`, not an error.
pub async fn reseal_secrets(store: &Store, keyring: &Keyring) -> StoreResult<SecretResealReport> {
    let mut report = SecretResealReport::default();
    for endpoint in store.list_webhooks().await? {
        let stored = endpoint.stored_secret.expose_secret();
        match reseal_secret(keyring, &endpoint.url, stored) {
            Ok(Some(resealed)) => {
                if store
                    .replace_webhook_secret(&endpoint.id, stored, &resealed)
                    .await?
                {
                    report.resealed += 1;
                }
            }
            Ok(None) => report.current += 1,
            Err(e) => report.failed.push(format!("{}: {e}", endpoint.id)),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::keyring::{Kek, MemoryKeyStore, SubjectHasher};
    use crate::webhooks::generate_secret;

    fn kek(byte: u8) -> Kek {
        Kek::from_base64(&STANDARD.encode([byte; 32])).unwrap()
    }

    fn keyring(kek: Kek) -> Keyring {
        Keyring::new(
            kek,
            Arc::new(MemoryKeyStore::new()),
            SubjectHasher::new(&[7u8; 32]).unwrap(),
        )
    }

    const URL: &str = "https://app.example.com/hooks/lethe";

    #[test]
    fn a_sealed_secret_opens_for_its_url_only_and_holds_no_plaintext() {
        let ring = keyring(kek(1));
        let secret = generate_secret();
        let stored = seal_secret(&ring, URL, &secret);
        assert!(stored.starts_with(SEALED_SECRET_PREFIX));
        assert!(!stored.contains(secret.expose_secret()));
        let opened = open_secret(&ring, URL, &stored).unwrap();
        assert_eq!(opened.expose_secret(), secret.expose_secret());
        assert!(matches!(
            open_secret(&ring, "https://evil.example.net/", &stored),
            Err(KeyringError::UnwrapFailed)
        ));
        let mut tampered = stored.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(open_secret(&ring, URL, &String::from_utf8(tampered).unwrap()).is_err());
        assert!(open_secret(&ring, URL, "not a secret").is_err());
        assert!(open_secret(&keyring(kek(2)), URL, &stored).is_err());
    }

    #[test]
    fn resealing_seals_a_plain_secret_and_rewraps_under_a_new_kek() {
        let old = keyring(kek(1));
        let secret = generate_secret();
        let plain = secret.expose_secret().to_string();
        assert_eq!(
            open_secret(&old, URL, &plain).unwrap().expose_secret(),
            plain,
            "a row written before sealing is still read"
        );
        let sealed = reseal_secret(&old, URL, &plain).unwrap().expect("sealed");
        assert_eq!(reseal_secret(&old, URL, &sealed).unwrap(), None);

        let new = keyring(kek(3)).with_previous_kek(kek(1));
        let rewrapped = reseal_secret(&new, URL, &sealed)
            .unwrap()
            .expect("rewrapped");
        let new_only = keyring(kek(3));
        assert_eq!(
            open_secret(&new_only, URL, &rewrapped)
                .unwrap()
                .expose_secret(),
            plain
        );
        assert!(open_secret(&old, URL, &rewrapped).is_err());
    }
}
