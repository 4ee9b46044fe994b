//! Offline verification of an audit chain (from the database or from an export file).

use serde::Serialize;

use super::chain::{AuditEntry, GENESIS_HASH};

/// What is wrong at the first broken link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The entry's fields no longer match its hash.
    Altered,
    /// An entry appears that the chain does not expect (duplicate or out-of-order sequence, or
    /// a `prev_hash` that does not match the entry before).
    Inserted,
    /// One or more entries are absent (a gap in the sequence, or the chain ends before the
    /// recorded head).
    Missing,
}

/// The first broken link of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChainProblem {
    /// Sequence number where the chain breaks.
    pub seq: i64,
    /// What kind of break.
    pub kind: ProblemKind,
    /// A sentence for the auditor.
    pub detail: String,
}

/// Outcome of [`verify_entries`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    /// Entries read.
    pub entries_checked: u64,
    /// Hash of the last entry read (the chain head), if any.
    pub head_hash: Option<String>,
    /// The first problem, or `None` when the chain is intact.
    pub problem: Option<ChainProblem>,
}

impl VerifyReport {
    /// Whether the chain is intact.
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// Walks entries in sequence order and reports the first altered, inserted or missing entry.
///
/// `expected_head` is the `(seq, hash)` the store recorded as the last append; when given, a
/// chain that stops short of it (its tail deleted) is reported as [`ProblemKind::Missing`].
/// Entries must start at seq 1.
pub fn verify_entries<I>(entries: I, expected_head: Option<(i64, &str)>) -> VerifyReport
where
    I: IntoIterator<Item = AuditEntry>,
{
    let mut checked = 0u64;
    let mut prev_seq = 0i64;
    let mut prev_hash = GENESIS_HASH.to_string();
    let report = |checked, head: &str, problem| VerifyReport {
        entries_checked: checked,
        head_hash: (checked > 0).then(|| head.to_string()),
        problem: Some(problem),
    };
    for entry in entries {
        checked += 1;
        let expected = prev_seq + 1;
        if entry.seq > expected {
            return report(
                checked,
                &prev_hash,
                ChainProblem {
                    seq: expected,
                    kind: ProblemKind::Missing,
                    detail: format!(
                        "entries {expected}..{} are missing (next entry found is {})",
                        entry.seq - 1,
                        entry.seq
                    ),
                },
            );
        }
        if entry.seq < expected {
            return report(
                checked,
                &prev_hash,
                ChainProblem {
                    seq: entry.seq,
                    kind: ProblemKind::Inserted,
                    detail: format!(
                        "entry {} appears after entry {prev_seq}: duplicated or inserted",
                        entry.seq
                    ),
                },
            );
        }
        if entry.prev_hash != prev_hash {
            return report(
                checked,
                &prev_hash,
                ChainProblem {
                    seq: entry.seq,
                    kind: ProblemKind::Inserted,
                    detail: format!(
                        "entry {} does not link to entry {prev_seq} (prev_hash mismatch): an entry was inserted or replaced here",
                        entry.seq
                    ),
                },
            );
        }
        if entry.computed_hash() != entry.hash {
            return report(
                checked,
                &prev_hash,
                ChainProblem {
                    seq: entry.seq,
                    kind: ProblemKind::Altered,
                    detail: format!(
                        "entry {} was altered: its content no longer matches its hash",
                        entry.seq
                    ),
                },
            );
        }
        prev_seq = entry.seq;
        prev_hash = entry.hash;
    }
    if let Some((head_seq, head_hash)) = expected_head {
        if head_seq > prev_seq {
            return report(
                checked,
                &prev_hash,
                ChainProblem {
                    seq: prev_seq + 1,
                    kind: ProblemKind::Missing,
                    detail: format!(
                        "the chain ends at entry {prev_seq} but the recorded head is entry {head_seq}: entries {}..{head_seq} were removed",
                        prev_seq + 1
                    ),
                },
            );
        }
        if head_seq == prev_seq && head_hash != prev_hash {
            return report(
                checked,
                &prev_hash,
                ChainProblem {
                    seq: prev_seq,
                    kind: ProblemKind::Altered,
                    detail: "the last entry's hash differs from the recorded head".into(),
                },
            );
        }
    }
    VerifyReport {
        entries_checked: checked,
        head_hash: (checked > 0).then_some(prev_hash),
        problem: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::entry_hash;
    use chrono::TimeZone;

    fn chain(n: i64) -> Vec<AuditEntry> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let at = chrono::Utc
                    .with_ymd_and_hms(2025, 1, 7, 10, 0, seq as u32)
                    .unwrap();
                let details = serde_json::json!({"n": seq});
                let hash = entry_hash(&prev, seq, at, "system", "test.step", None, None, &details);
                let e = AuditEntry {
                    seq,
                    at,
                    actor: "system".into(),
                    action: "test.step".into(),
                    request_id: None,
                    subject: None,
                    details,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                e
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let c = chain(5);
        let head = c[4].hash.clone();
        let r = verify_entries(c, Some((5, &head)));
        assert!(r.is_intact(), "{r:?}");
        assert_eq!(r.entries_checked, 5);
        assert_eq!(r.head_hash.as_deref(), Some(head.as_str()));
    }

    #[test]
    fn an_altered_entry_is_named() {
        let mut c = chain(5);
        c[2].details = serde_json::json!({"n": 99});
        let p = verify_entries(c, None).problem.unwrap();
        assert_eq!((p.seq, p.kind), (3, ProblemKind::Altered));
    }

    #[test]
    fn a_removed_entry_is_named() {
        let mut c = chain(5);
        c.remove(1);
        let p = verify_entries(c, None).problem.unwrap();
        assert_eq!((p.seq, p.kind), (2, ProblemKind::Missing));
    }

    #[test]
    fn a_removed_and_renumbered_entry_is_caught_by_the_link() {
        let mut c = chain(5);
        c.remove(1);
        for (i, e) in c.iter_mut().enumerate() {
            e.seq = i as i64 + 1;
        }
        let p = verify_entries(c, None).problem.unwrap();
        assert_eq!((p.seq, p.kind), (2, ProblemKind::Inserted));
    }

    #[test]
    fn an_inserted_entry_is_named() {
        let mut c = chain(5);
        let dup = c[1].clone();
        c.insert(2, dup);
        let p = verify_entries(c, None).problem.unwrap();
        assert_eq!((p.seq, p.kind), (2, ProblemKind::Inserted));
    }

    #[test]
    fn a_truncated_tail_is_caught_by_the_head() {
        let c = chain(5);
        let head = c[4].hash.clone();
        let r = verify_entries(c.into_iter().take(3), Some((5, &head)));
        let p = r.problem.unwrap();
        assert_eq!((p.seq, p.kind), (4, ProblemKind::Missing));
    }
}
