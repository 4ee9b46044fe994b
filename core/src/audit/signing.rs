//! The Ed25519 key that signs checkpoints and erasure certificates, and the public keys that
//! verify them (RFC 8032).
//!
//! The signing key is never stored in the database: it comes from `audit.signing_key`
//! (`LETHE__AUDIT__SIGNING_KEY`, base64 of the 32-byte seed) or from a key file (the same text,
//! mode `0600`), generated on first start in the embedded default. A key is named by its
//! [`key_id`]: the first 16 hex digits of the SHA-256 of its 32 public-key bytes. After a
//! rotation, the public keys of earlier signing keys stay listed
//! (`audit.previous_public_keys`) so that older checkpoints keep verifying.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Errors of signing keys and public keys.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The key text is not base64 of exactly 32 bytes (the message never repeats it).
    #[error("invalid audit signing key: {0}")]
    InvalidKey(String),
    /// The key file could not be read or written.
    #[error("audit signing key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file exists but is refused (mode, contents).
    #[error("audit signing key file {path} refused: {reason}")]
    KeyFileRejected {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A public key (or a set of them) could not be read.
    #[error("invalid public key: {0}")]
    InvalidPublicKey(String),
}

/// The id of a public key: the first 16 lower-case hex digits of SHA-256 over its 32 bytes.
pub fn key_id(public: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(public.as_bytes()))[..16].to_string()
}

/// The key that signs checkpoints and certificates. Cannot be displayed or serialised.
pub struct AuditSigner {
    key: SigningKey,
    id: String,
}

impl std::fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSigner")
            .field("key_id", &self.id)
            .finish_non_exhaustive()
    }
}

impl AuditSigner {
    /// A fresh key from the OS random generator.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let id = key_id(&key.verifying_key());
        Self { key, id }
    }

    /// Reads base64 (standard alphabet, padded) of the 32-byte seed; whitespace around it is
    /// ignored.
    ///
    /// # Errors
    /// [`SigningError::InvalidKey`] when it is not base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, SigningError> {
        let bytes = Zeroizing::new(
            BASE64
                .decode(text.trim())
                .map_err(|_| SigningError::InvalidKey("not valid base64".into()))?,
        );
        let seed: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            SigningError::InvalidKey(format!("must be 32 bytes, got {}", bytes.len()))
        })?;
        Ok(Self::from_seed(seed))
    }

    /// Loads the key from `path`, or generates one there (mode `0600`, folders created) when
    /// the file does not exist, with a loud warning to back it up.
    ///
    /// # Errors
    /// [`SigningError::KeyFileRejected`] for a file readable by group or others, not a regular
    /// file, or not holding a key; [`SigningError::KeyFile`] when it cannot be read or created.
    pub fn load_or_create(path: &Path) -> Result<Self, SigningError> {
        let io_error = |source| SigningError::KeyFile {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::metadata(path) {
            Ok(_) => Self::load(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(io_error)?;
                }
                let signer = Self::generate();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = match options.open(path) {
                    Ok(file) => file,
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Self::load(path);
                    }
                    Err(e) => return Err(io_error(e)),
                };
                let line = Zeroizing::new(format!("{}\n", BASE64.encode(signer.key.to_bytes())));
                file.write_all(line.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io_error)?;
                tracing::warn!(
                    path = %path.display(),
                    key_id = %signer.id,
                    "GENERATED A NEW AUDIT SIGNING KEY and wrote it to this file. Back it up and \
                     give auditors its public key (GET /v1/audit/public-keys); in production set \
                     LETHE__AUDIT__SIGNING_KEY or provide a key file instead."
                );
                Ok(signer)
            }
            Err(e) => Err(io_error(e)),
        }
    }

    fn load(path: &Path) -> Result<Self, SigningError> {
        let rejected = |reason: String| SigningError::KeyFileRejected {
            path: path.to_path_buf(),
            reason,
        };
        let io_error = |source| SigningError::KeyFile {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io_error)?;
        if !meta.is_file() {
            return Err(rejected("is not a regular file".into()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(rejected(format!(
                    "has mode {mode:04o}; a key file must be readable by its owner only (chmod 600)"
                )));
            }
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io_error)?);
        Self::from_base64(&text).map_err(|e| rejected(e.to_string()))
    }

    /// The key id ([`key_id`] of the public key).
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// The public key.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The Ed25519 signature of `message`, base64.
    pub fn sign(&self, message: &[u8]) -> String {
        BASE64.encode(self.key.sign(message).to_bytes())
    }
}

