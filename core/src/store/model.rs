//! Rows of the store and the commands that change them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::NewAuditEntry;
use crate::domain::{
    DatasetSchema, Email, ExtensionMonths, ExtensionReason, RequestStatus, RequestType, Role,
    SubjectId, Timestamp,
};

/// An account of a data subject, admin or auditor.
#[derive(Debug, Clone)]
pub struct User {
    /// UUID.
    pub id: String,
    /// Login, lower-cased.
    pub email: String,
    /// PHC string of the argon2id hash.
    pub password_hash: String,
    /// What the account may do.
    pub role: Role,
    /// The data subject this account speaks for; set by an admin only.
    pub subject_id: Option<SubjectId>,
    /// When the account was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Raised when every session of the account must end (sign-out everywhere, a password
    /// change, disabling): access tokens carry the epoch they were issued under and are
    /// refused once it moved on.
    pub token_epoch: i64,
    /// When an admin disabled the account; a disabled account cannot sign in.
    pub disabled_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the account proved it controls its e-mail (a one-time code); admins and auditors
    /// are verified at creation. An unverified subject account cannot be linked.
    pub email_verified_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What checking an e-mail verification code led to.
#[derive(Debug, Clone)]
pub enum EmailCodeOutcome {
    /// Right: the account is verified now (audited as `account.email_verified`).
    Verified(User),
    /// Wrong; this many more tries are left for this code.
    Wrong {
        /// Tries left.
        left: u32,
    },
    /// No live code: never sent, expired, used up by wrong guesses, or already used.
    NoCode,
}

/// A new account.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login.
    pub email: Email,
    /// PHC string of the argon2id hash (never the password).
    pub password_hash: String,
    /// Role.
    pub role: Role,
}

/// A registered dataset (one entry of the data map).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dataset {
    /// UUID.
    pub id: String,
    /// Unique name, e.g. `running_events`.
    pub name: String,
    /// Root of the Hive-partitioned lake (`file:///…`, a path, later `s3://…`).
    pub root_url: String,
    /// Column holding the subject id, e.g. `user_id`.
    pub subject_column: String,
    /// Partition keys in path order, e.g. `["date", "region"]`.
    pub partition_columns: Vec<String>,
    /// Who registered it (`user:<uuid>`).
    pub created_by: String,
    /// When.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The declared schema of a dataset Lethe writes (ingest); `None` for datasets written by
    /// others, which are located and erased by `subject_column` only.
    pub schema: Option<DatasetSchema>,
}

/// One root of a dataset: where the rows of a region are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetRoot {
    /// The region whose root this is; `None` for the dataset's `root_url`, which holds every
    /// region without a root of its own.
    pub region: Option<String>,
    /// URL or path of the root.
    pub url: String,
}

impl Dataset {
    /// Every root of the dataset: `root_url` first, then one per entry of the schema's
    /// `region_roots` (data residency). Locate, erasure, export, compaction and the residency
    /// scan visit each of them.
    pub fn roots(&self) -> Vec<DatasetRoot> {
        let mut roots = vec![DatasetRoot {
            region: None,
            url: self.root_url.clone(),
        }];
        if let Some(schema) = &self.schema {
            roots.extend(schema.region_roots.iter().map(|(region, url)| DatasetRoot {
                region: Some(region.clone()),
                url: url.clone(),
            }));
        }
        roots
    }

    /// The root rows of `region` are written to: its own root, else `root_url`.
    pub fn root_for(&self, region: Option<&str>) -> DatasetRoot {
        let own = self
            .schema
            .as_ref()
            .zip(region)
            .and_then(|(schema, region)| {
                schema.region_roots.get(region).map(|url| DatasetRoot {
                    region: Some(region.to_string()),
                    url: url.clone(),
                })
            });
        own.unwrap_or_else(|| DatasetRoot {
            region: None,
            url: self.root_url.clone(),
        })
    }

    /// The columns holding subject ids: the schema's, or the one `subject_column`.
    pub fn subject_columns(&self) -> Vec<String> {
        match &self.schema {
            Some(schema) => schema.subject_columns.clone(),
            None => vec![self.subject_column.clone()],
        }
    }
}

