//! The keyring: per-subject data keys for crypto-shredding.
//!
//! Each data subject has a data encryption key ([`Dek`], AES-256-GCM) that encrypts their PII
//! cells ([`cell`]). The DEK is stored only wrapped ([`WrappedDek`]) by a key encryption key
//! ([`Kek`]), in a [`KeyStore`] keyed by a keyed hash of the subject id ([`SubjectHasher`]).
//! Erasure destroys the wrapped DEK and leaves a tombstone ([`Keyring::shred`]): every copy of
//! the subject's encrypted cells — in the lake, in snapshots, in backups — becomes unreadable at
//! once (GDPR Art. 17), and the tombstone makes ingest refuse the subject from then on.
//!
//! ```text
//! KEK (config or key file) ──wraps──▶ WrappedDek per subject (database) ──unwraps to──▶ DEK
//!                                                                        └─seals──▶ cells (lake)
//! ```
//!
//! The byte formats, the threat model and the sources are in `docs/encryption.md`.

pub mod blob;
mod cache;
pub mod cell;
pub mod columns;
mod contract;
mod journal;
mod keys;
mod keystore;
mod ring;
mod setup;
mod subject;
mod wrap;

use std::path::PathBuf;

pub use cache::{DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL};
pub use contract::check_key_store_contract;
pub use journal::{ReapplyReport, TombstoneJournal};
pub use keys::{Dek, KEY_LEN, Kek};
pub use keystore::{KeyStore, MemoryKeyStore, StoredKey};
pub use ring::{Keyring, RotationReport, ShredOutcome};
pub use setup::{kek_from_settings, keyring_from_settings, subject_hasher_from_settings};
pub use subject::{MIN_SUBJECT_KEY_LEN, SubjectHasher};
pub use wrap::{NONCE_LEN, TAG_LEN, WrappedDek};

/// What can go wrong in the keyring. No variant carries key bytes or a subject id.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The subject's key was destroyed (crypto-shredded); a tombstone stands in its place.
    #[error("the subject's key was destroyed (crypto-shredded)")]
    Shredded,
    /// The subject has no key and no tombstone: nothing was ever encrypted for them.
    #[error("the subject has no data key")]
    NotFound,
    /// A KEK given as text was malformed.
    #[error("invalid KEK: {0}")]
    InvalidKek(String),
    /// The subject-hashing key is too short.
    #[error("the subject-hashing key must be at least {min} bytes, got {got}")]
    InvalidSubjectKey {
        /// Least accepted length in bytes.
        min: usize,
        /// Length given.
        got: usize,
    },
    /// A KEK key file could not be read or created.
    #[error("KEK key file {}", path.display())]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A KEK key file exists but is unsafe or malformed; it is left as it is.
    #[error("KEK key file {} refused: it {reason}", path.display())]
    KeyFileRejected {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A wrapped key names another KEK than the one asked to unwrap it.
    #[error("wrapped key was made by KEK {found}, not by KEK {expected}")]
    WrongKek {
        /// Id of the KEK asked to unwrap.
        expected: String,
        /// Id recorded in the wrapped key.
        found: String,
    },
    /// A wrapped key names a KEK the keyring does not hold (configure it as a previous KEK).
    #[error("wrapped key was made by KEK {kek_id}, which this keyring does not hold")]
    UnknownKek {
        /// Id recorded in the wrapped key.
        kek_id: String,
    },
    /// A wrapped key failed authentication: wrong KEK, moved to another subject, changed bytes.
    #[error("wrapped key does not authenticate: wrong KEK, another subject, or tampered")]
    UnwrapFailed,
    /// The key store failed.
    #[error("key store: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl KeyringError {
    /// Wraps a key store backend's error (for [`KeyStore`] implementations).
    pub fn store(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Store(error.into())
    }
}
