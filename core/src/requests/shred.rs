//! The first phase of an erasure: destroy the subject's data key (crypto-shredding).
//!
//! From that moment every copy of the subject's encrypted PII — in the lake, in old snapshots,
//! in backups — is unreadable; the physical rewrite follows, batched (GDPR Art. 17, and
//! Art. 32 on encryption).

use std::time::Instant;

use serde_json::json;

use super::RequestError;
use crate::audit::NewAuditEntry;
use crate::keyring::{Keyring, ShredOutcome};
use crate::store::{PrivacyRequest, Store};

/// Destroys the data key of the subject of erasure `request`, writes the tombstone, and records
/// the moment on the request with a `subject.key_destroyed` audit entry (once). A restriction of
/// the subject's processing (GDPR Art. 18) is lifted with it (`subject.restriction_lifted`,
/// reason `erased`): nothing is left to restrict, and the list of restricted subjects must not
/// keep an erased subject's id. Idempotent. Returns whether this call recorded it.
///
/// The destruction is claimed on the request first ([`Store::claim_key_destruction`]): a
/// request cancelled or rejected meanwhile keeps its key, and once claimed the request can no
/// longer be cancelled, so a cancelled request never has an erased subject. A crash between
/// the claim and the destruction is repaired by the next call (the plan's): the key of a
/// claimed request is destroyed again (idempotent) and audited if it was still there.
///
/// # Errors
/// [`RequestError::Keyring`] when the key store fails; store and export-store errors.
pub async fn destroy_subject_key(
    store: &Store,
    keyring: &Keyring,
    request: &PrivacyRequest,
    actor: &str,
) -> Result<bool, RequestError> {
    let claimed = store.claim_key_destruction(&request.id).await?;
    if !claimed {
        let current = store.request(&request.id).await?;
        if current.key_destroyed_at.is_none() {
            // Cancelled or rejected: the subject keeps their key.
            return Ok(false);
        }
    }
    // Earlier access and portability exports hold the subject's PII sealed under the KEK, not
    // under the data key: they go with the key (again on a retry, until none is left).
    crate::exports::destroy_subject_exports(store, request, actor).await?;
    let started = Instant::now();
    let outcome = keyring
        .shred(&request.subject_id)
        .await
        .map_err(|e| RequestError::Keyring(format!("destroying the subject's data key: {e}")))?;
    if !claimed && outcome != ShredOutcome::Destroyed {
        return Ok(false);
    }
    // Whole microseconds: audit details hold no floats, so they hash the same after any JSON
    // round trip.
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let outcome = match outcome {
        ShredOutcome::Destroyed => "destroyed",
        ShredOutcome::AlreadyShredded => "already_destroyed",
        ShredOutcome::NoKeyTombstoned => "no_key_tombstoned",
    };
    tracing::info!(request_id = %request.id, outcome, elapsed_us, "subject data key destroyed");
    let audit = NewAuditEntry::new(actor, "subject.key_destroyed")
        .request(&request.id)
        .subject(&request.subject_pseudonym)
        .details(json!({ "outcome": outcome, "elapsed_us": elapsed_us }));
    store.append_audit(audit).await?;
    let lift = NewAuditEntry::new(actor, "subject.restriction_lifted")
        .request(&request.id)
        .subject(&request.subject_pseudonym)
        .details(json!({ "reason": "erased" }));
    store.lift_restriction(&request.subject_id, lift).await?;
    Ok(true)
}

/// Re-applies the keyring's tombstone journal at start (see
/// [`crate::keyring::TombstoneJournal`]) and audits what it had to repair, so a database
/// restored from an older backup cannot bring an erased subject's key back.
///
/// # Errors
/// [`RequestError::Keyring`] when the journal or the key store cannot be read or written;
/// store errors.
pub async fn reapply_tombstones(
    store: &Store,
    keyring: &Keyring,
    actor: &str,
) -> Result<crate::keyring::ReapplyReport, RequestError> {
    let Some(journal) = keyring.journal() else {
        return Ok(Default::default());
    };
    let report = journal
        .reapply(keyring)
        .await
        .map_err(|e| RequestError::Keyring(format!("re-applying journaled tombstones: {e}")))?;
    if report.keys_destroyed + report.tombstones_restored > 0 {
        store
            .append_audit(
                NewAuditEntry::new(actor, "keys.tombstones_reapplied")
                    .details(serde_json::to_value(&report).expect("report serialises")),
            )
            .await?;
    }
    Ok(report)
}
