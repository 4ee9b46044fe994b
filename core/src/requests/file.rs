//! Filing a privacy request: who may file for whom, idempotent retries, manifestly excessive
//! requests (GDPR Art. 12(5)), a rectification checked against its dataset (Art. 16), and the
//! approval policy applied to what was filed.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{Changed, LifecycleEvent, Policies, RequestError, decide};
use crate::audit::{NewAuditEntry, Pseudonymizer};
use crate::config::ApprovalPolicy;
use crate::datasets::{RootError, list_root};
use crate::domain::{Rectification, RequestStatus, RequestType, Role, SubjectId};
use crate::keyring::Keyring;
use crate::lake::{LakeRoot, column_names};
use crate::store::{Dataset, NewRequest, PrivacyRequest, Store, StoreError, Transition};

/// Longest `Idempotency-Key`, in characters.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Files of a dataset written by others read for their columns when a rectification is
/// filed: enough to see columns added by schema evolution, few enough to answer quickly.
const FILES_READ_FOR_COLUMNS: usize = 16;

/// Who files: an authenticated caller.
#[derive(Debug, Clone)]
pub struct Filer {
    /// The actor recorded (`user:<id>`, `external:<issuer>#…`).
    pub actor: String,
    /// Their role: a subject files for themselves, an admin for anyone.
    pub role: Role,
    /// A subject's own subject id (linked by an admin, or named by a trusted issuer).
    pub subject_id: Option<SubjectId>,
    /// The trusted issuer whose JWT identified the subject, if any.
    pub issuer: Option<String>,
}

/// A request to file, as the caller sent it.
#[derive(Debug, Clone)]
pub struct FileRequest {
    /// The right exercised.
    pub request_type: RequestType,
    /// The subject; subjects may omit it (their own), admins must give it.
    pub subject_id: Option<String>,
    /// Admins: how the subject's identity was verified (required).
    pub verification_note: Option<String>,
    /// Rectification: the dataset whose rows are corrected.
    pub dataset_id: Option<String>,
    /// Rectification: column → new value.
    pub changes: Option<serde_json::Map<String, Value>>,
    /// The client's key making retries safe (1 to 255 characters).
    pub idempotency_key: Option<String>,
}

/// Files `cmd` as `filer`, then applies the approval policy: `review` moves the request to
/// `pending_approval`, `auto` approves it at once (`decided_by = policy:auto`, see
/// [`decide::approve`]). A retry with the same `Idempotency-Key` returns the first request
/// with the single event [`LifecycleEvent::Replayed`].
///
/// # Errors
/// [`RequestError::Invalid`] (`validation`): a missing or malformed field, an admin without a
/// verification note, a rectification whose dataset is unknown or whose changes break a rule;
/// `root_unreachable` when a rectified dataset's root cannot be listed.
/// [`RequestError::Forbidden`]: a subject not linked to a subject id, or filing for another.
/// [`RequestError::Conflict`]: `idempotency_key_reused` (the key names a different request),
/// `excessive_requests` (Art. 12(5); the refusal is audited). Store errors.
pub async fn file(
    store: &Store,
    keyring: &Keyring,
    pseudonyms: &Pseudonymizer,
    policies: &Policies,
    filer: &Filer,
    cmd: FileRequest,
) -> Result<Changed, RequestError> {
    if let Some(key) = &cmd.idempotency_key
        && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY)
    {
        return Err(RequestError::validation(
            "Idempotency-Key must be 1 to 255 characters",
        ));
    }
    let rectification = rectification_of(store, policies, &cmd).await?;
    let (subject, note) = subject_of(filer, &cmd)?;
    let pseudonym = pseudonyms.pseudonym(&subject);
    refuse_excessive(store, policies, filer, &subject, &pseudonym, &cmd).await?;
    let mut details = json!({
        "type": cmd.request_type,
        "identity_verified_by_admin": filer.role == Role::Admin,
        "identity_verified_by_issuer": filer.issuer,
    });
    if let Some(r) = &rectification {
        // The columns only: the new values are personal data.
        details["dataset_id"] = json!(r.dataset_id);
        details["columns"] = json!(r.columns());
    }
    let audit = NewAuditEntry::new(&filer.actor, "request.created")
        .subject(&pseudonym)
        .details(details);
    let details = rectification.map(|r| json!(r));
    let (request, created) = store
        .create_request(
            NewRequest {
                request_type: cmd.request_type,
                subject_id: subject.clone(),
                subject_pseudonym: pseudonym,
                filed_by: filer.actor.clone(),
                verification_note: note,
                idempotency_key: cmd.idempotency_key,
                received_at: chrono::Utc::now(),
                details: details.clone(),
            },
            audit,
        )
        .await?;
    if !created
        && (request.request_type != cmd.request_type
            || request.subject_id != subject
            || request.details != details)
    {
        return Err(RequestError::Conflict {
            code: "idempotency_key_reused",
            detail: "this Idempotency-Key was already used for a different request".into(),
        });
    }
    if !created {
        return Ok(Changed {
            request,
            events: vec![LifecycleEvent::Replayed],
        });
    }
    if request.status != RequestStatus::Received {
        return Ok(Changed {
            request,
            events: vec![LifecycleEvent::Filed],
        });
    }
    let mut changed = apply_policy(store, keyring, policies, request).await?;
    changed.events.insert(0, LifecycleEvent::Filed);
    Ok(changed)
}