/// One public key as served by `GET /v1/audit/public-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublicKeyInfo {
    /// [`key_id`] of the key.
    pub key_id: String,
    /// Always `Ed25519`.
    pub algorithm: String,
    /// The 32 bytes of the public key, base64 (standard alphabet, padded).
    pub public_key: String,
    /// The same key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo, RFC 8410), for tools such as
    /// `openssl pkey -pubin`.
    #[serde(default)]
    pub public_key_pem: String,
    /// Whether this is the key signing new checkpoints and certificates.
    pub current: bool,
}

/// The public keys that verify checkpoints and certificates, by key id.
#[derive(Debug, Clone, Default)]
pub struct PublicKeys {
    keys: BTreeMap<String, (VerifyingKey, bool)>,
}

impl PublicKeys {
    /// The current signer's key plus earlier ones (base64 of 32 bytes each).
    ///
    /// # Errors
    /// [`SigningError::InvalidPublicKey`] for a text that is not an Ed25519 public key.
    pub fn new(current: &AuditSigner, previous: &[String]) -> Result<Self, SigningError> {
        let mut keys = Self::default();
        keys.insert(current.public_key(), true);
        for text in previous {
            keys.insert(parse_public_key(text)?, false);
        }
        Ok(keys)
    }

    fn insert(&mut self, key: VerifyingKey, current: bool) {
        let entry = self.keys.entry(key_id(&key)).or_insert((key, current));
        entry.1 |= current;
    }

    /// Reads a public-key file: the JSON of `GET /v1/audit/public-keys`
    /// (`{"keys": [{"key_id", "public_key", …}]}`), or one base64 key per line.
    ///
    /// # Errors
    /// [`SigningError::InvalidPublicKey`] when a key does not parse or a `key_id` does not
    /// match its key.
    pub fn parse(text: &str) -> Result<Self, SigningError> {
        let mut keys = Self::default();
        if text.trim_start().starts_with('{') {
            #[derive(Deserialize)]
            struct File {
                keys: Vec<PublicKeyInfo>,
            }
            let file: File = serde_json::from_str(text)
                .map_err(|e| SigningError::InvalidPublicKey(format!("not a key list: {e}")))?;
            for info in file.keys {
                let key = parse_public_key(&info.public_key)?;
                if key_id(&key) != info.key_id {
                    return Err(SigningError::InvalidPublicKey(format!(
                        "key_id {} does not match its public key ({})",
                        info.key_id,
                        key_id(&key)
                    )));
                }
                keys.insert(key, info.current);
            }
        } else if text.contains("-----BEGIN PUBLIC KEY-----") {
            for block in text.split("-----BEGIN PUBLIC KEY-----").skip(1) {
                let body = block
                    .split("-----END PUBLIC KEY-----")
                    .next()
                    .unwrap_or_default();
                let der: String = body.split_whitespace().collect();
                let der = BASE64
                    .decode(der)
                    .map_err(|_| SigningError::InvalidPublicKey("PEM is not base64".into()))?;
                let raw = der
                    .strip_prefix(ED25519_SPKI_PREFIX.as_slice())
                    .filter(|raw| raw.len() == 32)
                    .ok_or_else(|| {
                        SigningError::InvalidPublicKey("PEM is not an Ed25519 public key".into())
                    })?;
                keys.insert(parse_public_key(&BASE64.encode(raw))?, false);
            }
        } else {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                keys.insert(parse_public_key(line)?, false);
            }
        }
        if keys.keys.is_empty() {
            return Err(SigningError::InvalidPublicKey("no key found".into()));
        }
        Ok(keys)
    }

    /// Every key, current first.
    pub fn list(&self) -> Vec<PublicKeyInfo> {
        let mut list: Vec<PublicKeyInfo> = self
            .keys
            .iter()
            .map(|(id, (key, current))| PublicKeyInfo {
                key_id: id.clone(),
                algorithm: "Ed25519".into(),
                public_key: BASE64.encode(key.as_bytes()),
                public_key_pem: to_pem(key),
                current: *current,
            })
            .collect();
        list.sort_by_key(|k| !k.current);
        list
    }

    /// Whether `signature` (base64) is `key_id`'s Ed25519 signature of `message`.
    ///
    /// # Errors
    /// A sentence saying why not: unknown key, malformed or wrong signature.
    pub fn verify(&self, key_id: &str, message: &[u8], signature: &str) -> Result<(), String> {
        let (key, _) = self
            .keys
            .get(key_id)
            .ok_or_else(|| format!("signed by unknown key {key_id}"))?;
        let bytes = BASE64
            .decode(signature)
            .map_err(|_| "signature is not base64".to_string())?;
        let signature =
            Signature::from_slice(&bytes).map_err(|_| "signature is not 64 bytes".to_string())?;
        key.verify_strict(message, &signature)
            .map_err(|_| format!("signature does not verify with key {key_id}"))
    }
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 §4): the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

