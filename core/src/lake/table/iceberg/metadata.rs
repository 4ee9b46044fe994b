//! Iceberg table metadata (the `*.metadata.json` file a catalog points at), kept as the JSON
//! it was read from so that a new version changes only what a commit changes and keeps every
//! field Lethe does not know (statistics files, encryption keys, future fields).
//!
//! Source: Iceberg spec, "Table Metadata" (fields and their v1 / v2 forms), "Snapshots",
//! "Snapshot References".

use serde_json::{Map, Value, json};

use crate::lake::root::LakeRoot;

/// One snapshot of the metadata's `snapshots` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// `snapshot-id`.
    pub id: i64,
    /// `parent-snapshot-id`, when there is one.
    pub parent: Option<i64>,
    /// `sequence-number` (0 in v1 tables, which have none).
    pub sequence_number: i64,
    /// `manifest-list`: the location (URI) of its manifest list.
    pub manifest_list: String,
}

/// One top-level column of the current schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The field id.
    pub id: i32,
    /// The column name.
    pub name: String,
    /// The Iceberg type as written in the schema (`string`, `long`, `decimal(9,2)`…);
    /// `struct`, `list` or `map` for nested types.
    pub kind: String,
}

/// Table metadata: the JSON object and typed accessors.
#[derive(Debug, Clone)]
pub struct TableMetadata {
    json: Map<String, Value>,
}

