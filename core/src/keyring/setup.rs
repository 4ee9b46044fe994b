//! Building the keyring from configuration (`[crypto]`, see [`crate::config::CryptoSettings`]).

use std::sync::Arc;

use secrecy::ExposeSecret;

use super::{Kek, KeyStore, Keyring, KeyringError, SubjectHasher, TombstoneJournal};
use crate::config::{Settings, load_or_create_secret};

/// The KEK named by the settings: `crypto.kek` (base64), else the key file `crypto.kek_file`,
/// else `<data_dir>/kek.key` (created on first use, with a warning).
///
/// # Errors
/// [`KeyringError::InvalidKek`] for a malformed key, the key-file errors of
/// [`Kek::load_or_create`].
pub fn kek_from_settings(settings: &Settings) -> Result<Kek, KeyringError> {
    if let Some(kek) = &settings.crypto.kek {
        return Kek::from_base64(kek.expose_secret());
    }
    let path = settings
        .crypto
        .kek_file
        .clone()
        .unwrap_or_else(|| settings.storage.data_dir.join("kek.key"));
    Kek::load_or_create(path)
}

/// The subject-reference hasher named by the settings: `crypto.subject_key`, else
/// `<data_dir>/subject-ref.key` (created on first use).
///
/// # Errors
/// [`KeyringError::InvalidSubjectKey`] for a key shorter than 16 bytes; a store error when the
/// key file cannot be read or written.
pub fn subject_hasher_from_settings(settings: &Settings) -> Result<SubjectHasher, KeyringError> {
    let key = match &settings.crypto.subject_key {
        Some(key) => key.clone(),
        None => load_or_create_secret(&settings.storage.data_dir.join("subject-ref.key"))
            .map_err(KeyringError::store)?,
    };
    SubjectHasher::new(key.expose_secret().as_bytes())
}

/// The keyring described by the settings, on `store`, journaling tombstones in
/// `crypto.tombstone_journal` (default `<data_dir>/tombstones`).
///
/// # Errors
/// As [`kek_from_settings`] and [`subject_hasher_from_settings`].
pub fn keyring_from_settings(
    settings: &Settings,
    store: Arc<dyn KeyStore>,
) -> Result<Keyring, KeyringError> {
    let journal = settings
        .crypto
        .tombstone_journal
        .clone()
        .unwrap_or_else(|| {
            let dir = settings.storage.data_dir.join("tombstones");
            std::path::absolute(&dir)
                .unwrap_or(dir)
                .display()
                .to_string()
        });
    Ok(Keyring::new(
        kek_from_settings(settings)?,
        store,
        subject_hasher_from_settings(settings)?,
    )
    .with_journal(Arc::new(TombstoneJournal::open(&journal)?)))
}