/// A file the locator index knows, with the subjects it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexedFile {
    /// Path relative to the dataset root.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes (a listed file of another size is treated as unknown).
    pub bytes: u64,
    /// Subject references (the keyring's keyed hash) with their row counts in the file.
    pub subjects: Vec<(String, u64)>,
}

/// A dataset to register.
#[derive(Debug, Clone)]
pub struct NewDataset {
    /// Unique name.
    pub name: String,
    /// Root URL or path.
    pub root_url: String,
    /// Subject column.
    pub subject_column: String,
    /// Partition keys.
    pub partition_columns: Vec<String>,
    /// Who registers it.
    pub created_by: String,
    /// Declared schema (datasets Lethe writes).
    pub schema: Option<DatasetSchema>,
}

/// An API token of a pipeline (the producer role). The secret is never stored: only its
/// SHA-256, which is not part of this view.
#[derive(Debug, Clone)]
pub struct ApiToken {
    /// UUID; producers act as `token:<id>` in history and audit entries.
    pub id: String,
    /// What it is for, e.g. `events-pipeline`.
    pub name: String,
    /// Always [`Role::Producer`].
    pub role: Role,
    /// Who created it (`user:<uuid>`, `system:cli`).
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
    /// When it was revoked; a revoked token authenticates nothing.
    pub revoked_at: Option<Timestamp>,
    /// What the token may do; `None` for tokens created before scopes existed (every dataset
    /// and the restricted list).
    pub scope: Option<TokenScope>,
}

/// What a producer token may do (least privilege).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"datasets": ["7f8e…"], "list_restricted": false}))]
pub struct TokenScope {
    /// Ids of the datasets it may ingest into; any other dataset is 403.
    pub datasets: Vec<String>,
    /// Whether it may read the list of restricted subjects (`GET /v1/subjects/restricted`,
    /// GDPR Art. 18), which holds subject ids.
    #[serde(default)]
    pub list_restricted: bool,
}

impl TokenScope {
    /// Whether the token may ingest into the dataset `dataset_id`.
    pub fn allows_dataset(scope: Option<&Self>, dataset_id: &str) -> bool {
        scope.is_none_or(|s| s.datasets.iter().any(|d| d == dataset_id))
    }

    /// Whether the token may read the restricted list.
    pub fn allows_restricted_list(scope: Option<&Self>) -> bool {
        scope.is_none_or(|s| s.list_restricted)
    }
}

/// An API token to record.
#[derive(Debug, Clone)]
pub struct NewApiToken {
    /// What it is for.
    pub name: String,
    /// Hex SHA-256 of the whole token ([`crate::domain::ApiTokenSecret::hash`]).
    pub token_hash: String,
    /// Who creates it.
    pub created_by: String,
    /// What it may do.
    pub scope: TokenScope,
}

/// A subject whose erasure completed: what Lethe's own database replaces (GDPR Art. 17,
/// keeping by pseudonym only what accountability needs, Art. 5(2)).
#[derive(Debug, Clone)]
pub struct ForgetSubject {
    /// The subject id, as stored until now.
    pub subject_id: String,
    /// The audit pseudonym (keyed hash) of the subject; requests keep `pseudonym:<it>` in
    /// place of the id.
    pub pseudonym: String,
}

/// A refresh token to record: only its hash is stored.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    /// The account it refreshes.
    pub user_id: String,
    /// Hex SHA-256 of the whole token.
    pub token_hash: String,
    /// The account's token epoch at sign-in; the family stops refreshing once it moved on.
    pub epoch: i64,
    /// When this token stops being accepted (idle timeout: `auth.refresh_token_ttl_s`).
    pub expires_at: Timestamp,
    /// When the whole family stops (absolute session lifetime: `auth.session_max_s`).
    pub family_expires_at: Timestamp,
}

/// What presenting a refresh token led to.
#[derive(Debug, Clone)]
pub enum RefreshOutcome {
    /// The token was spent and its successor recorded; the account as it is now.
    Rotated {
        /// The account (not disabled, same token epoch).
        user: User,
        /// The token family (one per sign-in).
        family_id: String,
        /// When the successor stops being accepted.
        expires_at: Timestamp,
    },
    /// The token had been spent already: its whole family is now revoked (audited as
    /// `account.refresh_token_reused`).
    Reused,
    /// Unknown, expired or revoked, or its account disabled or signed out since.
    Refused,
}

