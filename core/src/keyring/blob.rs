//! Sealed blobs: whole files (access and portability exports) encrypted at rest under a fresh
//! random key that is itself wrapped by the KEK and stored in the blob's header.
//!
//! ```text
//! "LETHEBL1" ‖ u32be(n) ‖ wrapped key (n bytes, JSON of WrappedDek) ‖ nonce (12) ‖ ciphertext ‖ tag (16)
//! ```
//!
//! The associated data of the AES-256-GCM seal is `"lethe.blob.v1" ‖ u32be(len(context)) ‖
//! context`, and the key is wrapped for the same context, so a blob copied under another name
//! (another request's export) does not open. Opening needs the KEK that wrapped the key; a KEK
//! rotation re-wraps it in place ([`Keyring::rewrap_blob`], run over the exports by
//! `lethe-service keys rotate-kek`).

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Nonce, Tag};
use rand::RngCore;
use rand::rngs::OsRng;

use super::{Dek, Keyring, KeyringError, NONCE_LEN, TAG_LEN, WrappedDek};

/// First bytes of every sealed blob.
pub const BLOB_MAGIC: &[u8; 8] = b"LETHEBL1";
const AD_LABEL: &[u8] = b"lethe.blob.v1";

fn associated_data(context: &str) -> Vec<u8> {
    let mut ad = Vec::with_capacity(AD_LABEL.len() + 4 + context.len());
    ad.extend_from_slice(AD_LABEL);
    ad.extend_from_slice(&(context.len() as u32).to_be_bytes());
    ad.extend_from_slice(context.as_bytes());
    ad
}

/// Whether `bytes` start like a sealed blob.
pub fn is_sealed_blob(bytes: &[u8]) -> bool {
    bytes.starts_with(BLOB_MAGIC)
}

impl Keyring {
    /// Seals `plaintext` for `context` (e.g. `export:<request id>`) under a fresh key wrapped
    /// by the current KEK. The result is `plaintext.len()` + about 190 bytes.
    ///
    /// # Panics
    /// If the operating system's random generator fails.
    pub fn seal_blob(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let key = Dek::generate(1);
        let wrapped = serde_json::to_vec(&self.current_kek_for_blobs().wrap(&key, context))
            .expect("a wrapped key serialises");
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(plaintext.len() + wrapped.len() + 48);
        out.extend_from_slice(BLOB_MAGIC);
        out.extend_from_slice(&(wrapped.len() as u32).to_be_bytes());
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&nonce);
        let body_at = out.len();
        out.extend_from_slice(plaintext);
        let tag = key
            .cipher()
            .encrypt_inout_detached(
                &Nonce::from(nonce),
                &associated_data(context),
                out[body_at..].as_mut().into(),
            )
            .expect("a blob is within AES-GCM's 64 GiB limit");
        out.extend_from_slice(tag.as_slice());
        out
    }

    /// Opens a blob sealed by [`Keyring::seal_blob`] for the same `context`.
    ///
    /// # Errors
    /// [`KeyringError::UnwrapFailed`] for a blob that is malformed, tampered with, or sealed
    /// for another context; [`KeyringError::UnknownKek`] when its key was wrapped by a KEK this
    /// keyring does not hold.
    pub fn open_blob(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyringError> {
        let bad = || KeyringError::UnwrapFailed;
        let rest = sealed.strip_prefix(BLOB_MAGIC.as_slice()).ok_or_else(bad)?;
        let (len, rest) = rest.split_at_checked(4).ok_or_else(bad)?;
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        let (wrapped, rest) = rest.split_at_checked(len).ok_or_else(bad)?;
        let wrapped: WrappedDek = serde_json::from_slice(wrapped).map_err(|_| bad())?;
        let (nonce, rest) = rest.split_at_checked(NONCE_LEN).ok_or_else(bad)?;
        let body_len = rest.len().checked_sub(TAG_LEN).ok_or_else(bad)?;
        let (body, tag) = rest.split_at(body_len);
        let key = self.unwrap_for_blobs(&wrapped, context)?;
        let mut plaintext = body.to_vec();
        key.cipher()
            .decrypt_inout_detached(
                &Nonce::from(<[u8; NONCE_LEN]>::try_from(nonce).expect("12 bytes")),
                &associated_data(context),
                plaintext.as_mut_slice().into(),
                &Tag::try_from(tag).map_err(|_| bad())?,
            )
            .map_err(|_| bad())?;
        Ok(plaintext)
    }
}

