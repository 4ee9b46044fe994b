//! The database behind one trait.
//!
//! [`Store`] is what the service and the worker use; [`SqlStore`] implements it on SQLite (the
//! embedded default, WAL mode) and PostgreSQL, chosen by the URL scheme. Every state change that
//! must be audited takes its [`NewAuditEntry`] and appends it in the same transaction, so the
//! audit log and the state it describes cannot disagree.

mod accounts;
mod audit_chain;
mod dataset_removal;
mod db;
mod deadlines;
mod email_codes;
mod forget;
mod holds;
mod jurisdictions;
mod keys;
mod leases;
mod locator;
mod model;
mod refresh;
mod residency;
mod restrictions;
mod rows;
mod sql;
mod tokens;
pub mod webhooks;

pub use db::{Backend, SqlStore};
pub use jurisdictions::{Jurisdictions, PolicyBook};
pub use leases::{DATASET_LEASE_TTL, HeldDatasetLease, process_lease_holder, with_dataset_lease};
pub use model::*;
pub use residency::{
    ResidencyPolicy, ResidencyScan, ResidencyViolation, ScanStatus, SubjectJurisdiction,
};

use std::time::Duration;

use async_trait::async_trait;

use crate::audit::{AuditEntry, NewAuditEntry};
use crate::domain::{Email, ExtensionRefusal, RequestStatus, SubjectId};
use webhooks::{
    ClaimedDelivery, DeliveryFilter, DeliveryOutcome, NewWebhook, WebhookDelivery, WebhookEndpoint,
};