/// A privacy request (data subject request, DSR).
#[derive(Debug, Clone)]
pub struct PrivacyRequest {
    /// UUID.
    pub id: String,
    /// The right exercised.
    pub request_type: RequestType,
    /// The data subject (personal data: never log it).
    pub subject_id: SubjectId,
    /// Keyed pseudonym of the subject, as used in the audit log.
    pub subject_pseudonym: String,
    /// Where it stands.
    pub status: RequestStatus,
    /// Who filed it (`user:<uuid>`).
    pub filed_by: String,
    /// For requests an admin files on a subject's behalf: how identity was verified.
    pub verification_note: Option<String>,
    /// The client's `Idempotency-Key`, if given.
    pub idempotency_key: Option<String>,
    /// When it was received.
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// When it must be answered: received + one calendar month (GDPR Art. 12(3)), or the
    /// extended deadline once [`PrivacyRequest::extension`] is set.
    pub due_at: chrono::DateTime<chrono::Utc>,
    /// The one extension of the deadline, if an admin granted it (GDPR Art. 12(3)).
    pub extension: Option<DeadlineExtension>,
    /// Admin who approved or rejected it.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Reason given on rejection (shown to the subject, GDPR Art. 12(4)).
    pub decision_reason: Option<String>,
    /// When it reached `completed` or `failed`.
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Outcome: per-dataset counts; for access, the export's manifest.
    pub result: Option<Value>,
    /// Last error when `failed`.
    pub error: Option<String>,
    /// Path of the export archive (access requests).
    pub export_path: Option<String>,
    /// Erasure: when the subject's data key was destroyed (the first phase; every copy of the
    /// encrypted PII is unreadable from then on).
    pub key_destroyed_at: Option<Timestamp>,
    /// Erasure: end of the cooling-off period during which the subject can still cancel it.
    pub cooling_off_until: Option<Timestamp>,
    /// Access: when the export stops being downloadable.
    pub export_expires_at: Option<Timestamp>,
    /// Access: when the expired export was deleted by the sweep.
    pub export_deleted_at: Option<Timestamp>,
    /// Type-specific parameters: for rectification the [`crate::domain::Rectification`]
    /// (dataset and new values: personal data, never audited).
    pub details: Option<Value>,
}

/// A deadline extension recorded on a request (GDPR Art. 12(3)): at most one per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineExtension {
    /// Further months granted: 1 or 2.
    pub months: u32,
    /// Why; shown to the subject.
    pub reason: String,
    /// Admin who granted it (`user:<uuid>`).
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// The one-month deadline it replaced.
    pub original_due_at: Timestamp,
}

/// An extension to grant ([`super::Store::extend_deadline`]).
#[derive(Debug, Clone)]
pub struct NewExtension {
    /// Further months.
    pub months: ExtensionMonths,
    /// Why.
    pub reason: ExtensionReason,
    /// Admin granting it (`user:<uuid>`).
    pub by: String,
}

/// A request to file.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// The right exercised.
    pub request_type: RequestType,
    /// The data subject.
    pub subject_id: SubjectId,
    /// Its pseudonym.
    pub subject_pseudonym: String,
    /// Who files it.
    pub filed_by: String,
    /// How identity was verified (admin filings).
    pub verification_note: Option<String>,
    /// Client idempotency key.
    pub idempotency_key: Option<String>,
    /// Receipt time; the due date follows from it.
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// Type-specific parameters (rectification: the [`crate::domain::Rectification`]).
    pub details: Option<Value>,
}

/// Which requests to list.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Only this subject's requests.
    pub subject_id: Option<SubjectId>,
    /// Only requests in this status.
    pub status: Option<RequestStatus>,
    /// `Some(true)`: only open requests (not completed, rejected or failed) whose `due_at` has
    /// passed; `Some(false)`: only the others.
    pub overdue: Option<bool>,
    /// Only requests whose `due_at` is before this instant (any status).
    pub due_before: Option<Timestamp>,
    /// At most this many (default 100, max 1000).
    pub limit: Option<i64>,
    /// Skip this many.
    pub offset: Option<i64>,
}

