//! `[auth]`: access-token signing, sessions, sign-in throttling, and the trusted issuers
//! whose JWTs name a data subject.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

use super::*;

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
