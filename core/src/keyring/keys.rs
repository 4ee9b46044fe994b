//! Key material: data encryption keys ([`Dek`]) and key encryption keys ([`Kek`]).
//!
//! Both hold 256 bits in a heap box that is zeroized when dropped, implement neither `Display`
//! nor `Serialize`, and print no key bytes in `Debug`. A [`Kek`] comes from configuration
//! (base64 of 32 bytes) or from a key file; a [`Dek`] comes from the OS CSPRNG.

use std::fmt;
use std::io::Write;
use std::path::Path;

use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::KeyringError;

/// Length of every key in the keyring: 32 bytes (AES-256).
pub const KEY_LEN: usize = 32;

/// 32 secret bytes on the heap (so moving the owner copies no key bytes), zeroized on drop.
struct Secret32(Box<[u8; KEY_LEN]>);

impl Secret32 {
    fn random() -> Self {
        let mut bytes = Box::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(bytes.as_mut_slice());
        Self(bytes)
    }

    fn from_slice(slice: &[u8]) -> Option<Self> {
        if slice.len() != KEY_LEN {
            return None;
        }
        let mut bytes = Box::new([0u8; KEY_LEN]);
        bytes.copy_from_slice(slice);
        Some(Self(bytes))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(self.0.as_slice()).expect("AES-256 takes a 32-byte key")
    }
}

impl Clone for Secret32 {
    fn clone(&self) -> Self {
        Self(Box::new(*self.0))
    }
}

impl Drop for Secret32 {
    fn drop(&mut self) {
        self.0.as_mut().zeroize();
    }
}

impl ZeroizeOnDrop for Secret32 {}

/// A subject's data encryption key: 256 bits from the OS CSPRNG, used with AES-256-GCM to
/// encrypt that subject's PII cells (see [`super::cell`]).
///
/// The key bytes and the expanded AES round keys are zeroized when the value is dropped; the
/// type cannot be serialised and its `Debug` shows only the version. A DEK leaves the process
/// only wrapped by a [`Kek`] ([`Kek::wrap`]).
#[derive(Clone)]
pub struct Dek {
    key: Secret32,
    cipher: Aes256Gcm,
    version: u32,
}

impl Dek {
    /// A fresh random DEK (OS CSPRNG) carrying `version`, the key version written into every
    /// cell envelope it seals (1 for a subject's first key).
    ///
    /// # Panics
    /// If the operating system's random generator fails (`getrandom` does not fail on Linux
    /// once the system has booted).
    pub fn generate(version: u32) -> Self {
        Self::from_secret(Secret32::random(), version)
    }

    fn from_secret(key: Secret32, version: u32) -> Self {
        let cipher = key.cipher();
        Self {
            key,
            cipher,
            version,
        }
    }

    /// The key version: which of the subject's keys this is; written into each cell envelope
    /// and bound into its associated data.
    pub fn version(&self) -> u32 {
        self.version
    }

    pub(crate) fn cipher(&self) -> &Aes256Gcm {
        &self.cipher
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.key.0
    }

    pub(crate) fn from_bytes(bytes: &[u8], version: u32) -> Option<Self> {
        Secret32::from_slice(bytes).map(|key| Self::from_secret(key, version))
    }
}

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dek")
            .field("version", &self.version)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ZeroizeOnDrop for Dek {}

/// A key encryption key: 256 bits that wrap (AES-256-GCM) every subject's [`Dek`].
///
/// It comes from configuration ([`Kek::from_base64`], e.g. `LETHE__CRYPTO__KEK`) or from a
/// key file ([`Kek::load_or_create`]). It is identified by [`Kek::id`], a fingerprint that each
/// wrapped key records, so a key store can say which KEK wrapped which DEK. Zeroized on drop;
/// cannot be cloned, serialised or displayed.
pub struct Kek {
    key: Secret32,
    cipher: Aes256Gcm,
    id: String,
}

impl Kek {
    /// A fresh random KEK from the OS CSPRNG (tests, tools, and [`Kek::load_or_create`]).
    ///
    /// # Panics
    /// If the operating system's random generator fails.
    pub fn generate() -> Self {
        Self::from_secret(Secret32::random())
    }

    /// Reads a KEK from base64 (standard alphabet, padded) of exactly 32 bytes; surrounding
    /// whitespace is ignored.
    ///
    /// # Errors
    /// [`KeyringError::InvalidKek`] when the text is not base64 or does not decode to exactly
    /// 32 bytes. The message never repeats the input.
    pub fn from_base64(text: &str) -> Result<Self, KeyringError> {
        let decoded = Zeroizing::new(BASE64.decode(text.trim()).map_err(|_| {
            KeyringError::InvalidKek("not valid base64 (standard alphabet, padded)".into())
        })?);
        let key = Secret32::from_slice(&decoded).ok_or_else(|| {
            KeyringError::InvalidKek(format!(
                "must decode to exactly {KEY_LEN} bytes, got {}",
                decoded.len()
            ))
        })?;
        Ok(Self::from_secret(key))
    }

