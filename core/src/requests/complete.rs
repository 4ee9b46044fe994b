//! What a request becomes when its job ends: completed (partially, when a legal hold kept
//! data, GDPR Art. 17(3)), with what a completed erasure forgets, or failed.

use std::time::Duration;

use serde_json::json;

use super::chrono_of;
use super::results::RequestResult;
use crate::audit::NewAuditEntry;
use crate::domain::{RequestStatus, RequestType};
use crate::keyring::Keyring;
use crate::store::{ForgetSubject, Job, JobKind, JobStatus, PrivacyRequest, Transition};

/// Who ends requests, and what completion needs to know.
#[derive(Clone, Copy)]
pub struct Ending<'a> {
    /// The actor recorded (the worker).
    pub actor: &'a str,
    /// The keyring, to name a subject's jurisdiction record by its keyed reference.
    pub keyring: Option<&'a Keyring>,
    /// How long an access or portability export stays downloadable.
    pub export_ttl: Duration,
}

/// The transition completing `request`, whose `job` produced `result`:
///
/// - data kept under a legal hold ([`RequestResult::kept_any`]) makes it
///   `partially_completed`, else `completed`; the audit entry carries the counts without the
///   rewritten files ([`RequestResult::audit_counts`]);
/// - a completed erasure forgets the subject's recorded jurisdiction (data minimisation,
///   Art. 5(1)(c)) and, in Lethe's own records, the subject id (pseudonym only from now on);
/// - an access or portability export expires after the export TTL.
pub fn completed(
    ending: Ending<'_>,
    request: &PrivacyRequest,
    job: &Job,
    result: &RequestResult,
) -> Transition {
    let counts = result.audit_counts();
    let audit = NewAuditEntry::new(ending.actor, "request.completed")
        .request(&request.id)
        .subject(&request.subject_pseudonym)
        .details(json!({ "job_id": job.id, "kind": job.kind, "result": counts }));
    let status = if result.kept_any() {
        RequestStatus::PartiallyCompleted
    } else {
        RequestStatus::Completed
    };
    let mut transition = Transition::new(status, ending.actor, audit);
    let erased = request.request_type == RequestType::Erasure && status == RequestStatus::Completed;
    if erased && let Some(keyring) = ending.keyring {
        transition.forget_jurisdiction_of =
            Some(keyring.subject_ref_str(request.subject_id.as_str()));
    }
    if erased {
        transition.forget_subject = Some(ForgetSubject {
            subject_id: request.subject_id.as_str().to_string(),
            pseudonym: request.subject_pseudonym.clone(),
            emails: ending.keyring.map(|k| k.hasher().clone()),
        });
    }
    if matches!(job.kind, JobKind::Access | JobKind::Portability) {
        transition.export_expires_at = Some(chrono::Utc::now() + chrono_of(ending.export_ttl));
    }
    transition.result = Some(result.to_value());
    transition
}

/// The transition failing `request` because `job` failed with `error` (kept as the request's
/// error and in its history).
pub fn failed(
    ending: Ending<'_>,
    request: &PrivacyRequest,
    job: &Job,
    error: String,
) -> Transition {
    let audit = NewAuditEntry::new(ending.actor, "request.failed")
        .request(&request.id)
        .subject(&request.subject_pseudonym)
        .details(json!({ "job_id": job.id, "attempts": job.attempts, "error": error }));
    let mut transition = Transition::new(RequestStatus::Failed, ending.actor, audit);
    transition.error = Some(error.clone());
    transition.note = Some(error);
    transition
}

/// What an erasure plan's requests (`members`) become once its last task ended: completed
/// (each with `result_of(request id)`) when every task succeeded; failed, naming every failed
/// or cancelled task, when one did not; nothing while a task is still to run.
pub fn plan_ended(
    ending: Ending<'_>,
    plan: &Job,
    tasks: &[Job],
    members: &[PrivacyRequest],
    result_of: impl Fn(&str) -> RequestResult,
) -> Vec<(String, Transition)> {
    if tasks.iter().all(|t| t.status == JobStatus::Succeeded) {
        return members
            .iter()
            .map(|m| (m.id.clone(), completed(ending, m, plan, &result_of(&m.id))))
            .collect();
    }
    let failures: Vec<String> = tasks
        .iter()
        .filter(|t| matches!(t.status, JobStatus::Failed | JobStatus::Cancelled))
        .map(|t| {
            t.last_error
                .clone()
                .unwrap_or_else(|| format!("task {} cancelled", t.id))
        })
        .collect();
    if failures.is_empty() {
        return Vec::new();
    }
    let error = format!(
        "{} file task(s) failed: {}",
        failures.len(),
        failures.join("; ")
    );
    members
        .iter()
        .map(|m| (m.id.clone(), failed(ending, m, plan, error.clone())))
        .collect()
}
