//! The purge: after Lethe's commit, delete the data files that still hold erased rows but are
//! no longer in the table, whatever the table's retention settings
//! (`delta.deletedFileRetentionDuration`); and, before a run, delete what a crashed run left.
//!
//! A Delta `DELETE` alone is not erasure: every older version still reads the removed files
//! (time travel) until they are deleted (delta-io/delta#1692). Deleting them makes those older
//! versions unreadable: a reader asking for one fails on the missing file. Lethe reports them
//! as `snapshots_expired`: the number of versions, among those the log can still reconstruct,
//! that reference at least one purged file.
//!
//! Source: Delta protocol, PROTOCOL.md "Add File and Remove File" (tombstones, retention) and
//! "Vacuum" in the Delta Lake documentation.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::ObjectMeta;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use super::log::{LogHistory, decode, read_history};
use super::names::is_lethe_file;
use super::snapshot::{DeltaSnapshot, DeltaTable};
use crate::lake::error::LakeError;
use crate::lake::locate::locate_file;
use crate::lake::rewrite::ErasePolicy;
use crate::lake::root::{DataFile, is_hidden};

/// What [`purge`] deleted and which versions it made unreadable.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Purged {
    /// Data files deleted, relative to the table root, sorted.
    pub files: Vec<String>,
    /// Versions that referenced a deleted file and could be read before, as inclusive
    /// ranges `[from, to]`, ascending.
    pub unreadable_versions: Vec<(u64, u64)>,
}

impl Purged {
    /// How many versions became unreadable.
    pub fn snapshots_expired(&self) -> u64 {
        self.unreadable_versions
            .iter()
            .map(|(from, to)| to - from + 1)
            .sum()
    }
}

/// The Parquet data files under the table root (`_delta_log/` and hidden names apart), with
/// their paths relative to the root.
async fn list_data_files(table: &DeltaTable) -> Result<Vec<(String, ObjectMeta)>, LakeError> {
    let root = table.root();
    let listed: Vec<ObjectMeta> = root
        .store()
        .list(Some(root.prefix()))
        .try_collect()
        .await
        .map_err(|e| LakeError::store(root.prefix(), e))?;
    Ok(listed
        .into_iter()
        .filter_map(|meta| {
            let parts: Vec<String> = meta
                .location
                .prefix_match(root.prefix())?
                .map(|p| p.as_ref().to_string())
                .collect();
            let visible = !parts.is_empty() && !parts.iter().any(|p| is_hidden(p));
            let relative = parts.join("/");
            (visible && relative.ends_with(".parquet")).then_some((relative, meta))
        })
        .collect())
}

/// The live files of `snapshot`, percent-decoded.
async fn live_files(
    table: &DeltaTable,
    snapshot: &DeltaSnapshot,
) -> Result<BTreeSet<String>, LakeError> {
    Ok(table
        .files(snapshot, None)
        .await?
        .into_iter()
        .map(|f| decode(&f.path))
        .collect())
}

/// Deletes, after Lethe's commit `commit` (`after` is the snapshot it made):
/// - the files that commit removed (`removed`, percent-decoded), always;
/// - every other file a commit of the log removed (a tombstone still on storage) that holds
///   a row of `subjects` (read through the lake engine's locate).
///
/// Files no commit mentions are left alone: they may be another writer's files not yet
/// committed. Returns the files deleted and the versions made unreadable.
///
/// # Errors
/// [`LakeError::ObjectStore`] when listing or deleting fails (the next run finishes the
/// purge of Lethe's own removals, see [`remove_orphans`]).
pub(crate) async fn purge(
    table: &DeltaTable,
    after: &DeltaSnapshot,
    commit: u64,
    removed: &[String],
    policy: &ErasePolicy,
    subjects: &BTreeSet<String>,
) -> Result<Purged, LakeError> {
    let history = read_history(table).await?;
    let live = live_files(table, after).await?;
    let removed: BTreeSet<&String> = removed.iter().collect();
    let mut deleted = Vec::new();
    for (relative, meta) in list_data_files(table).await? {
        if live.contains(&relative) {
            continue;
        }
        let purge_it = if removed.contains(&relative) {
            true
        } else if history.mentioned.contains(&relative) {
            let file = DataFile {
                location: meta.location.clone(),
                relative: relative.clone(),
                size: meta.size,
                partition: Vec::new(),
                e_tag: meta.e_tag.clone(),
                last_modified: meta.last_modified,
            };
            match locate_file(table.root(), &file, &policy.subject_columns, subjects).await {
                Ok(found) => found.rows > 0,
                Err(e) => {
                    tracing::warn!(file = %relative, error = %e, "removed file not searched; left in place");
                    false
                }
            }
        } else {
            false
        };
        if !purge_it {
            continue;
        }
        match table.root().store().delete(&meta.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                tracing::info!(file = %relative, "purged");
                deleted.push(relative);
            }
            Err(e) => return Err(LakeError::store(&meta.location, e)),
        }
    }
    deleted.sort();
    let unreadable_versions = ranges(&unreadable(&history, &deleted, commit));
    Ok(Purged {
        files: deleted,
        unreadable_versions,
    })
}

