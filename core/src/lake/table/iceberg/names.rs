//! The names of the files Lethe writes into an Iceberg table, and how to tell its data files
//! apart from the writers' own (the crash cleanup deletes only Lethe's unreferenced files).
//!
//! Data files: `<original name without .parquet>-lethe-<uuid>.parquet` beside the original
//! (the marker is the one of Delta tables, [`crate::lake::table::delta::LETHE_FILE_MARKER`]).
//! Metadata: `<n+1, 5 digits>-<uuid>.metadata.json`, `<uuid>-lethe-m<k>.avro` manifests and
//! `snap-<snapshot id>-lethe-<uuid>.avro` manifest lists under `metadata/`
//! (Iceberg spec, "File System Tables" naming, as Java's and pyiceberg's writers do).

use crate::lake::table::delta::{is_lethe_file, new_file_path};

/// The relative path of the file replacing `relative`: same folder, marker and a new uuid
/// (the same naming as in Delta tables).
pub(crate) fn new_data_path(relative: &str) -> String {
    new_file_path(relative)
}

/// True when `name` (a file name) is one of Lethe's data files.
pub(crate) fn is_lethe_data_file(name: &str) -> bool {
    is_lethe_file(name)
}

/// The name of the metadata file following `previous` (a location or name): its number
/// (`00003-…` → 4; 1 when it has none) on 5 digits, then a new uuid.
pub(crate) fn next_metadata_name(previous: &str) -> String {
    let name = previous.rsplit('/').next().unwrap_or(previous);
    let number = name
        .split_once('-')
        .and_then(|(n, _)| n.parse::<u64>().ok())
        .map_or(1, |n| n + 1);
    format!("{number:05}-{}.metadata.json", uuid::Uuid::new_v4())
}

/// The name of a manifest Lethe writes (`k`: its index in the commit).
pub(crate) fn manifest_name(commit: uuid::Uuid, k: usize) -> String {
    format!("{commit}-lethe-m{k}.avro")
}

/// The name of the manifest list of snapshot `snapshot_id`.
pub(crate) fn manifest_list_name(snapshot_id: i64, commit: uuid::Uuid) -> String {
    format!("snap-{snapshot_id}-lethe-{commit}.avro")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::table::delta::LETHE_FILE_MARKER;

    #[test]
    fn names_follow_the_writers_conventions() {
        let first = new_data_path("data/date=2025-01-07/00000-0-abc.parquet");
        assert!(first.starts_with("data/date=2025-01-07/00000-0-abc-lethe-"));
        assert!(is_lethe_data_file(first.rsplit('/').next().unwrap()));
        assert_eq!(new_data_path(&first).matches(LETHE_FILE_MARKER).count(), 1);
        assert!(!is_lethe_data_file("00000-0-abc.parquet"));
        assert!(
            next_metadata_name("file:///t/metadata/00004-x.metadata.json").starts_with("00005-")
        );
        assert!(next_metadata_name("v3.metadata.json").starts_with("00001-"));
    }
}
