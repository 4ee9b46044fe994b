//! The privacy request lifecycle (GDPR Art. 12–20): every change of a request's status, in one
//! place.
//!
//! ```text
//!            file ──policy: review──▶ pending_approval ──approve──▶ approved ──job──▶ running
//!              │                        │    │                        │                │
//!              └──policy: auto──────────┼────┼──────▶ approved        │        complete / fail
//!                                       │    └──reject──▶ rejected     │                ▼
//!   received / pending_approval / approved (job not started) ──cancel──▶ cancelled   completed,
//!                                                                          partially_completed, failed
//! ```
//!
//! | module | operations |
//! |---|---|
//! | [`file`] | filing: who may file for whom, idempotency, manifestly excessive requests (Art. 12(5)), a rectification checked against its dataset (Art. 16), the approval policy |
//! | [`decide`] | approval (cooling-off, first-phase key destruction, the job queued), rejection with a reason (Art. 12(4)), cancellation |
//! | [`extend`] | the one extension of the deadline by up to two months (Art. 12(3)) |
//! | [`complete`] | what a request becomes when its job ends: completion (partial under a legal hold, Art. 17(3)), what an erasure forgets, export expiry; failure |
//! | [`results`] | what a completed request's result says, typed per request type |
//! | [`shred`] | the first phase of an erasure: the subject's data key destroyed (crypto-shredding) |
//!
//! Each operation takes the store and a typed command and returns the request as it left it
//! with the [`LifecycleEvent`]s that happened ([`Changed`]); the store writes each transition,
//! its audit entry and its webhook outbox rows in one transaction (`Store::transition_request`).
//! HTTP handlers authenticate, parse, call one of these and render; the worker's runner calls
//! [`complete`] when a job ends.

pub mod complete;
pub mod decide;
pub mod extend;
pub mod file;
pub mod results;
pub mod shred;

pub use decide::{Cancel, approve, cancel, reject};
pub use extend::{Extend, extend};
pub use file::{FileRequest, Filer, file};
pub use shred::{destroy_subject_key, reapply_tombstones};

use std::time::Duration;

use crate::config::{ApprovalPolicy, Settings};
use crate::domain::{ParseError, RequestType, Timestamp};
use crate::exports::ExportError;
use crate::store::{JobKind, PrivacyRequest, StoreError};

/// What a lifecycle operation did, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// A new request was filed (`received`).
    Filed,
    /// A retry with the same `Idempotency-Key` returned the request filed first; nothing
    /// changed.
    Replayed,
    /// The approval policy `review` put it in `pending_approval`.
    AwaitingApproval,
    /// Approved, by an admin or by the policy (`policy:auto`).
    Approved {
        /// Who approved it.
        by: String,
    },
    /// Its job was queued.
    JobQueued {
        /// The job's kind.
        kind: JobKind,
        /// Not before this instant (an erasure's batch window or cooling-off); `None`: now.
        run_at: Option<Timestamp>,
    },
    /// The subject's data key was destroyed: the first phase of an erasure (crypto-shredding).
    KeyDestroyed,
    /// Rejected with a reason the subject sees.
    Rejected,
    /// Cancelled before its job started.
    Cancelled,
    /// The deadline was extended to `due_at`.
    DeadlineExtended {
        /// The new deadline.
        due_at: Timestamp,
    },
}

/// A request after a lifecycle operation, and what the operation did.
#[derive(Debug, Clone)]
pub struct Changed {
    /// The request as the operation left it.
    pub request: PrivacyRequest,
    /// What happened, in order.
    pub events: Vec<LifecycleEvent>,
}

impl Changed {
    /// Whether the operation was a replay of an earlier filing (nothing changed).
    pub fn replayed(&self) -> bool {
        self.events.first() == Some(&LifecycleEvent::Replayed)
    }
}

