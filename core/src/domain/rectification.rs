//! Rectification (GDPR Art. 16): which columns of the subject's rows in one dataset change, and
//! to what. Checked when the request is filed against the dataset's declared schema; typed
//! against each file's own column types when it runs (datasets written by others declare none).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, UInt64Array};
use arrow_cast::{CastOptions, cast_with_options};
use arrow_schema::DataType;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DatasetSchema;

/// Most columns one rectification request may change.
pub const MAX_CHANGED_COLUMNS: usize = 64;

/// What a rectification request changes: in dataset `dataset_id`, every column named in
/// `changes` is set to its new value on each row of the subject. Stored on the request (its
/// `details`); the values are personal data, so they never go to the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rectification {
    /// The dataset (its id in the data map).
    pub dataset_id: String,
    /// Column name → new value (a JSON scalar, or `null` for a nullable column).
    pub changes: BTreeMap<String, Value>,
}

/// Why a rectification was refused; the message names the column and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RectificationError(pub String);

impl Rectification {
    /// Checks the changes against a dataset: at least one and at most
    /// [`MAX_CHANGED_COLUMNS`] columns; none of them a subject column (rows are found by it) or
    /// a partition column (it names the folder a row lives in: changing it would move the row);
    /// each value a JSON scalar. With a declared `schema`, each column must be declared, must
    /// not be a partition source or the region column, and its value must parse as the
    /// column's type (`null` only when nullable). Without one (a dataset written by others) the
    /// values are typed against each file's column when the request runs.
    ///
    /// # Errors
    /// [`RectificationError`] naming the first column at fault.
    pub fn check(
        &self,
        schema: Option<&DatasetSchema>,
        subject_columns: &[String],
        partition_columns: &[String],
    ) -> Result<(), RectificationError> {
        let refuse = |m: String| Err(RectificationError(m));
        if self.changes.is_empty() {
            return refuse("changes must name at least one column".into());
        }
        if self.changes.len() > MAX_CHANGED_COLUMNS {
            return refuse(format!(
                "at most {MAX_CHANGED_COLUMNS} columns can be rectified in one request"
            ));
        }
        for (column, value) in &self.changes {
            if column.trim().is_empty() {
                return refuse("a column name is empty".into());
            }
            if subject_columns.contains(column) {
                return refuse(format!(
                    "column {column} holds the subject id and cannot be rectified"
                ));
            }
            if partition_columns.contains(column) {
                return refuse(format!(
                    "column {column} is a partition column (it names the folder a row is stored in) and cannot be rectified"
                ));
            }
            if value.is_array() || value.is_object() {
                return refuse(format!(
                    "column {column}: the new value must be a string, number, boolean or null"
                ));
            }
            let Some(schema) = schema else { continue };
            let Some(spec) = schema.column(column) else {
                return refuse(format!("column {column} is not a column of the dataset"));
            };
            if schema.partition_by.iter().any(|p| &p.source == column) {
                return refuse(format!(
                    "column {column} decides the partition a row is stored in and cannot be rectified"
                ));
            }
            if schema.region_column.as_deref() == Some(column.as_str()) {
                return refuse(format!(
                    "column {column} decides the region a row is stored in and cannot be rectified"
                ));
            }
            typed_value(column, value, &spec.column_type.arrow(), spec.nullable)?;
        }
        Ok(())
    }

    /// The names of the changed columns (what the audit log may say; never the values).
    pub fn columns(&self) -> Vec<String> {
        self.changes.keys().cloned().collect()
    }
}

fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, value) => is_text(value),
        _ => false,
    }
}

