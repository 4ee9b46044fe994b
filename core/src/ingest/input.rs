//! Reading an ingest input (CSV, JSON Lines, Parquet) into one Arrow batch in the dataset's
//! logical schema, validating every row: a mismatch names its row and column, and the whole
//! input is refused.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use super::IngestError;
use crate::domain::{ColumnSpec, ColumnType, DatasetSchema, SubjectId};

/// Format of an ingest input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// RFC 4180 CSV with a header row; an empty field is null.
    Csv,
    /// One JSON object per line (`application/x-ndjson`).
    JsonLines,
    /// A Parquet file (any writer); columns are cast to the declared types.
    Parquet,
}

impl InputFormat {
    /// The format named by a file extension (`csv`, `jsonl`/`ndjson`/`json`, `parquet`).
    pub fn from_extension(path: &std::path::Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" | "json" => Some(Self::JsonLines),
            "parquet" | "pq" => Some(Self::Parquet),
            _ => None,
        }
    }

    /// The format named by an HTTP `Content-Type` (parameters ignored).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next()?.trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/x-ndjson" | "application/jsonl" | "application/json-lines" => {
                Some(Self::JsonLines)
            }
            "application/vnd.apache.parquet" | "application/x-parquet" => Some(Self::Parquet),
            "text/csv" => Some(Self::Csv),
            _ => None,
        }
    }
}

