//! Commit fencing: the last word, per file, before a rewritten file replaces the original.

use async_trait::async_trait;

/// Decides whether a verified rewrite may be swapped in. Called once per rewritten file, after
/// the new file was written and verified and immediately before the swap.
///
/// Many workers share one large erasure file by file, each holding a lease on its files; a
/// worker that stalled past its lease must not overwrite the work of the worker that took the
/// file over. An implementation checks (and ideally extends) the lease, e.g. with a database
/// row `UPDATE … WHERE lease_owner = $me AND lease_until > now()`.
///
/// ```
/// use lethe_core::lake::CommitGuard;
/// struct Always;
/// #[async_trait::async_trait]
/// impl CommitGuard for Always {
///     async fn may_commit(&self, _file: &str) -> Result<(), String> {
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait CommitGuard: Send + Sync {
    /// `Ok(())` lets the swap of `file` (path relative to the lake root) go ahead.
    ///
    /// # Errors
    /// `Err(reason)` abandons the rewrite: the new file is deleted, the original stays as it
    /// is, and the file is reported as [`FileStatus::Failed`](super::FileStatus::Failed) with
    /// [`LakeError::Fenced`](crate::lake::LakeError::Fenced) carrying `reason`.
    async fn may_commit(&self, file: &str) -> Result<(), String>;
}

/// Several guards that must all agree, asked in order (e.g. a job's lease, then the dataset
/// lease the job works under).
pub struct AllGuards(pub Vec<std::sync::Arc<dyn CommitGuard>>);

#[async_trait]
impl CommitGuard for AllGuards {
    async fn may_commit(&self, file: &str) -> Result<(), String> {
        for guard in &self.0 {
            guard.may_commit(file).await?;
        }
        Ok(())
    }
}
