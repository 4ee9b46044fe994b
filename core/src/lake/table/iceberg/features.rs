//! What Lethe refuses to erase from, before anything is written (`LakeError::TableFeature`
//! naming the feature): format version 3 (deletion vectors, row lineage, new types: spec,
//! "Version 3"), branches other than `main` (spec "Snapshot References"; their snapshots
//! would have to be rewritten too), encrypted tables (`encryption-keys`, spec "Encryption"), v1 snapshots
//! without a manifest list (inline `manifests`), and delete files that apply to a data file
//! holding subject rows (applying them is not implemented: their deleted rows would come back
//! in the rewrite, spec "Row-level Deletes"). One more refusal lives with the commit
//! (`commit::refuse_v1_manifests_with_deletes`): rewriting a v1 manifest of an upgraded table
//! that has delete files.

use super::manifest::Entry;
use super::metadata::LoadedTable;
use crate::lake::error::LakeError;

fn refuse(table: &LoadedTable, feature: &str, reason: String) -> LakeError {
    LakeError::TableFeature {
        root: table.metadata.location().to_string(),
        feature: feature.to_string(),
        reason,
    }
}

/// Refuses a table whose metadata uses something Lethe cannot honour.
///
/// # Errors
/// [`LakeError::TableFeature`] naming it.
pub(crate) fn check_features(table: &LoadedTable) -> Result<(), LakeError> {
    let version = table.metadata.format_version();
    if version > 2 {
        return Err(refuse(
            table,
            &format!("format-version {version}"),
            "Lethe reads and writes Iceberg format versions 1 and 2 only (deletion vectors and row lineage of v3 are not implemented)".into(),
        ));
    }
    if table.metadata.has_encryption_keys() {
        return Err(refuse(
            table,
            "encryption",
            "encrypted manifests and data files are not supported".into(),
        ));
    }
    if let Some(branch) = table.metadata.branches().into_iter().find(|b| b != "main") {
        return Err(refuse(
            table,
            "branches",
            format!(
                "branch {branch:?}: Lethe erases from the main branch only, and expiring the snapshots of another branch would drop that branch"
            ),
        ));
    }
    if table.metadata.has_inline_manifests() {
        return Err(refuse(
            table,
            "v1 inline manifests",
            "a snapshot lists its manifests inline instead of in a manifest list".into(),
        ));
    }
    Ok(())
}

/// Refuses the erasure because delete file `delete` applies to `data_file`, which holds
/// subject rows.
pub(crate) fn refuse_delete_file(
    table: &LoadedTable,
    data_file: &str,
    delete: &Entry,
) -> LakeError {
    let feature = if delete.content == 1 {
        "position deletes"
    } else {
        "equality deletes"
    };
    refuse(
        table,
        feature,
        format!(
            "delete file {} applies to data file {data_file}, which holds subject rows; applying delete files in a rewrite is not implemented",
            delete.file_path
        ),
    )
}