/// Which requests the register lists ([`super::Store::register_page`]): received in
/// `[from, to)`, after the keyset cursor, oldest first.
#[derive(Debug, Clone, Default)]
pub struct RegisterFilter {
    /// Received at or after this instant.
    pub from: Option<Timestamp>,
    /// Received before this instant.
    pub to: Option<Timestamp>,
    /// Keyset cursor: only entries after this `(received_at, id)`.
    pub after: Option<(Timestamp, String)>,
    /// At most this many (default 1000, max 10000).
    pub limit: Option<i64>,
}

/// One entry of the register of requests kept for accountability (GDPR Art. 5(2); a record in
/// the spirit of Art. 30): what was asked and when, what was decided, by whom and why, the
/// deadline and its extension. It holds no subject id or e-mail: the subject appears only as
/// the keyed pseudonym also used in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "id": "1e7c…", "type": "erasure", "status": "completed", "subject_pseudonym": "9f86d0…",
    "received_at": "2025-01-31T09:00:00Z", "due_at": "2025-04-30T09:00:00Z", "extended": true,
    "original_due_at": "2025-02-28T09:00:00Z", "extended_at": "2025-02-10T08:00:00Z",
    "extended_by": "user:1b2c…", "extension_months": 2,
    "extension_reason": "Twelve datasets across three regions must be searched.",
    "decided_by": "user:1b2c…", "decided_at": "2025-02-11T10:00:00Z", "decision_reason": null,
    "completed_at": "2025-02-11T10:00:05Z"
}))]
pub struct RegisterEntry {
    /// Request id.
    pub id: String,
    /// Right exercised.
    #[serde(rename = "type")]
    pub request_type: RequestType,
    /// Status at export time.
    pub status: RequestStatus,
    /// Keyed pseudonym of the subject (as in the audit log), never the subject id.
    pub subject_pseudonym: String,
    /// Received.
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// Deadline in force (extended, if `extended`).
    pub due_at: chrono::DateTime<chrono::Utc>,
    /// Whether the deadline was extended (GDPR Art. 12(3)).
    pub extended: bool,
    /// The one-month deadline an extension replaced.
    pub original_due_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the deadline was extended.
    pub extended_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Admin who extended it.
    pub extended_by: Option<String>,
    /// Further months granted (1 or 2).
    pub extension_months: Option<u32>,
    /// Why it was extended (as told to the subject).
    pub extension_reason: Option<String>,
    /// Admin who approved or rejected it.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Rejection reason (GDPR Art. 12(4)).
    pub decision_reason: Option<String>,
    /// Completed or failed at.
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl RegisterEntry {
    /// Column names, in CSV order; the JSON field names are the same.
    pub const COLUMNS: [&'static str; 16] = [
        "id",
        "type",
        "status",
        "subject_pseudonym",
        "received_at",
        "due_at",
        "extended",
        "original_due_at",
        "extended_at",
        "extended_by",
        "extension_months",
        "extension_reason",
        "decided_by",
        "decided_at",
        "decision_reason",
        "completed_at",
    ];

    /// The entry as one CSV record in [`Self::COLUMNS`] order: instants as RFC 3339 in UTC
    /// (`2025-01-31T09:00:00Z`, fractions of a second when present), booleans as
    /// `true`/`false`, absent values as empty fields.
    pub fn csv_record(&self) -> [String; 16] {
        fn ts(t: Timestamp) -> String {
            t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        }
        fn ots(t: Option<Timestamp>) -> String {
            t.map(ts).unwrap_or_default()
        }
        fn os(s: &Option<String>) -> String {
            s.clone().unwrap_or_default()
        }
        [
            self.id.clone(),
            self.request_type.as_str().into(),
            self.status.as_str().into(),
            self.subject_pseudonym.clone(),
            ts(self.received_at),
            ts(self.due_at),
            self.extended.to_string(),
            ots(self.original_due_at),
            ots(self.extended_at),
            os(&self.extended_by),
            self.extension_months
                .map(|m| m.to_string())
                .unwrap_or_default(),
            os(&self.extension_reason),
            os(&self.decided_by),
            ots(self.decided_at),
            os(&self.decision_reason),
            ots(self.completed_at),
        ]
    }
}

impl From<PrivacyRequest> for RegisterEntry {
    /// Keeps what the register shows and drops the rest: the subject id, the filer, the
    /// verification note, the result, the export.
    fn from(r: PrivacyRequest) -> Self {
        let extension = r.extension;
        Self {
            id: r.id,
            request_type: r.request_type,
            status: r.status,
            subject_pseudonym: r.subject_pseudonym,
            received_at: r.received_at,
            due_at: r.due_at,
            extended: extension.is_some(),
            original_due_at: extension.as_ref().map(|e| e.original_due_at),
            extended_at: extension.as_ref().map(|e| e.at),
            extended_by: extension.as_ref().map(|e| e.by.clone()),
            extension_months: extension.as_ref().map(|e| e.months),
            extension_reason: extension.map(|e| e.reason),
            decided_by: r.decided_by,
            decided_at: r.decided_at,
            decision_reason: r.decision_reason,
            completed_at: r.completed_at,
        }
    }
}

/// One step of a request's history.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestEvent {
    /// Status entered.
    pub status: RequestStatus,
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Who moved it (`user:<uuid>`, `worker:<id>`).
    pub actor: String,
    /// Why, if said.
    pub note: Option<String>,
}

