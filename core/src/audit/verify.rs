//! Offline verification of an audit chain (from the database or from an export file).

use serde::Serialize;

use super::chain::{AuditEntry, GENESIS_HASH};
use super::checkpoint::{Checkpoint, verify_checkpoints};
use super::signing::PublicKeys;

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
    /// recorded head or before the last signed checkpoint).
    Missing,
    /// A checkpoint is not valid: altered, signed by an unknown key, missing from the
    /// checkpoint chain, or not linked to the one before.
    Checkpoint,
    /// Entries come after the last signed checkpoint of a whole-log export: no signature
    /// covers them, so anyone could have appended them.
    Unanchored,
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
    /// Signed checkpoints checked (0 when verified without checkpoints).
    #[serde(default)]
    pub checkpoints_checked: u64,
    /// The last entry covered by a signed checkpoint that matched, if any: entries up to it
    /// cannot have been changed, removed or added without the signing key.
    #[serde(default)]
    pub anchored_through_seq: Option<i64>,
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
    verify_from(entries, 0, GENESIS_HASH.to_string(), expected_head)
}

/// [`verify_entries`] for a chain that starts after entry `prev_seq`, whose hash is
/// `prev_hash` (a slice of the log).
fn verify_from<I>(
    entries: I,
    mut prev_seq: i64,
    mut prev_hash: String,
    expected_head: Option<(i64, &str)>,
) -> VerifyReport
where
    I: IntoIterator<Item = AuditEntry>,
{
    let mut checked = 0u64;
    let report = |checked, head: &str, problem| VerifyReport {
        entries_checked: checked,
        head_hash: (checked > 0).then(|| head.to_string()),
        problem: Some(problem),
        checkpoints_checked: 0,
        anchored_through_seq: None,
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
        checkpoints_checked: 0,
        anchored_through_seq: None,
    }
}

/// What an export holds, for [`verify_with_checkpoints`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportScope {
    /// The whole log (`GET /v1/audit/export` without filters): it must start at entry 1 and
    /// hold every entry up to the last checkpoint given, so a cut-off tail is caught. Entries
    /// after the last checkpoint are allowed (no signature covers them yet); the report's
    /// `anchored_through_seq` says where the signed part ends.
    Whole,
    /// [`ExportScope::Whole`], and the export must end exactly at the last checkpoint: nothing
    /// unsigned (an export from `GET /v1/audit/export` always does, when the checkpoints are
    /// downloaded right after it), so an entry appended to it is caught too.
    WholeAnchored,
    /// A slice (a time range): verified against the checkpoints whose entry it holds (and one
    /// signing the entry just before its first); entries after the last of them are reported
    /// unanchored in `anchored_through_seq`, not as a problem.
    Range,
}