/// The versions below `commit` the log can reconstruct that reference one of `deleted`: for
/// each file, from the version adding it (the oldest reconstructable one when its `add` is
/// only in a checkpoint) up to the version removing it, excluded.
fn unreadable(history: &LogHistory, deleted: &[String], commit: u64) -> BTreeSet<u64> {
    let mut versions = BTreeSet::new();
    for file in deleted {
        let added = history
            .added_at
            .get(file)
            .and_then(|v| v.iter().min().copied())
            .unwrap_or(history.earliest)
            .max(history.earliest);
        let removed = history
            .removed_at
            .get(file)
            .and_then(|v| v.iter().filter(|&&r| r > added).min().copied())
            .unwrap_or(commit)
            .min(commit);
        versions.extend(added..removed);
    }
    versions
}

/// Consecutive versions as inclusive ranges.
fn ranges(versions: &BTreeSet<u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &v in versions {
        match out.last_mut() {
            Some((_, to)) if *to + 1 == v => *to = v,
            _ => out.push((v, v)),
        }
    }
    out
}

/// Deletes what crashed runs left, before a new run plans anything (`snapshot`: the latest):
/// - Lethe's new files (`…-lethe-<uuid>.parquet`) that no action of the log names and that
///   are older than `attempt_started`: written before a commit that never happened;
/// - files Lethe's own commits removed that are still on storage: a purge that never
///   finished.
///
/// Returns how many files were deleted.
///
/// # Errors
/// [`LakeError::ObjectStore`] when listing, reading the log or deleting fails.
pub(crate) async fn remove_orphans(
    table: &DeltaTable,
    snapshot: &DeltaSnapshot,
    attempt_started: DateTime<Utc>,
) -> Result<u64, LakeError> {
    let history = read_history(table).await?;
    let live = live_files(table, snapshot).await?;
    let mut removed = 0;
    for (relative, meta) in list_data_files(table).await? {
        if live.contains(&relative) {
            continue;
        }
        let name = relative.rsplit('/').next().unwrap_or(&relative);
        let uncommitted = is_lethe_file(name)
            && !history.mentioned.contains(&relative)
            && meta.last_modified < attempt_started;
        let unpurged = history.removed_by_lethe.contains(&relative);
        if !(uncommitted || unpurged) {
            continue;
        }
        match table.root().store().delete(&meta.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                tracing::info!(file = %relative, uncommitted, "file left by a crashed run removed");
                removed += 1;
            }
            Err(e) => return Err(LakeError::store(&meta.location, e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_referencing_a_purged_file_are_counted_once() {
        let mut history = LogHistory {
            earliest: 0,
            ..LogHistory::default()
        };
        history.added_at.insert("a".into(), vec![0]);
        history.added_at.insert("b".into(), vec![2]);
        history.removed_at.insert("b".into(), vec![3]);
        let v = unreadable(&history, &["a".to_string(), "b".to_string()], 5);
        assert_eq!(v.into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        let mut sparse = BTreeSet::new();
        sparse.extend([1, 2, 3, 7, 9, 10]);
        assert_eq!(ranges(&sparse), vec![(1, 3), (7, 7), (9, 10)]);
    }
}
