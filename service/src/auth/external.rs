//! Identity from the company's own app: JWTs (RFC 7519) signed by a trusted issuer with
//! `RS256`, `ES256` or `EdDSA` (RFC 7518 §3, RFC 8037), verified with the issuer's public keys:
//! one PEM, or a JWK Set (RFC 7517 §5) read from a file or fetched from a URL.
//!
//! The token's header `alg` must be one of the three and must match the key chosen (by `kid`
//! in a JWK Set); `HS*` and `none` are never accepted from an external issuer, so a token
//! "signed" with the issuer's public key as an HMAC secret is refused (algorithm confusion).
//! Signature, `exp`, `nbf` (with the issuer's leeway), `iss` and `aud` are checked; the subject
//! id is the value of the issuer's subject claim (`sub` by default).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use lethe_core::config::{JwtAlgorithm, TrustedIssuerSettings};
use lethe_core::domain::{ParseError, SubjectId};
use serde::Deserialize;
use serde_json::{Map, Value};

/// A remote JWK Set is refetched when older than this (10 minutes).
pub const JWKS_REFRESH_EVERY: Duration = Duration::from_secs(600);
/// After a failed fetch, and between fetches caused by an unknown `kid`, at least this long
/// passes (30 s), so that tokens cannot make Lethe hammer the issuer.
pub const JWKS_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Timeout of one JWK Set fetch, connection included (5 s).
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWK Set body read, in bytes (256 KiB).
pub const JWKS_MAX_BYTES: usize = 256 * 1024;

/// A data subject vouched for by a trusted issuer's token.
#[derive(Debug, Clone)]
pub struct ExternalIdentity {
    /// The issuer, as configured (equal to the token's `iss`).
    pub issuer: String,
    /// The value of the issuer's subject claim.
    pub subject: SubjectId,
}

/// Why an external token was refused (each is a 401 for the caller).
#[derive(Debug, thiserror::Error)]
pub enum ExternalTokenError {
    /// The header's `alg` is not RS256, ES256 or EdDSA.
    #[error("the algorithm {0:?} is not accepted from external issuers (RS256, ES256 or EdDSA)")]
    Algorithm(Algorithm),
    /// No `iss`, or one that is not configured.
    #[error("the token's issuer is not a trusted issuer")]
    UntrustedIssuer,
    /// The issuer has no key for the token's `kid` and `alg`.
    #[error("no key of issuer {issuer} matches the token (kid {kid:?}, alg {alg:?})")]
    NoKey {
        /// The issuer.
        issuer: String,
        /// The token's `kid`.
        kid: Option<String>,
        /// The token's `alg`.
        alg: Algorithm,
    },
    /// The token has no `kid` and the issuer has several keys for its `alg`.
    #[error("the token has no kid and issuer {issuer} has {keys} keys for {alg:?}")]
    AmbiguousKey {
        /// The issuer.
        issuer: String,
        /// How many keys could apply.
        keys: usize,
        /// The token's `alg`.
        alg: Algorithm,
    },
    /// The issuer's JWK Set has never been fetched successfully.
    #[error("the keys of issuer {0} are unavailable; try again later")]
    KeysUnavailable(String),
    /// Malformed, bad signature, expired, not yet valid, wrong issuer or audience.
    #[error("{0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The subject claim is missing or not a string.
    #[error("the token's `{0}` claim is missing or not a string")]
    MissingSubject(String),
    /// The subject claim is not a valid subject id.
    #[error("the token's `{claim}` claim: {source}")]
    BadSubject {
        /// The claim.
        claim: String,
        /// Why.
        source: ParseError,
    },
}

/// Every trusted issuer, with its keys; built once at start.
pub struct TrustedIssuers {
    issuers: Vec<Issuer>,
}

struct Issuer {
    settings: TrustedIssuerSettings,
    keys: KeySource,
}

enum KeySource {
    /// One key from `public_key_pem`: a token's `kid` is not looked at.
    Pem(VerifyingKey),
    /// A JWK Set read from `jwks_file` at start: a token's `kid` chooses the key.
    File(Arc<Vec<VerifyingKey>>),
    /// A JWK Set fetched from `jwks_url` and cached: a token's `kid` chooses the key.
    Remote(RemoteJwks),
}

/// One public key and the one algorithm it verifies.
#[derive(Clone)]
struct VerifyingKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

