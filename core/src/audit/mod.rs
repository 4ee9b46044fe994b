//! The audit log: append-only, hash-chained, pseudonymous.
//!
//! Every entry carries the SHA-256 of the entry before it ([`chain`]), so removing, inserting,
//! reordering or altering an entry breaks the chain at that point and [`verify`] names it.
//! Entries name a data subject only by [`Pseudonymizer::pseudonym`] (an HMAC of the subject id),
//! so the log holds no personal data and never needs erasing.

pub mod chain;
mod pseudonym;
pub mod verify;

pub use chain::{AuditEntry, GENESIS_HASH, NewAuditEntry, entry_hash};
pub use pseudonym::Pseudonymizer;
pub use verify::{ChainProblem, ProblemKind, VerifyReport, verify_entries};
