//! The hidden temporary objects of a rewrite (`.<name>.lethe-tmp-<uuid>` beside the file) and
//! the removal of those a crashed attempt left, before the next attempt on the file.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use super::crc::sidecar_name;
pub(crate) use crate::lake::root::TEMP_MARKER;
use crate::lake::root::{DataFile, LakeRoot};
use crate::lake::store::StoreKind;

/// A hidden sibling of `location` for a temporary object: `<dir>/.<name>.lethe-tmp-<uuid>`.
pub(super) fn temp_beside(location: &Path) -> Path {
    let name = location.filename().unwrap_or("file");
    let tmp = format!(".{name}{TEMP_MARKER}{}", uuid::Uuid::new_v4());
    match location.parent() {
        Some(dir) => dir.join(tmp.as_str()),
        None => Path::from(tmp),
    }
}

/// The location of the Hadoop sidecar of `location`.
pub(super) fn sidecar_of(location: &Path) -> Path {
    let name = sidecar_name(location.filename().unwrap_or("file"));
    match location.parent() {
        Some(dir) => dir.join(name.as_str()),
        None => Path::from(name),
    }
}

/// True when `temp` (a listed temporary object) belongs to `file`: it is `.<name>.lethe-tmp-<uuid>`
/// (the data file) or `..<name>.crc.lethe-tmp-<uuid>` (its Hadoop sidecar), in the same folder.
pub(crate) fn is_temp_of(temp: &Path, file: &Path) -> bool {
    let (Some(temp_name), Some(name)) = (temp.filename(), file.filename()) else {
        return false;
    };
    if temp.parent() != file.parent() {
        return false;
    }
    [
        format!(".{name}{TEMP_MARKER}"),
        format!("..{name}.crc{TEMP_MARKER}"),
    ]
    .iter()
    .any(|prefix| {
        temp_name
            .strip_prefix(prefix.as_str())
            .is_some_and(|rest| uuid::Uuid::parse_str(rest).is_ok())
    })
}

/// Deletes the temporary objects of `file` among `temps` that are older than `attempt_started`:
/// they were left by an attempt that crashed (or was killed) before cleaning up. Returns how
/// many were deleted. Failures are logged, not returned: a leftover only costs storage.
///
/// Objects of an attempt still running elsewhere are younger than this attempt unless its
/// worker lost its lease, in which case deleting its temporary object makes its swap fail,
/// which is what the lease asks for. Clock skew between the store and this host (S3 stamps
/// `last_modified` itself) shifts the cut-off by the skew.
pub(crate) async fn remove_stale_temps(
    store: &Arc<dyn ObjectStore>,
    file: &DataFile,
    temps: &[ObjectMeta],
    attempt_started: DateTime<Utc>,
) -> u64 {
    let mut removed = 0;
    for temp in temps
        .iter()
        .filter(|t| is_temp_of(&t.location, &file.location) && t.last_modified < attempt_started)
    {
        match store.delete(&temp.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                tracing::info!(file = %file.relative, object = %temp.location, "stale temporary object removed");
                removed += 1;
            }
            Err(e) => {
                tracing::warn!(object = %temp.location, error = %e, "stale temporary object not removed")
            }
        }
    }
    removed
}

/// On a local file system, an upload killed mid-way leaves object_store's staging file
/// `<temporary object>#<n>` behind, which no listing shows: deletes those of `file` older
/// than `attempt_started`. Returns how many were deleted; failures are logged.
pub(crate) fn remove_stale_staging(
    root: &LakeRoot,
    file: &DataFile,
    attempt_started: DateTime<Utc>,
) -> u64 {
    if root.kind() != StoreKind::Local {
        return 0;
    }
    let Some(folder) = crate::lake::local_folder(root.url()) else {
        return 0;
    };
    let mut dir = std::path::PathBuf::from(folder);
    if let Some(parent) = file.location.parent() {
        dir.extend(parent.parts().map(|p| p.as_ref().to_string()));
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let cutoff = std::time::SystemTime::from(attempt_started);
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some((temp, n)) = name.rsplit_once('#') else {
            continue;
        };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let temp_path = file
            .location
            .parent()
            .map_or_else(|| Path::from(temp), |p| p.join(temp));
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|m| m < cutoff);
        if is_temp_of(&temp_path, &file.location) && old {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %file.relative, object = %name, "stale upload staging file removed");
                    removed += 1;
                }
                Err(e) => {
                    tracing::warn!(object = %name, error = %e, "stale staging file not removed")
                }
            }
        }
    }
    removed
}
