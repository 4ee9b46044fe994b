//! Writing to a Delta table's log: one commit of `commitInfo` + `remove` + `add` actions,
//! published with put-if-absent; and reading the JSON commits back for what the snapshot does
//! not tell (which version added a file, which files Lethe's own commits removed).
//!
//! Source: Delta protocol, PROTOCOL.md "Delta Log Entries", "Add File and Remove File",
//! "Commit Provenance Information", "Writer Requirements" (mutual exclusion: the commit
//! `_delta_log/<version, 20 digits>.json` must be created only if absent).

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde_json::{Value, json};

use super::snapshot::DeltaTable;
use crate::lake::error::LakeError;

/// The `engineInfo` of Lethe's commits: `lethe/<version>`.
pub fn engine_info() -> String {
    format!("lethe/{}", env!("CARGO_PKG_VERSION"))
}

/// A `remove` action (a tombstone): the file leaves the table at this commit.
#[derive(Debug, Clone)]
pub(crate) struct RemoveAction {
    /// As in the `add` action it removes (relative, percent-encoded).
    pub path: String,
    /// The `add`'s `partitionValues`.
    pub partition_values: BTreeMap<String, Option<String>>,
    /// The `add`'s `size` in bytes.
    pub size: u64,
    /// The `add`'s `deletionVector` descriptor, when it has one: the file is identified by
    /// its path and its deletion vector (PROTOCOL.md "Action Reconciliation").
    pub deletion_vector: Option<serde_json::Value>,
}

/// An `add` action for a file Lethe wrote.
#[derive(Debug, Clone)]
pub(crate) struct AddAction {
    /// Relative to the table root, percent-encoded.
    pub path: String,
    /// The replaced file's `partitionValues` (same folder, same partition).
    pub partition_values: BTreeMap<String, Option<String>>,
    /// Size in bytes.
    pub size: u64,
    /// Milliseconds since the epoch.
    pub modification_time: i64,
    /// The `stats` JSON string ([`super::stats::add_stats`]).
    pub stats: String,
}

/// What a commit records in `commitInfo.operationParameters` and `operationMetrics`.
#[derive(Debug, Clone)]
pub(crate) struct CommitFacts {
    /// The version the plan read (`readVersion`).
    pub read_version: u64,
    /// The subject column(s), comma-separated.
    pub subject_columns: String,
    /// How many subjects were erased (never their ids: the log is not erased).
    pub subjects: usize,
    /// A rectification (GDPR Art. 16, operation `UPDATE`) rather than an erasure (Art. 17,
    /// operation `DELETE`).
    pub rectification: bool,
    /// Rows removed.
    pub rows_removed: u64,
    /// Rows copied into the new files.
    pub rows_copied: u64,
}

/// The bytes of a commit: `commitInfo` (operation `DELETE`), then the `remove` actions, then
/// the `add` actions, one JSON object per line. `now_ms` is the commit's timestamp (and the
/// tombstones' `deletionTimestamp`), milliseconds since the epoch.
pub(crate) fn commit_body(
    facts: &CommitFacts,
    removes: &[RemoveAction],
    adds: &[AddAction],
    now_ms: i64,
) -> Vec<u8> {
    let mut lines = Vec::with_capacity(1 + removes.len() + adds.len());
    lines.push(json!({"commitInfo": {
        "timestamp": now_ms,
        "operation": if facts.rectification { "UPDATE" } else { "DELETE" },
        "operationParameters": {
            "predicate": if facts.rectification {
                format!(
                    "rectification of {} data subjects by {} (GDPR Art. 16)",
                    facts.subjects, facts.subject_columns
                )
            } else {
                format!(
                    "erasure of {} data subjects by {} (GDPR Art. 17)",
                    facts.subjects, facts.subject_columns
                )
            },
        },
        "readVersion": facts.read_version,
        "isolationLevel": "Serializable",
        "isBlindAppend": false,
        "engineInfo": engine_info(),
        "operationMetrics": {
            "numRemovedFiles": removes.len().to_string(),
            "numAddedFiles": adds.len().to_string(),
            "numDeletedRows": facts.rows_removed.to_string(),
            "numCopiedRows": facts.rows_copied.to_string(),
        },
    }}));
    for r in removes {
        let mut remove = json!({
            "path": r.path,
            "deletionTimestamp": now_ms,
            "dataChange": true,
            "extendedFileMetadata": true,
            "partitionValues": r.partition_values,
            "size": r.size,
        });
        if let Some(dv) = &r.deletion_vector {
            remove["deletionVector"] = dv.clone();
        }
        lines.push(json!({ "remove": remove }));
    }
    for a in adds {
        lines.push(json!({"add": {
            "path": a.path,
            "partitionValues": a.partition_values,
            "size": a.size,
            "modificationTime": a.modification_time,
            "dataChange": true,
            "stats": a.stats,
        }}));
    }
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// The location of commit `version`: `_delta_log/<version, 20 digits>.json`.
pub(crate) fn commit_location(table: &DeltaTable, version: u64) -> Path {
    table
        .root()
        .location(&format!("_delta_log/{version:020}.json"))
}

/// Publishes `body` as commit `version` if no commit of that version exists (object_store
/// `PutMode::Create`: `If-None-Match: *` on S3, an exclusive create on a local disk). Returns
/// `false` when another writer committed that version first.
///
/// # Errors
/// [`LakeError::ObjectStore`] for any other store error.
pub(crate) async fn put_commit(
    table: &DeltaTable,
    version: u64,
    body: Vec<u8>,
) -> Result<bool, LakeError> {
    let at = commit_location(table, version);
    let opts = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match table
        .root()
        .store()
        .put_opts(&at, PutPayload::from(body), opts)
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(LakeError::store(&at, e)),
    }
}

