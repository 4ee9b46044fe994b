//! Subject references: the keyed hash under which a subject's key and tombstone are stored.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::KeyringError;
use crate::domain::SubjectId;

/// Domain-separation label, so a subject reference never equals another HMAC of the same id
/// under the same key (e.g. an audit pseudonym, should an operator reuse that key).
const LABEL: &[u8] = b"lethe.keyring.subject-ref.v1\0";

/// Minimum length of the hashing key in bytes (128 bits); 32 random bytes are recommended.
pub const MIN_SUBJECT_KEY_LEN: usize = 16;

/// Turns a subject id into its key-store reference:
/// `hex(HMAC-SHA256(key, "lethe.keyring.subject-ref.v1\0" ‖ subject_id))`, 64 hex digits.
///
/// The key store and its tombstones hold only this reference, never the subject id, so a
/// tombstone keeps no personal data (GDPR Art. 17; DESIGN.md, crypto-shredding); without the
/// key, a reference cannot be linked back to a subject even by trying every plausible id.
///
/// The key must never change: a new key gives every subject a new reference, orphaning every
/// stored key and every tombstone. It is therefore not derived from the KEK, which rotates.
#[derive(Clone)]
pub struct SubjectHasher {
    key: Zeroizing<Vec<u8>>,
}

impl SubjectHasher {
    /// A hasher with the given secret key (zeroized on drop).
    ///
    /// # Errors
    /// [`KeyringError::InvalidSubjectKey`] when the key is shorter than
    /// [`MIN_SUBJECT_KEY_LEN`] bytes.
    pub fn new(key: &[u8]) -> Result<Self, KeyringError> {
        if key.len() < MIN_SUBJECT_KEY_LEN {
            return Err(KeyringError::InvalidSubjectKey {
                min: MIN_SUBJECT_KEY_LEN,
                got: key.len(),
            });
        }
        Ok(Self {
            key: Zeroizing::new(key.to_vec()),
        })
    }

    /// The reference of `subject`: 64 lower-case hex digits.
    pub fn subject_ref(&self, subject: &SubjectId) -> String {
        self.subject_ref_str(subject.as_str())
    }

    /// What an erased subject's account stores in place of its e-mail (GDPR Art. 17):
    /// `erased:<hex HMAC-SHA256(key, "email:" + e-mail)>`. Signing in with the address still
    /// finds the account; the address itself is no longer stored, and without the key the
    /// stand-in cannot be linked back to it by trying addresses.
    pub fn erased_email(&self, email: &str) -> String {
        format!("erased:{}", self.subject_ref_str(&format!("email:{email}")))
    }

    /// [`SubjectHasher::subject_ref`] of a subject id read from a lake row (not re-validated).
    pub fn subject_ref_str(&self, subject: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(LABEL);
        mac.update(subject.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

impl fmt::Debug for SubjectHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectHasher(<key>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_stable_keyed_and_hide_the_id() {
        let id = SubjectId::parse("user-42").unwrap();
        let a = SubjectHasher::new(&[1u8; 32]).unwrap();
        let b = SubjectHasher::new(&[2u8; 32]).unwrap();
        assert_eq!(a.subject_ref(&id), a.subject_ref(&id));
        assert_ne!(a.subject_ref(&id), b.subject_ref(&id));
        assert_ne!(
            a.subject_ref(&id),
            a.subject_ref(&SubjectId::parse("user-43").unwrap())
        );
        assert_eq!(a.subject_ref(&id).len(), 64);
        assert!(a.subject_ref(&id).bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!a.subject_ref(&id).contains("user"));
        assert!(matches!(
            SubjectHasher::new(&[0u8; 15]),
            Err(KeyringError::InvalidSubjectKey { got: 15, .. })
        ));
        assert!(!format!("{a:?}").contains("1, 1"));
    }
}
