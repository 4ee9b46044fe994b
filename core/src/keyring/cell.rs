//! The cell envelope: one PII value encrypted with its subject's DEK, stored as a Parquet
//! `BINARY` value.
//!
//! ```text
//! offset  length  field
//! 0       1       format version (1)
//! 1       4       key version, u32 big-endian (the DEK's version)
//! 5       12      nonce, 96 bits from the OS CSPRNG
//! 17      n       AES-256-GCM ciphertext of the n plaintext bytes
//! 17+n    16      AES-256-GCM tag
//! ```
//!
//! Associated data (authenticated, not stored):
//! `"lethe.cell" ‖ format version (1 byte) ‖ key version (u32 BE) ‖ u32be(len) ‖ dataset ‖
//! u32be(len) ‖ column ‖ u32be(len) ‖ subject id` (lengths in bytes of UTF-8), so a cell copied
//! into another row, column or dataset, or relabelled with another key version, fails to
//! decrypt. See `docs/encryption.md`.

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Nonce, Tag};
use rand::RngCore;
use rand::rngs::OsRng;
use zeroize::Zeroize;

use super::wrap::{NONCE_LEN, TAG_LEN};
use super::{Dek, KeyringError};
use crate::domain::SubjectId;

/// The envelope format this code writes (byte 0 of every envelope).
pub const FORMAT_V1: u8 = 1;
/// Bytes before the ciphertext: format version, key version, nonce.
pub const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
/// Bytes an envelope adds to its plaintext: header and tag (33).
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

const AD_LABEL: &[u8] = b"lethe.cell";

/// Where a cell lives; bound into its associated data.
#[derive(Clone, Copy, Debug)]
pub struct CellContext<'a> {
    /// Dataset name (as registered in the data map).
    pub dataset: &'a str,
    /// Column name in the dataset's schema.
    pub column: &'a str,
    /// The data subject whose row this is (the row's subject column value).
    pub subject_id: &'a SubjectId,
}