fn from_text(t: &DataType) -> bool {
    is_text(t)
        || t.is_temporal()
        || matches!(
            t,
            DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::Decimal32(..)
                | DataType::Decimal64(..)
                | DataType::Decimal128(..)
                | DataType::Decimal256(..)
        )
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `value` as a one-element Arrow array of type `to`, with the column's type rules: text,
/// dates, timestamps (RFC 3339), decimals and binary from JSON strings; integers from JSON
/// integers (in range); floats from JSON numbers; booleans from JSON booleans; `null` only
/// when `nullable`. Nothing is coerced across kinds (`"12"` is not an integer).
///
/// # Errors
/// [`RectificationError`] naming `column`, the value's kind and the column's type, never the
/// value.
pub fn typed_value(
    column: &str,
    value: &Value,
    to: &DataType,
    nullable: bool,
) -> Result<ArrayRef, RectificationError> {
    let refuse = |what: String| RectificationError(format!("column {column}: {what}"));
    if value.is_null() {
        if !nullable {
            return Err(refuse(
                "is not nullable, the new value cannot be null".into(),
            ));
        }
        return Ok(arrow_array::new_null_array(to, 1));
    }
    let source: ArrayRef = match value {
        Value::String(s) if from_text(to) => Arc::new(StringArray::from(vec![s.as_str()])),
        Value::Number(n) if to.is_integer() => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Arc::new(Int64Array::from(vec![i])),
            (None, Some(u)) => Arc::new(UInt64Array::from(vec![u])),
            _ => return Err(refuse(format!("the new value is not an integer ({to})"))),
        },
        Value::Number(n) if to.is_floating() => {
            Arc::new(Float64Array::from(vec![n.as_f64().unwrap_or(f64::NAN)]))
        }
        Value::Number(n) if to.is_numeric() => Arc::new(StringArray::from(vec![n.to_string()])),
        Value::Bool(b) if to == &DataType::Boolean => Arc::new(BooleanArray::from(vec![*b])),
        other => {
            return Err(refuse(format!(
                "{} cannot be stored in a column of type {to}",
                json_kind(other)
            )));
        }
    };
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    // The message never quotes the value (it is personal data and may reach the audit log).
    cast_with_options(&source, to, &options).map_err(|_| {
        let hint = match to {
            DataType::Timestamp(..) => " (expected RFC 3339, e.g. 2025-01-07T06:30:00Z)",
            DataType::Date32 | DataType::Date64 => " (expected YYYY-MM-DD)",
            t if t.is_integer() => " (out of range)",
            _ => "",
        };
        refuse(format!("the new value is not a valid {to}{hint}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Date32Array, Int32Array, TimestampMicrosecondArray};
    use serde_json::json;

    fn schema() -> DatasetSchema {
        serde_json::from_value(json!({
            "subject_columns": ["user_id"],
            "columns": [
                {"name": "event_id", "type": "string"},
                {"name": "user_id", "type": "string"},
                {"name": "ts", "type": "timestamp"},
                {"name": "region", "type": "string"},
                {"name": "calories", "type": "int32"},
                {"name": "email", "type": "string", "pii": "encrypt"},
                {"name": "lat", "type": "float64", "pii": "encrypt"},
                {"name": "notes", "type": "string", "nullable": true}
            ],
            "partition_by": [{"name": "date", "source": "ts", "transform": "day"},
                             {"name": "region", "source": "region"}],
            "region_column": "region"
        }))
        .unwrap()
    }

    fn rectify(changes: Value) -> Rectification {
        Rectification {
            dataset_id: "d-1".into(),
            changes: serde_json::from_value(changes).unwrap(),
        }
    }

    fn check_managed(changes: Value) -> Result<(), RectificationError> {
        let s = schema();
        rectify(changes).check(
            Some(&s),
            &["user_id".to_string()],
            &["date".to_string(), "region".to_string()],
        )
    }

    #[test]
    fn declared_columns_with_values_of_their_type_are_accepted() {
        check_managed(
            json!({"email": "new@example.com", "lat": 51.5, "calories": 320, "notes": null}),
        )
        .unwrap();
    }

    #[test]
    fn refusals_name_the_column_and_the_rule() {
        let cases = [
            (json!({}), "at least one column"),
            (json!({"user_id": "u-2"}), "holds the subject id"),
            (json!({"region": "US"}), "partition column"),
            (
                json!({"ts": "2025-01-01T00:00:00Z"}),
                "decides the partition",
            ),
            (json!({"shoe_size": 42}), "not a column of the dataset"),
            (json!({"calories": "320"}), "a string cannot be stored"),
            (
                json!({"calories": 3_000_000_000u64}),
                "is not a valid Int32",
            ),
            (json!({"calories": 12.5}), "not an integer"),
            (json!({"email": null}), "not nullable"),
            (json!({"email": ["a", "b"]}), "must be a string, number"),
        ];
        for (changes, expected) in cases {
            let e = check_managed(changes.clone()).unwrap_err().to_string();
            assert!(e.contains(expected), "{changes}: {e} should say {expected}");
        }
    }

    #[test]
    fn datasets_without_a_schema_only_check_subject_and_partition_columns() {
        let r = rectify(json!({"device_id": "watch-9", "notes": null}));
        r.check(None, &["user_id".into()], &["date".into(), "region".into()])
            .unwrap();
        let r = rectify(json!({"date": "2025-01-01"}));
        assert!(
            r.check(None, &["user_id".into()], &["date".into()])
                .is_err()
        );
        assert_eq!(r.columns(), ["date"]);
    }

    #[test]
    fn values_are_typed_by_the_columns_arrow_type() {
        let v = typed_value("c", &json!(7), &DataType::Int32, false).unwrap();
        assert_eq!(v.as_any().downcast_ref::<Int32Array>().unwrap().value(0), 7);
        let v = typed_value("d", &json!("2025-02-28"), &DataType::Date32, false).unwrap();
        assert_eq!(
            v.as_any().downcast_ref::<Date32Array>().unwrap().value(0),
            20147
        );
        let ts = DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into()));
        let v = typed_value("t", &json!("2025-01-07T06:30:00Z"), &ts, false).unwrap();
        assert_eq!(
            v.as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap()
                .value(0),
            1_736_231_400_000_000
        );
        assert!(typed_value("t", &json!("yesterday"), &ts, false).is_err());
        assert!(typed_value("d", &json!("2025-02-30"), &DataType::Date32, false).is_err());
        let v = typed_value("n", &json!(null), &DataType::Utf8, true).unwrap();
        assert!(v.is_null(0));
        let v = typed_value("f", &json!(38), &DataType::Float64, false).unwrap();
        assert_eq!(
            v.as_any().downcast_ref::<Float64Array>().unwrap().value(0),
            38.0
        );
        assert!(typed_value("b", &json!("true"), &DataType::Boolean, false).is_err());
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        assert_eq!(
            typed_value("s", &json!("x"), &dict, false)
                .unwrap()
                .data_type(),
            &dict
        );
    }
}