/// The Arrow schema of validated input rows: every declared column with its plain type.
pub fn logical_schema(schema: &DatasetSchema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .columns
            .iter()
            .map(|c| Field::new(&c.name, c.column_type.arrow(), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// Parses and validates `input`; the returned batch has [`logical_schema`].
///
/// # Errors
/// [`IngestError::Invalid`] for the first row that does not match the schema (unknown or
/// missing column, wrong type, null in a non-null column, invalid subject id);
/// [`IngestError::Unreadable`] when the input is not in `format` at all.
pub fn read_input(
    schema: &DatasetSchema,
    format: InputFormat,
    input: Bytes,
) -> Result<RecordBatch, IngestError> {
    let batch = match format {
        InputFormat::JsonLines => read_json_lines(schema, &input)?,
        InputFormat::Csv => read_csv(schema, &input)?,
        InputFormat::Parquet => read_parquet(schema, input)?,
    };
    check_subjects(schema, &batch)?;
    Ok(batch)
}

/// One column being built.
enum Col {
    Str(StringBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
}

impl Col {
    fn new(t: ColumnType) -> Self {
        match t {
            ColumnType::String => Self::Str(StringBuilder::new()),
            ColumnType::Int16 => Self::I16(Int16Builder::new()),
            ColumnType::Int32 => Self::I32(Int32Builder::new()),
            ColumnType::Int64 => Self::I64(Int64Builder::new()),
            ColumnType::Float64 => Self::F64(Float64Builder::new()),
            ColumnType::Bool => Self::Bool(BooleanBuilder::new()),
            ColumnType::Date => Self::Date(Date32Builder::new()),
            ColumnType::Timestamp => Self::Ts(TimestampMicrosecondBuilder::new()),
        }
    }

    fn null(&mut self) {
        match self {
            Self::Str(b) => b.append_null(),
            Self::I16(b) => b.append_null(),
            Self::I32(b) => b.append_null(),
            Self::I64(b) => b.append_null(),
            Self::F64(b) => b.append_null(),
            Self::Bool(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Ts(b) => b.append_null(),
        }
    }

    /// Appends a value given as text (CSV, or a JSON string for dates and timestamps).
    fn text(&mut self, s: &str) -> Result<(), String> {
        fn int<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
            s.trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a valid {what}"))
        }
        match self {
            Self::Str(b) => b.append_value(s),
            Self::I16(b) => b.append_value(int(s, "int16")?),
            Self::I32(b) => b.append_value(int(s, "int32")?),
            Self::I64(b) => b.append_value(int(s, "int64")?),
            Self::F64(b) => {
                let v: f64 = int(s, "float64")?;
                if !v.is_finite() {
                    return Err(format!("{s:?} is not a finite number"));
                }
                b.append_value(v);
            }
            Self::Bool(b) => b.append_value(match s.trim() {
                "true" | "TRUE" | "True" => true,
                "false" | "FALSE" | "False" => false,
                _ => return Err(format!("{s:?} is not true or false")),
            }),
            Self::Date(b) => {
                let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                    .map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD)"))?;
                let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
                b.append_value(
                    i32::try_from((d - epoch).num_days())
                        .map_err(|_| format!("{s:?} is out of range"))?,
                );
            }
            Self::Ts(b) => {
                let t = DateTime::parse_from_rfc3339(s.trim())
                    .map_err(|_| format!("{s:?} is not an RFC 3339 timestamp"))?;
                b.append_value(t.timestamp_micros());
            }
        }
        Ok(())
    }

    /// Appends a JSON value (not null; dates and timestamps come as strings through
    /// [`Col::text`]).
    fn json(&mut self, v: &Value) -> Result<(), String> {
        let shown = || {
            let mut s = v.to_string();
            if s.len() > 40 {
                s.truncate(40);
                s.push('…');
            }
            s
        };
        match (self, v) {
            (Self::Str(b), Value::String(s)) => b.append_value(s),
            (Self::I16(b), Value::Number(n)) => b.append_value(
                n.as_i64()
                    .and_then(|n| i16::try_from(n).ok())
                    .ok_or_else(|| format!("{} is not a valid int16", shown()))?,
            ),
            (Self::I32(b), Value::Number(n)) => b.append_value(
                n.as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| format!("{} is not a valid int32", shown()))?,
            ),
            (Self::I64(b), Value::Number(n)) => b.append_value(
                n.as_i64()
                    .ok_or_else(|| format!("{} is not a valid int64", shown()))?,
            ),
            (Self::F64(b), Value::Number(n)) => b.append_value(
                n.as_f64()
                    .ok_or_else(|| format!("{} is not a valid float64", shown()))?,
            ),
            (Self::Bool(b), Value::Bool(x)) => b.append_value(*x),
            (col, _) => return Err(format!("{} is not a {}", shown(), col.type_name())),
        }
        Ok(())
    }

    fn type_name(&self) -> &'static str {
        match self {
            Self::Str(_) => "string",
            Self::I16(_) => "int16",
            Self::I32(_) => "int32",
            Self::I64(_) => "int64",
            Self::F64(_) => "float64",
            Self::Bool(_) => "bool",
            Self::Date(_) => "date (YYYY-MM-DD)",
            Self::Ts(_) => "timestamp (RFC 3339)",
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Self::Str(mut b) => Arc::new(b.finish()),
            Self::I16(mut b) => Arc::new(b.finish()),
            Self::I32(mut b) => Arc::new(b.finish()),
            Self::I64(mut b) => Arc::new(b.finish()),
            Self::F64(mut b) => Arc::new(b.finish()),
            Self::Bool(mut b) => Arc::new(b.finish()),
            Self::Date(mut b) => Arc::new(b.finish()),
            Self::Ts(mut b) => Arc::new(b.finish().with_timezone("UTC")),
        }
    }
}

fn invalid(row: u64, column: &str, reason: impl Into<String>) -> IngestError {
    IngestError::Invalid {
        row,
        column: Some(column.to_string()),
        reason: reason.into(),
    }
}

fn push_json(
    col: &mut Col,
    spec: &ColumnSpec,
    row: u64,
    v: Option<&Value>,
) -> Result<(), IngestError> {
    match v {
        None | Some(Value::Null) if spec.nullable => {
            col.null();
            Ok(())
        }
        None => Err(invalid(
            row,
            &spec.name,
            "missing, and the column is not nullable",
        )),
        Some(Value::Null) => Err(invalid(
            row,
            &spec.name,
            "null, and the column is not nullable",
        )),
        Some(Value::String(s)) if matches!(col, Col::Date(_) | Col::Ts(_)) => {
            col.text(s).map_err(|e| invalid(row, &spec.name, e))
        }
        Some(v) => col.json(v).map_err(|e| invalid(row, &spec.name, e)),
    }
}

fn read_json_lines(schema: &DatasetSchema, input: &[u8]) -> Result<RecordBatch, IngestError> {
    let mut cols: Vec<Col> = schema
        .columns
        .iter()
        .map(|c| Col::new(c.column_type))
        .collect();
    let mut rows = 0usize;
    for (i, line) in input.split(|b| *b == b'\n').enumerate() {
        let line_no = i as u64 + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let object: serde_json::Map<String, Value> =
            serde_json::from_slice(line).map_err(|e| IngestError::Invalid {
                row: line_no,
                column: None,
                reason: format!("not a JSON object: {e}"),
            })?;
        if let Some(unknown) = object.keys().find(|k| schema.column(k).is_none()) {
            return Err(invalid(
                line_no,
                unknown,
                "is not a column of the dataset schema",
            ));
        }
        for (spec, col) in schema.columns.iter().zip(cols.iter_mut()) {
            push_json(col, spec, line_no, object.get(&spec.name))?;
        }
        rows += 1;
    }
    finish(schema, cols, rows)
}

fn read_csv(schema: &DatasetSchema, input: &[u8]) -> Result<RecordBatch, IngestError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| IngestError::Unreadable(format!("CSV header: {e}")))?
        .clone();
    let mut positions = Vec::with_capacity(schema.columns.len());
    for spec in &schema.columns {
        positions.push(headers.iter().position(|h| h == spec.name));
    }
    if let Some(unknown) = headers.iter().find(|h| schema.column(h).is_none()) {
        return Err(invalid(1, unknown, "is not a column of the dataset schema"));
    }
    let mut cols: Vec<Col> = schema
        .columns
        .iter()
        .map(|c| Col::new(c.column_type))
        .collect();
    let mut record = csv::StringRecord::new();
    let mut rows = 0usize;
    loop {
        let line_no = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                return Err(IngestError::Invalid {
                    row: line_no,
                    column: None,
                    reason: format!("malformed CSV: {e}"),
                });
            }
        }
        for ((spec, col), pos) in schema.columns.iter().zip(cols.iter_mut()).zip(&positions) {
            match pos.and_then(|p| record.get(p)).filter(|s| !s.is_empty()) {
                Some(text) => col
                    .text(text)
                    .map_err(|e| invalid(line_no, &spec.name, e))?,
                None if spec.nullable => col.null(),
                None => {
                    return Err(invalid(
                        line_no,
                        &spec.name,
                        "empty, and the column is not nullable",
                    ));
                }
            }
        }
        rows += 1;
    }
    finish(schema, cols, rows)
}

