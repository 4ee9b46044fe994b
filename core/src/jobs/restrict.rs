//! Restriction jobs (GDPR Art. 18): the subject is marked restricted, or the restriction is
//! lifted, as the request's type says. No lake is touched: pipelines read the list of
//! restricted subjects (`GET /v1/subjects/restricted`) and leave their data alone.

use std::sync::Arc;

use serde_json::json;

use super::context::{Execution, JobError};
use crate::audit::NewAuditEntry;
use crate::domain::{RequestType, to_db};
use crate::requests::results::{RequestResult, RestrictionResult};
use crate::store::{Job, PrivacyRequest, Store};

/// Applies restriction (or lift) request `request`; the audit entry names the subject by
/// pseudonym only. Running it twice changes nothing more.
///
/// # Errors
/// [`JobError::Transient`] when the database fails; [`JobError::Permanent`] for a request of
/// another type.
pub(super) async fn apply(
    store: &Arc<Store>,
    job: &Job,
    request: &PrivacyRequest,
) -> Result<Execution, JobError> {
    let actor = format!("worker:{}", job.lease_owner.clone().unwrap_or_default());
    let audit = |action: &str| {
        NewAuditEntry::new(actor.clone(), action)
            .request(&request.id)
            .subject(&request.subject_pseudonym)
            .details(json!({ "job_id": job.id }))
    };
    let result = match request.request_type {
        RequestType::Restriction => {
            let entry = store
                .restrict_subject(
                    &request.subject_id,
                    &request.id,
                    audit("subject.restricted"),
                )
                .await?;
            RestrictionResult::Restricted {
                restricted: true,
                restricted_since: to_db(entry.restricted_since),
                already_restricted: entry.request_id != request.id,
            }
        }
        RequestType::RestrictionLift => {
            let lifted = store
                .lift_restriction(&request.subject_id, audit("subject.restriction_lifted"))
                .await?;
            RestrictionResult::Lifted {
                restricted: false,
                was_restricted: lifted.is_some(),
                restricted_since: lifted.map(|e| to_db(e.restricted_since)),
            }
        }
        other => {
            return Err(JobError::Permanent(format!(
                "a restriction job cannot serve a {} request",
                other.as_str()
            )));
        }
    };
    Ok(Execution::Completed {
        result: RequestResult::Restriction(result),
        export_path: None,
    })
}
