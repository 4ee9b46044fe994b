//! Short-lived HS256 access tokens (RFC 7519).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use lethe_core::domain::Role;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The claims of a Lethe access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Account id (UUID).
    pub sub: String,
    /// Role at issue time (re-checked against the account on every call).
    pub role: Role,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issuer: `lethe`.
    pub iss: String,
    /// The account's token epoch at issue time; the token is refused once the account's epoch
    /// moved on (signed out everywhere, password changed, account disabled).
    #[serde(default)]
    pub epoch: i64,
}

/// Signing and verification keys plus the token lifetime.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl_s: u64,
}

const ISSUER: &str = "lethe";

impl TokenKeys {
    /// Keys from a shared secret; tokens live `ttl_s` seconds.
    pub fn new(secret: &SecretString, ttl_s: u64) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            ttl_s,
        }
    }

    /// Token lifetime in seconds.
    pub fn ttl_s(&self) -> u64 {
        self.ttl_s
    }

    /// Issues a token for `user_id` with `role`, under the account's token `epoch`.
    ///
    /// # Errors
    /// The signing error (should not happen with an HMAC key).
    pub fn issue(
        &self,
        user_id: &str,
        role: Role,
        epoch: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            role,
            iat: now,
            exp: now + self.ttl_s as i64,
            iss: ISSUER.to_string(),
            epoch,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// Verifies signature, algorithm, issuer and expiry (no leeway).
    ///
    /// # Errors
    /// The validation error (expired, bad signature, malformed).
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        Ok(jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)?.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_other_keys() {
        let keys = TokenKeys::new(&SecretString::from("a".repeat(32)), 60);
        let token = keys.issue("u1", Role::Admin, 0).unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.role), ("u1", Role::Admin));
        let other = TokenKeys::new(&SecretString::from("b".repeat(32)), 60);
        assert!(other.verify(&token).is_err());
        assert!(keys.verify("not.a.token").is_err());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let keys = TokenKeys::new(&SecretString::from("a".repeat(32)), 0);
        let token = keys.issue("u1", Role::Subject, 0).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(keys.verify(&token).is_err());
    }
}
