//! The database: [`Store`] on SQLite (the embedded default, WAL mode) or PostgreSQL, chosen by
//! the URL scheme, one SQL text for both (sqlx's `Any` driver; see `docs/architecture.md`).
//!
//! Its operations are split by aggregate, each module holding its SQL next to its row types:
//!
//! | module | aggregate |
//! |---|---|
//! | `db` | the connection, migrations, write transactions, readiness |
//! | `rows` | the columns each table is read with, and the decoders of shared row types |
//! | `accounts`, `email_codes`, `refresh`, `tokens` | accounts and their sessions, e-mail codes, API tokens |
//! | `datasets`, `dataset_removal`, `locator` | datasets, their removal, the locator index |
//! | `requests`, `deadlines`, `lifecycle`, `forget` | privacy requests: filing, reads, transitions (the statements shared with the queue), deadline extensions, what an erasure forgets |
//! | `jobs`, `plans`, `leases` | the job queue, erasure plans' batches and ends, the dataset leases |
//! | `audit_chain` | the audit chain's append and reads |
//! | `keys` | the keyring's [`crate::keyring::KeyStore`] |
//! | `holds`, `restrictions`, `residency`, `jurisdictions` | legal holds and export expiry, restrictions (Art. 18), residency policies, scans and jurisdictions |
//! | `webhooks` | endpoints, deliveries and the outbox |
//!
//! Every state change that must be audited takes its [`crate::audit::NewAuditEntry`] and appends it in the
//! same transaction, so the audit log and the state it describes cannot disagree.

mod accounts;
mod audit_chain;
mod dataset_removal;
mod datasets;
mod db;
mod deadlines;
mod email_codes;
mod forget;
mod holds;
mod jobs;
mod jurisdictions;
mod keys;
mod leases;
mod lifecycle;
mod locator;
mod payload;
mod plans;
mod refresh;
mod requests;
mod residency;
mod restrictions;
mod rows;
mod tokens;
pub mod webhooks;

pub use accounts::{NewUser, User};
pub use audit_chain::AuditFilter;
pub use datasets::{Dataset, DatasetRoot, IcebergTableRef, NewDataset};
pub use db::{Backend, Store};
pub use deadlines::{DeadlineExtension, NewExtension, RegisterEntry, RegisterFilter};
pub use email_codes::EmailCodeOutcome;
pub use forget::ForgetSubject;
pub use holds::{LegalHold, NewLegalHold};
pub use jobs::{Job, JobFinish, JobKind, JobOutcome, JobStatus, NewJob};
pub use jurisdictions::{Jurisdictions, PolicyBook};
pub use leases::{DATASET_LEASE_TTL, HeldDatasetLease, process_lease_holder, with_dataset_lease};
pub use leases::{DatasetLease, LeaseMode};
pub use locator::IndexedFile;
pub use payload::{EraseFileTask, EraseTableTask, JobPayload};
pub use plans::SiblingsDecision;
pub use refresh::{NewRefreshToken, RefreshOutcome};
pub use requests::{NewRequest, PrivacyRequest, RequestEvent, RequestFilter, Transition};
pub use residency::{
    ResidencyPolicy, ResidencyScan, ResidencyViolation, ScanStatus, SubjectJurisdiction,
};
pub use restrictions::RestrictedSubject;
pub use tokens::{ApiToken, NewApiToken, TokenScope};

use crate::domain::{ExtensionRefusal, RequestStatus};

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