/// A change of a request's status and what comes with it.
#[derive(Debug, Clone)]
pub struct Transition {
    /// Status to enter.
    pub to: RequestStatus,
    /// Who moves it.
    pub actor: String,
    /// Note for the history (e.g. the rejection reason).
    pub note: Option<String>,
    /// Record `actor` and now as the decision (approve / reject).
    pub decision: bool,
    /// Decision reason (rejection).
    pub decision_reason: Option<String>,
    /// Result to store.
    pub result: Option<Value>,
    /// Error to store.
    pub error: Option<String>,
    /// Export archive path to store.
    pub export_path: Option<String>,
    /// A job to enqueue in the same transaction.
    pub enqueue: Option<NewJob>,
    /// End of an erasure's cooling-off period to record (approval).
    pub cooling_off_until: Option<Timestamp>,
    /// Expiry of the export to record (completion of an access request).
    pub export_expires_at: Option<Timestamp>,
    /// Keyed subject reference whose recorded jurisdiction to delete in the same transaction
    /// (a completed erasure: nothing of the subject is left whose residency would matter).
    pub forget_jurisdiction_of: Option<String>,
    /// A completed erasure: from now on Lethe's own database names this subject only by
    /// pseudonym (requests, account links, the restricted list).
    pub forget_subject: Option<ForgetSubject>,
    /// The audit entry for this change.
    pub audit: NewAuditEntry,
}

