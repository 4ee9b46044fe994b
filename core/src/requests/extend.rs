//! Extending a request's deadline (GDPR Art. 12(3)): once, by one or two further months, with
//! a reason the subject sees, within the first month after receipt.

use serde_json::json;

use super::{Changed, LifecycleEvent, RequestError};
use crate::audit::NewAuditEntry;
use crate::domain::{ExtensionMonths, ExtensionReason};
use crate::store::{NewExtension, Store};

/// An extension, as an admin asks for it.
#[derive(Debug, Clone)]
pub struct Extend {
    /// Who extends.
    pub actor: String,
    /// Further months: 1 or 2 (required).
    pub months: Option<i64>,
    /// Why (required, 1–2000 characters); shown to the subject.
    pub reason: Option<String>,
}

/// Extends request `id`'s deadline as `cmd` says; the new `due_at` is the receipt plus 1 +
/// `months` calendar months. Audited as `request.deadline_extended`.
///
/// # Errors
/// [`RequestError::Invalid`] (`validation`, checked first) when `months` is missing or not 1
/// or 2, or the reason is missing, blank or too long; the store's `NotFound`, and
/// `ExtensionRefused` (extended before, the first month over, the request final).
pub async fn extend(store: &Store, id: &str, cmd: Extend) -> Result<Changed, RequestError> {
    let months = cmd
        .months
        .ok_or_else(|| RequestError::validation("months is required: 1 or 2 further months"))?;
    let months = ExtensionMonths::parse(months)?;
    let reason = ExtensionReason::parse(cmd.reason.as_deref().unwrap_or_default())?;
    let request = store.request(id).await?;
    let audit = NewAuditEntry::new(&cmd.actor, "request.deadline_extended")
        .request(&request.id)
        .subject(&request.subject_pseudonym)
        .details(json!({ "months": months.get() }));
    let extension = NewExtension {
        months,
        reason,
        by: cmd.actor,
    };
    let request = store.extend_deadline(&request.id, extension, audit).await?;
    Ok(Changed {
        events: vec![LifecycleEvent::DeadlineExtended {
            due_at: request.due_at,
        }],
        request,
    })
}