impl Keyring {
    /// Re-wraps the key in the header of `sealed` (sealed for `context`) under this keyring's
    /// current KEK, for a KEK rotation: the body (nonce, ciphertext, tag) is kept byte for
    /// byte, so the blob opens to the same plaintext with the new KEK only. `None` when the
    /// key is already wrapped by the current KEK.
    ///
    /// # Errors
    /// [`KeyringError::UnwrapFailed`] for a malformed blob or one sealed for another context;
    /// [`KeyringError::UnknownKek`] when its key was wrapped by a KEK this keyring does not
    /// hold (configure the old KEK as a previous one).
    pub fn rewrap_blob(
        &self,
        context: &str,
        sealed: &[u8],
    ) -> Result<Option<Vec<u8>>, KeyringError> {
        let bad = || KeyringError::UnwrapFailed;
        let rest = sealed.strip_prefix(BLOB_MAGIC.as_slice()).ok_or_else(bad)?;
        let (len, rest) = rest.split_at_checked(4).ok_or_else(bad)?;
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        let (wrapped, body) = rest.split_at_checked(len).ok_or_else(bad)?;
        let wrapped: WrappedDek = serde_json::from_slice(wrapped).map_err(|_| bad())?;
        if body.len() < NONCE_LEN + TAG_LEN {
            return Err(bad());
        }
        let current = self.current_kek_for_blobs();
        if wrapped.kek_id == current.id() {
            return Ok(None);
        }
        let key = self.unwrap_for_blobs(&wrapped, context)?;
        let rewrapped =
            serde_json::to_vec(&current.wrap(&key, context)).expect("a wrapped key serialises");
        let mut out = Vec::with_capacity(BLOB_MAGIC.len() + 4 + rewrapped.len() + body.len());
        out.extend_from_slice(BLOB_MAGIC);
        out.extend_from_slice(&(rewrapped.len() as u32).to_be_bytes());
        out.extend_from_slice(&rewrapped);
        out.extend_from_slice(body);
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::keyring::{Kek, MemoryKeyStore, SubjectHasher};

    fn keyring(kek: Kek) -> Keyring {
        Keyring::new(
            kek,
            Arc::new(MemoryKeyStore::new()),
            SubjectHasher::new(&[3u8; 32]).unwrap(),
        )
    }

    #[test]
    fn a_blob_opens_only_for_its_context_and_untampered() {
        let ring = keyring(Kek::generate());
        let zip = b"PK\x03\x04 the export".to_vec();
        let sealed = ring.seal_blob("export:r-1", &zip);
        assert!(is_sealed_blob(&sealed));
        assert!(
            !sealed.windows(10).any(|w| w == b"the export"),
            "no plaintext at rest"
        );
        assert_eq!(ring.open_blob("export:r-1", &sealed).unwrap(), zip);
        assert!(matches!(
            ring.open_blob("export:r-2", &sealed),
            Err(KeyringError::UnwrapFailed)
        ));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 20;
        tampered[last] ^= 1;
        assert!(ring.open_blob("export:r-1", &tampered).is_err());
        assert!(
            ring.open_blob("export:r-1", &sealed[..30]).is_err(),
            "truncated"
        );
        assert!(ring.open_blob("export:r-1", b"PK not sealed").is_err());
    }

    #[test]
    fn another_kek_cannot_open_a_blob_and_a_previous_kek_still_can() {
        use base64::Engine;
        let raw_old = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let sealed = keyring(Kek::from_base64(&raw_old).unwrap()).seal_blob("export:r-1", b"data");
        let other = keyring(Kek::generate());
        assert!(other.open_blob("export:r-1", &sealed).is_err());
        let rotated =
            keyring(Kek::generate()).with_previous_kek(Kek::from_base64(&raw_old).unwrap());
        assert_eq!(rotated.open_blob("export:r-1", &sealed).unwrap(), b"data");
    }

    #[test]
    fn a_rewrapped_blob_opens_with_the_new_kek_only() {
        use base64::Engine as _;
        let b64 = |raw: [u8; 32]| base64::engine::general_purpose::STANDARD.encode(raw);
        let old_b64 = b64([1u8; 32]);
        let before = keyring(Kek::from_base64(&old_b64).unwrap());
        let zip = b"PK\x03\x04 the export".to_vec();
        let sealed = before.seal_blob("export:r-1", &zip);

        let new_b64 = b64([2u8; 32]);
        let rotating = keyring(Kek::from_base64(&new_b64).unwrap())
            .with_previous_kek(Kek::from_base64(&old_b64).unwrap());
        assert!(matches!(
            rotating.rewrap_blob("export:r-2", &sealed),
            Err(KeyringError::UnwrapFailed)
        ));
        let rewrapped = rotating
            .rewrap_blob("export:r-1", &sealed)
            .unwrap()
            .unwrap();
        assert_eq!(
            &rewrapped[rewrapped.len() - 40..],
            &sealed[sealed.len() - 40..],
            "the body is kept"
        );
        assert!(
            rotating
                .rewrap_blob("export:r-1", &rewrapped)
                .unwrap()
                .is_none()
        );

        let after = keyring(Kek::from_base64(&new_b64).unwrap());
        assert_eq!(after.open_blob("export:r-1", &rewrapped).unwrap(), zip);
        assert!(matches!(
            before.open_blob("export:r-1", &rewrapped),
            Err(KeyringError::UnknownKek { .. })
        ));
        assert!(matches!(
            after.rewrap_blob("export:r-1", &sealed),
            Err(KeyringError::UnknownKek { .. })
        ));
    }
}