impl Transition {
    /// A bare transition to `to` by `actor`, audited by `audit`.
    pub fn new(to: RequestStatus, actor: impl Into<String>, audit: NewAuditEntry) -> Self {
        Self {
            to,
            actor: actor.into(),
            note: None,
            decision: false,
            decision_reason: None,
            result: None,
            error: None,
            export_path: None,
            enqueue: None,
            cooling_off_until: None,
            export_expires_at: None,
            forget_jurisdiction_of: None,
            forget_subject: None,
            audit,
        }
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Export a subject's rows from every dataset (GDPR Art. 15).
    Access,
    /// Export a subject's rows from every dataset as Parquet, CSV and JSON (GDPR Art. 20).
    Portability,
    /// Rewrite the subject's files of one dataset with the request's corrected values
    /// (GDPR Art. 16).
    Rectification,
    /// Mark the subject restricted, or lift the restriction (GDPR Art. 18), as the request's
    /// type says. Touches no lake.
    Restriction,
    /// Plan an erasure (GDPR Art. 17): locate the subject's files in every dataset and fan out
    /// one [`JobKind::EraseFile`] task per affected file.
    Erasure,
    /// Rewrite one file without the subject's rows; many workers share one erasure this way.
    EraseFile,
    /// Compact a Lethe-managed dataset (payload `{"dataset_id": …}`): merge small files and
    /// apply pending erasures. Serves no request.
    Compact,
    /// Scan Lethe-managed datasets for rows stored outside the regions their subjects'
    /// jurisdictions allow (payload `{"dataset_id": …}` or `{}` for every dataset); records
    /// the violations. Serves no request.
    ResidencyScan,
    /// Move misplaced rows into an allowed region's root, then record what is left (payload
    /// as for [`JobKind::ResidencyScan`]). Serves no request.
    ResidencyRemediate,
}

impl JobKind {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Access => "access",
            JobKind::Portability => "portability",
            JobKind::Rectification => "rectification",
            JobKind::Restriction => "restriction",
            JobKind::Erasure => "erasure",
            JobKind::EraseFile => "erase_file",
            JobKind::Compact => "compact",
            JobKind::ResidencyScan => "residency_scan",
            JobKind::ResidencyRemediate => "residency_remediate",
        }
    }

    /// Parses a stable name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "access" => Some(JobKind::Access),
            "portability" => Some(JobKind::Portability),
            "rectification" => Some(JobKind::Rectification),
            "restriction" => Some(JobKind::Restriction),
            "erasure" => Some(JobKind::Erasure),
            "erase_file" => Some(JobKind::EraseFile),
            "compact" => Some(JobKind::Compact),
            "residency_scan" => Some(JobKind::ResidencyScan),
            "residency_remediate" => Some(JobKind::ResidencyRemediate),
            _ => None,
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for a worker (possibly until `run_at`, after a retry backoff).
    Queued,
    /// Held by a worker's lease.
    Running,
    /// A plan whose tasks are still running; it ends when the last of them does.
    Waiting,
    /// Done.
    Succeeded,
    /// Gave up after `max_attempts`, or aborted on a permanent error (dead-lettered: an admin
    /// can retry it).
    Failed,
    /// Cancelled by an admin.
    Cancelled,
}

impl JobStatus {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Waiting => "waiting",
        }
    }

    /// Parses a stable name.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "waiting" => JobStatus::Waiting,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// What to do.
    pub kind: JobKind,
    /// The request it serves.
    pub request_id: Option<String>,
    /// Kind-specific parameters.
    pub payload: Value,
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// Not before this instant (`None`: now). Erasure plans wait out the batching window.
    pub run_at: Option<Timestamp>,
}

/// A row of the jobs table (the queue).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    /// UUID.
    pub id: String,
    /// What it does.
    pub kind: JobKind,
    /// The request it serves.
    pub request_id: Option<String>,
    /// The plan that created this task, if any.
    pub parent_id: Option<String>,
    /// Parameters.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// What it produced (per-file counts for a task, the plan for a plan).
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Where it stands.
    pub status: JobStatus,
    /// Claims so far (a takeover counts).
    pub attempts: i64,
    /// Claims allowed.
    pub max_attempts: i64,
    /// Not before.
    pub run_at: chrono::DateTime<chrono::Utc>,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// Fencing token of the current lease.
    #[serde(skip)]
    pub lease_token: Option<String>,
    /// Lease end.
    pub lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Last error.
    pub last_error: Option<String>,
    /// Created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Last change.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl Job {
    /// The request ids of an erasure plan's batch: its payload's `batch` (a JSON array of
    /// request ids), or else its own request.
    pub fn batch(&self) -> Vec<String> {
        let batch: Vec<String> = self.payload["batch"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if batch.is_empty() {
            self.request_id.iter().cloned().collect()
        } else {
            batch
        }
    }
}

/// Everything that happens when a job ends, in one transaction.
#[derive(Debug, Clone)]
pub struct JobFinish {
    /// How it ended.
    pub outcome: JobOutcome,
    /// What it produced.
    pub result: Option<Value>,
    /// Tasks to enqueue as its children; when non-empty and the outcome is `Succeeded`, the job
    /// becomes `waiting` and ends with its last child.
    pub children: Vec<NewJob>,
    /// Request transitions to apply (e.g. completed, failed; several for a batched erasure).
    /// One refused because its request is already final is skipped.
    pub requests: Vec<(String, Transition)>,
    /// An audit entry to append (when no transition carries one).
    pub audit: Option<NewAuditEntry>,
}