    /// Loads the KEK from a key file (base64 of 32 bytes, one line), or, when the file does not
    /// exist, generates a KEK, writes it there with mode `0600` (creating missing folders) and
    /// logs a loud warning: the file must be backed up, since losing it makes every encrypted
    /// cell unreadable.
    ///
    /// # Errors
    /// - [`KeyringError::KeyFileRejected`] when the file is not a regular file, can be read or
    ///   written by its group or by others (any of mode `0o077`, as OpenSSH refuses private
    ///   keys), or does not hold base64 of exactly 32 bytes;
    /// - [`KeyringError::KeyFile`] when it cannot be read or created.
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<Self, KeyringError> {
        let path = path.as_ref();
        match std::fs::metadata(path) {
            Ok(_) => Self::load(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match Self::create(path) {
                Ok(kek) => Ok(kek),
                // Another process created it first: use theirs.
                Err(KeyringError::KeyFile { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    Self::load(path)
                }
                Err(e) => Err(e),
            },
            Err(source) => Err(KeyringError::KeyFile {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn load(path: &Path) -> Result<Self, KeyringError> {
        let rejected = |reason: String| KeyringError::KeyFileRejected {
            path: path.to_path_buf(),
            reason,
        };
        let io_error = |source| KeyringError::KeyFile {
            path: path.to_path_buf(),
            source,
        };
        // Follows symlinks (a mounted secret is often one): the target's mode is what matters.
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
                    "has mode {mode:04o}; a key file must be readable by its owner only \
                     (chmod 600)"
                )));
            }
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io_error)?);
        Self::from_base64(&text).map_err(|e| match e {
            KeyringError::InvalidKek(reason) => rejected(format!(
                "must hold base64 of exactly {KEY_LEN} bytes: {reason}"
            )),
            other => other,
        })
    }

    fn create(path: &Path) -> Result<Self, KeyringError> {
        let io_error = |source| KeyringError::KeyFile {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        let kek = Self::generate();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io_error)?;
        let mut line = Zeroizing::new(BASE64.encode(kek.key.0.as_slice()));
        line.push('\n');
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_error)?;
        tracing::warn!(
            path = %path.display(),
            kek_id = %kek.id,
            "GENERATED A NEW KEY ENCRYPTION KEY (KEK) and wrote it to this file. Back it up now: \
             without it every encrypted cell in the lake is unreadable. In production, set \
             LETHE__CRYPTO__KEK or provide a key file instead."
        );
        Ok(kek)
    }

    fn from_secret(key: Secret32) -> Self {
        // Fingerprint: first 8 bytes of SHA-256 over a label and the key, in hex. The label keeps
        // it from equalling any other hash of the key; 64 bits reveal nothing usable about it.
        let digest = Sha256::new()
            .chain_update(b"lethe.kek-id.v1\0")
            .chain_update(key.0.as_slice())
            .finalize();
        let id = hex::encode(&digest[..8]);
        let cipher = key.cipher();
        Self { key, cipher, id }
    }

    /// The KEK's fingerprint: 16 lower-case hex digits (first 8 bytes of
    /// `SHA-256("lethe.kek-id.v1\0" ‖ key)`). Recorded in every [`super::WrappedDek`].
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn cipher(&self) -> &Aes256Gcm {
        &self.cipher
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ZeroizeOnDrop for Kek {}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        BASE64.encode(bytes)
    }

    #[test]
    fn a_kek_reads_base64_of_exactly_32_bytes() {
        let kek = Kek::from_base64(&format!("  {}\n", b64(&[7u8; 32]))).unwrap();
        assert_eq!(kek.id().len(), 16);
        assert_eq!(kek.id(), Kek::from_base64(&b64(&[7u8; 32])).unwrap().id());
        assert_ne!(kek.id(), Kek::from_base64(&b64(&[8u8; 32])).unwrap().id());

        let short = Kek::from_base64(&b64(&[7u8; 31])).unwrap_err();
        assert!(
            short.to_string().contains("exactly 32 bytes, got 31"),
            "{short}"
        );
        let long = Kek::from_base64(&b64(&[7u8; 33])).unwrap_err();
        assert!(long.to_string().contains("got 33"), "{long}");
        let garbage = Kek::from_base64("not base64!").unwrap_err();
        assert!(matches!(garbage, KeyringError::InvalidKek(_)));
        assert!(!garbage.to_string().contains("not base64!"));
    }

    #[test]
    fn debug_output_holds_no_key_bytes() {
        let raw = [0xABu8; 32];
        let kek = Kek::from_base64(&b64(&raw)).unwrap();
        let dek = Dek::from_bytes(&raw, 3).unwrap();
        for text in [format!("{kek:?}"), format!("{dek:?}"), format!("{dek:#?}")] {
            assert!(!text.to_lowercase().contains("abab"), "{text}");
            assert!(!text.contains("171"), "{text}");
            assert!(!text.contains(&b64(&raw)), "{text}");
            assert!(text.contains("redacted"), "{text}");
        }
        assert!(format!("{dek:?}").contains("version: 3"));
    }

    #[test]
    fn generated_keys_differ() {
        let (a, b) = (Dek::generate(1), Dek::generate(1));
        assert_ne!(a.bytes(), b.bytes());
        assert_ne!(a.bytes(), &[0u8; 32]);
        assert_ne!(Kek::generate().id(), Kek::generate().id());
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_is_created_0600_then_loaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/kek");
        let created = Kek::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = Kek::load_or_create(&path).unwrap();
        assert_eq!(created.id(), loaded.id());
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_or_malformed_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        Kek::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Kek::load_or_create(&path).unwrap_err();
        assert!(matches!(err, KeyringError::KeyFileRejected { .. }), "{err}");
        assert!(err.to_string().contains("0644"), "{err}");

        let short = dir.path().join("short");
        std::fs::write(&short, b64(&[1u8; 16])).unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = Kek::load_or_create(&short).unwrap_err();
        assert!(err.to_string().contains("exactly 32 bytes"), "{err}");
        assert!(err.to_string().contains("short"), "{err}");
    }
}
