//! Key wrapping: a [`Dek`] sealed under a [`Kek`] with AES-256-GCM.
//!
//! The associated data binds the wrapped key to its subject and version:
//! `"lethe.dek-wrap.v1" ‖ u32be(len(subject_ref)) ‖ subject_ref ‖ u32be(version)`, so a wrapped
//! key copied onto another subject's row, or relabelled with another version, fails to unwrap.

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Nonce, Tag};
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::KeyringError;
use super::keys::{Dek, KEY_LEN, Kek};

/// Length of an AES-GCM nonce: 96 bits (NIST SP 800-38D §8.2 recommends exactly this).
pub const NONCE_LEN: usize = 12;
/// Length of an AES-GCM authentication tag: 128 bits.
pub const TAG_LEN: usize = 16;

const WRAP_LABEL: &[u8] = b"lethe.dek-wrap.v1";

/// A subject's DEK encrypted under a KEK: what the database stores, never the DEK itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedDek {
    /// [`Kek::id`] of the KEK that wrapped this key.
    pub kek_id: String,
    /// The DEK's key version (the one written into each cell envelope it seals).
    pub version: u32,
    /// The random 96-bit AES-GCM nonce used for this wrapping.
    pub nonce: [u8; NONCE_LEN],
    /// AES-256-GCM ciphertext of the 32 key bytes followed by the 16-byte tag (48 bytes).
    pub ciphertext: Vec<u8>,
}

fn associated_data(subject_ref: &str, version: u32) -> Vec<u8> {
    let mut ad = Vec::with_capacity(WRAP_LABEL.len() + 8 + subject_ref.len());
    ad.extend_from_slice(WRAP_LABEL);
    ad.extend_from_slice(&(subject_ref.len() as u32).to_be_bytes());
    ad.extend_from_slice(subject_ref.as_bytes());
    ad.extend_from_slice(&version.to_be_bytes());
    ad
}

impl Kek {
    /// Wraps `dek` for the subject whose key-store reference is `subject_ref` (see
    /// [`super::SubjectHasher`]), under a fresh random nonce; the DEK's own
    /// [`Dek::version`] is recorded and bound into the associated data.
    ///
    /// # Panics
    /// If the operating system's random generator fails.
    pub fn wrap(&self, dek: &Dek, subject_ref: &str) -> WrappedDek {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let mut buffer = Vec::with_capacity(KEY_LEN + TAG_LEN);
        buffer.extend_from_slice(dek.bytes());
        let tag = self
            .cipher()
            .encrypt_inout_detached(
                &Nonce::from(nonce),
                &associated_data(subject_ref, dek.version()),
                buffer.as_mut_slice().into(),
            )
            .expect("a 32-byte message is within AES-GCM limits");
        buffer.extend_from_slice(tag.as_slice());
        WrappedDek {
            kek_id: self.id().to_string(),
            version: dek.version(),
            nonce,
            ciphertext: buffer,
        }
    }

    /// Unwraps a DEK that was wrapped for `subject_ref` under this KEK.
    ///
    /// # Errors
    /// - [`KeyringError::WrongKek`] when `wrapped.kek_id` names another KEK;
    /// - [`KeyringError::UnwrapFailed`] when authentication fails: another KEK with a forged
    ///   id, another subject, another version, or changed bytes.
    pub fn unwrap(&self, wrapped: &WrappedDek, subject_ref: &str) -> Result<Dek, KeyringError> {
        if wrapped.kek_id != self.id() {
            return Err(KeyringError::WrongKek {
                expected: self.id().to_string(),
                found: wrapped.kek_id.clone(),
            });
        }
        if wrapped.ciphertext.len() != KEY_LEN + TAG_LEN {
            return Err(KeyringError::UnwrapFailed);
        }
        let (body, tag) = wrapped.ciphertext.split_at(KEY_LEN);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(body);
        let tag = Tag::try_from(tag).map_err(|_| KeyringError::UnwrapFailed)?;
        self.cipher()
            .decrypt_inout_detached(
                &Nonce::from(wrapped.nonce),
                &associated_data(subject_ref, wrapped.version),
                key.as_mut_slice().into(),
                &tag,
            )
            .map_err(|_| KeyringError::UnwrapFailed)?;
        Ok(Dek::from_bytes(key.as_slice(), wrapped.version).expect("32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_then_unwrap_returns_the_same_key() {
        let kek = Kek::generate();
        let dek = Dek::generate(1);
        let wrapped = kek.wrap(&dek, "ref-a");
        assert_eq!(wrapped.kek_id, kek.id());
        assert_eq!(wrapped.version, 1);
        assert_eq!(wrapped.ciphertext.len(), 48);
        assert_ne!(&wrapped.ciphertext[..32], dek.bytes().as_slice());
        let back = kek.unwrap(&wrapped, "ref-a").unwrap();
        assert_eq!(back.bytes(), dek.bytes());
        assert_eq!(back.version(), 1);
    }

    #[test]
    fn the_same_key_wrapped_twice_gives_different_ciphertexts() {
        let (kek, dek) = (Kek::generate(), Dek::generate(1));
        let (a, b) = (kek.wrap(&dek, "r"), kek.wrap(&dek, "r"));
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn another_kek_cannot_unwrap_even_with_a_forged_id() {
        let (kek, other) = (Kek::generate(), Kek::generate());
        let wrapped = kek.wrap(&Dek::generate(1), "ref-a");
        assert!(matches!(
            other.unwrap(&wrapped, "ref-a"),
            Err(KeyringError::WrongKek { .. })
        ));
        let forged = WrappedDek {
            kek_id: other.id().to_string(),
            ..wrapped
        };
        assert!(matches!(
            other.unwrap(&forged, "ref-a"),
            Err(KeyringError::UnwrapFailed)
        ));
    }

    #[test]
    fn a_wrapped_key_cannot_move_to_another_subject_or_version() {
        let kek = Kek::generate();
        let wrapped = kek.wrap(&Dek::generate(1), "ref-a");
        assert!(matches!(
            kek.unwrap(&wrapped, "ref-b"),
            Err(KeyringError::UnwrapFailed)
        ));
        let relabelled = WrappedDek {
            version: 2,
            ..wrapped.clone()
        };
        assert!(matches!(
            kek.unwrap(&relabelled, "ref-a"),
            Err(KeyringError::UnwrapFailed)
        ));
        let mut flipped = wrapped.clone();
        flipped.ciphertext[5] ^= 1;
        assert!(matches!(
            kek.unwrap(&flipped, "ref-a"),
            Err(KeyringError::UnwrapFailed)
        ));
        let mut short = wrapped;
        short.ciphertext.pop();
        assert!(matches!(
            kek.unwrap(&short, "ref-a"),
            Err(KeyringError::UnwrapFailed)
        ));
    }

    #[test]
    fn a_wrapped_key_survives_a_serde_round_trip() {
        let kek = Kek::generate();
        let wrapped = kek.wrap(&Dek::generate(4), "ref");
        let json = serde_json::to_string(&wrapped).unwrap();
        let back: WrappedDek = serde_json::from_str(&json).unwrap();
        assert_eq!(back, wrapped);
        assert_eq!(kek.unwrap(&back, "ref").unwrap().version(), 4);
    }
}