fn finish(schema: &DatasetSchema, cols: Vec<Col>, rows: usize) -> Result<RecordBatch, IngestError> {
    let arrays: Vec<ArrayRef> = cols.into_iter().map(Col::finish).collect();
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(logical_schema(schema), arrays, &options)
        .map_err(|e| IngestError::Unreadable(format!("building the batch: {e}")))
}

fn read_parquet(schema: &DatasetSchema, input: Bytes) -> Result<RecordBatch, IngestError> {
    let unreadable = |e: &dyn std::fmt::Display| IngestError::Unreadable(format!("Parquet: {e}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(input)
        .map_err(|e| unreadable(&e))?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| unreadable(&e))?;
    let target = logical_schema(schema);
    let mut out = Vec::new();
    let mut first_row = 1u64;
    for batch in reader {
        let batch = batch.map_err(|e| unreadable(&e))?;
        if let Some(unknown) = batch
            .schema()
            .fields()
            .iter()
            .find(|f| schema.column(f.name()).is_none())
        {
            return Err(invalid(
                1,
                unknown.name(),
                "is not a column of the dataset schema",
            ));
        }
        let mut columns = Vec::with_capacity(target.fields().len());
        for (field, spec) in target.fields().iter().zip(&schema.columns) {
            let Some(source) = batch.column_by_name(field.name()) else {
                if spec.nullable {
                    columns.push(arrow_array::new_null_array(
                        field.data_type(),
                        batch.num_rows(),
                    ));
                    continue;
                }
                return Err(invalid(
                    first_row,
                    field.name(),
                    "missing, and the column is not nullable",
                ));
            };
            let cast = cast_column(source, field.data_type())
                .map_err(|e| invalid(first_row, field.name(), e))?;
            for i in 0..cast.len() {
                if cast.is_null(i) && source.is_valid(i) {
                    let shown = arrow_cast::display::ArrayFormatter::try_new(
                        source.as_ref(),
                        &arrow_cast::display::FormatOptions::default(),
                    )
                    .map(|f| f.value(i).to_string())
                    .unwrap_or_default();
                    return Err(invalid(
                        first_row + i as u64,
                        field.name(),
                        format!("{shown:?} cannot be read as {}", spec_type(spec)),
                    ));
                }
                if cast.is_null(i) && !spec.nullable {
                    return Err(invalid(
                        first_row + i as u64,
                        field.name(),
                        "null, and the column is not nullable",
                    ));
                }
            }
            columns.push(cast);
        }
        let rows = batch.num_rows();
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows));
        out.push(
            RecordBatch::try_new_with_options(Arc::clone(&target), columns, &options)
                .map_err(|e| unreadable(&e))?,
        );
        first_row += rows as u64;
    }
    arrow_select::concat::concat_batches(&target, &out).map_err(|e| unreadable(&e))
}

fn spec_type(spec: &ColumnSpec) -> String {
    serde_json::to_value(spec.column_type)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Casts a Parquet input column to the declared type; values that do not convert become null
/// (and are then reported by row).
fn cast_column(source: &ArrayRef, to: &DataType) -> Result<ArrayRef, String> {
    if source.data_type() == to {
        return Ok(Arc::clone(source));
    }
    let options = arrow_cast::CastOptions {
        safe: true,
        ..Default::default()
    };
    arrow_cast::cast_with_options(source, to, &options).map_err(|e| {
        format!(
            "a {} column cannot be read as {to}: {e}",
            source.data_type()
        )
    })
}

/// Every non-null subject column value must be a valid subject id.
fn check_subjects(schema: &DatasetSchema, batch: &RecordBatch) -> Result<(), IngestError> {
    for name in &schema.subject_columns {
        let col = batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<arrow_array::StringArray>())
            .ok_or_else(|| IngestError::Unreadable(format!("subject column {name} missing")))?;
        for (i, v) in col.iter().enumerate() {
            if let Some(v) = v {
                SubjectId::parse(v).map_err(|e| invalid(i as u64 + 1, name, e.to_string()))?;
            }
        }
    }
    Ok(())
}
