//! Data residency (GDPR Chapter V, transfers of personal data): residency policies enforced at
//! ingest, scanned for, and repaired.
//!
//! ```text
//! subject ── jurisdiction (EU) ── policy: EU → [EU] ── allowed regions
//! row ────── region (US: its root, its region= partition, or its region column)
//! row misplaced  ⇔  a subject of the row has a policy that does not list the row's region
//! ```
//!
//! - **Jurisdictions** are recorded per subject, by keyed reference (never the id): set by an
//!   admin, or learned at ingest from a dataset's `jurisdiction_column`.
//! - **Policies** map a jurisdiction to the regions its subjects' rows may be stored in, in
//!   order of preference. A subject without a jurisdiction, or whose jurisdiction has no
//!   policy, is not restricted: any region of the dataset will do.
//! - **Ingest** ([`crate::ingest::routing`]) refuses a batch holding a row whose region its
//!   subjects' policies do not allow, and writes each row under its region's root.
//! - **Scan** ([`scan`]) reads the subject and region columns of every file of every root and
//!   records, per file, the rows stored outside their allowed regions.
//! - **Remediation** ([`remediate`]) moves those rows: copy into the first allowed region's root
//!   first, then rewrite the source without them, with a manifest so a crash in between is
//!   finished (not repeated) by the next run.
//!
//! Which region a stored row is in: a file under a dataset's region root is in that region
//! (where the bytes are is what matters); a file under the dataset's `root_url` is in the region
//! of its `region=` partition, or, when the region column is stored in the files, in the region
//! its region column names.

mod manifest;
pub mod remediate;
mod rule;
pub mod scan;

pub use crate::store::{Jurisdictions, PolicyBook};
pub use remediate::{RemediationReport, remediate_dataset};
pub use rule::RegionSource;
pub use scan::{DatasetScan, scan_dataset};

use std::sync::Arc;

use crate::ingest::IngestError;
use crate::keyring::Keyring;
use crate::lake::{CommitGuard, LakeError};
use crate::store::{Dataset, Store, StoreError};

/// Why a residency scan or remediation failed. Files that fail alone are reported in the scan
/// or remediation report instead; these errors stop the dataset.
#[derive(Debug, thiserror::Error)]
pub enum ResidencyError {
    /// A root cannot be listed, or a lake operation failed.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the moved rows failed.
    #[error(transparent)]
    Write(#[from] IngestError),
    /// One file cannot be remediated (not in the dataset's schema; its rewrite failed).
    #[error("file {file}: {reason}")]
    File {
        /// The file, relative to its root.
        file: String,
        /// Why.
        reason: String,
    },
    /// A remediation manifest could not be read or applied.
    #[error("remediation manifest {manifest}: {reason}")]
    Manifest {
        /// The manifest object.
        manifest: String,
        /// What is wrong.
        reason: String,
    },
}

impl ResidencyError {
    /// Whether another attempt later may succeed (storage or database unreachable).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Lake(e) => matches!(
                e,
                LakeError::ObjectStore { .. } | LakeError::Io(_) | LakeError::Changed { .. }
            ),
            Self::Store(e) => matches!(e, StoreError::Database { .. }),
            Self::Write(e) => !e.is_client_error(),
            Self::File { .. } | Self::Manifest { .. } => false,
        }
    }
}

/// The datasets a residency job covers: the one with id `dataset_id`, or every dataset.
async fn datasets(
    store: &Arc<Store>,
    dataset_id: Option<&str>,
) -> Result<Vec<Dataset>, ResidencyError> {
    Ok(match dataset_id {
        Some(id) => vec![store.dataset(id).await?],
        None => store.list_datasets().await?,
    })
}

/// Scans one dataset (`dataset_id`) or every dataset, as `actor`; datasets Lethe cannot scan
/// (no schema, no region column) are recorded as `not_scannable`.
///
/// # Errors
/// The first [`ResidencyError`] that stops a dataset; datasets scanned before it stay
/// recorded.
pub async fn scan_datasets(
    store: &Arc<Store>,
    keyring: &Keyring,
    dataset_id: Option<&str>,
    actor: &str,
) -> Result<Vec<DatasetScan>, ResidencyError> {
    let policies = PolicyBook::load(store.as_ref()).await?;
    let mut out = Vec::new();
    for dataset in datasets(store, dataset_id).await? {
        out.push(scan_dataset(store, keyring, &policies, &dataset, actor).await?);
    }
    Ok(out)
}

/// Remediates one dataset (`dataset_id`) or every dataset, as `actor`; `guard` is asked
/// before each source file is swapped.
///
/// # Errors
/// The first [`ResidencyError`] that stops a dataset (the next run finishes what it left).
pub async fn remediate_datasets(
    store: &Arc<Store>,
    keyring: &Keyring,
    dataset_id: Option<&str>,
    actor: &str,
    guard: Option<Arc<dyn CommitGuard>>,
) -> Result<Vec<RemediationReport>, ResidencyError> {
    let policies = PolicyBook::load(store.as_ref()).await?;
    let mut out = Vec::new();
    for dataset in datasets(store, dataset_id).await? {
        out.push(
            remediate_dataset(store, keyring, &policies, &dataset, actor, guard.clone()).await?,
        );
    }
    Ok(out)
}
