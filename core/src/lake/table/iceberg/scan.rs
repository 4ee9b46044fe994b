//! A snapshot's files: its manifest list, its manifests, and the live data and delete files
//! (spec, "Scan Planning": entries `ADDED` or `EXISTING` of the manifests the snapshot's
//! manifest list names), with the pruning of data files that cannot hold a subject.

use std::collections::BTreeSet;

use super::avro;
use super::bounds::Key;
use super::manifest::{Entry, Manifest, ManifestFile, ManifestList};
use super::metadata::LoadedTable;
use crate::lake::error::LakeError;

/// The files of one snapshot.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotFiles {
    /// The snapshot id.
    pub snapshot_id: i64,
    /// Its manifest list.
    pub list: ManifestList,
    /// Each listed manifest with its entries, in list order.
    pub manifests: Vec<(ManifestFile, Manifest)>,
}

impl SnapshotFiles {
    /// Reads the manifest list `list_uri` of `snapshot_id` and every manifest it names.
    pub async fn read(
        table: &LoadedTable,
        snapshot_id: i64,
        list_uri: &str,
    ) -> Result<Self, LakeError> {
        let list = table.manifest_list(list_uri).await?;
        let mut manifests = Vec::with_capacity(list.files.len());
        for listed in &list.files {
            let manifest = table.manifest(listed).await?;
            manifests.push((listed.clone(), manifest));
        }
        Ok(Self {
            snapshot_id,
            list,
            manifests,
        })
    }

    /// Live data file entries (`content` 0), with the spec id of their manifest.
    pub fn data_files(&self) -> impl Iterator<Item = (i64, &Entry)> {
        self.manifests
            .iter()
            .filter(|(m, _)| m.content == 0)
            .flat_map(|(m, man)| man.entries.iter().map(move |e| (m.spec_id, e)))
            .filter(|(_, e)| e.is_live() && e.content == 0)
    }

    /// Live delete file entries (position or equality deletes), with their spec id.
    pub fn delete_files(&self) -> impl Iterator<Item = (i64, &Entry)> {
        self.manifests
            .iter()
            .flat_map(|(m, man)| man.entries.iter().map(move |e| (m.spec_id, e)))
            .filter(|(_, e)| e.is_live() && e.content != 0)
    }

    /// The URIs of the live data files.
    pub fn data_paths(&self) -> BTreeSet<String> {
        self.data_files()
            .map(|(_, e)| e.file_path.clone())
            .collect()
    }
}

/// Whether data file `entry` (of spec `spec_id`) may hold one of `subjects` in column
/// `column` (field id `id`, type `kind`), judged by its partition tuple (identity partitions
/// on the column) and its `lower_bounds` / `upper_bounds`. True whenever in doubt.
pub(crate) fn may_hold(
    table: &LoadedTable,
    spec_id: i64,
    entry: &Entry,
    column: (i32, &str),
    subjects: &BTreeSet<String>,
) -> bool {
    let (id, kind) = column;
    let identity = table
        .metadata
        .partition_fields(spec_id)
        .into_iter()
        .find(|(source, transform, _)| *source == id && transform == "identity");
    if let Some((_, _, name)) = identity
        && let Some((_, value)) = entry.partition.iter().find(|(n, _)| *n == name)
    {
        return match value.as_ref().and_then(super::manifest::partition_text) {
            Some(text) => subjects.contains(&text),
            None => value.is_some(),
        };
    }
    let Some(data_file) = entry.data_file() else {
        return true;
    };
    let lower = avro::bytes_map(data_file, "lower_bounds");
    let upper = avro::bytes_map(data_file, "upper_bounds");
    if !lower.contains_key(&id) && !upper.contains_key(&id) {
        return true;
    }
    subjects.iter().any(|s| match Key::of(kind, s) {
        Some(key) => key.may_be_within(
            kind,
            lower.get(&id).map(Vec::as_slice),
            upper.get(&id).map(Vec::as_slice),
        ),
        None => true,
    })
}

/// Every live delete file of `files` that may apply to data file `entry` (spec, "Scan
/// Planning": a position delete file applies to data files of the same partition with a data
/// sequence number ≤ its own, an equality delete file to those with a smaller one; a delete
/// file of an unpartitioned spec applies to every partition; `referenced_data_file` narrows a
/// position delete file to one data file).
pub(crate) fn applicable_deletes<'a>(
    files: &'a SnapshotFiles,
    entry: &'a Entry,
) -> impl Iterator<Item = &'a Entry> + 'a {
    files.delete_files().map(|(_, d)| d).filter(move |d| {
        let seq_ok = match d.content {
            1 => entry.sequence_number <= d.sequence_number,
            _ => entry.sequence_number < d.sequence_number,
        };
        let partition_ok = d.partition.is_empty() || d.partition == entry.partition;
        let file_ok = d
            .referenced_data_file
            .as_ref()
            .is_none_or(|f| *f == entry.file_path);
        seq_ok && partition_ok && file_ok
    })
}

/// The live files of `table`'s current snapshot (`None`: an empty table, no snapshot).
///
/// # Errors
/// [`LakeError::Table`] when the snapshot's manifest list or manifests cannot be read.
pub(crate) async fn current_files(table: &LoadedTable) -> Result<Option<SnapshotFiles>, LakeError> {
    let Some(current) = table.metadata.current_snapshot_id() else {
        return Ok(None);
    };
    let Some(snapshot) = table
        .metadata
        .snapshots()
        .into_iter()
        .find(|s| s.id == current)
    else {
        return Err(LakeError::Table {
            root: table.root.url().to_string(),
            reason: format!("the current snapshot {current} is not listed"),
        });
    };
    SnapshotFiles::read(table, current, &snapshot.manifest_list)
        .await
        .map(Some)
}
