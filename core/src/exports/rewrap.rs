//! Re-wrapping the keys of sealed exports after a KEK rotation.
//!
//! Each export archive is sealed under a key of its own, wrapped by the KEK in the archive's
//! header ([`crate::keyring::blob`]). A rotation re-wraps subjects' DEKs in the database; this
//! re-wraps the exports' keys in the export store, so the old KEK can be destroyed at once
//! instead of kept until the last export sealed under it has expired.

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::Serialize;

use super::{ExportError, export_context};
use crate::keyring::Keyring;
use crate::keyring::blob::is_sealed_blob;
use crate::lake::{local_folder, object_store_for_url};

/// What [`rewrap_exports`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportRewrapReport {
    /// Export archives (`<request id>.zip`) found.
    pub exports_seen: u64,
    /// Archives whose key is now wrapped by the current KEK.
    pub rewrapped: u64,
    /// Archives whose key already was.
    pub already_current: u64,
    /// Archives stored without sealing (written by a deployment without a keyring): nothing
    /// to re-wrap.
    pub not_sealed: u64,
    /// Archives deleted (the expiry sweep) or replaced while this ran: left as they are.
    pub gone_meanwhile: u64,
    /// Archives that could not be re-wrapped, as `"<name>: <why>"` (e.g. sealed under a KEK
    /// the keyring does not hold); they stay as they were.
    pub failed: Vec<String>,
}

/// Re-wraps the key of every sealed export archive in `exports_url` (a folder or an object
/// store URL, as `storage.exports_url`) under `keyring`'s current KEK, which must also hold
/// the KEK(s) the archives were sealed under as previous KEKs. An archive is replaced with a
/// conditional put where the store offers one, so an archive the expiry sweep deleted
/// meanwhile is not brought back.
///
/// # Errors
/// [`ExportError::Storage`] when the export store cannot be listed; per-archive failures are
/// reported in [`ExportRewrapReport::failed`].
pub async fn rewrap_exports(
    keyring: &Keyring,
    exports_url: &str,
) -> Result<ExportRewrapReport, ExportError> {
    let mut report = ExportRewrapReport::default();
    if local_folder(exports_url).is_some_and(|dir| !std::path::Path::new(dir).exists()) {
        return Ok(report);
    }
    let (store, prefix) = object_store_for_url(exports_url)
        .map_err(|e| ExportError::Storage(format!("export store {exports_url}: {e}")))?;
    let depth = prefix.parts().count() + 1;
    let mut listing = store.list(Some(&prefix));
    let mut archives = Vec::new();
    while let Some(meta) = futures::StreamExt::next(&mut listing).await {
        let meta = meta.map_err(|e| ExportError::Storage(format!("listing {exports_url}: {e}")))?;
        if meta.location.parts().count() == depth
            && meta
                .location
                .filename()
                .is_some_and(|n| n.ends_with(".zip"))
        {
            archives.push(meta);
        }
    }
    for meta in archives {
        report.exports_seen += 1;
        let name = meta.location.filename().unwrap_or_default().to_string();
        let request_id = name.trim_end_matches(".zip");
        let fail = |report: &mut ExportRewrapReport, why: &dyn std::fmt::Display| {
            tracing::warn!(export = %name, error = %why, "export key not re-wrapped");
            report.failed.push(format!("{name}: {why}"));
        };
        let got = match store.get(&meta.location).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                report.gone_meanwhile += 1;
                continue;
            }
            Err(e) => {
                fail(&mut report, &e);
                continue;
            }
        };
        let version = UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let sealed = match got.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => {
                fail(&mut report, &e);
                continue;
            }
        };
        if !is_sealed_blob(&sealed) {
            report.not_sealed += 1;
            continue;
        }
        let rewrapped = match keyring.rewrap_blob(&export_context(request_id), &sealed) {
            Ok(Some(rewrapped)) => rewrapped,
            Ok(None) => {
                report.already_current += 1;
                continue;
            }
            // Sealed under a KEK the keyring does not hold, or not for this name.
            Err(e) => {
                fail(&mut report, &e);
                continue;
            }
        };
        let payload = PutPayload::from(rewrapped);
        let conditional = PutOptions {
            mode: PutMode::Update(version),
            ..PutOptions::default()
        };
        let put = match store
            .put_opts(&meta.location, payload.clone(), conditional)
            .await
        {
            Err(
                object_store::Error::NotImplemented { .. }
                | object_store::Error::NotSupported { .. },
            ) => {
                // A local folder: no conditional put. Check it is still there, then replace
                // it (atomically: a temporary file renamed over it).
                match store.head(&meta.location).await {
                    Ok(_) => store.put(&meta.location, payload).await.map(|_| ()),
                    Err(e) => Err(e),
                }
            }
            other => other.map(|_| ()),
        };
        match put {
            Ok(()) => report.rewrapped += 1,
            Err(
                object_store::Error::NotFound { .. } | object_store::Error::Precondition { .. },
            ) => {
                report.gone_meanwhile += 1;
            }
            Err(e) => fail(&mut report, &e),
        }
    }
    tracing::info!(
        seen = report.exports_seen,
        rewrapped = report.rewrapped,
        failed = report.failed.len(),
        "export keys re-wrapped"
    );
    Ok(report)
}