/// The subject a request is filed for, and the verification recorded with it.
fn subject_of(
    filer: &Filer,
    cmd: &FileRequest,
) -> Result<(SubjectId, Option<String>), RequestError> {
    if filer.role == Role::Subject {
        let own = filer.subject_id.clone().ok_or_else(|| {
            RequestError::Forbidden(
                "your account is not linked to a data subject yet; an admin links it after verifying your identity".into(),
            )
        })?;
        if let Some(given) = &cmd.subject_id
            && given != own.as_str()
        {
            return Err(RequestError::Forbidden(
                "subjects may only file requests for themselves".into(),
            ));
        }
        // Identified by a trusted issuer's JWT: record it as the verification.
        return Ok((own, filer.issuer.as_ref().map(|i| format!("jwt:{i}"))));
    }
    let id = cmd.subject_id.clone().ok_or_else(|| {
        RequestError::validation("subject_id is required when an admin files a request")
    })?;
    let note = cmd
        .verification_note
        .clone()
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            RequestError::validation(
                "verification_note is required: say how the subject's identity was verified",
            )
        })?;
    Ok((SubjectId::parse(id)?, Some(note)))
}

/// Moves a request just filed on as its type's approval policy says.
async fn apply_policy(
    store: &Store,
    keyring: &Keyring,
    policies: &Policies,
    request: PrivacyRequest,
) -> Result<Changed, RequestError> {
    match policies.approval(request.request_type) {
        ApprovalPolicy::Auto => {
            decide::approve(store, keyring, policies, request, "policy:auto").await
        }
        ApprovalPolicy::Review => {
            let audit = NewAuditEntry::new("policy:review", "request.pending_approval")
                .request(&request.id)
                .subject(&request.subject_pseudonym)
                .details(json!({ "type": request.request_type }));
            let pending = Transition::new(RequestStatus::PendingApproval, "policy:review", audit);
            Ok(Changed {
                request: store.transition_request(&request.id, pending).await?,
                events: vec![LifecycleEvent::AwaitingApproval],
            })
        }
    }
}

/// Refuses a new request when the subject already has `max_open_per_type` open requests of
/// its type: manifestly excessive because repetitive (GDPR Art. 12(5)). The refusal is audited
/// (`request.refused_excessive`, with the reason and the counts). A retry of one of the open
/// requests (the same `Idempotency-Key`) is not refused.
async fn refuse_excessive(
    store: &Store,
    policies: &Policies,
    filer: &Filer,
    subject: &SubjectId,
    pseudonym: &str,
    cmd: &FileRequest,
) -> Result<(), RequestError> {
    let limit = policies.max_open_per_type;
    if limit == 0 {
        return Ok(());
    }
    // One indexed count: listing the subject's requests here scanned the whole table at
    // each filing (+8 ms p50 under load, growing with the table).
    let (open, retry) = store
        .open_requests_of(subject, cmd.request_type, cmd.idempotency_key.as_deref())
        .await?;
    if retry || open < u64::from(limit) {
        return Ok(());
    }
    let reason = "GDPR Art. 12(5): manifestly excessive, because repetitive: the subject already has this many open requests of this type";
    store
        .append_audit(
            NewAuditEntry::new(&filer.actor, "request.refused_excessive")
                .subject(pseudonym)
                .details(json!({
                    "type": cmd.request_type,
                    "open": open,
                    "limit": limit,
                    "reason": reason,
                })),
        )
        .await?;
    Err(RequestError::Conflict {
        code: "excessive_requests",
        detail: format!(
            "there are already {} open {} requests for this subject (at most {limit}); follow them, or cancel one, before filing another ({reason})",
            open,
            cmd.request_type.as_str()
        ),
    })
}