fn to_pem(key: &VerifyingKey) -> String {
    let mut der = ED25519_SPKI_PREFIX.to_vec();
    der.extend_from_slice(key.as_bytes());
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        BASE64.encode(der)
    )
}

fn parse_public_key(text: &str) -> Result<VerifyingKey, SigningError> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|_| SigningError::InvalidPublicKey("not valid base64".into()))?;
    let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        SigningError::InvalidPublicKey(format!("must be 32 bytes, got {}", bytes.len()))
    })?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| SigningError::InvalidPublicKey("not an Ed25519 point".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_the_public_key_only() {
        let signer = AuditSigner::generate();
        let keys = PublicKeys::new(&signer, &[]).unwrap();
        let sig = signer.sign(b"message");
        assert!(keys.verify(signer.key_id(), b"message", &sig).is_ok());
        assert!(keys.verify(signer.key_id(), b"messagf", &sig).is_err());
        let other = AuditSigner::generate();
        assert!(keys.verify(other.key_id(), b"message", &sig).is_err());
    }

    #[test]
    fn a_key_file_is_created_once_with_mode_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("audit-signing.key");
        let a = AuditSigner::load_or_create(&path).unwrap();
        let b = AuditSigner::load_or_create(&path).unwrap();
        assert_eq!(a.key_id(), b.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                AuditSigner::load_or_create(&path),
                Err(SigningError::KeyFileRejected { .. })
            ));
        }
    }

    #[test]
    fn the_public_key_list_round_trips_and_keeps_previous_keys() {
        let old = AuditSigner::generate();
        let new = AuditSigner::generate();
        let old_pub = BASE64.encode(old.public_key().as_bytes());
        let keys = PublicKeys::new(&new, &[old_pub]).unwrap();
        let list = keys.list();
        assert_eq!(list.len(), 2);
        assert!(list[0].current && list[0].key_id == new.key_id());
        let text = serde_json::json!({ "keys": list }).to_string();
        let parsed = PublicKeys::parse(&text).unwrap();
        let sig = old.sign(b"m");
        assert!(parsed.verify(old.key_id(), b"m", &sig).is_ok());
        // The PEM form reads back too.
        let pem = PublicKeys::parse(&list[1].public_key_pem).unwrap();
        assert!(pem.verify(old.key_id(), b"m", &sig).is_ok());
    }
}