/// Why a cell could not be decrypted.
#[derive(Debug, thiserror::Error)]
pub enum CellError {
    /// The first byte names a format this code does not know (or the value is not an envelope).
    #[error("unknown cell envelope format {version} (this build reads format {FORMAT_V1})")]
    UnknownFormat {
        /// Byte 0 of the value.
        version: u8,
    },
    /// The value is shorter than an envelope can be.
    #[error("truncated cell envelope: {len} bytes, at least {min} needed")]
    Truncated {
        /// Length of the value in bytes.
        len: usize,
        /// The least a valid envelope holds ([`OVERHEAD`]).
        min: usize,
    },
    /// The envelope was sealed with another version of the subject's key.
    #[error("cell was sealed with key version {envelope}, the key given is version {key}")]
    KeyVersionMismatch {
        /// Key version written in the envelope.
        envelope: u32,
        /// Version of the DEK given.
        key: u32,
    },
    /// Authentication failed: wrong key, changed bytes, or a cell moved to another dataset,
    /// column or subject.
    #[error("cell does not authenticate: wrong key, tampered value, or moved to another place")]
    WrongKeyOrTampered,
    /// The subject's key was destroyed (crypto-shredded): the value can never be decrypted.
    #[error("the subject's key was destroyed (crypto-shredded)")]
    KeyDestroyed,
    /// The subject has no key: nothing was ever encrypted for them.
    #[error("the subject has no data key")]
    KeyNotFound,
    /// The keyring could not provide the key (store failure, unknown KEK…).
    #[error("could not get the subject's key")]
    Keyring(#[source] KeyringError),
}

impl From<KeyringError> for CellError {
    /// `Shredded` becomes [`CellError::KeyDestroyed`], `NotFound` [`CellError::KeyNotFound`].
    fn from(error: KeyringError) -> Self {
        match error {
            KeyringError::Shredded => Self::KeyDestroyed,
            KeyringError::NotFound => Self::KeyNotFound,
            other => Self::Keyring(other),
        }
    }
}

fn associated_data(format: u8, key_version: u32, ctx: &CellContext<'_>) -> Vec<u8> {
    let parts = [ctx.dataset, ctx.column, ctx.subject_id.as_str()];
    let mut ad =
        Vec::with_capacity(AD_LABEL.len() + 5 + 12 + parts.iter().map(|p| p.len()).sum::<usize>());
    ad.extend_from_slice(AD_LABEL);
    ad.push(format);
    ad.extend_from_slice(&key_version.to_be_bytes());
    for part in parts {
        ad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        ad.extend_from_slice(part.as_bytes());
    }
    ad
}

/// Encrypts one cell value with the subject's DEK under a fresh random nonce; returns the
/// envelope (`plaintext.len() + 33` bytes).
///
/// # Panics
/// If the operating system's random generator fails, or the plaintext exceeds AES-GCM's
/// limit of 2^36 − 32 bytes (64 GiB; far beyond any Parquet value).
pub fn encrypt_cell(dek: &Dek, ctx: &CellContext<'_>, plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let mut envelope = Vec::with_capacity(plaintext.len() + OVERHEAD);
    envelope.push(FORMAT_V1);
    envelope.extend_from_slice(&dek.version().to_be_bytes());
    envelope.extend_from_slice(&nonce);
    envelope.extend_from_slice(plaintext);
    let tag = dek
        .cipher()
        .encrypt_inout_detached(
            &Nonce::from(nonce),
            &associated_data(FORMAT_V1, dek.version(), ctx),
            (&mut envelope[HEADER_LEN..]).into(),
        )
        .expect("plaintext within AES-GCM limits");
    envelope.extend_from_slice(tag.as_slice());
    envelope
}

/// The key version an envelope was sealed with, read without decrypting (to pick the DEK).
///
/// # Errors
/// [`CellError::Truncated`] or [`CellError::UnknownFormat`].
pub fn envelope_key_version(envelope: &[u8]) -> Result<u32, CellError> {
    check_header(envelope)?;
    Ok(u32::from_be_bytes(
        envelope[1..5].try_into().expect("4 bytes"),
    ))
}

fn check_header(envelope: &[u8]) -> Result<(), CellError> {
    let truncated = || CellError::Truncated {
        len: envelope.len(),
        min: OVERHEAD,
    };
    match envelope.first() {
        None => Err(truncated()),
        Some(&FORMAT_V1) if envelope.len() < OVERHEAD => Err(truncated()),
        Some(&FORMAT_V1) => Ok(()),
        Some(&version) => Err(CellError::UnknownFormat { version }),
    }
}

/// Decrypts an envelope made by [`encrypt_cell`] for the same DEK and context.
///
/// # Errors
/// - [`CellError::Truncated`] / [`CellError::UnknownFormat`] for a value that is not a
///   well-formed envelope;
/// - [`CellError::KeyVersionMismatch`] when `dek` is another version of the subject's key;
/// - [`CellError::WrongKeyOrTampered`] when authentication fails (wrong key, changed bytes,
///   another dataset, column or subject).
pub fn decrypt_cell(
    dek: &Dek,
    ctx: &CellContext<'_>,
    envelope: &[u8],
) -> Result<Vec<u8>, CellError> {
    let key_version = envelope_key_version(envelope)?;
    if key_version != dek.version() {
        return Err(CellError::KeyVersionMismatch {
            envelope: key_version,
            key: dek.version(),
        });
    }
    let nonce: [u8; NONCE_LEN] = envelope[5..HEADER_LEN].try_into().expect("12 bytes");
    let (body, tag) = envelope[HEADER_LEN..].split_at(envelope.len() - OVERHEAD);
    let tag = Tag::try_from(tag).map_err(|_| CellError::WrongKeyOrTampered)?;
    let mut plaintext = body.to_vec();
    match dek.cipher().decrypt_inout_detached(
        &Nonce::from(nonce),
        &associated_data(FORMAT_V1, key_version, ctx),
        plaintext.as_mut_slice().into(),
        &tag,
    ) {
        Ok(()) => Ok(plaintext),
        Err(_) => {
            plaintext.zeroize();
            Err(CellError::WrongKeyOrTampered)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(id: &str) -> SubjectId {
        SubjectId::parse(id).unwrap()
    }

    fn ctx<'a>(dataset: &'a str, column: &'a str, subject_id: &'a SubjectId) -> CellContext<'a> {
        CellContext {
            dataset,
            column,
            subject_id,
        }
    }

    #[test]
    fn encrypt_then_decrypt_returns_the_plaintext() {
        let dek = Dek::generate(1);
        let alice = subject("alice");
        let here = ctx("runs", "email", &alice);
        for plaintext in [&b""[..], b"a", b"alice@example.com", &[0xFFu8; 4096]] {
            let envelope = encrypt_cell(&dek, &here, plaintext);
            assert_eq!(envelope.len(), plaintext.len() + OVERHEAD);
            assert_eq!(envelope[0], FORMAT_V1);
            assert_eq!(envelope_key_version(&envelope).unwrap(), 1);
            assert_eq!(decrypt_cell(&dek, &here, &envelope).unwrap(), plaintext);
        }
        let envelope = encrypt_cell(&dek, &here, b"alice@example.com");
        assert!(!envelope.windows(5).any(|w| w == b"alice"));
        assert_ne!(envelope, encrypt_cell(&dek, &here, b"alice@example.com"));
    }

    #[test]
    fn changed_bytes_or_a_wrong_key_do_not_authenticate() {
        let dek = Dek::generate(1);
        let alice = subject("alice");
        let here = ctx("runs", "email", &alice);
        let envelope = encrypt_cell(&dek, &here, b"alice@example.com");
        // Every byte after the header: nonce, ciphertext, tag.
        for i in 5..envelope.len() {
            let mut tampered = envelope.clone();
            tampered[i] ^= 0x01;
            assert!(
                matches!(
                    decrypt_cell(&dek, &here, &tampered),
                    Err(CellError::WrongKeyOrTampered)
                ),
                "byte {i}"
            );
        }
        let other = Dek::generate(1);
        assert!(matches!(
            decrypt_cell(&other, &here, &envelope),
            Err(CellError::WrongKeyOrTampered)
        ));
    }

    #[test]
    fn a_cell_moved_to_another_place_does_not_authenticate() {
        let dek = Dek::generate(1);
        let (alice, bob) = (subject("alice"), subject("bob"));
        let envelope = encrypt_cell(&dek, &ctx("runs", "email", &alice), b"alice@example.com");
        for elsewhere in [
            ctx("rides", "email", &alice),
            ctx("runs", "full_name", &alice),
            ctx("runs", "email", &bob),
            // Length prefixes keep boundaries: "runs"+"email" ≠ "run"+"semail".
            ctx("run", "semail", &alice),
        ] {
            assert!(
                matches!(
                    decrypt_cell(&dek, &elsewhere, &envelope),
                    Err(CellError::WrongKeyOrTampered)
                ),
                "{elsewhere:?}"
            );
        }
    }

    #[test]
    fn a_relabelled_key_version_is_refused() {
        let (v1, v2) = (Dek::generate(1), Dek::generate(2));
        let alice = subject("alice");
        let here = ctx("runs", "email", &alice);
        let mut envelope = encrypt_cell(&v1, &here, b"x");
        assert!(matches!(
            decrypt_cell(&v2, &here, &envelope),
            Err(CellError::KeyVersionMismatch {
                envelope: 1,
                key: 2
            })
        ));
        // Rewriting the version field to match another key still fails authentication.
        envelope[1..5].copy_from_slice(&2u32.to_be_bytes());
        let v1_as_v2 = Dek::from_bytes(v1.bytes(), 2).unwrap();
        assert!(matches!(
            decrypt_cell(&v1_as_v2, &here, &envelope),
            Err(CellError::WrongKeyOrTampered)
        ));
    }

    #[test]
    fn truncated_and_unknown_envelopes_say_so() {
        let dek = Dek::generate(1);
        let alice = subject("alice");
        let here = ctx("runs", "email", &alice);
        let envelope = encrypt_cell(&dek, &here, b"");
        assert_eq!(envelope.len(), OVERHEAD);
        for len in [0, 1, 5, 17, OVERHEAD - 1] {
            assert!(
                matches!(
                    decrypt_cell(&dek, &here, &envelope[..len]),
                    Err(CellError::Truncated { len: l, min: OVERHEAD }) if l == len
                ),
                "{len}"
            );
        }
        let mut future = envelope.clone();
        future[0] = 2;
        assert!(matches!(
            decrypt_cell(&dek, &here, &future),
            Err(CellError::UnknownFormat { version: 2 })
        ));
        assert!(matches!(
            decrypt_cell(&dek, &here, b"plain text, not an envelope at all"),
            Err(CellError::UnknownFormat { version: b'p' })
        ));
    }

    #[test]
    fn keyring_errors_map_to_cell_errors() {
        assert!(matches!(
            CellError::from(KeyringError::Shredded),
            CellError::KeyDestroyed
        ));
        assert!(matches!(
            CellError::from(KeyringError::NotFound),
            CellError::KeyNotFound
        ));
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    /// Throughput figure for `docs/encryption.md`:
    /// `cargo test -p lethe-core --release bench_cells -- --ignored --nocapture`.
    #[test]
    #[ignore = "benchmark; run by hand"]
    fn bench_cells() {
        const CELLS: usize = 1_000_000;
        let dek = Dek::generate(1);
        let id = SubjectId::parse("user-000123").unwrap();
        let ctx = CellContext {
            dataset: "running_events",
            column: "email",
            subject_id: &id,
        };
        let plaintext = [b'x'; 32];
        let started = std::time::Instant::now();
        let envelopes: Vec<Vec<u8>> = (0..CELLS)
            .map(|_| encrypt_cell(&dek, &ctx, &plaintext))
            .collect();
        let sealed = started.elapsed();
        let started = std::time::Instant::now();
        for envelope in &envelopes {
            assert_eq!(decrypt_cell(&dek, &ctx, envelope).unwrap().len(), 32);
        }
        let opened = started.elapsed();
        let rate = |d: std::time::Duration| CELLS as f64 / d.as_secs_f64();
        println!(
            "{CELLS} cells of 32 bytes: encrypt {:.2} s ({:.0} cells/s, {:.1} MB/s of plaintext), \
             decrypt {:.2} s ({:.0} cells/s, {:.1} MB/s)",
            sealed.as_secs_f64(),
            rate(sealed),
            rate(sealed) * 32.0 / 1e6,
            opened.as_secs_f64(),
            rate(opened),
            rate(opened) * 32.0 / 1e6,
        );
    }
}
