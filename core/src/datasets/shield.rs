//! Rows shared with a held subject (GDPR Art. 17(3)(e)): in a dataset with more than one
//! subject column (a message table), a row naming an erased subject and a subject under a
//! legal hold is part of what the hold keeps, so every rewrite that erases — an erasure task,
//! a compaction applying pending erasures — keeps it whole.

use std::collections::HashSet;

use crate::keyring::SubjectHasher;
use crate::lake::{ErasePolicy, Shielded};
use crate::store::LegalHold;

/// What keeps the rows shared with the subjects `holds` name whole under `policy`: `None`
/// when the policy has one subject column (a row names one subject) or no hold in force
/// names its subject by keyed reference (holds placed before migration 0018 do not).
pub fn shield_held_subjects<'a>(
    holds: impl IntoIterator<Item = &'a LegalHold>,
    hasher: &SubjectHasher,
    policy: &ErasePolicy,
) -> Option<Shielded> {
    if policy.subject_columns.len() < 2 {
        return None;
    }
    let held: HashSet<String> = holds
        .into_iter()
        .filter_map(|h| h.subject_ref.clone())
        .collect();
    if held.is_empty() {
        return None;
    }
    let hasher = hasher.clone();
    Some(Shielded::new(move |subject| {
        held.contains(&hasher.subject_ref_str(subject))
    }))
}