/// The rectification `cmd` describes (`None` for the other types), checked against its
/// dataset (GDPR Art. 16).
///
/// # Errors
/// [`RequestError::Invalid`] (`validation`) when a rectification lacks `dataset_id` or
/// `changes`, names no registered dataset, a change breaks a rule of [`Rectification::check`]
/// or names a column the dataset's files do not have (a dataset without a declared schema);
/// when another type carries either field.
async fn rectification_of(
    store: &Store,
    policies: &Policies,
    cmd: &FileRequest,
) -> Result<Option<Rectification>, RequestError> {
    if cmd.request_type != RequestType::Rectification {
        if cmd.dataset_id.is_some() || cmd.changes.is_some() {
            return Err(RequestError::validation(
                "dataset_id and changes belong to rectification requests only",
            ));
        }
        return Ok(None);
    }
    let dataset_id = cmd
        .dataset_id
        .as_deref()
        .filter(|d| !d.trim().is_empty())
        .ok_or_else(|| {
            RequestError::validation(
                "a rectification needs dataset_id: the dataset whose rows are corrected",
            )
        })?;
    let changes = cmd.changes.clone().ok_or_else(|| {
        RequestError::validation("a rectification needs changes: {\"<column>\": <new value>, …}")
    })?;
    let dataset = match store.dataset(dataset_id).await {
        Ok(dataset) => dataset,
        Err(StoreError::NotFound { .. }) => {
            return Err(RequestError::validation(format!(
                "dataset_id {dataset_id} names no registered dataset"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let rectification = Rectification {
        dataset_id: dataset.id.clone(),
        changes: changes.into_iter().collect(),
    };
    rectification
        .check(
            dataset.schema.as_ref(),
            &dataset.subject_columns(),
            &dataset.partition_columns,
        )
        .map_err(|e| RequestError::validation(format!("dataset {}: {e}", dataset.name)))?;
    if dataset.format.is_table() {
        columns_in_table(policies, &dataset, &rectification).await?;
    } else if dataset.schema.is_none() {
        columns_in_files(&dataset, &rectification).await?;
    }
    Ok(Some(rectification))
}

/// Checks that every column a rectification changes is a top-level column of the table's
/// current schema and not a partition column (the names go into the audit log: see
/// [`columns_in_files`]).
async fn columns_in_table(
    policies: &Policies,
    dataset: &Dataset,
    rectification: &Rectification,
) -> Result<(), RequestError> {
    let Some(settings) = &policies.tables else {
        return Err(RequestError::validation(format!(
            "dataset {} is a table, and tables cannot be opened here",
            dataset.name
        )));
    };
    let unreachable = |detail: String| RequestError::Invalid {
        code: "root_unreachable",
        detail,
    };
    let described = tokio::time::timeout(crate::datasets::ROOT_LIST_TIMEOUT, async {
        let table = crate::datasets::open_table(settings, dataset)
            .await
            .map_err(|e| e.to_string())?;
        table.describe().await.map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| {
        unreachable(format!(
            "the table of dataset {} did not answer in time",
            dataset.name
        ))
    })?
    .map_err(|e| unreachable(format!("dataset {}: {e}", dataset.name)))?;
    for column in rectification.changes.keys() {
        if !described.columns.contains(column) {
            return Err(RequestError::validation(format!(
                "dataset {}: column {column} is not a column of the table",
                dataset.name
            )));
        }
        if described.partition_columns.contains(column) {
            return Err(RequestError::validation(format!(
                "dataset {}: column {column} is a partition column of the table; changing it would move rows between partitions, which is not implemented",
                dataset.name
            )));
        }
    }
    Ok(())
}

/// Checks that every column a rectification changes is a column of the dataset's files (a
/// dataset written by others declares no schema): the column names go into the audit log, so
/// a name that is not a column (free text, perhaps personal data) is refused before anything
/// is recorded. Reads the footers of up to 16 files.
async fn columns_in_files(
    dataset: &Dataset,
    rectification: &Rectification,
) -> Result<(), RequestError> {
    let root =
        LakeRoot::parse(&dataset.root_url).map_err(|e| RequestError::validation(e.to_string()))?;
    let files = list_root(&root, &dataset.root_url)
        .await
        .map_err(|e| match e {
            RootError::Invalid(detail) => RequestError::validation(detail),
            unreachable @ RootError::Unreachable { .. } => RequestError::Invalid {
                code: "root_unreachable",
                detail: unreachable.to_string(),
            },
        })?;
    let mut known = BTreeSet::new();
    for file in files.iter().take(FILES_READ_FOR_COLUMNS) {
        match column_names(&root, file).await {
            Ok(names) => known.extend(names),
            Err(e) => {
                tracing::warn!(file = file.relative, error = %e, "a file's columns could not be read")
            }
        }
    }
    if known.is_empty() {
        return Err(RequestError::validation(format!(
            "dataset {} has no readable data file: there is nothing to rectify",
            dataset.name
        )));
    }
    match rectification.changes.keys().find(|c| !known.contains(*c)) {
        Some(column) => Err(RequestError::validation(format!(
            "dataset {}: column {column} is not a column of the dataset",
            dataset.name
        ))),
        None => Ok(()),
    }
}