/// Verifies an export against signed checkpoints: the checkpoints' own chain and signatures
/// ([`verify_checkpoints`]), the entries' chain ([`verify_entries`]), and every checkpoint
/// that signs an entry of the export must name that entry's hash. With
/// [`ExportScope::Whole`], entries up to the last checkpoint must all be present; with
/// [`ExportScope::WholeAnchored`], none may follow it either.
pub fn verify_with_checkpoints(
    entries: Vec<AuditEntry>,
    checkpoints: &[Checkpoint],
    keys: &PublicKeys,
    scope: ExportScope,
) -> VerifyReport {
    let problem = |seq, kind, detail: String| ChainProblem { seq, kind, detail };
    let finish = |mut report: VerifyReport, problem: Option<ChainProblem>, anchored| {
        report.checkpoints_checked = checkpoints.len() as u64;
        report.anchored_through_seq = anchored;
        if report.problem.is_none() {
            report.problem = problem;
        }
        report
    };
    let first = entries.first().map(|e| (e.seq, e.prev_hash.clone()));
    let last_seq = entries.last().map_or(0, |e| e.seq);
    let hashes: std::collections::HashMap<i64, String> =
        entries.iter().map(|e| (e.seq, e.hash.clone())).collect();
    let report = match (&first, scope) {
        (Some((seq, prev)), ExportScope::Range) => {
            verify_from(entries, seq - 1, prev.clone(), None)
        }
        _ => verify_entries(entries, None),
    };
    if let Err((n, detail)) = verify_checkpoints(checkpoints, keys) {
        let seq = checkpoints.iter().find(|c| c.n == n).map_or(0, |c| c.seq);
        return finish(
            report,
            Some(problem(seq, ProblemKind::Checkpoint, detail)),
            None,
        );
    }
    if report.problem.is_some() {
        return finish(report, None, None);
    }
    let mut anchored = None;
    for cp in checkpoints {
        let found = match &first {
            Some((first_seq, first_prev)) if cp.seq == first_seq - 1 => Some(first_prev),
            _ => hashes.get(&cp.seq),
        };
        match found {
            // A checkpoint of the entry just before a slice pins its start, not its entries.
            Some(hash) if *hash == cp.entry_hash && cp.seq >= first.as_ref().map_or(1, |f| f.0) => {
                anchored = Some(cp.seq);
            }
            Some(hash) if *hash == cp.entry_hash => {}
            Some(_) => {
                let detail = format!(
                    "entry {} differs from signed checkpoint {}: the log up to it was altered or rewritten",
                    cp.seq, cp.n
                );
                return finish(
                    report,
                    Some(problem(cp.seq, ProblemKind::Altered, detail)),
                    anchored,
                );
            }
            None if scope != ExportScope::Range && cp.seq > last_seq => {
                let detail = format!(
                    "signed checkpoint {} covers entry {} but the export ends at entry {last_seq}: entries {}..{} were removed",
                    cp.n,
                    cp.seq,
                    last_seq + 1,
                    cp.seq
                );
                return finish(
                    report,
                    Some(problem(last_seq + 1, ProblemKind::Missing, detail)),
                    anchored,
                );
            }
            None => {}
        }
    }
    if scope == ExportScope::WholeAnchored && last_seq > anchored.unwrap_or(0) {
        let from = anchored.unwrap_or(0) + 1;
        let detail = format!(
            "entries {from}..{last_seq} come after the last signed checkpoint: no signature covers them (download the checkpoints after the export)"
        );
        return finish(
            report,
            Some(problem(from, ProblemKind::Unanchored, detail)),
            anchored,
        );
    }
    finish(report, None, anchored)
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
                let at = chrono::Utc.with_ymd_and_hms(2025, 1, 7, 10, 0, 0).unwrap()
                    + chrono::Duration::seconds(seq);
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

    fn checkpointed(n: i64, every: i64) -> (Vec<AuditEntry>, Vec<Checkpoint>, PublicKeys) {
        let signer = crate::audit::AuditSigner::generate();
        let keys = PublicKeys::new(&signer, &[]).unwrap();
        let entries = chain(n);
        let mut cps: Vec<Checkpoint> = Vec::new();
        for e in entries.iter().filter(|e| e.seq % every == 0 || e.seq == n) {
            let cp = Checkpoint::sign(&signer, cps.last(), e.seq, &e.hash, e.at);
            cps.push(cp);
        }
        (entries, cps, keys)
    }

    #[test]
    fn every_single_change_removal_insertion_reordering_and_cut_is_caught() {
        let (entries, cps, keys) = checkpointed(120, 25);
        let check =
            |e: Vec<AuditEntry>| verify_with_checkpoints(e, &cps, &keys, ExportScope::Whole);
        let intact = check(entries.clone());
        assert!(intact.is_intact(), "{intact:?}");
        assert_eq!(intact.anchored_through_seq, Some(120));
        assert_eq!(intact.checkpoints_checked, cps.len() as u64);
        for i in 0..entries.len() {
            let mut altered = entries.clone();
            altered[i].actor = "someone else".into();
            assert!(!check(altered).is_intact(), "altered {i}");
            let mut removed = entries.clone();
            removed.remove(i);
            assert!(!check(removed).is_intact(), "removed {i}");
            let mut inserted = entries.clone();
            inserted.insert(i, entries[i].clone());
            assert!(!check(inserted).is_intact(), "duplicated {i}");
            if i + 1 < entries.len() {
                let mut swapped = entries.clone();
                swapped.swap(i, i + 1);
                assert!(!check(swapped).is_intact(), "swapped {i}");
            }
            let cut: Vec<AuditEntry> = entries[..i].to_vec();
            assert!(!check(cut).is_intact(), "cut after {i}");
        }
        // An entry appended after the last checkpoint, even one that links, is not covered.
        let mut appended = entries.clone();
        let last = entries.last().unwrap();
        let mut extra = last.clone();
        extra.seq += 1;
        extra.prev_hash = last.hash.clone();
        extra.hash = extra.computed_hash();
        appended.push(extra);
        let lenient = check(appended.clone());
        assert!(lenient.is_intact(), "{lenient:?}");
        assert_eq!(
            lenient.anchored_through_seq,
            Some(120),
            "the signed part ends before it"
        );
        let p = verify_with_checkpoints(appended, &cps, &keys, ExportScope::WholeAnchored)
            .problem
            .unwrap();
        assert_eq!(p.kind, ProblemKind::Unanchored);
    }

    #[test]
    fn a_rewritten_chain_is_caught_by_the_checkpoints() {
        let (mut entries, cps, keys) = checkpointed(60, 20);
        // Change entry 10 and recompute every hash after it, as a DBA could.
        entries[9].action = "test.forged".into();
        let mut prev = entries[8].hash.clone();
        for e in entries.iter_mut().skip(9) {
            e.prev_hash = prev;
            e.hash = e.computed_hash();
            prev = e.hash.clone();
        }
        assert!(verify_entries(entries.clone(), None).is_intact());
        let p = verify_with_checkpoints(entries, &cps, &keys, ExportScope::Whole)
            .problem
            .unwrap();
        assert_eq!((p.seq, p.kind), (20, ProblemKind::Altered));
    }

    #[test]
    fn a_range_verifies_against_the_checkpoints_it_spans() {
        let (entries, cps, keys) = checkpointed(100, 20);
        let range: Vec<AuditEntry> = entries[30..75].to_vec(); // entries 31..=75
        let r = verify_with_checkpoints(range.clone(), &cps, &keys, ExportScope::Range);
        assert!(r.is_intact(), "{r:?}");
        assert_eq!(r.anchored_through_seq, Some(60));
        let mut altered = range.clone();
        altered[5].details = serde_json::json!({"n": 0});
        assert!(!verify_with_checkpoints(altered, &cps, &keys, ExportScope::Range).is_intact());
        // A range starting right after a checkpoint is pinned at its start too.
        let mut from_41: Vec<AuditEntry> = entries[40..50].to_vec();
        from_41[0].prev_hash = "f".repeat(64);
        from_41[0].hash = from_41[0].computed_hash();
        let mut prev = from_41[0].hash.clone();
        for e in from_41.iter_mut().skip(1) {
            e.prev_hash = prev;
            e.hash = e.computed_hash();
            prev = e.hash.clone();
        }
        assert!(!verify_with_checkpoints(from_41, &cps, &keys, ExportScope::Range).is_intact());
    }

    #[test]
    fn a_forged_or_missing_checkpoint_is_caught() {
        let (entries, mut cps, keys) = checkpointed(40, 10);
        cps[1].seq = 21;
        let p = verify_with_checkpoints(entries.clone(), &cps, &keys, ExportScope::Whole)
            .problem
            .unwrap();
        assert_eq!(p.kind, ProblemKind::Checkpoint);
        let (_, mut cps, _) = checkpointed(40, 10);
        cps.remove(0);
        assert!(!verify_with_checkpoints(entries, &cps, &keys, ExportScope::Whole).is_intact());
    }
}
