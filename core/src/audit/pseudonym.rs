//! Keyed pseudonyms for data subjects (GDPR Art. 4(5) pseudonymisation).

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::domain::SubjectId;

/// Turns subject ids into stable pseudonyms: `hex(HMAC-SHA256(key, subject_id))`.
///
/// Without the key a pseudonym cannot be linked back to a subject, even by trying every
/// plausible id; with it, an auditor holding a subject id can find that subject's entries.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: SecretString,
}

impl Pseudonymizer {
    /// A pseudonymizer with the given key (any length; 32 random bytes recommended).
    pub fn new(key: SecretString) -> Self {
        Self { key }
    }

    /// The pseudonym of `subject`: 64 lower-case hex digits. The stand-in of an erased
    /// subject (`pseudonym:<hex>`, see [`SubjectId::is_erased_stand_in`]) has the pseudonym it
    /// carries, so requests filed after the erasure link to the earlier ones in the audit log.
    pub fn pseudonym(&self, subject: &SubjectId) -> String {
        if let Some(carried) = subject
            .as_str()
            .strip_prefix(crate::domain::ERASED_SUBJECT_PREFIX)
            .filter(|p| p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return carried.to_string();
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(subject.as_str().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(<key>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_keyed_and_hide_the_id() {
        let id = SubjectId::parse("user-42").unwrap();
        let a = Pseudonymizer::new(SecretString::from("k1".to_string()));
        let b = Pseudonymizer::new(SecretString::from("k2".to_string()));
        assert_eq!(a.pseudonym(&id), a.pseudonym(&id));
        assert_ne!(a.pseudonym(&id), b.pseudonym(&id));
        assert!(!a.pseudonym(&id).contains("42"));
        assert_eq!(a.pseudonym(&id).len(), 64);
    }
}