/// Why a lifecycle operation was refused or failed. Each variant says what an HTTP API answers.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The command is malformed or breaks a rule (400, `code` e.g. `validation`,
    /// `root_unreachable`).
    #[error("{detail}")]
    Invalid {
        /// Machine-readable code.
        code: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The caller may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such request for this caller (404).
    #[error("{0}")]
    NotFound(String),
    /// The request's state or the subject's other requests refuse it (409).
    #[error("{detail}")]
    Conflict {
        /// Machine-readable code, e.g. `idempotency_key_reused`, `excessive_requests`.
        code: &'static str,
        /// Why.
        detail: String,
    },
    /// The key store failed while destroying a data key (worth another attempt).
    #[error("{0}")]
    Keyring(String),
    /// The database failed, or refused the transition (its own statuses).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The export store failed while deleting an erased subject's exports.
    #[error(transparent)]
    Exports(#[from] ExportError),
}

impl RequestError {
    /// A `validation` refusal.
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::Invalid {
            code: "validation",
            detail: detail.into(),
        }
    }
}

impl From<ParseError> for RequestError {
    fn from(e: ParseError) -> Self {
        Self::validation(e.to_string())
    }
}

/// The lifecycle's settings: approval per request type, cooling-off, batching, retries and
/// limits (`[requests]` and `[worker]` of the configuration).
#[derive(Debug, Clone)]
pub struct Policies {
    /// Approval policy per type (`requests.*_approval`).
    pub access: ApprovalPolicy,
    /// Portability (Art. 20).
    pub portability: ApprovalPolicy,
    /// Rectification (Art. 16).
    pub rectification: ApprovalPolicy,
    /// Erasure (Art. 17).
    pub erasure: ApprovalPolicy,
    /// Restriction and its lifting (Art. 18).
    pub restriction: ApprovalPolicy,
    /// An approved erasure waits this long, cancellable, before its key is destroyed
    /// (`requests.erasure_cooling_off_s`; zero: none).
    pub erasure_cooling_off: Duration,
    /// Approved erasures wait this long to run in one batch (`worker.erasure_batch_window_s`).
    pub erasure_batch_window: Duration,
    /// Attempts of a request's job (`worker.max_attempts`).
    pub max_attempts: u32,
    /// Open requests of one type a subject may have (`requests.max_open_per_type`; 0: no
    /// bound).
    pub max_open_per_type: u32,
    /// How long an export stays downloadable (`requests.export_ttl_s`).
    pub export_ttl: Duration,
    /// The settings tables are opened with (Iceberg catalogs, where tables may lie), to check
    /// a rectification's columns against a Delta or Iceberg dataset's schema; `None`:
    /// rectifications of tables are refused.
    pub tables: Option<std::sync::Arc<Settings>>,
}

impl Policies {
    /// The policies `settings` configure.
    pub fn from_settings(settings: &Settings) -> Self {
        let r = &settings.requests;
        Self {
            access: r.access_approval,
            portability: r.portability_approval,
            rectification: r.rectification_approval,
            erasure: r.erasure_approval,
            restriction: r.restriction_approval,
            erasure_cooling_off: Duration::from_secs(r.erasure_cooling_off_s),
            erasure_batch_window: Duration::from_secs(settings.worker.erasure_batch_window_s),
            max_attempts: settings.worker.max_attempts,
            max_open_per_type: r.max_open_per_type,
            export_ttl: Duration::from_secs(r.export_ttl_s),
            tables: Some(std::sync::Arc::new(settings.clone())),
        }
    }

    /// The approval policy of `request_type`.
    pub fn approval(&self, request_type: RequestType) -> ApprovalPolicy {
        match request_type {
            RequestType::Access => self.access,
            RequestType::Portability => self.portability,
            RequestType::Rectification => self.rectification,
            RequestType::Erasure => self.erasure,
            RequestType::Restriction | RequestType::RestrictionLift => self.restriction,
        }
    }
}

/// `d` as a chrono duration (saturating).
fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