/// What the JSON commits still in `_delta_log/` say about data files.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogHistory {
    /// The oldest version a reader can still reconstruct: 0 when commit 0 is there, else the
    /// oldest checkpoint's version.
    pub earliest: u64,
    /// Data file path (percent-decoded, relative) → the versions whose commit adds it.
    pub added_at: BTreeMap<String, Vec<u64>>,
    /// Data file path (percent-decoded, relative) → the versions whose commit removes it.
    pub removed_at: BTreeMap<String, Vec<u64>>,
    /// Every data file path any JSON commit adds or removes (percent-decoded).
    pub mentioned: BTreeSet<String>,
    /// Files removed by Lethe's own commits (`engineInfo` `lethe/…`), percent-decoded.
    pub removed_by_lethe: BTreeSet<String>,
}

/// Reads every JSON commit of the log (not the checkpoints).
///
/// # Errors
/// [`LakeError::ObjectStore`] when listing or reading fails; [`LakeError::Table`] for a
/// commit that is not JSON lines.
pub(crate) async fn read_history(table: &DeltaTable) -> Result<LogHistory, LakeError> {
    let log = table.root().location("_delta_log");
    let store = table.root().store();
    let listed: Vec<_> = store
        .list(Some(&log))
        .try_collect()
        .await
        .map_err(|e| LakeError::store(&log, e))?;
    let mut commits = Vec::new();
    let mut checkpoints = Vec::new();
    for meta in listed {
        let Some(name) = meta.location.filename() else {
            continue;
        };
        let Some((digits, rest)) = name.split_at_checked(20) else {
            continue;
        };
        let Ok(version) = digits.parse::<u64>() else {
            continue;
        };
        if rest == ".json" {
            commits.push((version, meta.location.clone()));
        } else if rest.starts_with(".checkpoint") {
            checkpoints.push(version);
        }
    }
    commits.sort();
    let mut history = LogHistory {
        earliest: if commits.first().is_some_and(|(v, _)| *v == 0) {
            0
        } else {
            checkpoints.iter().copied().min().unwrap_or(0)
        },
        ..LogHistory::default()
    };
    for (version, location) in commits {
        let bytes = store
            .get(&location)
            .await
            .map_err(|e| LakeError::store(&location, e))?
            .bytes()
            .await
            .map_err(|e| LakeError::store(&location, e))?;
        let mut by_lethe = false;
        let mut removed = Vec::new();
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let action: Value = serde_json::from_slice(line)
                .map_err(|e| table.error(format!("commit {version} is not JSON lines: {e}")))?;
            if let Some(info) = action.get("commitInfo") {
                by_lethe = info
                    .get("engineInfo")
                    .and_then(Value::as_str)
                    .is_some_and(|e| e.starts_with("lethe/"));
            }
            for (kind, removal) in [("add", false), ("remove", true)] {
                let Some(path) = action
                    .get(kind)
                    .and_then(|a| a.get("path"))
                    .and_then(Value::as_str)
                else {
                    continue;
                };
                let path = decode(path);
                history.mentioned.insert(path.clone());
                if removal {
                    history
                        .removed_at
                        .entry(path.clone())
                        .or_default()
                        .push(version);
                    removed.push(path);
                } else {
                    history.added_at.entry(path).or_default().push(version);
                }
            }
        }
        if by_lethe {
            history.removed_by_lethe.extend(removed);
        }
    }
    Ok(history)
}

/// A log path percent-decoded (`date=2025%2F01/…` → `date=2025/01/…`), as it names the object.
pub(crate) fn decode(path: &str) -> String {
    Path::from_url_path(path)
        .map(|p| {
            p.parts()
                .map(|s| s.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_else(|_| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_holds_commit_info_then_removes_then_adds_and_no_subject_id() {
        let facts = CommitFacts {
            read_version: 4,
            subject_columns: "user_id".into(),
            subjects: 2,
            rectification: false,
            rows_removed: 3,
            rows_copied: 10,
        };
        let pv: BTreeMap<String, Option<String>> =
            [("date".to_string(), Some("2025-01-07".to_string()))].into();
        let body = commit_body(
            &facts,
            &[RemoveAction {
                path: "date=2025-01-07/a.parquet".into(),
                partition_values: pv.clone(),
                size: 100,
                deletion_vector: None,
            }],
            &[AddAction {
                path: "date=2025-01-07/a-lethe-x.parquet".into(),
                partition_values: pv,
                size: 90,
                modification_time: 5,
                stats: "{\"numRecords\":10}".into(),
            }],
            1234,
        );
        let lines: Vec<Value> = String::from_utf8(body)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["commitInfo"]["operation"], "DELETE");
        assert_eq!(lines[0]["commitInfo"]["readVersion"], 4);
        assert!(
            lines[0]["commitInfo"]["engineInfo"]
                .as_str()
                .unwrap()
                .starts_with("lethe/")
        );
        assert_eq!(lines[1]["remove"]["deletionTimestamp"], 1234);
        assert_eq!(lines[1]["remove"]["dataChange"], true);
        assert_eq!(lines[1]["remove"]["size"], 100);
        assert_eq!(lines[2]["add"]["partitionValues"]["date"], "2025-01-07");
        assert_eq!(lines[2]["add"]["stats"], "{\"numRecords\":10}");
    }

    #[test]
    fn log_paths_are_percent_decoded() {
        assert_eq!(
            decode("date=2025%2D01/x%20y.parquet"),
            "date=2025-01/x y.parquet"
        );
    }
}
