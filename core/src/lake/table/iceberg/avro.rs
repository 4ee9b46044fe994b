//! Avro object container files as Iceberg writes them (manifest lists and manifests), read
//! and written with `apache-avro` as generic values, and the few accessors Lethe needs.
//!
//! Lethe never builds an Avro schema of its own: a manifest it writes reuses the writer
//! schema of the manifest it replaces (field ids, partition struct `r102`, format version
//! included), so what it writes has exactly the shape the table's writers chose. Values are
//! set as plain Avro values and resolved against that schema before they are written
//! (`["null", T]` unions, record field order).
//!
//! Source: Avro 1.11 specification, "Object Container Files"; Iceberg spec, "Manifests".

use std::collections::HashMap;

use apache_avro::types::Value;
use apache_avro::{Codec, DeflateSettings, Reader, Schema, Writer};

/// One container file: its writer schema, its user metadata (keys not starting with
/// `avro.`) and its records.
#[derive(Debug, Clone)]
pub(crate) struct Container {
    /// The writer schema from the file header.
    pub schema: Schema,
    /// Header metadata other than `avro.schema` / `avro.codec` (Iceberg's `schema`,
    /// `partition-spec`, `format-version`, `snapshot-id`…), as bytes.
    pub metadata: Vec<(String, Vec<u8>)>,
    /// The records, in file order.
    pub records: Vec<Value>,
}

/// Reads a container file (`bytes`: the whole object).
///
/// # Errors
/// A message naming what failed (header, codec, a record).
pub(crate) fn read(bytes: &[u8]) -> Result<Container, String> {
    let reader = Reader::new(bytes).map_err(|e| format!("not an Avro container file: {e}"))?;
    let schema = reader.writer_schema().clone();
    let mut metadata: Vec<(String, Vec<u8>)> = reader
        .user_metadata()
        .iter()
        .filter(|(k, _)| !k.starts_with("avro."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.sort();
    let records = reader
        .collect::<Result<Vec<Value>, _>>()
        .map_err(|e| format!("unreadable Avro record: {e}"))?;
    Ok(Container {
        schema,
        metadata,
        records,
    })
}

/// Writes `records` with `schema` and `metadata` into a new container file, deflate
/// compressed (the codec Iceberg's writers default to). Each record is resolved against the
/// schema first.
///
/// # Errors
/// A message when a record does not fit the schema.
pub(crate) fn write(
    schema: &Schema,
    metadata: &[(String, Vec<u8>)],
    records: Vec<Value>,
) -> Result<Vec<u8>, String> {
    let mut writer = Writer::with_codec(
        schema,
        Vec::new(),
        Codec::Deflate(DeflateSettings::default()),
    );
    for (key, value) in metadata {
        writer
            .add_user_metadata(key.clone(), value)
            .map_err(|e| format!("metadata {key:?}: {e}"))?;
    }
    for record in records {
        let resolved = record
            .resolve(schema)
            .map_err(|e| format!("record does not fit the manifest schema: {e}"))?;
        writer
            .append(resolved)
            .map_err(|e| format!("record not written: {e}"))?;
    }
    writer
        .into_inner()
        .map_err(|e| format!("container not written: {e}"))
}

/// Sets (or adds) the metadata value of `key`.
pub(crate) fn set_meta(metadata: &mut Vec<(String, Vec<u8>)>, key: &str, value: String) {
    match metadata.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value.into_bytes(),
        None => metadata.push((key.to_string(), value.into_bytes())),
    }
}

/// `value` without its union wrapper.
pub(crate) fn plain(value: &Value) -> &Value {
    match value {
        Value::Union(_, inner) => plain(inner),
        other => other,
    }
}

/// The field `name` of a record (union wrapper removed); `None` when absent or null.
pub(crate) fn field<'a>(record: &'a Value, name: &str) -> Option<&'a Value> {
    let Value::Record(fields) = plain(record) else {
        return None;
    };
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| plain(v))
        .filter(|v| !matches!(v, Value::Null))
}

/// The field `name` as an integer (`int` or `long`).
pub(crate) fn long(record: &Value, name: &str) -> Option<i64> {
    match field(record, name)? {
        Value::Int(v) => Some(i64::from(*v)),
        Value::Long(v) => Some(*v),
        _ => None,
    }
}

/// The field `name` as text.
pub(crate) fn text<'a>(record: &'a Value, name: &str) -> Option<&'a str> {
    match field(record, name)? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// True when the record has a field `name` (null or not).
pub(crate) fn has(record: &Value, name: &str) -> bool {
    matches!(plain(record), Value::Record(fields) if fields.iter().any(|(n, _)| n == name))
}

/// Replaces the value of field `name` when the record has it (a manifest of another format
/// version may not: the field is then left out, as that version's schema wants).
pub(crate) fn set(record: &mut Value, name: &str, value: Value) {
    if let Value::Record(fields) = record
        && let Some((_, slot)) = fields.iter_mut().find(|(n, _)| n == name)
    {
        *slot = value;
    }
}

/// A mutable reference to the record in field `name` (union wrapper removed).
pub(crate) fn record_mut<'a>(record: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    let Value::Record(fields) = record else {
        return None;
    };
    let (_, slot) = fields.iter_mut().find(|(n, _)| n == name)?;
    let mut v = slot;
    while let Value::Union(_, inner) = v {
        v = inner.as_mut();
    }
    Some(v)
}

/// An Iceberg `map<int, T>` as Avro writes it: an array of `{key, value}` records
/// (Iceberg spec, "Avro": maps with non-string keys).
pub(crate) fn int_map(entries: impl IntoIterator<Item = (i32, Value)>) -> Value {
    Value::Array(
        entries
            .into_iter()
            .map(|(k, v)| Value::Record(vec![("key".into(), Value::Int(k)), ("value".into(), v)]))
            .collect(),
    )
}

/// The entries of an Iceberg `map<int, bytes>` field (`lower_bounds`, `upper_bounds`).
pub(crate) fn bytes_map(record: &Value, name: &str) -> HashMap<i32, Vec<u8>> {
    let mut out = HashMap::new();
    if let Some(Value::Array(items)) = field(record, name) {
        for item in items {
            if let (Some(Value::Int(k)), Some(Value::Bytes(b))) =
                (field(item, "key"), field(item, "value"))
            {
                out.insert(*k, b.clone());
            }
        }
    }
    out
}
