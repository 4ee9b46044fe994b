//! The overwrite snapshot of an erasure (Iceberg spec, "Snapshots", "Manifests", "Manifest
//! Lists", "Commits"): the manifests of the current snapshot that list a replaced file are
//! written again (the replaced entries `DELETED`, the others `EXISTING` with their sequence
//! numbers made explicit, the new files `ADDED` with the partition tuple of the file they
//! replace), the others are kept as they are; a new manifest list names them all; the new
//! metadata adds the snapshot (operation `overwrite`, summary with the counts) as the current
//! snapshot of `main`.

use std::collections::{BTreeMap, BTreeSet};

use apache_avro::types::Value;
use serde_json::json;

use super::avro::{self, int_map};
use super::manifest::{ADDED, DELETED, EXISTING, Entry, ManifestFile};
use super::metadata::LoadedTable;
use super::metadata::TableMetadata;
use super::names::{manifest_list_name, manifest_name};
use super::scan::SnapshotFiles;
use super::stats::FileMetrics;
use crate::lake::error::LakeError;
use crate::lake::run_blocking;

/// A new data file replacing an old one.
#[derive(Debug, Clone)]
pub(crate) struct NewDataFile {
    /// Its path relative to the table location.
    pub relative: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its metrics, from its footer.
    pub metrics: FileMetrics,
}

/// What the commit writes, and the files written for it (deleted when the commit loses).
#[derive(Debug)]
pub(crate) struct Overwrite {
    /// The new snapshot's id.
    pub snapshot_id: i64,
    /// The new metadata.
    pub metadata: TableMetadata,
    /// The new snapshot's JSON (for a REST catalog's `add-snapshot`).
    pub snapshot: serde_json::Value,
    /// Manifests and the manifest list written, relative to the table location.
    pub written: Vec<String>,
}

/// Counts of the commit, for the snapshot summary.
#[derive(Debug, Default)]
struct Counts {
    added_files: i64,
    deleted_files: i64,
    added_records: i64,
    deleted_records: i64,
    added_size: i64,
    removed_size: i64,
    partitions: BTreeSet<String>,
}

/// Writes the manifests and manifest list of an overwrite of `current` (the current snapshot
/// of `base`) replacing each file of `replaced` (URI → its new file, `None`: every row
/// removed) and returns the new metadata (not yet committed). `note`: a description of the
/// operation for the summary (no subject ids).
pub(crate) async fn overwrite(
    base: &LoadedTable,
    current: &SnapshotFiles,
    replaced: &BTreeMap<String, Option<NewDataFile>>,
    note: &str,
) -> Result<Overwrite, LakeError> {
    let meta = &base.metadata;
    refuse_v1_manifests_with_deletes(base, current, replaced)?;
    let existing: BTreeSet<i64> = meta.snapshots().iter().map(|s| s.id).collect();
    let snapshot_id = loop {
        let id = (rand::random::<u64>() >> 1) as i64;
        if id != 0 && !existing.contains(&id) {
            break id;
        }
    };
    let v2 = meta.format_version() >= 2;
    let seq = if v2 {
        meta.last_sequence_number() + 1
    } else {
        0
    };
    let commit = uuid::Uuid::new_v4();
    let mut written = Vec::new();
    let mut counts = Counts::default();
    let mut records = Vec::with_capacity(current.list.files.len());
    for (k, (listed, manifest)) in current.manifests.iter().enumerate() {
        let touched = listed.content == 0
            && manifest
                .entries
                .iter()
                .any(|e| e.is_live() && replaced.contains_key(&e.file_path));
        if !touched {
            // A manifest left with only `DELETED` entries describes its own snapshot's
            // deletions, not this snapshot's files: not carried over (as Java's writers do).
            if manifest.entries.iter().any(Entry::is_live) {
                records.push(listed.record.clone());
            }
            continue;
        }
        let mut entries = Vec::new();
        let mut added = Vec::new();
        for e in manifest.entries.iter().filter(|e| e.is_live()) {
            match replaced.get(&e.file_path) {
                Some(new) => {
                    entries.push((DELETED, e, entry_record(e, DELETED, snapshot_id)));
                    counts.deleted_files += 1;
                    counts.deleted_records += e.record_count;
                    counts.removed_size += e.file_size;
                    counts.partitions.insert(format!("{:?}", e.partition));
                    if let Some(new) = new {
                        counts.added_files += 1;
                        counts.added_records += new.metrics.record_count;
                        counts.added_size += new.size as i64;
                        added.push(added_record(base, e, new, snapshot_id));
                    }
                }
                None => entries.push((EXISTING, e, entry_record(e, EXISTING, snapshot_id))),
            }
        }
        let relative = format!("metadata/{}", manifest_name(commit, k));
        let record = list_record(
            listed,
            &entries,
            &added,
            seq,
            snapshot_id,
            base.uri(&relative),
        );
        let mut all: Vec<Value> = entries.into_iter().map(|(_, _, r)| r).collect();
        all.extend(added.iter().map(|(r, _)| r.clone()));
        let (schema, header) = (
            manifest.container.schema.clone(),
            manifest.container.metadata.clone(),
        );
        let bytes = run_blocking(move || avro::write(&schema, &header, all))
            .await?
            .map_err(|e| table_error(base, format!("manifest not written: {e}")))?;
        let mut record = record;
        avro::set(
            &mut record,
            "manifest_length",
            Value::Long(bytes.len() as i64),
        );
        base.write_new(&relative, bytes).await?;
        written.push(relative);
        records.push(record);
    }
    let mut list_meta = current.list.container.metadata.clone();
    avro::set_meta(&mut list_meta, "snapshot-id", snapshot_id.to_string());
    avro::set_meta(
        &mut list_meta,
        "parent-snapshot-id",
        current.snapshot_id.to_string(),
    );
    if v2 {
        avro::set_meta(&mut list_meta, "sequence-number", seq.to_string());
    }
    let bytes = avro::write(&current.list.container.schema, &list_meta, records)
        .map_err(|e| table_error(base, format!("manifest list not written: {e}")))?;
    let list_relative = format!("metadata/{}", manifest_list_name(snapshot_id, commit));
    base.write_new(&list_relative, bytes).await?;
    written.push(list_relative.clone());

    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut snapshot = json!({
        "snapshot-id": snapshot_id,
        "parent-snapshot-id": current.snapshot_id,
        "timestamp-ms": now_ms,
        "manifest-list": base.uri(&list_relative),
        "summary": summary(meta.snapshot_json(current.snapshot_id), &counts, note),
    });
    if v2 {
        snapshot["sequence-number"] = json!(seq);
    }
    if let Some(schema_id) = meta
        .snapshot_json(current.snapshot_id)
        .and_then(|s| s.get("schema-id"))
    {
        snapshot["schema-id"] = schema_id.clone();
    }
    let metadata = meta.with_snapshot(snapshot.clone(), &base.metadata_location, now_ms);
    Ok(Overwrite {
        snapshot_id,
        metadata,
        snapshot,
        written,
    })
}