impl TrustedIssuers {
    /// Validates every entry and loads its keys: parses `public_key_pem`, reads and parses
    /// `jwks_file`, prepares the HTTP client of `jwks_url` (fetched later: see
    /// [`TrustedIssuers::prefetch`]).
    ///
    /// # Errors
    /// A message naming the issuer and what is wrong: an invalid entry, an unreadable or
    /// malformed key file, a PEM that is not a public key of the configured algorithm, a JWK Set
    /// without one usable signing key.
    pub fn load(settings: &[TrustedIssuerSettings]) -> anyhow::Result<Self> {
        Self::load_with_egress(settings, false)
    }

    /// [`TrustedIssuers::load`], where a `jwks_url` may reach private networks only when
    /// `allow_private` (`webhooks.allow_private_networks`): otherwise an `https://` JWK Set
    /// URL naming a non-public address stops the start, and one naming a host is fetched
    /// through a resolver that refuses non-public addresses (server-side request forgery,
    /// DNS rebinding). The loopback `http://` form stays allowed: it names a sidecar on
    /// purpose.
    ///
    /// # Errors
    /// As [`TrustedIssuers::load`], and for a `jwks_url` on a non-public address.
    pub fn load_with_egress(
        settings: &[TrustedIssuerSettings],
        allow_private: bool,
    ) -> anyhow::Result<Self> {
        let mut issuers = Vec::with_capacity(settings.len());
        for (i, entry) in settings.iter().enumerate() {
            entry
                .validate()
                .map_err(|e| anyhow::anyhow!("auth.trusted_issuers[{i}]: {e}"))?;
            let keys = load_keys(entry, allow_private)
                .with_context(|| format!("auth.trusted_issuers[{i}] ({})", entry.issuer))?;
            issuers.push(Issuer {
                settings: entry.clone(),
                keys,
            });
        }
        Ok(Self { issuers })
    }

    /// Fetches every remote JWK Set that has not been fetched yet; failures are logged, not
    /// returned (tokens of that issuer get 401 until a later fetch succeeds).
    pub async fn prefetch(&self) {
        for issuer in &self.issuers {
            if let KeySource::Remote(remote) = &issuer.keys {
                let _ = remote.keys(None).await;
            }
        }
    }

    /// Verifies an external token whose header has been decoded, and returns who it names.
    ///
    /// # Errors
    /// [`ExternalTokenError`]: wrong algorithm, untrusted issuer, no matching key, a bad
    /// signature, expired or not yet valid (`exp`, `nbf`), wrong audience, or a subject claim
    /// that is missing or not a valid subject id.
    pub async fn verify(
        &self,
        token: &str,
        header: &Header,
    ) -> Result<ExternalIdentity, ExternalTokenError> {
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
        ) {
            return Err(ExternalTokenError::Algorithm(header.alg));
        }
        // Only to choose the issuer's keys; every claim is verified below.
        #[derive(Deserialize)]
        struct Unverified {
            iss: Option<String>,
        }
        let claimed = jsonwebtoken::dangerous::insecure_decode::<Unverified>(token)?
            .claims
            .iss
            .ok_or(ExternalTokenError::UntrustedIssuer)?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.settings.issuer == claimed)
            .ok_or(ExternalTokenError::UntrustedIssuer)?;
        let key = issuer.key_for(header).await?;
        let settings = &issuer.settings;
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = settings.leeway_s;
        validation.validate_nbf = true;
        let claims =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)?.claims;
        let claim = &settings.subject_claim;
        let value = claims
            .get(claim)
            .and_then(Value::as_str)
            .ok_or_else(|| ExternalTokenError::MissingSubject(claim.clone()))?;
        let subject = SubjectId::parse(value).map_err(|source| ExternalTokenError::BadSubject {
            claim: claim.clone(),
            source,
        })?;
        Ok(ExternalIdentity {
            issuer: settings.issuer.clone(),
            subject,
        })
    }
}

impl Issuer {
    /// The key for the token: the one with its `kid` (a JWK Set), or the only one for its
    /// `alg`; it must verify the header's `alg`.
    async fn key_for(&self, header: &Header) -> Result<VerifyingKey, ExternalTokenError> {
        let keys = match &self.keys {
            KeySource::Pem(key) if key.algorithm == header.alg => return Ok(key.clone()),
            KeySource::Pem(_) => Arc::new(Vec::new()),
            KeySource::File(keys) => keys.clone(),
            KeySource::Remote(remote) => remote
                .keys(header.kid.as_deref())
                .await
                .ok_or_else(|| ExternalTokenError::KeysUnavailable(self.settings.issuer.clone()))?,
        };
        let candidates: Vec<&VerifyingKey> = keys
            .iter()
            .filter(|k| k.algorithm == header.alg)
            .filter(|k| match &header.kid {
                Some(kid) => k.kid.as_deref() == Some(kid.as_str()),
                None => true,
            })
            .collect();
        match candidates.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ExternalTokenError::NoKey {
                issuer: self.settings.issuer.clone(),
                kid: header.kid.clone(),
                alg: header.alg,
            }),
            many => Err(ExternalTokenError::AmbiguousKey {
                issuer: self.settings.issuer.clone(),
                keys: many.len(),
                alg: header.alg,
            }),
        }
    }
}