impl JobFinish {
    /// A bare finish with `outcome`.
    pub fn new(outcome: JobOutcome) -> Self {
        Self {
            outcome,
            result: None,
            children: Vec::new(),
            requests: Vec::new(),
            audit: None,
        }
    }
}

/// Decides, once the last task of a plan has succeeded or one has failed for good, what happens
/// to the plan's requests, given the plan, every task (the ended one included) and the requests
/// of the plan's batch ([`Job::batch`], in that order): the transitions to apply.
pub type SiblingsDecision<'a> =
    dyn Fn(&Job, &[Job], &[PrivacyRequest]) -> Vec<(String, Transition)> + Send + Sync + 'a;

/// How a job ended.
#[derive(Debug, Clone)]
pub enum JobOutcome {
    /// Done.
    Succeeded,
    /// A transient error: run again at `at`.
    Retry {
        /// When to run again.
        at: Timestamp,
        /// The error.
        error: String,
    },
    /// Could not start for now (another holder's dataset lease was in the way): run again at
    /// `at`, and give the attempt back.
    Defer {
        /// When to run again.
        at: Timestamp,
        /// Why, kept as the job's `last_error`.
        reason: String,
    },
    /// A permanent error or attempts exhausted.
    Failed {
        /// The error.
        error: String,
    },
}

impl JobOutcome {
    /// Stable name, for metrics: `succeeded`, `retry`, `deferred` or `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Retry { .. } => "retry",
            JobOutcome::Defer { .. } => "deferred",
            JobOutcome::Failed { .. } => "failed",
        }
    }
}

/// Which audit entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only entries with `seq > after_seq` (keyset pagination).
    pub after_seq: Option<i64>,
    /// Only entries with `seq <= until_seq` (an export that ends at a checkpoint).
    pub until_seq: Option<i64>,
    /// Only entries at or after this time.
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only entries before this time.
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// Only this action (e.g. `request.approved`).
    pub action: Option<String>,
    /// Only this request.
    pub request_id: Option<String>,
    /// At most this many.
    pub limit: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn request() -> PrivacyRequest {
        let at = |d| chrono::Utc.with_ymd_and_hms(2025, 1, d, 9, 0, 0).unwrap();
        PrivacyRequest {
            id: "r-1".into(),
            request_type: RequestType::Erasure,
            subject_id: SubjectId::parse("u-secret").unwrap(),
            subject_pseudonym: "ps-1".into(),
            status: RequestStatus::Approved,
            filed_by: "user:s".into(),
            verification_note: Some("passport".into()),
            idempotency_key: None,
            received_at: at(2),
            due_at: chrono::Utc.with_ymd_and_hms(2025, 4, 2, 9, 0, 0).unwrap(),
            extension: Some(DeadlineExtension {
                months: 2,
                reason: "many datasets, \"three\" regions".into(),
                by: "user:a".into(),
                at: at(10),
                original_due_at: chrono::Utc.with_ymd_and_hms(2025, 2, 2, 9, 0, 0).unwrap(),
            }),
            decided_by: Some("user:a".into()),
            decided_at: Some(at(11)),
            decision_reason: None,
            completed_at: None,
            result: None,
            error: None,
            export_path: None,
            key_destroyed_at: None,
            cooling_off_until: None,
            export_expires_at: None,
            export_deleted_at: None,
            details: None,
        }
    }

    #[test]
    fn a_register_entry_has_the_same_columns_in_csv_and_json_and_no_subject_id() {
        let entry = RegisterEntry::from(request());
        let json = serde_json::to_value(&entry).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut columns = RegisterEntry::COLUMNS.to_vec();
        keys.sort_unstable();
        columns.sort_unstable();
        assert_eq!(keys, columns);
        let record = entry.csv_record();
        assert_eq!(record[0], "r-1");
        assert_eq!(record[1], "erasure");
        assert_eq!(record[4], "2025-01-02T09:00:00Z");
        assert_eq!(record[5], "2025-04-02T09:00:00Z");
        assert_eq!(record[6], "true");
        assert_eq!(record[7], "2025-02-02T09:00:00Z");
        assert_eq!(record[10], "2");
        assert_eq!(record[15], "", "not completed");
        let text = format!("{json}{}", record.join(","));
        assert!(!text.contains("u-secret") && !text.contains("passport"));
    }
}

