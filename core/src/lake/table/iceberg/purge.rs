//! The purge: after Lethe's commit, expire every snapshot that can still read a file holding
//! erased rows, and delete the files no remaining snapshot references (data files, delete
//! files, manifests, manifest lists); and, before a run, delete what a crashed run left.
//!
//! An `overwrite` alone is not erasure: every older snapshot still reads the replaced files
//! (time travel, `scan(snapshot_id=…)`) until it is expired and the files are deleted
//! (Iceberg spec, "Snapshots"; "Maintenance: Expire Snapshots" in the Iceberg docs). Lethe
//! expires exactly the snapshots that reference (as `ADDED` or `EXISTING`) a file it replaced
//! or an older file holding a subject row, whatever the table's retention properties, keeps
//! all others, and removes refs (tags, branches other than `main`) pointing at an expired one.
//! The expiry is a commit of its own (new metadata, catalog compare-and-swap).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use super::manifest::Entry;
use super::metadata::LoadedTable;
use super::names::is_lethe_data_file;
use super::rest::Change;
use super::scan::may_hold;
use super::table::{IcebergTable, normalize};
use crate::lake::error::LakeError;
use crate::lake::locate::locate_file;
use crate::lake::root::DataFile;

/// The files one snapshot references (URIs).
#[derive(Debug, Clone, Default)]
struct Referenced {
    list: String,
    manifests: BTreeSet<String>,
    /// Live data and delete files.
    files: BTreeSet<String>,
}

/// Every snapshot of a table version and what it references.
#[derive(Debug, Default)]
pub(crate) struct History {
    snapshots: BTreeMap<i64, Referenced>,
    /// The live data file entries of every snapshot by URI, with their spec id (their
    /// partition tuple and bounds prune the search of older files).
    entries: HashMap<String, (i64, Entry)>,
}

impl History {
    /// Reads every snapshot's manifest list and manifests (each manifest once).
    pub async fn read(table: &LoadedTable) -> Result<Self, LakeError> {
        let mut seen: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut history = Self::default();
        let mut entries = HashMap::new();
        for snap in table.metadata.snapshots() {
            let list = table.manifest_list(&snap.manifest_list).await?;
            let mut r = Referenced {
                list: normalize(&snap.manifest_list),
                ..Referenced::default()
            };
            for listed in &list.files {
                if !seen.contains_key(&listed.path) {
                    let m = table.manifest(listed).await?;
                    for e in m.entries.iter().filter(|e| e.is_live() && e.content == 0) {
                        entries.insert(normalize(&e.file_path), (listed.spec_id, e.clone()));
                    }
                    let live = m
                        .entries
                        .iter()
                        .filter(|e| e.is_live())
                        .map(|e| normalize(&e.file_path))
                        .collect();
                    seen.insert(listed.path.clone(), live);
                }
                r.files.extend(seen[&listed.path].iter().cloned());
                r.manifests.insert(normalize(&listed.path));
            }
            history.snapshots.insert(snap.id, r);
        }
        history.entries = entries;
        Ok(history)
    }

    /// Every file any snapshot references (lists, manifests, data and delete files).
    fn all_referenced(&self, except: &BTreeSet<i64>) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (id, r) in &self.snapshots {
            if except.contains(id) {
                continue;
            }
            out.insert(r.list.clone());
            out.extend(r.manifests.iter().cloned());
            out.extend(r.files.iter().cloned());
        }
        out
    }
}

/// What [`purge`] did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Purged {
    /// Snapshots expired, ascending.
    pub snapshots_expired: Vec<i64>,
    /// Refs removed because they pointed at an expired snapshot.
    pub refs_removed: Vec<String>,
    /// Data (and delete) files deleted, relative to the table location, sorted.
    pub files: Vec<String>,
    /// Manifests and manifest lists deleted.
    pub metadata_files: u64,
}

