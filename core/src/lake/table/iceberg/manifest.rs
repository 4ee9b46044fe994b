//! Manifest lists and manifests (Iceberg spec, "Manifest Lists", "Manifests"), read into the
//! few typed fields Lethe uses, each keeping its Avro record so that a rewrite copies every
//! other field as the table's writer wrote it.
//!
//! Inheritance (spec, "Sequence Number Inheritance", "Snapshot ID Inheritance"): a null
//! `snapshot_id` of an entry is the manifest's `added_snapshot_id`; a null
//! `sequence_number` / `file_sequence_number` is the manifest's `sequence_number`. v1
//! manifests have no sequence numbers (0).

use apache_avro::types::Value;

use super::avro::{self, Container};

/// Manifest entry status (spec, "Manifest Entry Fields": `status`).
pub(crate) const EXISTING: i32 = 0;
/// An entry added by the manifest's snapshot.
pub(crate) const ADDED: i32 = 1;
/// An entry deleted by the manifest's snapshot.
pub(crate) const DELETED: i32 = 2;

/// One record of a manifest list.
#[derive(Debug, Clone)]
pub(crate) struct ManifestFile {
    /// `manifest_path` (URI).
    pub path: String,
    /// `partition_spec_id`.
    pub spec_id: i64,
    /// `content`: 0 data files, 1 delete files (v1: 0).
    pub content: i64,
    /// `sequence_number` (v1: 0).
    pub sequence_number: i64,
    /// `added_snapshot_id`.
    pub added_snapshot_id: i64,
    /// The Avro record.
    pub record: Value,
}

/// A manifest list: its container (schema, header) and its records.
#[derive(Debug, Clone)]
pub(crate) struct ManifestList {
    pub container: Container,
    pub files: Vec<ManifestFile>,
}

/// Parses a manifest list.
pub(crate) fn parse_list(bytes: &[u8]) -> Result<ManifestList, String> {
    let container = avro::read(bytes)?;
    let files = container
        .records
        .iter()
        .map(|r| {
            Ok(ManifestFile {
                path: avro::text(r, "manifest_path")
                    .ok_or("manifest list record without manifest_path")?
                    .to_string(),
                spec_id: avro::long(r, "partition_spec_id").unwrap_or(0),
                content: avro::long(r, "content").unwrap_or(0),
                sequence_number: avro::long(r, "sequence_number").unwrap_or(0),
                added_snapshot_id: avro::long(r, "added_snapshot_id").unwrap_or(0),
                record: r.clone(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(ManifestList { container, files })
}

/// One manifest entry, inheritance applied.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// `status`: [`EXISTING`], [`ADDED`] or [`DELETED`].
    pub status: i32,
    /// `snapshot_id` (inherited when null).
    pub snapshot_id: i64,
    /// `sequence_number`: the data sequence number (inherited when null; 0 in v1).
    pub sequence_number: i64,
    /// `file_sequence_number` (inherited when null; 0 in v1).
    pub file_sequence_number: i64,
    /// `data_file.content`: 0 data, 1 position deletes, 2 equality deletes.
    pub content: i64,
    /// `data_file.file_path` (URI).
    pub file_path: String,
    /// `data_file.record_count`.
    pub record_count: i64,
    /// `data_file.file_size_in_bytes`.
    pub file_size: i64,
    /// `data_file.partition`: the partition tuple, field name → value (null: `None`).
    pub partition: Vec<(String, Option<Value>)>,
    /// `data_file.referenced_data_file` (position deletes of one data file), when set.
    pub referenced_data_file: Option<String>,
    /// The Avro record.
    pub record: Value,
}

impl Entry {
    /// True for `ADDED` and `EXISTING` entries: the file is live in the manifest's snapshot.
    pub fn is_live(&self) -> bool {
        self.status != DELETED
    }

    /// The `data_file` record.
    pub fn data_file(&self) -> Option<&Value> {
        avro::field(&self.record, "data_file")
    }
}

/// A manifest: its container (schema, header) and its entries.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    pub container: Container,
    pub entries: Vec<Entry>,
}

/// Parses the manifest listed as `listed`.
pub(crate) fn parse_manifest(bytes: &[u8], listed: &ManifestFile) -> Result<Manifest, String> {
    let container = avro::read(bytes)?;
    let entries = container
        .records
        .iter()
        .map(|r| entry(r, listed))
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Manifest { container, entries })
}

fn entry(record: &Value, listed: &ManifestFile) -> Result<Entry, String> {
    let status = avro::long(record, "status").ok_or("manifest entry without status")?;
    let data_file = avro::field(record, "data_file").ok_or("manifest entry without data_file")?;
    let inherit_seq = |name: &str| {
        avro::long(record, name).unwrap_or(if avro::has(record, name) {
            listed.sequence_number
        } else {
            0
        })
    };
    let partition = match avro::field(data_file, "partition") {
        Some(Value::Record(fields)) => fields
            .iter()
            .map(|(name, v)| {
                let v = avro::plain(v);
                (name.clone(), (!matches!(v, Value::Null)).then(|| v.clone()))
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Entry {
        status: i32::try_from(status).map_err(|_| "invalid status")?,
        snapshot_id: avro::long(record, "snapshot_id").unwrap_or(listed.added_snapshot_id),
        sequence_number: inherit_seq("sequence_number"),
        file_sequence_number: inherit_seq("file_sequence_number"),
        content: avro::long(data_file, "content").unwrap_or(0),
        file_path: avro::text(data_file, "file_path")
            .ok_or("data_file without file_path")?
            .to_string(),
        record_count: avro::long(data_file, "record_count").unwrap_or(0),
        file_size: avro::long(data_file, "file_size_in_bytes").unwrap_or(0),
        partition,
        referenced_data_file: avro::text(data_file, "referenced_data_file").map(str::to_string),
        record: record.clone(),
    })
}

/// The partition value as text, as Lethe compares it with subject ids (identity
/// transforms of string, int and long columns); `None` for other types.
pub(crate) fn partition_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Int(v) => Some(v.to_string()),
        Value::Long(v) => Some(v.to_string()),
        _ => None,
    }
}
