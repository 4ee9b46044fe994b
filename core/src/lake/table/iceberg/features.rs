//! What Lethe refuses to erase from, before anything is written (`LakeError::TableFeature`
//! naming the feature): format version 3 (deletion vectors, row lineage, new types: spec,
//! "Version 3"), branches other than `main` (spec "Snapshot References"; their snapshots
//! would have to be rewritten too), encrypted tables (`encryption-keys`, spec "Encryption"), v1 snapshots
//! without a manifest list (inline `manifests`), and delete files not written in Parquet that
//! apply to a data file holding subject rows (Parquet ones are applied by the rewrite,
//! `super::deletes`; spec "Row-level Deletes"). One more refusal lives with the commit
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

/// Refuses the erasure because delete file `delete`, in a format Lethe does not read (Avro,
/// ORC: only Parquet delete files are applied), applies to `data_file`, which holds subject
/// rows.
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
    let format = delete
        .data_file()
        .and_then(|f| super::avro::text(f, "file_format"))
        .unwrap_or("an unknown format");
    refuse(
        table,
        feature,
        format!(
            "delete file {} ({format}) applies to data file {data_file}, which holds subject rows; Lethe applies delete files written in Parquet only",
            delete.file_path
        ),
    )
}
