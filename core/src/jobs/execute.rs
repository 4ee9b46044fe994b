//! What each kind of job does: the dispatch from a claimed job to its module — erasure
//! ([`super::erase`]), access and portability exports ([`crate::exports::write_export`]), rectification
//! ([`super::rectify`]) and restriction ([`super::restrict`]).

use std::sync::Arc;

use super::context::{ExecuteContext, Execution, JobError};
use super::erase::{erase_file, plan_erasure};
use super::erase_table::erase_table;
use crate::exports::{ArchiveTarget, write_export};
use crate::lake::CommitGuard;
use crate::requests::results::RequestResult;
use crate::store::{Job, JobKind, PrivacyRequest, Store};

/// Runs one job to its end.
///
/// `guard` is asked right before a rewritten file is swapped in (lease fencing).
///
/// # Errors
/// [`JobError::Transient`] or [`JobError::Permanent`]; the caller decides on retries.
pub async fn execute_job(
    store: &Arc<Store>,
    ctx: &ExecuteContext,
    job: &Job,
    request: &PrivacyRequest,
    guard: Arc<dyn CommitGuard>,
) -> Result<Execution, JobError> {
    match job.kind {
        JobKind::Erasure => plan_erasure(store, ctx, job).await,
        JobKind::EraseFile => erase_file(store, ctx, job, request, guard).await,
        JobKind::EraseTable => erase_table(store, ctx, job, request, guard).await,
        JobKind::Compact | JobKind::ResidencyScan | JobKind::ResidencyRemediate => {
            Err(JobError::Permanent(format!(
                "{} jobs serve no request; the worker runs them directly",
                job.kind.as_str()
            )))
        }
        JobKind::Access | JobKind::Portability => {
            let datasets = store.list_datasets().await?;
            let target = ArchiveTarget {
                exports_url: &ctx.exports_url,
                keyring: ctx.keyring.as_deref(),
                settings: &ctx.settings,
            };
            let (result, path) = write_export(store, target, &datasets, request).await?;
            Ok(Execution::Completed {
                result: RequestResult::Export(result),
                export_path: Some(path),
            })
        }
        JobKind::Rectification => super::rectify::rectify(store, ctx, request, guard).await,
        JobKind::Restriction => super::restrict::apply(store, job, request).await,
    }
}