/// A legal hold (GDPR Art. 17(3)): data an erasure must keep, of one dataset or one subject.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "8c1d…", "dataset_id": null, "subject_pseudonym": "5e0b…",
    "legal_basis": "Art. 17(3)(e): establishment, exercise or defence of legal claims",
    "reason": "Litigation hold, case 2025-117", "ends_at": "2026-06-30T00:00:00Z",
    "created_by": "user:1b2c…", "created_at": "2025-02-01T09:00:00Z", "released_by": null, "released_at": null}))]
pub struct LegalHold {
    /// UUID.
    pub id: String,
    /// The held dataset (a dataset hold), or null.
    pub dataset_id: Option<String>,
    /// The held subject's pseudonym (a subject hold), or null. Never the subject id.
    pub subject_pseudonym: Option<String>,
    /// Legal basis, e.g. `Art. 17(3)(b)`: a legal obligation to retain.
    pub legal_basis: String,
    /// Why, for the record.
    pub reason: String,
    /// When the hold lapses by itself (null: until released).
    pub ends_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Who placed it.
    pub created_by: String,
    /// When.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Who released it.
    pub released_by: Option<String>,
    /// When.
    pub released_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl LegalHold {
    /// Whether the hold applies at `at`: not released and not past its end date.
    pub fn is_active(&self, at: Timestamp) -> bool {
        self.released_at.is_none() && self.ends_at.is_none_or(|end| end > at)
    }
}

/// A legal hold to place: exactly one of `dataset_id` and `subject_pseudonym`.
#[derive(Debug, Clone)]
pub struct NewLegalHold {
    /// The held dataset.
    pub dataset_id: Option<String>,
    /// The held subject's pseudonym.
    pub subject_pseudonym: Option<String>,
    /// Legal basis.
    pub legal_basis: String,
    /// Why.
    pub reason: String,
    /// End date.
    pub ends_at: Option<Timestamp>,
    /// Who places it.
    pub created_by: String,
}

/// A subject whose processing is restricted (GDPR Art. 18): pipelines must keep their data
/// stored but not process it. Listed by `GET /v1/subjects/restricted` for admins and
/// pipelines, which need the subject ids to honour it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"subject_id": "u-1042", "restricted_since": "2025-02-01T09:00:05Z",
    "request_id": "1e7c…"}))]
pub struct RestrictedSubject {
    /// The data subject.
    pub subject_id: String,
    /// When the restriction took effect (its request completed).
    pub restricted_since: chrono::DateTime<chrono::Utc>,
    /// The restriction request that set it.
    pub request_id: String,
}

/// How a holder uses a dataset's files while it holds a [`DatasetLease`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseMode {
    /// Rewrites some files in place, each with a conditional swap (erasure tasks,
    /// rectification): any number of shared holders at once.
    Shared,
    /// Replaces or moves files wholesale (compaction, residency remediation): no other holder.
    Exclusive,
}

impl LeaseMode {
    /// Stable name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseMode::Shared => "shared",
            LeaseMode::Exclusive => "exclusive",
        }
    }
}

/// A time-limited claim on a dataset's files. Holders renew it while they work; one whose
/// holder died expires at `expires_at` and no longer blocks anyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetLease {
    /// The dataset.
    pub dataset_id: String,
    /// Who holds it, e.g. `job:<id>` or `cli:<uuid>`.
    pub holder: String,
    /// Shared or exclusive.
    pub mode: LeaseMode,
    /// What the holder is doing, e.g. `compaction`; shown to whoever is kept waiting.
    pub purpose: String,
    /// When the holder first took it.
    pub acquired_at: chrono::DateTime<chrono::Utc>,
    /// When it lapses unless renewed.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl std::fmt::Display for DatasetLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, {} lease until {})",
            self.purpose,
            self.holder,
            self.mode.as_str(),
            self.expires_at.format("%Y-%m-%dT%H:%M:%SZ")
        )
    }
}