fn load_keys(entry: &TrustedIssuerSettings, allow_private: bool) -> anyhow::Result<KeySource> {
    if let (Some(pem), Some(algorithm)) = (&entry.public_key_pem, entry.algorithm) {
        return Ok(KeySource::Pem(key_from_pem(pem, algorithm)?));
    }
    if let Some(path) = &entry.jwks_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading jwks_file {}", path.display()))?;
        let keys =
            keys_from_jwks(&text).with_context(|| format!("jwks_file {}", path.display()))?;
        if keys.is_empty() {
            anyhow::bail!(
                "jwks_file {} holds no usable signing key (RSA, EC P-256 or Ed25519)",
                path.display()
            );
        }
        return Ok(KeySource::File(Arc::new(keys)));
    }
    if let Some(url) = &entry.jwks_url {
        return Ok(KeySource::Remote(RemoteJwks::new(url, allow_private)?));
    }
    anyhow::bail!("no key source")
}

/// A public key in PEM (SPKI `PUBLIC KEY`, or PKCS#1 `RSA PUBLIC KEY`) for `algorithm`.
fn key_from_pem(pem: &str, algorithm: JwtAlgorithm) -> anyhow::Result<VerifyingKey> {
    if pem.contains("PRIVATE KEY") {
        anyhow::bail!("public_key_pem holds a private key; give the issuer's public key only");
    }
    let bytes = pem.trim().as_bytes();
    let (key, algorithm) = match algorithm {
        JwtAlgorithm::RS256 => (DecodingKey::from_rsa_pem(bytes), Algorithm::RS256),
        JwtAlgorithm::ES256 => (DecodingKey::from_ec_pem(bytes), Algorithm::ES256),
        JwtAlgorithm::EdDSA => (DecodingKey::from_ed_pem(bytes), Algorithm::EdDSA),
    };
    let key = key.map_err(|e| {
        anyhow::anyhow!("public_key_pem is not a {algorithm:?} public key in PEM: {e}")
    })?;
    Ok(VerifyingKey {
        kid: None,
        algorithm,
        key,
    })
}

/// The usable signing keys of a JWK Set (RFC 7517 §5): RSA (RS256), EC P-256 (ES256) and
/// OKP Ed25519 (EdDSA) keys whose `use`, if given, is `sig` and whose `alg`, if given, matches.
/// Other keys (encryption keys, symmetric `oct` keys, other curves) are skipped with a warning.
///
/// # Errors
/// When the text is not a JWK Set.
fn keys_from_jwks(text: &str) -> anyhow::Result<Vec<VerifyingKey>> {
    let set: JwkSet = serde_json::from_str(text).context("not a JWK Set ({\"keys\": [...]})")?;
    let mut keys = Vec::with_capacity(set.keys.len());
    for jwk in &set.keys {
        match key_from_jwk(jwk) {
            Ok(key) => keys.push(key),
            Err(reason) => {
                tracing::warn!(kid = ?jwk.common.key_id, %reason, "skipping a key of a JWK Set")
            }
        }
    }
    Ok(keys)
}

fn key_from_jwk(jwk: &Jwk) -> Result<VerifyingKey, String> {
    if let Some(usage) = &jwk.common.public_key_use
        && *usage != PublicKeyUse::Signature
    {
        return Err("not a signing key (use is not \"sig\")".into());
    }
    let (algorithm, named) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (Algorithm::RS256, KeyAlgorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            (Algorithm::EdDSA, KeyAlgorithm::EdDSA)
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (oct) keys are never accepted from an external issuer".into());
        }
        _ => return Err("unsupported curve (P-256 and Ed25519 are)".into()),
    };
    if let Some(alg) = jwk.common.key_algorithm
        && alg != named
    {
        return Err(format!(
            "alg {alg:?} is not accepted (RS256, ES256 or EdDSA)"
        ));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    Ok(VerifyingKey {
        kid: jwk.common.key_id.clone(),
        algorithm,
        key,
    })
}