/// Refuses, before anything is written, to rewrite a v1-format manifest of a v2 table that
/// has delete files: its entries have no sequence numbers, so in the rewritten manifest they
/// would inherit the new snapshot's, and delete files committed before would stop applying
/// to them (spec, "Sequence Number Inheritance"; a table upgraded from v1 keeps such
/// manifests).
fn refuse_v1_manifests_with_deletes(
    base: &LoadedTable,
    current: &SnapshotFiles,
    replaced: &BTreeMap<String, Option<NewDataFile>>,
) -> Result<(), LakeError> {
    if base.metadata.format_version() < 2 || current.delete_files().next().is_none() {
        return Ok(());
    }
    let v1 = current.manifests.iter().find(|(listed, manifest)| {
        listed.content == 0
            && manifest
                .entries
                .iter()
                .any(|e| e.is_live() && replaced.contains_key(&e.file_path))
            && manifest
                .entries
                .first()
                .is_some_and(|e| !avro::has(&e.record, "sequence_number"))
    });
    match v1 {
        Some((listed, _)) => Err(LakeError::TableFeature {
            root: base.metadata.location().to_string(),
            feature: "v1 manifests with delete files".into(),
            reason: format!(
                "manifest {} (format v1, no sequence numbers) would have to be rewritten in a table with delete files",
                listed.path
            ),
        }),
        None => Ok(()),
    }
}

fn table_error(base: &LoadedTable, reason: String) -> LakeError {
    LakeError::Table {
        root: base.metadata.location().to_string(),
        reason,
    }
}

/// An old entry with `status`, its snapshot id and sequence numbers made explicit
/// (`DELETED`: the snapshot id of the deleting snapshot).
fn entry_record(e: &Entry, status: i32, new_snapshot: i64) -> Value {
    let mut r = e.record.clone();
    avro::set(&mut r, "status", Value::Int(status));
    let snapshot = if status == DELETED {
        new_snapshot
    } else {
        e.snapshot_id
    };
    avro::set(&mut r, "snapshot_id", Value::Long(snapshot));
    avro::set(&mut r, "sequence_number", Value::Long(e.sequence_number));
    avro::set(
        &mut r,
        "file_sequence_number",
        Value::Long(e.file_sequence_number),
    );
    r
}