impl TableMetadata {
    /// Parses a metadata file.
    ///
    /// # Errors
    /// A message when it is not a JSON object with a `format-version` and a `location`.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("metadata is not JSON: {e}"))?;
        let Value::Object(json) = value else {
            return Err("metadata is not a JSON object".into());
        };
        let me = Self { json };
        me.json
            .get("format-version")
            .and_then(Value::as_i64)
            .ok_or("metadata has no format-version")?;
        me.json
            .get("location")
            .and_then(Value::as_str)
            .ok_or("metadata has no location")?;
        Ok(me)
    }

    /// The metadata as JSON text.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.json).unwrap_or_default()
    }

    /// `table-uuid`, when the metadata has one.
    pub fn table_uuid(&self) -> Option<&str> {
        self.json.get("table-uuid").and_then(Value::as_str)
    }

    /// `format-version`: 1, 2 or 3.
    pub fn format_version(&self) -> i64 {
        self.json
            .get("format-version")
            .and_then(Value::as_i64)
            .unwrap_or(1)
    }

    /// `location`: the table's base location (URI), without a trailing `/`.
    pub fn location(&self) -> &str {
        self.json
            .get("location")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim_end_matches('/')
    }

    /// `current-snapshot-id` (`None` when absent, null or -1: a table without data).
    pub fn current_snapshot_id(&self) -> Option<i64> {
        self.json
            .get("current-snapshot-id")
            .and_then(Value::as_i64)
            .filter(|&id| id != -1)
    }

    /// `last-sequence-number` (0 in v1).
    pub fn last_sequence_number(&self) -> i64 {
        self.json
            .get("last-sequence-number")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }

    /// `last-updated-ms`.
    pub fn last_updated_ms(&self) -> i64 {
        self.json
            .get("last-updated-ms")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }

    /// `properties`, the value of `key`.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.json.get("properties")?.get(key)?.as_str()
    }

    /// The `snapshots` list.
    pub fn snapshots(&self) -> Vec<SnapshotInfo> {
        self.json
            .get("snapshots")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|s| {
                        Some(SnapshotInfo {
                            id: s.get("snapshot-id")?.as_i64()?,
                            parent: s.get("parent-snapshot-id").and_then(Value::as_i64),
                            sequence_number: s
                                .get("sequence-number")
                                .and_then(Value::as_i64)
                                .unwrap_or(0),
                            manifest_list: s.get("manifest-list")?.as_str()?.to_string(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The snapshot `id`, with its whole JSON (summary included).
    pub fn snapshot_json(&self, id: i64) -> Option<&Value> {
        self.json
            .get("snapshots")?
            .as_array()?
            .iter()
            .find(|s| s.get("snapshot-id").and_then(Value::as_i64) == Some(id))
    }

    /// True when some snapshot has no `manifest-list` (v1 snapshots may list their
    /// manifests inline in `manifests`, which Lethe does not read).
    pub fn has_inline_manifests(&self) -> bool {
        self.json
            .get("snapshots")
            .and_then(Value::as_array)
            .is_some_and(|l| l.iter().any(|s| s.get("manifest-list").is_none()))
    }

    /// The names of the refs of type `branch` (spec, "Snapshot References").
    pub fn branches(&self) -> Vec<String> {
        self.json
            .get("refs")
            .and_then(Value::as_object)
            .map(|refs| {
                refs.iter()
                    .filter(|(_, r)| r.get("type").and_then(Value::as_str) == Some("branch"))
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// True when the table lists encryption keys (spec, "Encryption").
    pub fn has_encryption_keys(&self) -> bool {
        self.json
            .get("encryption-keys")
            .and_then(Value::as_array)
            .is_some_and(|k| !k.is_empty())
    }

    /// The current schema's JSON (`schemas[current-schema-id]`, or v1's `schema`).
    fn current_schema(&self) -> Option<&Value> {
        let id = self.json.get("current-schema-id").and_then(Value::as_i64);
        let listed = self
            .json
            .get("schemas")
            .and_then(Value::as_array)
            .and_then(|l| {
                l.iter()
                    .find(|s| s.get("schema-id").and_then(Value::as_i64) == id)
            });
        listed.or_else(|| self.json.get("schema"))
    }

    /// The top-level columns of the current schema.
    pub fn columns(&self) -> Vec<Column> {
        let Some(fields) = self
            .current_schema()
            .and_then(|s| s.get("fields"))
            .and_then(Value::as_array)
        else {
            return Vec::new();
        };
        fields
            .iter()
            .filter_map(|f| {
                let kind = match f.get("type")? {
                    Value::String(s) => s.clone(),
                    Value::Object(o) => o.get("type")?.as_str()?.to_string(),
                    _ => return None,
                };
                Some(Column {
                    id: i32::try_from(f.get("id")?.as_i64()?).ok()?,
                    name: f.get("name")?.as_str()?.to_string(),
                    kind,
                })
            })
            .collect()
    }

    /// The Iceberg type of field `id` among the top-level columns of the current schema.
    pub fn column_kind(&self, id: i32) -> Option<String> {
        self.columns()
            .into_iter()
            .find(|c| c.id == id)
            .map(|c| c.kind)
    }

    /// `default-spec-id` (0 when absent: format version 1 with one spec).
    pub fn default_spec_id(&self) -> i64 {
        self.json
            .get("default-spec-id")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }

    /// The fields of partition spec `spec_id`: `(source-id, transform, name)`.
    pub fn partition_fields(&self, spec_id: i64) -> Vec<(i32, String, String)> {
        let specs = self.json.get("partition-specs").and_then(Value::as_array);
        let spec = specs
            .and_then(|l| {
                l.iter()
                    .find(|s| s.get("spec-id").and_then(Value::as_i64) == Some(spec_id))
            })
            .and_then(|s| s.get("fields"))
            .or_else(|| self.json.get("partition-spec"));
        spec.and_then(Value::as_array)
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|f| {
                        Some((
                            i32::try_from(f.get("source-id")?.as_i64()?).ok()?,
                            f.get("transform")?.as_str()?.to_string(),
                            f.get("name")?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The metadata after committing `snapshot` (its JSON) as the new current snapshot of
    /// branch `main`, replacing metadata file `previous` (Iceberg spec, "Table Metadata":
    /// `snapshots`, `current-snapshot-id`, `last-sequence-number`, `snapshot-log`,
    /// `metadata-log`, `refs`). `now_ms`: the commit time.
    pub fn with_snapshot(&self, snapshot: Value, previous: &str, now_ms: i64) -> Self {
        let mut next = self.next_version(previous, now_ms);
        let id = snapshot
            .get("snapshot-id")
            .and_then(Value::as_i64)
            .unwrap_or_default();
        if let Some(seq) = snapshot.get("sequence-number").and_then(Value::as_i64) {
            next.json.insert("last-sequence-number".into(), json!(seq));
        }
        push(&mut next.json, "snapshots", snapshot);
        push(
            &mut next.json,
            "snapshot-log",
            json!({"timestamp-ms": now_ms, "snapshot-id": id}),
        );
        next.json.insert("current-snapshot-id".into(), json!(id));
        if self.format_version() >= 2 || next.json.contains_key("refs") {
            let refs = next
                .json
                .entry("refs")
                .or_insert_with(|| json!({}))
                .as_object_mut();
            if let Some(refs) = refs {
                let main = refs
                    .entry("main")
                    .or_insert_with(|| json!({"type": "branch"}));
                if let Some(main) = main.as_object_mut() {
                    main.insert("snapshot-id".into(), json!(id));
                    main.insert("type".into(), json!("branch"));
                }
            }
        }
        next
    }

    /// The metadata without the snapshots `expired` (their entries in `snapshots`,
    /// `snapshot-log`, `statistics` and `partition-statistics`, and every ref other than `main` pointing at one), replacing metadata
    /// file `previous` (Iceberg spec, "Snapshots": expiration). Returns it and the names of
    /// the refs removed.
    pub fn without_snapshots(
        &self,
        expired: &std::collections::BTreeSet<i64>,
        previous: &str,
        now_ms: i64,
    ) -> (Self, Vec<String>) {
        let mut next = self.next_version(previous, now_ms);
        let keep = |v: &Value, key: &str| {
            v.get(key)
                .and_then(Value::as_i64)
                .is_none_or(|id| !expired.contains(&id))
        };
        if let Some(Value::Array(list)) = next.json.get_mut("snapshots") {
            list.retain(|s| keep(s, "snapshot-id"));
        }
        // The statistics files of an expired snapshot describe a snapshot no reader can
        // load any more (spec, "Table Statistics", "Partition Statistics").
        for key in ["snapshot-log", "statistics", "partition-statistics"] {
            if let Some(Value::Array(list)) = next.json.get_mut(key) {
                list.retain(|s| keep(s, "snapshot-id"));
            }
        }
        let mut removed_refs = Vec::new();
        if let Some(Value::Object(refs)) = next.json.get_mut("refs") {
            refs.retain(|name, r| {
                let kept = name == "main" || keep(r, "snapshot-id");
                if !kept {
                    removed_refs.push(name.clone());
                }
                kept
            });
        }
        (next, removed_refs)
    }

    /// A copy for the next metadata file: `last-updated-ms` = `now_ms`, `previous` appended
    /// to `metadata-log` (trimmed to `write.metadata.previous-versions-max`, default 100).
    fn next_version(&self, previous: &str, now_ms: i64) -> Self {
        let mut next = self.clone();
        let max = self
            .property("write.metadata.previous-versions-max")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(100)
            .max(1);
        push(
            &mut next.json,
            "metadata-log",
            json!({"timestamp-ms": self.last_updated_ms(), "metadata-file": previous}),
        );
        if let Some(Value::Array(log)) = next.json.get_mut("metadata-log")
            && log.len() > max
        {
            let excess = log.len() - max;
            log.drain(..excess);
        }
        next.json.insert("last-updated-ms".into(), json!(now_ms));
        next
    }
}

fn push(json: &mut Map<String, Value>, key: &str, value: Value) {
    match json.entry(key).or_insert_with(|| json!([])) {
        Value::Array(list) => list.push(value),
        slot => *slot = json!([value]),
    }
}

/// One version of a table: the metadata file the catalog pointed at, and the table's root.
#[derive(Debug, Clone)]
pub struct LoadedTable {
    /// The catalog's `metadata_location` this version was read from (URI).
    pub metadata_location: String,
    /// The metadata.
    pub metadata: TableMetadata,
    /// The table `location` as a lake root.
    pub root: LakeRoot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_appends_snapshot_logs_and_moves_main() {
        let m = TableMetadata::parse(
            br#"{"format-version":2,"location":"file:///t/","last-sequence-number":3,
            "last-updated-ms":10,"current-snapshot-id":7,"snapshots":[{"snapshot-id":7,
            "sequence-number":3,"manifest-list":"file:///t/metadata/a.avro"}],
            "refs":{"main":{"snapshot-id":7,"type":"branch"},"t":{"snapshot-id":7,"type":"tag"}}}"#,
        )
        .unwrap();
        assert_eq!(m.location(), "file:///t");
        let next = m.with_snapshot(
            json!({"snapshot-id": 9, "parent-snapshot-id": 7, "sequence-number": 4,
                   "manifest-list": "file:///t/metadata/b.avro"}),
            "file:///t/metadata/00001-x.metadata.json",
            20,
        );
        assert_eq!(next.current_snapshot_id(), Some(9));
        assert_eq!(next.last_sequence_number(), 4);
        assert_eq!(next.snapshots().len(), 2);
        let (expired, refs) = next.without_snapshots(&[7].into(), "m2", 30);
        assert_eq!(expired.snapshots().len(), 1);
        assert_eq!(refs, vec!["t".to_string()]);
        assert_eq!(expired.json["metadata-log"].as_array().unwrap().len(), 2);
    }
}