/// A JWK Set behind a URL: fetched on first use, refetched when older than
/// [`JWKS_REFRESH_EVERY`] or when a token names an unknown `kid` (key rotation), never more
/// often than every [`JWKS_RETRY_AFTER`] for unknown `kid`s or after a failure. Fetches are
/// single-flight (one at a time per issuer); when one fails the previous keys stay in use.
struct RemoteJwks {
    url: String,
    client: reqwest::Client,
    cache: tokio::sync::Mutex<JwksCache>,
}

#[derive(Default)]
struct JwksCache {
    keys: Option<Arc<Vec<VerifyingKey>>>,
    fetched_at: Option<Instant>,
    failed_at: Option<Instant>,
    forced_at: Option<Instant>,
}

impl RemoteJwks {
    fn new(url: &str, allow_private: bool) -> anyhow::Result<Self> {
        let mut client = reqwest::Client::builder()
            .timeout(JWKS_FETCH_TIMEOUT)
            .connect_timeout(JWKS_FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        let parsed = reqwest::Url::parse(url).context("jwks_url is not a URL")?;
        let host = parsed
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let literal = host.parse::<std::net::IpAddr>().ok();
        let loopback = host == "localhost" || literal.is_some_and(|ip| ip.is_loopback());
        if !allow_private && !loopback {
            if let Some(ip) = literal.filter(|ip| !lethe_core::webhooks::egress::is_public(*ip)) {
                anyhow::bail!(
                    "jwks_url names {ip}, a private, link-local or otherwise non-public address; set webhooks.allow_private_networks to allow it"
                );
            }
            client =
                client.dns_resolver(Arc::new(lethe_core::webhooks::egress::PublicOnlyResolver));
        }
        let client = client
            .build()
            .context("building the HTTP client for jwks_url")?;
        Ok(Self {
            url: url.to_string(),
            client,
            cache: tokio::sync::Mutex::new(JwksCache::default()),
        })
    }

    /// The cached keys, refreshed first when due (see the type's doc); `None` while no fetch
    /// has ever succeeded.
    async fn keys(&self, kid: Option<&str>) -> Option<Arc<Vec<VerifyingKey>>> {
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        let passed = |at: Option<Instant>, wait: Duration| {
            at.is_none_or(|at| now.duration_since(at) >= wait)
        };
        let stale = passed(cache.fetched_at, JWKS_REFRESH_EVERY);
        let unknown_kid = kid.is_some_and(|kid| {
            cache
                .keys
                .as_ref()
                .is_some_and(|keys| !keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
        });
        let forced = !stale && unknown_kid && passed(cache.forced_at, JWKS_RETRY_AFTER);
        if passed(cache.failed_at, JWKS_RETRY_AFTER) && (stale || forced) {
            if forced {
                cache.forced_at = Some(now);
            }
            match self.fetch().await {
                Ok(keys) => {
                    tracing::info!(url = %self.url, keys = keys.len(), "fetched a JWK Set");
                    cache.keys = Some(Arc::new(keys));
                    cache.fetched_at = Some(now);
                    cache.failed_at = None;
                }
                Err(e) => {
                    tracing::warn!(url = %self.url, error = format!("{e:#}"), "fetching a JWK Set failed; keeping the keys held");
                    cache.failed_at = Some(now);
                }
            }
        }
        cache.keys.clone()
    }

    async fn fetch(&self) -> anyhow::Result<Vec<VerifyingKey>> {
        let mut response = self
            .client
            .get(&self.url)
            .header("Accept", "application/jwk-set+json, application/json")
            .send()
            .await
            .with_context(|| format!("GET {}", self.url))?;
        if !response.status().is_success() {
            anyhow::bail!("GET {}: status {}", self.url, response.status());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .with_context(|| format!("reading {}", self.url))?
        {
            if body.len() + chunk.len() > JWKS_MAX_BYTES {
                anyhow::bail!("{} is larger than {JWKS_MAX_BYTES} bytes", self.url);
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(body).context("the JWK Set is not UTF-8")?;
        keys_from_jwks(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(extra: impl FnOnce(&mut TrustedIssuerSettings)) -> TrustedIssuerSettings {
        let mut entry = TrustedIssuerSettings {
            issuer: "https://login.example.com/".into(),
            audience: "lethe".into(),
            jwks_file: None,
            jwks_url: None,
            public_key_pem: None,
            algorithm: None,
            leeway_s: 60,
            subject_claim: "sub".into(),
        };
        extra(&mut entry);
        entry
    }

    fn load_error(entry: TrustedIssuerSettings) -> String {
        match TrustedIssuers::load(&[entry]) {
            Err(e) => format!("{e:#}"),
            Ok(_) => panic!("should have been refused"),
        }
    }

    // An Ed25519 public key (RFC 8037 §A.2) in SPKI PEM.
    const ED_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";
    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    #[test]
    fn an_unreadable_jwks_file_is_refused_naming_the_file() {
        let text = load_error(entry(|e| {
            e.jwks_file = Some("/nonexistent/jwks.json".into())
        }));
        assert!(
            text.contains("auth.trusted_issuers[0] (https://login.example.com/)"),
            "{text}"
        );
        assert!(
            text.contains("reading jwks_file /nonexistent/jwks.json"),
            "{text}"
        );
    }

    #[test]
    fn a_jwks_file_without_usable_keys_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(
            &path,
            r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}"#,
        )
        .unwrap();
        let text = load_error(entry(|e| e.jwks_file = Some(path.clone())));
        assert!(text.contains("no usable signing key"), "{text}");
        std::fs::write(&path, "not json").unwrap();
        let text = load_error(entry(|e| e.jwks_file = Some(path.clone())));
        assert!(text.contains("not a JWK Set"), "{text}");
    }

    #[test]
    fn a_jwks_file_keeps_signing_keys_only() {
        let keys = keys_from_jwks(&format!(
            r#"{{"keys": [
                {{"kty": "OKP", "crv": "Ed25519", "x": "{ED_X}", "kid": "a"}},
                {{"kty": "OKP", "crv": "Ed25519", "x": "{ED_X}", "kid": "enc", "use": "enc"}},
                {{"kty": "OKP", "crv": "Ed25519", "x": "{ED_X}", "kid": "hs", "alg": "HS256"}},
                {{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}}
            ]}}"#
        ))
        .unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("a"));
        assert_eq!(keys[0].algorithm, Algorithm::EdDSA);
    }

    #[test]
    fn a_pem_must_be_a_public_key_of_the_configured_algorithm() {
        TrustedIssuers::load(&[entry(|e| {
            e.public_key_pem = Some(ED_PEM.into());
            e.algorithm = Some(JwtAlgorithm::EdDSA);
        })])
        .unwrap();
        let text = load_error(entry(|e| {
            e.public_key_pem = Some(ED_PEM.into());
            e.algorithm = Some(JwtAlgorithm::RS256);
        }));
        assert!(text.contains("not a RS256 public key"), "{text}");
        let text = load_error(entry(|e| {
            e.public_key_pem =
                Some("-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n-----END PRIVATE KEY-----\n".into());
            e.algorithm = Some(JwtAlgorithm::EdDSA);
        }));
        assert!(text.contains("holds a private key"), "{text}");
    }

    #[test]
    fn an_invalid_entry_is_refused_before_keys_are_read() {
        let text = load_error(entry(|e| {
            e.jwks_url = Some("https://login.example.com/jwks.json".into());
            e.public_key_pem = Some(ED_PEM.into());
        }));
        assert!(text.contains("exactly one of"), "{text}");
    }

    #[tokio::test]
    async fn tokens_of_other_algorithms_and_issuers_are_refused() {
        let issuers = TrustedIssuers::load(&[entry(|e| {
            e.public_key_pem = Some(ED_PEM.into());
            e.algorithm = Some(JwtAlgorithm::EdDSA);
        })])
        .unwrap();
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"iss": "https://login.example.com/", "aud": "lethe", "sub": "u-1", "exp": 4_000_000_000u64}),
            &jsonwebtoken::EncodingKey::from_secret(ED_PEM.as_bytes()),
        )
        .unwrap();
        let header = jsonwebtoken::decode_header(&hs).unwrap();
        assert!(matches!(
            issuers.verify(&hs, &header).await,
            Err(ExternalTokenError::Algorithm(Algorithm::HS256))
        ));
        // An EdDSA header over a token from an issuer nobody configured.
        let header = Header::new(Algorithm::EdDSA);
        let forged = format!(
            "{}.{}.c2ln",
            b64(&serde_json::to_vec(&header).unwrap()),
            b64(br#"{"iss": "https://evil.example.com/", "aud": "lethe", "sub": "u-1", "exp": 4000000000}"#)
        );
        assert!(matches!(
            issuers.verify(&forged, &header).await,
            Err(ExternalTokenError::UntrustedIssuer)
        ));
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}