/// The `ADDED` entry of `new`, copied from the entry of the file it replaces (partition
/// tuple, spec, sort order, format), its sequence numbers left null (inherited from the
/// manifest list, spec "Sequence Number Inheritance").
fn added_record(base: &LoadedTable, old: &Entry, new: &NewDataFile, snapshot: i64) -> (Value, i64) {
    let mut r = old.record.clone();
    avro::set(&mut r, "status", Value::Int(ADDED));
    avro::set(&mut r, "snapshot_id", Value::Long(snapshot));
    avro::set(&mut r, "sequence_number", Value::Null);
    avro::set(&mut r, "file_sequence_number", Value::Null);
    let m = &new.metrics;
    if let Some(df) = avro::record_mut(&mut r, "data_file") {
        let longs =
            |map: &BTreeMap<i32, i64>| int_map(map.iter().map(|(k, v)| (*k, Value::Long(*v))));
        let bytes = |map: &BTreeMap<i32, Vec<u8>>| {
            int_map(map.iter().map(|(k, v)| (*k, Value::Bytes(v.clone()))))
        };
        avro::set(df, "file_path", Value::String(base.uri(&new.relative)));
        avro::set(df, "record_count", Value::Long(m.record_count));
        avro::set(df, "file_size_in_bytes", Value::Long(new.size as i64));
        avro::set(df, "column_sizes", longs(&m.column_sizes));
        avro::set(df, "value_counts", longs(&m.value_counts));
        avro::set(df, "null_value_counts", longs(&m.null_counts));
        avro::set(df, "nan_value_counts", Value::Null);
        avro::set(df, "distinct_counts", Value::Null);
        avro::set(df, "lower_bounds", bytes(&m.lower));
        avro::set(df, "upper_bounds", bytes(&m.upper));
        avro::set(
            df,
            "split_offsets",
            Value::Array(m.split_offsets.iter().map(|o| Value::Long(*o)).collect()),
        );
    }
    (r, new.metrics.record_count)
}

/// The manifest list record of a rewritten manifest (copied from the one it replaces:
/// spec id, content, partition summaries — still bounds, the files kept being a subset).
fn list_record(
    listed: &ManifestFile,
    entries: &[(i32, &Entry, Value)],
    added: &[(Value, i64)],
    seq: i64,
    snapshot: i64,
    uri: String,
) -> Value {
    let mut r = listed.record.clone();
    let count = |status: i32| entries.iter().filter(|(s, _, _)| *s == status).count() as i32;
    let rows = |status: i32| -> i64 {
        entries
            .iter()
            .filter(|(s, _, _)| *s == status)
            .map(|(_, e, _)| e.record_count)
            .sum()
    };
    let min_seq = entries
        .iter()
        .filter(|(s, _, _)| *s != DELETED)
        .map(|(_, e, _)| e.sequence_number)
        .chain((!added.is_empty()).then_some(seq))
        .min()
        .unwrap_or(seq);
    avro::set(&mut r, "manifest_path", Value::String(uri));
    avro::set(&mut r, "sequence_number", Value::Long(seq));
    avro::set(&mut r, "min_sequence_number", Value::Long(min_seq));
    avro::set(&mut r, "added_snapshot_id", Value::Long(snapshot));
    for (names, value) in [
        (
            ["added_files_count", "added_data_files_count"],
            added.len() as i32,
        ),
        (
            ["existing_files_count", "existing_data_files_count"],
            count(EXISTING),
        ),
        (
            ["deleted_files_count", "deleted_data_files_count"],
            count(DELETED),
        ),
    ] {
        for name in names {
            avro::set(&mut r, name, Value::Int(value));
        }
    }
    avro::set(
        &mut r,
        "added_rows_count",
        Value::Long(added.iter().map(|(_, n)| n).sum()),
    );
    avro::set(&mut r, "existing_rows_count", Value::Long(rows(EXISTING)));
    avro::set(&mut r, "deleted_rows_count", Value::Long(rows(DELETED)));
    r
}

/// The snapshot summary (spec, "Snapshots": `operation`, and the optional metrics Java and
/// pyiceberg write), the totals carried over from the parent's summary when it has them.
fn summary(parent: Option<&serde_json::Value>, c: &Counts, note: &str) -> serde_json::Value {
    let mut s = json!({
        "operation": "overwrite",
        "added-data-files": c.added_files.to_string(),
        "deleted-data-files": c.deleted_files.to_string(),
        "added-records": c.added_records.to_string(),
        "deleted-records": c.deleted_records.to_string(),
        "added-files-size": c.added_size.to_string(),
        "removed-files-size": c.removed_size.to_string(),
        "changed-partition-count": c.partitions.len().to_string(),
        "lethe.operation": note,
    });
    let total = |key: &str| {
        parent
            .and_then(|p| p.get("summary"))
            .and_then(|s| s.get(key))
            .and_then(|v| v.as_str())
            .and_then(|v| v.parse::<i64>().ok())
    };
    for (key, delta) in [
        ("total-data-files", c.added_files - c.deleted_files),
        ("total-records", c.added_records - c.deleted_records),
        ("total-files-size", c.added_size - c.removed_size),
        ("total-delete-files", 0),
        ("total-position-deletes", 0),
        ("total-equality-deletes", 0),
    ] {
        if let Some(t) = total(key) {
            s[key] = json!((t + delta).to_string());
        }
    }
    s
}