/// After Lethe's commit (or on any run, to finish a purge a crash interrupted): expires the
/// snapshots that reference one of `replaced` (URIs) or a file of an older snapshot holding a
/// row of `subjects` (pruned by partition values and bounds of `columns` — field id and type
/// — then searched through the lake engine), commits that (at most `attempts` tries against
/// concurrent writers), then deletes the files no remaining snapshot references.
///
/// # Errors
/// [`LakeError::Table`] / [`LakeError::ObjectStore`] when reading, committing or deleting
/// fails; [`LakeError::CommitConflict`] after `attempts` lost races (the erasure commit
/// stands; the next run purges).
pub(crate) async fn purge(
    table: &IcebergTable,
    replaced: &BTreeSet<String>,
    policy: (&[String], &[(i32, String)]),
    subjects: &BTreeSet<String>,
    attempts: u32,
) -> Result<Purged, LakeError> {
    let (names, columns) = policy;
    let replaced: BTreeSet<String> = replaced.iter().map(|u| normalize(u)).collect();
    let replaced = &replaced;
    let mut searched: HashMap<String, bool> = HashMap::new();
    for attempt in 1..=attempts {
        let loaded = table.load().await?;
        let history = History::read(&loaded).await?;
        let current = loaded.metadata.current_snapshot_id();
        let live_now = current
            .and_then(|id| history.snapshots.get(&id))
            .map(|r| r.files.clone())
            .unwrap_or_default();
        let mut bad: BTreeSet<String> = replaced.clone();
        let older: BTreeSet<&String> = history
            .snapshots
            .values()
            .flat_map(|r| r.files.iter())
            .filter(|f| !live_now.contains(*f) && !replaced.contains(*f))
            .collect();
        for file in older {
            let Some((spec, entry)) = history.entries.get(file) else {
                continue;
            };
            let candidate = columns
                .iter()
                .any(|(id, kind)| may_hold(&loaded, *spec, entry, (*id, kind), subjects));
            if !candidate {
                continue;
            }
            let holds = match searched.get(file) {
                Some(h) => *h,
                None => {
                    let h = holds_subjects(&loaded, file, names, subjects).await;
                    searched.insert(file.clone(), h);
                    h
                }
            };
            if holds {
                bad.insert(file.clone());
            }
        }
        let expired: BTreeSet<i64> = history
            .snapshots
            .iter()
            .filter(|(id, r)| Some(**id) != current && r.files.iter().any(|f| bad.contains(f)))
            .map(|(id, _)| *id)
            .collect();
        if expired.is_empty() {
            return Ok(Purged::default());
        }
        let now_ms = Utc::now().timestamp_millis();
        let (next, refs_removed) =
            loaded
                .metadata
                .without_snapshots(&expired, &loaded.metadata_location, now_ms);
        let change = Change::Expire {
            ids: expired.iter().copied().collect(),
            refs: refs_removed.clone(),
        };
        if table.commit(&loaded, &next, &change).await?.is_none() {
            tracing::info!(attempt, "another writer committed first; expiring again");
            continue;
        }
        let kept = history.all_referenced(&expired);
        let mut purged = Purged {
            snapshots_expired: expired.iter().copied().collect(),
            refs_removed,
            ..Purged::default()
        };
        let mut doomed: BTreeSet<String> = BTreeSet::new();
        for id in &expired {
            let r = &history.snapshots[id];
            doomed.insert(r.list.clone());
            doomed.extend(r.manifests.iter().cloned());
            doomed.extend(r.files.iter().cloned());
        }
        doomed.extend(bad.iter().cloned());
        for uri in doomed.difference(&kept) {
            let relative = loaded.relative(uri)?;
            let at = loaded.root.location(&relative);
            match loaded.root.store().delete(&at).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(LakeError::store(&at, e)),
            }
            if relative.starts_with("metadata/") && relative.ends_with(".avro") {
                purged.metadata_files += 1;
            } else {
                tracing::info!(file = %relative, "purged");
                purged.files.push(relative);
            }
        }
        purged.files.sort();
        return Ok(purged);
    }
    Err(LakeError::CommitConflict {
        root: table.identifier(),
        attempts,
    })
}

/// Whether `uri` (a data file of an older snapshot) holds a row of `subjects`; false when it
/// is gone or unreadable (logged).
async fn holds_subjects(
    table: &LoadedTable,
    uri: &str,
    columns: &[String],
    subjects: &BTreeSet<String>,
) -> bool {
    let file = match data_file(table, uri).await {
        Ok(f) => f,
        Err(_) => return false,
    };
    match locate_file(&table.root, &file, columns, subjects).await {
        Ok(found) => found.rows > 0,
        Err(e) => {
            tracing::warn!(file = %file.relative, error = %e, "older data file not searched");
            false
        }
    }
}

/// The [`DataFile`] of a table file given by URI (one HEAD: its size, and that it exists).
pub(crate) async fn data_file(table: &LoadedTable, uri: &str) -> Result<DataFile, LakeError> {
    let relative = table.relative(uri)?;
    let location = table.root.location(&relative);
    let meta = table
        .root
        .store()
        .head(&location)
        .await
        .map_err(|e| LakeError::store(&location, e))?;
    Ok(DataFile {
        location,
        relative,
        size: meta.size,
        partition: Vec::new(),
        e_tag: meta.e_tag,
        last_modified: meta.last_modified,
    })
}

/// Deletes what crashed runs left, before a run plans anything: Lethe's data files
/// (`…-lethe-<uuid>.parquet`) and Lethe's manifests and manifest lists (`…-lethe-…avro`
/// under `metadata/`) that no snapshot references and that are older than `started`.
/// Returns how many files were deleted.
///
/// # Errors
/// [`LakeError::ObjectStore`] when listing or deleting fails.
pub(crate) async fn remove_orphans(
    table: &LoadedTable,
    started: DateTime<Utc>,
) -> Result<u64, LakeError> {
    let history = History::read(table).await?;
    let referenced = history.all_referenced(&BTreeSet::new());
    let root = &table.root;
    let listed: Vec<object_store::ObjectMeta> = root
        .store()
        .list(Some(root.prefix()))
        .try_collect()
        .await
        .map_err(|e| LakeError::store(root.prefix(), e))?;
    let mut removed = 0;
    for meta in listed {
        let Some(parts) = meta.location.prefix_match(root.prefix()) else {
            continue;
        };
        let relative = parts
            .map(|p| p.as_ref().to_string())
            .collect::<Vec<_>>()
            .join("/");
        let name = relative.rsplit('/').next().unwrap_or(&relative);
        let lethe = is_lethe_data_file(name)
            || (relative.starts_with("metadata/")
                && name.ends_with(".avro")
                && name.contains("-lethe-"));
        if !lethe || meta.last_modified >= started || referenced.contains(&table.uri(&relative)) {
            continue;
        }
        match root.store().delete(&meta.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                tracing::info!(file = %relative, "file left by a crashed run removed");
                removed += 1;
            }
            Err(e) => return Err(LakeError::store(&meta.location, e)),
        }
    }
    Ok(removed)
}
