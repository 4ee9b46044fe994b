//! Deciding on a request: approval (by an admin or by policy), rejection with a reason the
//! subject sees (GDPR Art. 12(4)), and cancellation before its job starts.

use serde_json::json;

use super::{Changed, LifecycleEvent, Policies, RequestError, chrono_of, shred};
use crate::audit::NewAuditEntry;
use crate::domain::{RequestStatus, RequestType};
use crate::keyring::Keyring;
use crate::store::{JobKind, JobPayload, NewJob, PrivacyRequest, Store, Transition};

/// Approves `request` as `actor` and queues its job. An erasure with a cooling-off period
/// waits it out before its plan may run, and its data key is destroyed when the plan runs;
/// otherwise the key is destroyed now (first phase), unless a legal hold applies. Erasures
/// also wait out the batching window (one pass per file serves them all), whichever ends
/// later.
///
/// # Errors
/// [`crate::store::StoreError::InvalidTransition`] (as [`RequestError::Store`]) when the
/// request is not awaiting a decision; store errors. A failed key destruction is logged, not
/// returned: the plan destroys the key.
pub async fn approve(
    store: &Store,
    keyring: &Keyring,
    policies: &Policies,
    request: PrivacyRequest,
    actor: &str,
) -> Result<Changed, RequestError> {
    let payload = match request.request_type {
        RequestType::Access => JobPayload::Access,
        RequestType::Portability => JobPayload::Portability,
        RequestType::Rectification => JobPayload::Rectification,
        RequestType::Erasure => JobPayload::Erasure { batch: Vec::new() },
        RequestType::Restriction | RequestType::RestrictionLift => JobPayload::Restriction,
    };
    let kind = payload.kind();
    let now = chrono::Utc::now();
    let cooling_off_until = (kind == JobKind::Erasure && !policies.erasure_cooling_off.is_zero())
        .then(|| now + chrono_of(policies.erasure_cooling_off));
    let audit = NewAuditEntry::new(actor, "request.approved")
        .request(&request.id)
        .subject(&request.subject_pseudonym)
        .details(json!({ "type": request.request_type, "cooling_off_until": cooling_off_until }));
    let mut transition = Transition::new(RequestStatus::Approved, actor, audit);
    transition.decision = true;
    transition.cooling_off_until = cooling_off_until;
    let run_at = (kind == JobKind::Erasure).then(|| {
        let batch = now + chrono_of(policies.erasure_batch_window);
        cooling_off_until.map_or(batch, |c| c.max(batch))
    });
    transition.enqueue = Some(NewJob::new(
        payload,
        Some(request.id.clone()),
        policies.max_attempts,
        run_at,
    ));
    let mut updated = store.transition_request(&request.id, transition).await?;
    let mut events = vec![
        LifecycleEvent::Approved {
            by: actor.to_string(),
        },
        LifecycleEvent::JobQueued { kind, run_at },
    ];
    if updated.request_type == RequestType::Erasure && cooling_off_until.is_none() {
        let held = !store
            .active_holds_for(&updated.subject_pseudonym)
            .await?
            .is_empty();
        if !held {
            // First phase of the erasure: destroy the data key now, so every copy of the
            // encrypted PII is unreadable at once. On failure the plan destroys it.
            match shred::destroy_subject_key(store, keyring, &updated, actor).await {
                Ok(destroyed) => {
                    if destroyed {
                        events.push(LifecycleEvent::KeyDestroyed);
                    }
                    updated = store.request(&updated.id).await?;
                }
                Err(e) => tracing::error!(
                    error = %e,
                    request_id = %updated.id,
                    "destroying the data key failed; the worker will retry"
                ),
            }
        }
    }
    Ok(Changed {
        request: updated,
        events,
    })
}

/// Rejects request `id` as `actor` with `reason`, which the subject sees (GDPR Art. 12(4)).
///
/// # Errors
/// [`RequestError::Invalid`] (`validation`) for a blank reason (checked first); the store's
/// `NotFound`, and `InvalidTransition` when the request is not awaiting a decision.
pub async fn reject(
    store: &Store,
    id: &str,
    actor: &str,
    reason: String,
) -> Result<Changed, RequestError> {
    if reason.trim().is_empty() {
        return Err(RequestError::validation(
            "a rejection needs a reason (GDPR Art. 12(4))",
        ));
    }
    let request = store.request(id).await?;
    let audit = NewAuditEntry::new(actor, "request.rejected")
        .request(&request.id)
        .subject(&request.subject_pseudonym)
        .details(json!({ "reason": reason }));
    let mut transition = Transition::new(RequestStatus::Rejected, actor, audit);
    transition.decision = true;
    transition.decision_reason = Some(reason.clone());
    transition.note = Some(reason);
    Ok(Changed {
        request: store.transition_request(&request.id, transition).await?,
        events: vec![LifecycleEvent::Rejected],
    })
}

/// A cancellation.
#[derive(Debug, Clone)]
pub struct Cancel {
    /// Who cancels.
    pub actor: String,
    /// Whether it is the request's subject (else an admin).
    pub by_subject: bool,
    /// Why, kept in the history; blank counts as none.
    pub reason: Option<String>,
}

/// Cancels a request that has not started: in `received` or `pending_approval`, or `approved`
/// while its job is still queued (e.g. during an erasure's cooling-off period); its queued job
/// is cancelled in the same transaction.
///
/// # Errors
/// The store's `InvalidTransition` when the job started or the request is final, and
/// `KeyDestroyed` for an approved erasure whose data key is already destroyed.
pub async fn cancel(
    store: &Store,
    request: &PrivacyRequest,
    cmd: Cancel,
) -> Result<Changed, RequestError> {
    let audit = NewAuditEntry::new(&cmd.actor, "request.cancelled")
        .request(&request.id)
        .subject(&request.subject_pseudonym)
        .details(json!({ "from": request.status, "by_subject": cmd.by_subject }));
    let mut transition = Transition::new(RequestStatus::Cancelled, &cmd.actor, audit);
    transition.note = cmd.reason.filter(|r| !r.trim().is_empty());
    Ok(Changed {
        request: store.transition_request(&request.id, transition).await?,
        events: vec![LifecycleEvent::Cancelled],
    })
}
