//! Swapping a verified new file in for the original, on each kind of store, after checking
//! that nobody else wrote the original meanwhile.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use crate::lake::error::LakeError;
use crate::lake::root::{DataFile, LakeRoot};
use crate::lake::store::StoreKind;

/// Replaces `file` by the verified temporary object `tmp` (`whole`: its bytes, when it was
/// small enough to be uploaded with one PUT).
///
/// - Local file system: `rename(2)`, atomic.
/// - S3 (and the in-memory store), file uploaded with one PUT: a conditional PUT of the same
///   bytes over the original, `If-Match: <the original's ETag as listed>` (object_store
///   `PutMode::Update`), then the temporary object is deleted. A write to the original by anyone
///   since the listing makes the PUT fail with `412 Precondition Failed` →
///   [`LakeError::Changed`]: no window.
/// - S3, multipart upload (larger than the part size): object_store 0.14 has no conditional
///   form of `CopyObject` or of completing a multipart upload over an existing object, so the
///   swap is a server-side copy of the temporary object over the original, then a delete of the
///   temporary object. [`ensure_unchanged`] ran just before; **a write to the original between
///   that HEAD and the end of the copy (one round trip plus the copy, about a second per GB) is
///   lost.** Producers append new files rather than rewrite old ones, and Lethe's own writers
///   are fenced by the [`CommitGuard`], so only a foreign rewrite (a compaction outside Lethe)
///   can hit this window.
/// - A store from [`LakeRoot::from_store`]: its `rename`, after the same check.
///
/// A new file whose untouched row groups were copied server-side ([`PartUpload`]) is always a
/// multipart upload (at least 5 MiB), so it takes the copy-then-delete swap.
///
/// A crash between the copy and the delete leaves the temporary object; the next attempt on
/// the file removes it ([`remove_stale_temps`]). A crash during a multipart upload leaves an
/// incomplete upload that no listing shows ([`LakeRoot::incomplete_uploads`] does): S3 buckets holding lakes should have a lifecycle
/// rule `AbortIncompleteMultipartUpload` (e.g. after 1 day). Files above 5 GiB cannot be
/// swapped on S3 (the limit of one `CopyObject`): they fail and stay untouched.
pub(crate) async fn swap(
    root: &LakeRoot,
    file: &DataFile,
    tmp: &Path,
    whole: Option<PutPayload>,
) -> Result<(), LakeError> {
    let store = root.store();
    let kind = root.kind();
    if matches!(kind, StoreKind::S3 | StoreKind::Memory)
        && let (Some(payload), Some(e_tag)) = (whole, file.e_tag.clone())
    {
        let opts = PutOptions {
            mode: PutMode::Update(UpdateVersion {
                e_tag: Some(e_tag),
                version: None,
            }),
            ..PutOptions::default()
        };
        match store.put_opts(&file.location, payload, opts).await {
            Ok(_) => {
                remove_after_swap(store, tmp).await;
                return Ok(());
            }
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
            ) => {
                return Err(LakeError::Changed {
                    file: file.relative.clone(),
                });
            }
            Err(
                object_store::Error::NotImplemented { .. }
                | object_store::Error::NotSupported { .. },
            ) => {
                tracing::debug!(file = %file.relative, "conditional put not available; renaming");
            }
            Err(e) => return Err(LakeError::store(&file.location, e)),
        }
    }
    match kind {
        StoreKind::S3 | StoreKind::Memory => {
            store
                .copy(tmp, &file.location)
                .await
                .map_err(|e| LakeError::store(&file.location, e))?;
            remove_after_swap(store, tmp).await;
        }
        StoreKind::Local | StoreKind::Other => store
            .rename(tmp, &file.location)
            .await
            .map_err(|e| LakeError::store(&file.location, e))?,
    }
    Ok(())
}

/// Deletes the temporary object after a swap by copy; a failure only leaves a stale temporary
/// object, so it is logged, not returned.
pub(super) async fn remove_after_swap(store: &Arc<dyn ObjectStore>, tmp: &Path) {
    if let Err(e) = store.delete(tmp).await {
        tracing::warn!(object = %tmp, error = %e, "temporary object not removed after the swap");
    }
}

/// Fails when the original changed (size, ETag or mtime) since it was listed: someone else
/// wrote it, and swapping in our copy would lose their write.
pub(super) async fn ensure_unchanged(
    store: &Arc<dyn ObjectStore>,
    file: &DataFile,
) -> Result<(), LakeError> {
    let now = store
        .head(&file.location)
        .await
        .map_err(|e| LakeError::store(&file.location, e))?;
    if now.size != file.size || now.e_tag != file.e_tag || now.last_modified != file.last_modified {
        return Err(LakeError::Changed {
            file: file.relative.clone(),
        });
    }
    Ok(())
}
