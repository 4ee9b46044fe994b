//! The secret of an API token: what a pipeline sends as `Authorization: Bearer lethe_pat_…`.
//!
//! A token is `lethe_pat_` followed by the unpadded base64url of 32 random bytes from the
//! operating system (256 bits, so a plain SHA-256 is enough to store it: there is nothing to
//! brute-force, unlike a password). Only the hex SHA-256 of the whole token is stored; the token
//! itself is shown once, when it is created.

use std::fmt;

use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The prefix every API token starts with; it tells a token from a JWT and makes leaked tokens
/// easy to find with secret scanners.
pub const API_TOKEN_PREFIX: &str = "lethe_pat_";

/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

/// A freshly generated API token. `Debug` does not show it.
pub struct ApiTokenSecret(SecretString);

impl ApiTokenSecret {
    /// A new token: the prefix and 32 bytes of `OsRng`, base64url without padding (53
    /// characters in all).
    pub fn generate() -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Self(SecretString::from(format!("{API_TOKEN_PREFIX}{encoded}")))
    }

    /// Whether a bearer value is meant as an API token (it has the prefix); it may still be
    /// unknown or revoked.
    pub fn looks_like(bearer: &str) -> bool {
        bearer.starts_with(API_TOKEN_PREFIX)
    }

    /// The stored form of a token: the lower-case hex SHA-256 of the whole token (64
    /// characters).
    pub fn hash_of(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }

    /// The stored form of this token; see [`ApiTokenSecret::hash_of`].
    pub fn hash(&self) -> String {
        Self::hash_of(self.0.expose_secret())
    }

    /// The token itself, to show its owner once.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ApiTokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiTokenSecret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_prefix_and_256_random_bits() {
        let a = ApiTokenSecret::generate();
        let b = ApiTokenSecret::generate();
        assert!(a.expose().starts_with(API_TOKEN_PREFIX));
        assert_eq!(a.expose().len(), API_TOKEN_PREFIX.len() + 43);
        assert!(
            a.expose()[API_TOKEN_PREFIX.len()..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(a.expose(), b.expose());
        assert!(ApiTokenSecret::looks_like(a.expose()));
        assert!(!ApiTokenSecret::looks_like("eyJhbGciOiJIUzI1NiJ9.e30.x"));
    }

    #[test]
    fn the_hash_is_hex_sha256_of_the_whole_token() {
        let token = ApiTokenSecret::generate();
        assert_eq!(token.hash(), ApiTokenSecret::hash_of(token.expose()));
        assert_eq!(token.hash().len(), 64);
        assert_eq!(
            ApiTokenSecret::hash_of("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn debug_hides_the_token() {
        let token = ApiTokenSecret::generate();
        assert!(!format!("{token:?}").contains(API_TOKEN_PREFIX));
    }
}
