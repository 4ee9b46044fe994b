//! Audit entries and the hash that links each to the one before it.
//!
//! `hash = hex(SHA-256(prev_hash ‖ "\n" ‖ canonical_json(entry without hash fields)))`, where
//! the canonical JSON has object keys sorted at every depth and no insignificant whitespace.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::canonical::canonical_json;
use crate::domain::{Timestamp, to_db};

/// The `prev_hash` of the first entry: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An entry about to be appended. The store assigns `seq`, `at`, `prev_hash` and `hash`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    /// Who acted: `user:<uuid>`, `worker:<id>` or `system`.
    pub actor: String,
    /// What happened, dotted: `request.created`, `request.approved`, `job.started`, …
    pub action: String,
    /// The privacy request concerned, if any.
    pub request_id: Option<String>,
    /// Pseudonym of the data subject concerned, if any (never the id itself).
    pub subject: Option<String>,
    /// Further facts (counts, dataset names, reasons); must hold no personal data.
    pub details: Value,
}

impl NewAuditEntry {
    /// An entry with empty details and no request or subject.
    pub fn new(actor: impl Into<String>, action: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            action: action.into(),
            request_id: None,
            subject: None,
            details: Value::Object(Default::default()),
        }
    }

    /// Sets the request id.
    pub fn request(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// Sets the subject pseudonym.
    pub fn subject(mut self, pseudonym: impl Into<String>) -> Self {
        self.subject = Some(pseudonym.into());
        self
    }

    /// Sets the details.
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// One link of the chain, as stored and exported (one JSON object per line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// When the entry was appended (UTC, microseconds).
    pub at: chrono::DateTime<chrono::Utc>,
    /// Who acted.
    pub actor: String,
    /// What happened.
    pub action: String,
    /// The privacy request concerned, if any.
    pub request_id: Option<String>,
    /// Pseudonym (HMAC-SHA256, hex) of the data subject concerned, if any.
    pub subject: Option<String>,
    /// Further facts, free of personal data.
    pub details: Value,
    /// `hash` of the entry `seq - 1` ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// SHA-256 (hex) over `prev_hash` and the canonical encoding of this entry.
    pub hash: String,
}

impl AuditEntry {
    /// Recomputes this entry's hash from its fields and `prev_hash`.
    pub fn computed_hash(&self) -> String {
        entry_hash(
            &self.prev_hash,
            self.seq,
            self.at,
            &self.actor,
            &self.action,
            self.request_id.as_deref(),
            self.subject.as_deref(),
            &self.details,
        )
    }
}

/// The chain hash of an entry: SHA-256 over `prev_hash`, a newline, and the canonical JSON of
/// `{seq, at, actor, action, request_id, subject, details}` (keys sorted, compact, `at` as
/// fixed-width RFC 3339 with microseconds). Returns 64 lower-case hex digits.
#[allow(clippy::too_many_arguments)]
pub fn entry_hash(
    prev_hash: &str,
    seq: i64,
    at: Timestamp,
    actor: &str,
    action: &str,
    request_id: Option<&str>,
    subject: Option<&str>,
    details: &Value,
) -> String {
    let body = serde_json::json!({
        "seq": seq,
        "at": to_db(at),
        "actor": actor,
        "action": action,
        "request_id": request_id,
        "subject": subject,
        "details": details,
    });
    let canonical = canonical_json(&body);
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical.as_bytes());
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2025, 1, 7, 10, 0, 0).unwrap()
    }

    #[test]
    fn the_hash_does_not_depend_on_key_order() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":2,"x":[1,{"q":1,"p":2}]}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a":{"x":[1,{"p":2,"q":1}],"y":2},"b":1}"#).unwrap();
        let h = |d: &Value| entry_hash(GENESIS_HASH, 1, at(), "system", "x", None, None, d);
        assert_eq!(h(&a), h(&b));
    }

    #[test]
    fn every_field_changes_the_hash() {
        let d = serde_json::json!({"n": 1});
        let base = entry_hash(GENESIS_HASH, 1, at(), "a", "x", Some("r"), Some("s"), &d);
        assert_ne!(
            base,
            entry_hash("1", 1, at(), "a", "x", Some("r"), Some("s"), &d)
        );
        assert_ne!(
            base,
            entry_hash(GENESIS_HASH, 2, at(), "a", "x", Some("r"), Some("s"), &d)
        );
        assert_ne!(
            base,
            entry_hash(GENESIS_HASH, 1, at(), "b", "x", Some("r"), Some("s"), &d)
        );
        assert_ne!(
            base,
            entry_hash(GENESIS_HASH, 1, at(), "a", "y", Some("r"), Some("s"), &d)
        );
        assert_ne!(
            base,
            entry_hash(GENESIS_HASH, 1, at(), "a", "x", None, Some("s"), &d)
        );
        assert_ne!(
            base,
            entry_hash(GENESIS_HASH, 1, at(), "a", "x", Some("r"), None, &d)
        );
        let d2 = serde_json::json!({"n": 2});
        assert_ne!(
            base,
            entry_hash(GENESIS_HASH, 1, at(), "a", "x", Some("r"), Some("s"), &d2)
        );
        assert_eq!(base.len(), 64);
    }
}
