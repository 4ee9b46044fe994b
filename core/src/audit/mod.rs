//! The audit log: append-only, hash-chained, pseudonymous.
//!
//! Every entry carries the SHA-256 of the entry before it ([`chain`]), so removing, inserting,
//! reordering or altering an entry breaks the chain at that point and [`verify`] names it.
//! Entries name a data subject only by [`Pseudonymizer::pseudonym`] (an HMAC of the subject id),
//! so the log holds no personal data and never needs erasing.
//!
//! Every so often the head is signed ([`checkpoint`], Ed25519 keys in [`signing`]) and the
//! checkpoint written outside the database ([`sink`]), so that a rewrite of the whole chain
//! by someone with database access, or a database restored from an older backup, no longer
//! verifies; [`verify_with_checkpoints`] checks an export offline against them. The canonical
//! form hashes and signatures are computed over is [`canonical_json`]; `docs/audit.md`
//! describes it all for re-implementers.

mod canonical;
pub mod chain;
pub mod checkpoint;
mod pseudonym;
pub mod signing;
pub mod sink;
pub mod verify;

pub use canonical::canonical_json;
pub use chain::{AuditEntry, GENESIS_HASH, NewAuditEntry, entry_hash};
pub use checkpoint::{
    CHECKPOINT_KIND, Checkpoint, parse_checkpoints, sign_document, verify_checkpoints,
    verify_document,
};
pub use pseudonym::Pseudonymizer;
pub use signing::{AuditSigner, PublicKeyInfo, PublicKeys, SigningError, key_id};
pub use sink::{
    CheckpointRetention, CheckpointSink, CheckpointSinkOptions, DEFAULT_RETENTION_DAYS, SinkError,
};
pub use verify::{
    ChainProblem, ExportScope, ProblemKind, VerifyReport, verify_entries, verify_with_checkpoints,
};