/// Errors of the store. Callers map them to HTTP statuses: `NotFound` → 404, `Conflict` → 409,
/// `InvalidTransition` → 409, `ExtensionRefused` → 409, the rest → 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No row with that id.
    #[error("{entity} {id} not found")]
    NotFound {
        /// `user`, `dataset`, `request`, `job`, `api token`.
        entity: &'static str,
        /// The id looked up.
        id: String,
    },
    /// A unique constraint refused the write (e.g. an e-mail or dataset name already taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request is not in a status from which it may move to `to`.
    #[error("request is {from}, it cannot become {to}")]
    InvalidTransition {
        /// Current status.
        from: RequestStatus,
        /// Requested status.
        to: RequestStatus,
    },
    /// A deadline extension broke a rule of GDPR Art. 12(3) (final, already extended, too late).
    #[error("{0}")]
    ExtensionRefused(#[from] ExtensionRefusal),
    /// The erasure's data key is already destroyed, so the request can no longer be cancelled:
    /// its subject is erased whatever happens to the request.
    #[error(
        "the data key of erasure request {0} is already destroyed: the subject is erased and the request can no longer be cancelled"
    )]
    KeyDestroyed(String),
    /// The job is not in a state that allows the action.
    #[error("job is {status}; {action} is not possible")]
    InvalidJobState {
        /// Current status.
        status: &'static str,
        /// The action refused.
        action: &'static str,
    },
    /// A dataset cannot be deleted now: `dataset_held` (an active legal hold) or
    /// `dataset_in_use` (leases, unfinished jobs, open erasures or rectifications).
    #[error("{detail}")]
    DatasetInUse {
        /// Stable problem code.
        code: &'static str,
        /// What is in the way.
        detail: String,
    },
    /// A stored value could not be decoded (a bug or a manual edit of the database).
    #[error("corrupt row in {table}: {detail}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What could not be decoded.
        detail: String,
    },
    /// The database failed; `context` names the operation.
    #[error("database error while {context}: {source}")]
    Database {
        /// The operation, e.g. `claiming a job`.
        context: &'static str,
        /// The driver error.
        source: sqlx::Error,
    },
    /// A webhook delivery or endpoint is not in a state that allows the action (e.g. only a
    /// failed delivery can be re-queued).
    #[error("{0}")]
    InvalidWebhookState(String),
    /// Another holder's lease on the dataset's files is in the way (see [`DatasetLease`]):
    /// try again after it ends or lapses.
    #[error("dataset {} is busy: {}", .0.dataset_id, .0)]
    DatasetBusy(Box<DatasetLease>),
    /// This process's lease on the dataset lapsed or was taken over while it worked (see
    /// [`HeldDatasetLease::confirm`]); it stopped before changing anything more. Try again.
    #[error("lost the lease on dataset {dataset_id}: {detail}")]
    DatasetLeaseLost {
        /// The dataset.
        dataset_id: String,
        /// How it was lost.
        detail: String,
    },
    /// Migrations could not be applied.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether trying again later may succeed: no pooled connection came free in time, the
    /// SQLite write lock was not granted within `busy_timeout` (`SQLITE_BUSY`, `SQLITE_LOCKED`),
    /// or PostgreSQL gave up on a serialisation failure, deadlock or lock wait (SQLSTATE
    /// `40001`, `40P01`, `55P03`). The service answers these with 503 and `Retry-After`.
    pub fn is_transient(&self) -> bool {
        let StoreError::Database { source, .. } = self else {
            return false;
        };
        match source {
            sqlx::Error::PoolTimedOut => true,
            sqlx::Error::Database(e) => {
                if let Some(sqlite) = e.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                    // Extended result codes keep the primary code in the low byte.
                    let code = sqlx::error::DatabaseError::code(sqlite)
                        .and_then(|c| c.parse::<i32>().ok());
                    matches!(code.map(|c| c & 0xff), Some(5 | 6))
                } else {
                    matches!(e.code().as_deref(), Some("40001" | "40P01" | "55P03"))
                }
            }
            _ => false,
        }
    }
}

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Persistence for accounts, datasets, privacy requests, jobs and the audit chain.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which database this is.
    fn backend(&self) -> Backend;

    /// Runs a trivial query; for readiness probes.
    async fn ping(&self) -> StoreResult<()>;

    // ---- accounts ----------------------------------------------------------------------

    /// Raises the account's token epoch: every access token issued before is refused (sign
    /// out everywhere). Audited with `audit` in the same transaction.
    async fn end_sessions(&self, user_id: &str, audit: NewAuditEntry) -> StoreResult<User>;
    /// Sets a new password hash and raises the token epoch (every other session ends).
    async fn set_password(
        &self,
        user_id: &str,
        password_hash: String,
        audit: NewAuditEntry,
    ) -> StoreResult<User>;
    /// Disables (`true`) or enables an account, raising its token epoch either way.
    async fn set_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        audit: NewAuditEntry,
    ) -> StoreResult<User>;

    /// Records the hash of a new e-mail verification code for the account, replacing any
    /// earlier one (one live code per account).
    async fn set_email_code(
        &self,
        user_id: &str,
        code_hash: &str,
        expires_at: crate::domain::Timestamp,
    ) -> StoreResult<()>;
    /// Checks a code's hash against the account's live code, in one transaction: a right code
    /// verifies the account (appending `audit`) and is spent; a wrong one counts, and the
    /// `max_attempts`-th wrong one voids the code; an expired code is void.
    async fn check_email_code(
        &self,
        user_id: &str,
        code_hash: &str,
        max_attempts: u32,
        audit: NewAuditEntry,
    ) -> StoreResult<EmailCodeOutcome>;
    /// Starts a refresh-token family (a sign-in) with its first token; returns the family id.
    async fn start_refresh_family(&self, token: NewRefreshToken) -> StoreResult<String>;
    /// Spends the refresh token whose hash is `token_hash` and records its successor
    /// (`next_hash`, accepted until `next_expires_at` and never past the family's end) in one
    /// transaction. A token spent before revokes its whole family (reuse detection, RFC 9700
    /// §4.14.2) and appends `account.refresh_token_reused`.
    async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        next_hash: &str,
        next_expires_at: crate::domain::Timestamp,
    ) -> StoreResult<RefreshOutcome>;

    /// Creates an account. `Conflict` when the e-mail is taken.
    async fn create_user(&self, user: NewUser, audit: NewAuditEntry) -> StoreResult<User>;
    /// The account with that e-mail, if any.
    async fn user_by_email(&self, email: &Email) -> StoreResult<Option<User>>;
    /// The account with that id; `NotFound` otherwise.
    async fn user(&self, id: &str) -> StoreResult<User>;
    /// Every account, oldest first.
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// Links an account to a data subject id (admin only; never the user's own claim).
    async fn link_subject(
        &self,
        user_id: &str,
        subject: &SubjectId,
        audit: NewAuditEntry,
    ) -> StoreResult<User>;

    // ---- datasets ----------------------------------------------------------------------

    /// Registers a dataset. `Conflict` when the name is taken.
    async fn create_dataset(
        &self,
        dataset: NewDataset,
        audit: NewAuditEntry,
    ) -> StoreResult<Dataset>;
    /// Deletes (unregisters) a dataset, appending `audit` in the same transaction; its files
    /// are not touched. Refused with [`StoreError::DatasetInUse`] while a legal hold is on it
    /// (`dataset_held`) or while a lease is live on its files, any job is unfinished, or an
    /// erasure or rectification is open (`dataset_in_use`): those may still need it. `NotFound`
    /// when there is no such dataset (or it is deleted already).
    async fn delete_dataset(&self, id: &str, audit: NewAuditEntry) -> StoreResult<Dataset>;
    /// Every dataset, by name (deleted ones left out).
    async fn list_datasets(&self) -> StoreResult<Vec<Dataset>>;
    /// The dataset with that id; `NotFound` otherwise (deleted ones too).
    async fn dataset(&self, id: &str) -> StoreResult<Dataset>;

    // ---- API tokens (producer role) ------------------------------------------------------

    /// Records an API token (its hash only) with its audit entry, to which the token's id is
    /// added as `token_id`. `Conflict` when the hash is already known.
    async fn create_api_token(
        &self,
        token: NewApiToken,
        audit: NewAuditEntry,
    ) -> StoreResult<ApiToken>;
    /// The token whose secret hashes to `token_hash`, revoked or not.
    async fn api_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<ApiToken>>;
    /// Every API token, revoked ones included, oldest first.
    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiToken>>;
    /// Revokes a token and appends the audit entry; revoking a revoked token changes nothing
    /// and audits nothing. `NotFound` when there is no such token.
    async fn revoke_api_token(&self, id: &str, audit: NewAuditEntry) -> StoreResult<ApiToken>;

    // ---- privacy requests --------------------------------------------------------------

    /// Files a request in status `received` with its first history event. When
    /// `idempotency_key` repeats a key the same filer used before, returns the earlier request
    /// and `false` instead of creating another.
    async fn create_request(
        &self,
        request: NewRequest,
        audit: NewAuditEntry,
    ) -> StoreResult<(PrivacyRequest, bool)>;
    /// The request with that id; `NotFound` otherwise.
    async fn request(&self, id: &str) -> StoreResult<PrivacyRequest>;
    /// The requests with these ids, in the order given, read in one query per 500 ids (an
    /// erasure batch's members are read by every one of its file tasks); `NotFound` naming
    /// the first id that does not exist.
    async fn requests(&self, ids: &[String]) -> StoreResult<Vec<PrivacyRequest>>;
    /// Requests matching the filter, newest first.
    async fn list_requests(&self, filter: &RequestFilter) -> StoreResult<Vec<PrivacyRequest>>;
    /// The status history of a request, oldest first.
    async fn request_history(&self, id: &str) -> StoreResult<Vec<RequestEvent>>;
    /// Moves a request to `transition.to` if its current status allows it
    /// ([`RequestStatus::can_become`]), records the history event, optionally enqueues a job,
    /// and appends the audit entry — all in one transaction.
    async fn transition_request(
        &self,
        id: &str,
        transition: Transition,
    ) -> StoreResult<PrivacyRequest>;
    /// Extends the deadline of a request once (GDPR Art. 12(3)): `due_at` becomes received +
    /// (1 + months) calendar months ([`crate::domain::extended_due_date`]), the one-month
    /// deadline is kept as the extension's `original_due_at`, and `audit` is appended with
    /// `due_at` and `original_due_at` added to its details, in one transaction. The rules are
    /// checked by the update itself, so two concurrent extensions cannot both succeed.
    ///
    /// # Errors
    /// `NotFound`; `ExtensionRefused` when the request is final, already extended, or its
    /// original due date has passed ([`crate::domain::check_extension`]).
    async fn extend_deadline(
        &self,
        id: &str,
        extension: NewExtension,
        audit: NewAuditEntry,
    ) -> StoreResult<PrivacyRequest>;
    /// One page of the register of requests: requests received in the filter's period, after
    /// its cursor, ordered by `(received_at, id)`; without subject ids.
    async fn register_page(&self, filter: &RegisterFilter) -> StoreResult<Vec<RegisterEntry>>;

    // ---- jobs ----------------------------------------------------------------------------

    /// Claims the oldest runnable job — queued and due, or running with an expired lease
    /// (its worker died) — setting a fresh lease token. `None` when nothing is runnable.
    async fn claim_job(&self, worker: &str, lease: Duration) -> StoreResult<Option<Job>>;
    /// Extends the lease if `lease_token` still holds it; `false` means the lease was lost and
    /// the worker must stop without committing anything.
    async fn heartbeat_job(
        &self,
        job_id: &str,
        lease_token: &str,
        lease: Duration,
    ) -> StoreResult<bool>;
    /// Ends a job (fenced by `lease_token`): records outcome and result, enqueues its children,
    /// applies the request transition and audit entry, all in one transaction. `false` when the
    /// lease was lost: nothing was written.
    async fn finish_job(
        &self,
        job_id: &str,
        lease_token: &str,
        finish: JobFinish,
    ) -> StoreResult<bool>;
    /// Ends a task (a job with a parent), fenced by `lease_token`, then — serialised with its
    /// siblings by a lock on the parent — counts the plan's tasks by status. When every task
    /// succeeded the plan becomes `succeeded`; when one failed for good, `failed`; in both cases
    /// (and only then) `decide` is asked what the plan's requests become, given the plan, all
    /// its tasks and the requests of its batch, and its transitions are applied in the same
    /// transaction. A transition refused because the request is already final is skipped.
    /// `false` when the lease was lost: nothing was written.
    async fn finish_task(
        &self,
        job_id: &str,
        lease_token: &str,
        finish: JobFinish,
        decide: &SiblingsDecision<'_>,
    ) -> StoreResult<bool>;
    /// Batches erasures: merges every other queued erasure plan — due, or still waiting out its
    /// batching window (running it early only serves its subject sooner) — into the plan `plan_id`
    /// (held by `lease_token`), records the batch's request ids in its payload (`batch`), and
    /// returns them, its own request first. `None` when the lease was lost. Running it again
    /// after a takeover returns the batch recorded so far plus anything newly queued.
    async fn absorb_erasure_plans(
        &self,
        plan_id: &str,
        lease_token: &str,
    ) -> StoreResult<Option<Vec<String>>>;
    /// Enqueues a job that serves no request (maintenance such as compaction), with its
    /// audit entry, in one transaction.
    async fn enqueue_job(&self, job: NewJob, audit: NewAuditEntry) -> StoreResult<Job>;
    /// One job; `NotFound` otherwise.
    async fn job(&self, id: &str) -> StoreResult<Job>;
    /// The tasks of a plan, oldest first.
    async fn child_jobs(&self, parent_id: &str) -> StoreResult<Vec<Job>>;
    /// Jobs, newest first (at most `limit`), optionally only in one status.
    async fn list_jobs(&self, status: Option<JobStatus>, limit: i64) -> StoreResult<Vec<Job>>;
    /// Puts a `failed` or `cancelled` job back in the queue with fresh attempts (admin), and a
    /// failed request back to `running`; `InvalidJobState` otherwise.
    async fn retry_job(&self, id: &str, audit: NewAuditEntry) -> StoreResult<Job>;
    /// Cancels a `queued` or `failed` job (admin) and fails its request if still open;
    /// `InvalidJobState` for a running or finished job.
    async fn cancel_job(&self, id: &str, audit: NewAuditEntry) -> StoreResult<Job>;

    /// Claims the destruction of erasure request `request_id`'s data key, before the key is
    /// destroyed: records now as its `key_destroyed_at` unless that is recorded already or the
    /// request was cancelled or rejected. From then on the request can no longer be cancelled
    /// (a cancellation after the key is gone would leave a cancelled request whose subject is
    /// erased). `true` when this call claimed it.
    async fn claim_key_destruction(&self, request_id: &str) -> StoreResult<bool>;
    /// How many jobs are in each status, per kind: `(kind, status, count)`; for metrics.
    async fn job_counts(&self) -> StoreResult<Vec<(JobKind, JobStatus, i64)>>;
    /// How many requests are open (not completed, rejected or failed) past their due date.
    async fn overdue_requests(&self) -> StoreResult<i64>;

    // ---- audit ---------------------------------------------------------------------------

    /// Appends one entry to the chain.
    async fn append_audit(&self, entry: NewAuditEntry) -> StoreResult<AuditEntry>;
    /// Entries matching the filter, in chain order.
    async fn audit_entries(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>>;
    /// The recorded head of the chain: `(seq, hash)` of the last append (`(0, GENESIS)` when
    /// empty).
    async fn audit_head(&self) -> StoreResult<(i64, String)>;

    // ---- legal holds and export expiry -------------------------------------------------

    /// Places a legal hold (audited).
    async fn create_legal_hold(
        &self,
        hold: NewLegalHold,
        audit: NewAuditEntry,
    ) -> StoreResult<LegalHold>;
    /// Legal holds, oldest first; only active ones when `active_only`.
    async fn list_legal_holds(&self, active_only: bool) -> StoreResult<Vec<LegalHold>>;
    /// The active holds an erasure of this subject must respect: every dataset hold and the
    /// subject's own.
    async fn active_holds_for(&self, subject_pseudonym: &str) -> StoreResult<Vec<LegalHold>>;
    /// Releases a hold (audited); `NotFound`, or `Conflict` when already released.
    async fn release_legal_hold(
        &self,
        id: &str,
        actor: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<LegalHold>;
    /// Requests whose export expired and was not deleted yet, oldest first, at most `limit`.
    async fn expired_exports(&self, limit: i64) -> StoreResult<Vec<PrivacyRequest>>;
    /// Requests of the subject named by `subject_pseudonym` whose export is on file (written
    /// and not deleted yet), expired or not: what an erasure must delete.
    async fn live_exports_of(&self, subject_pseudonym: &str) -> StoreResult<Vec<PrivacyRequest>>;
    /// Records that a request's expired export was deleted (audited once); `false` when it
    /// already was.
    async fn mark_export_deleted(
        &self,
        request_id: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<bool>;

    // ---- restriction of processing (GDPR Art. 18) -----------------------------------------

    /// Marks `subject` restricted by request `request_id` and appends `audit` (with
    /// `already_restricted` added to its details), in one transaction. A subject already
    /// restricted keeps its first entry, which is returned.
    async fn restrict_subject(
        &self,
        subject: &SubjectId,
        request_id: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<RestrictedSubject>;
    /// Lifts `subject`'s restriction and appends `audit`, in one transaction; returns the entry
    /// removed. `None`: the subject was not restricted, and nothing is audited.
    async fn lift_restriction(
        &self,
        subject: &SubjectId,
        audit: NewAuditEntry,
    ) -> StoreResult<Option<RestrictedSubject>>;
    /// Takes (or, for the same `holder`, renews) a `mode` lease on dataset `dataset_id`'s
    /// files for `ttl`: shared leases coexist; an exclusive one excludes every other holder.
    /// Expired leases are ignored. Use [`HeldDatasetLease`], which renews and releases.
    ///
    /// # Errors
    /// [`StoreError::DatasetBusy`] naming the lease in the way.
    async fn acquire_dataset_lease(
        &self,
        dataset_id: &str,
        holder: &str,
        mode: LeaseMode,
        purpose: &str,
        ttl: Duration,
    ) -> StoreResult<DatasetLease>;
    /// Deletes `holder`'s lease on `dataset_id` (nothing when there is none).
    async fn release_dataset_lease(&self, dataset_id: &str, holder: &str) -> StoreResult<()>;
    /// Restricted subjects ordered by subject id, those after `after` only (keyset cursor),
    /// at most `limit` (clamped to 1–1000).
    async fn restricted_subjects(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<RestrictedSubject>>;

    // ---- locator index -----------------------------------------------------------------

    /// Records files Lethe wrote into `dataset_id` (ingest, compaction) and forgets the
    /// `replaced` ones, in one transaction. Re-recording a known path replaces its entries.
    async fn index_files(
        &self,
        dataset_id: &str,
        added: &[IndexedFile],
        replaced: &[String],
    ) -> StoreResult<()>;
    /// Every indexed file of the dataset as `(path, bytes)`.
    async fn indexed_files(&self, dataset_id: &str) -> StoreResult<Vec<(String, u64)>>;
    /// The indexed files holding rows of the subject references, as
    /// `(subject_ref, path, rows)`.
    async fn index_lookup(
        &self,
        dataset_id: &str,
        subject_refs: &[String],
    ) -> StoreResult<Vec<(String, String, u64)>>;
    /// After `path` was rewritten without the subjects: drops their entries and records the
    /// file's new row count and size. Unknown paths are left unknown.
    async fn index_rewritten(
        &self,
        dataset_id: &str,
        path: &str,
        subject_refs: &[String],
        rows: u64,
        bytes: u64,
    ) -> StoreResult<()>;

    // ---- data residency (GDPR Chapter V) -----------------------------------------------

    /// Sets (creates or replaces) the policy of `jurisdiction`: the regions, in order of
    /// preference, where its subjects' rows may be stored; with its audit entry, in one
    /// transaction.
    async fn set_residency_policy(
        &self,
        jurisdiction: &str,
        regions: &[String],
        actor: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<ResidencyPolicy>;
    /// Deletes the policy of `jurisdiction` (audited); its subjects are unrestricted from then
    /// on. `NotFound` when there is none.
    async fn delete_residency_policy(
        &self,
        jurisdiction: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<()>;
    /// Every residency policy, by jurisdiction.
    async fn residency_policies(&self) -> StoreResult<Vec<ResidencyPolicy>>;
    /// Sets the jurisdiction of the subject with keyed reference `subject_ref` (source
    /// `admin`), replacing any recorded one, with its audit entry, in one transaction.
    async fn set_subject_jurisdiction(
        &self,
        subject_ref: &str,
        jurisdiction: &str,
        actor: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<SubjectJurisdiction>;
    /// The recorded jurisdiction of one subject (by keyed reference), if any.
    async fn subject_jurisdiction(
        &self,
        subject_ref: &str,
    ) -> StoreResult<Option<SubjectJurisdiction>>;
    /// The recorded jurisdictions of the subjects among `subject_refs` that have one, as
    /// `(subject_ref, jurisdiction)`.
    async fn subject_jurisdictions(
        &self,
        subject_refs: &[String],
    ) -> StoreResult<Vec<(String, String)>>;
    /// Records `(subject_ref, jurisdiction)` for subjects that have no jurisdiction yet (ingest
    /// from a dataset's jurisdiction column; `source` e.g. `ingest:running_app`); recorded
    /// ones are left as they are. Returns how many were recorded.
    async fn record_subject_jurisdictions(
        &self,
        entries: &[(String, String)],
        source: &str,
        actor: &str,
    ) -> StoreResult<u64>;
    /// Replaces the last residency scan of `scan.dataset_id` and its violations by these, and
    /// appends `audit` if given, in one transaction.
    async fn record_residency_scan(
        &self,
        scan: &ResidencyScan,
        violations: &[ResidencyViolation],
        audit: Option<NewAuditEntry>,
    ) -> StoreResult<()>;
    /// The last residency scan of every scanned dataset, by dataset name.
    async fn residency_scans(&self) -> StoreResult<Vec<ResidencyScan>>;
    /// The violations found by the last scans (of one dataset, or of all), by dataset, root
    /// and file.
    async fn residency_violations(
        &self,
        dataset_id: Option<&str>,
    ) -> StoreResult<Vec<ResidencyViolation>>;

    // ---- webhooks ------------------------------------------------------------------------

    /// Registers a webhook endpoint with its audit entry (to which `webhook_id` is added), in
    /// one transaction. Events are queued for it from the next status change on.
    async fn create_webhook(
        &self,
        webhook: NewWebhook,
        audit: NewAuditEntry,
    ) -> StoreResult<WebhookEndpoint>;
    /// Every endpoint, deactivated ones included, oldest first.
    async fn list_webhooks(&self) -> StoreResult<Vec<WebhookEndpoint>>;
    /// One endpoint; `NotFound` otherwise.
    async fn webhook(&self, id: &str) -> StoreResult<WebhookEndpoint>;
    /// Deactivates an endpoint: nothing is queued for it any more, and its pending deliveries
    /// become `failed` ("endpoint deactivated"); audited with their count, in one transaction.
    /// Deactivating an inactive endpoint changes and audits nothing. `NotFound` when unknown.
    async fn deactivate_webhook(
        &self,
        id: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<WebhookEndpoint>;
    /// Replaces an endpoint's stored secret with `new` (the same secret re-sealed, e.g. under a
    /// new KEK) if it still holds `expected`; `false` when it no longer does (or is unknown).
    /// Not audited: the secret does not change, only how it is wrapped.
    async fn replace_webhook_secret(
        &self,
        id: &str,
        expected: &str,
        new: &str,
    ) -> StoreResult<bool>;
    /// The delivery log of an endpoint, newest first.
    async fn webhook_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> StoreResult<Vec<WebhookDelivery>>;
    /// Re-queues a `failed` delivery with fresh attempts, due now, and appends the audit
    /// entry (with `delivery_id`, `webhook_id`, `event_type` and the request) in one
    /// transaction.
    ///
    /// # Errors
    /// `NotFound`; `InvalidWebhookState` when the delivery is not failed or its endpoint is
    /// deactivated.
    async fn retry_webhook_delivery(
        &self,
        id: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<WebhookDelivery>;
    /// Claims up to `limit` due pending deliveries, oldest first, for `lease`: they are not
    /// due again until it ends, and only the returned lease token can record their outcome.
    async fn claim_webhook_deliveries(
        &self,
        limit: i64,
        lease: Duration,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Records how an attempt ended, if `lease_token` still holds the delivery and it is still
    /// pending; `false` otherwise (nothing written).
    async fn finish_webhook_delivery(
        &self,
        id: &str,
        lease_token: &str,
        outcome: DeliveryOutcome,
    ) -> StoreResult<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Executor;

    fn database_error(source: sqlx::Error) -> StoreError {
        StoreError::Database {
            context: "testing",
            source,
        }
    }

    #[tokio::test]
    async fn a_write_lock_not_granted_in_time_is_transient_and_a_constraint_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .unwrap();
        pool.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .await
            .unwrap();
        let mut holder = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
        holder.execute("INSERT INTO t VALUES (1)").await.unwrap();
        let mut other = pool.acquire().await.unwrap();
        other.execute("PRAGMA busy_timeout = 0").await.unwrap();
        let busy = other.execute("INSERT INTO t VALUES (2)").await.unwrap_err();
        assert!(database_error(busy).is_transient());
        holder.commit().await.unwrap();

        let duplicate = other.execute("INSERT INTO t VALUES (1)").await.unwrap_err();
        assert!(!database_error(duplicate).is_transient());
        assert!(database_error(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!StoreError::Conflict("taken".into()).is_transient());
    }
}
