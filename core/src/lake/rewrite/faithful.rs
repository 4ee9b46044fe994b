//! Can a file be rewritten with the Arrow writer without changing its schema or values?
//!
//! The rewrite reads a file into Arrow and writes it back with the file's *own* Parquet schema
//! (`ArrowWriterOptions::with_parquet_schema`), so names, logical and converted types, field ids
//! and repetition survive. That is only sound when, for every leaf column, the Arrow type the
//! reader produced maps back to the same physical type, the same fixed length and the same
//! definition / repetition levels as in the file; otherwise values or nesting would change (or
//! the writer would fail half-way). A few types are lossy on the read side and are refused
//! outright: INT96 (the writer cannot write it) and INTERVAL (read without its month field).

use arrow_schema::Schema;
use parquet::arrow::ArrowSchemaConverter;
use parquet::basic::{ConvertedType, LogicalType, Type as PhysicalType};
use parquet::schema::types::{ColumnDescriptor, SchemaDescriptor};

use crate::lake::error::LakeError;

/// Checks that `arrow` (the schema the reader produced for the file) writes back to exactly the
/// leaves of `parquet` (the file's schema).
///
/// # Errors
/// [`LakeError::Unsupported`] naming the first column that would not survive and why.
pub(crate) fn check(
    file: &str,
    parquet: &SchemaDescriptor,
    arrow: &Schema,
) -> Result<(), LakeError> {
    let refuse = |reason: String| LakeError::Unsupported {
        file: file.to_string(),
        reason,
    };
    for col in parquet.columns() {
        let path = col.path().string();
        if col.physical_type() == PhysicalType::INT96 {
            return Err(refuse(format!(
                "column {path:?} is INT96 (legacy timestamp), which the Arrow writer cannot write back"
            )));
        }
        if col.converted_type() == ConvertedType::INTERVAL {
            return Err(refuse(format!(
                "column {path:?} is an INTERVAL, which Arrow reads without its month field"
            )));
        }
    }
    let natural = ArrowSchemaConverter::new()
        .convert(arrow)
        .map_err(|e| refuse(format!("its Arrow schema cannot be written back: {e}")))?;
    if natural.num_columns() != parquet.num_columns() {
        return Err(refuse(format!(
            "the file has {} leaf columns but its Arrow form writes {} (legacy or unusual nesting)",
            parquet.num_columns(),
            natural.num_columns()
        )));
    }
    for (orig, back) in parquet.columns().iter().zip(natural.columns()) {
        let path = orig.path().string();
        if decimal_written_back(orig, back) {
            // Same levels are still required below.
        } else if orig.physical_type() != back.physical_type() {
            return Err(refuse(format!(
                "column {path:?} is {} but would be written back as {} (Arrow type {:?})",
                orig.physical_type(),
                back.physical_type(),
                arrow_type_of(arrow, orig.path().parts()),
            )));
        }
        if orig.physical_type() == PhysicalType::FIXED_LEN_BYTE_ARRAY
            && back.physical_type() == PhysicalType::FIXED_LEN_BYTE_ARRAY
            && orig.type_length() != back.type_length()
        {
            return Err(refuse(format!(
                "column {path:?} is FIXED_LEN_BYTE_ARRAY({}) but would be written back with length {}",
                orig.type_length(),
                back.type_length()
            )));
        }
        if orig.max_def_level() != back.max_def_level()
            || orig.max_rep_level() != back.max_rep_level()
        {
            return Err(refuse(format!(
                "column {path:?} has definition/repetition levels {}/{} but its Arrow form has {}/{} \
                 (legacy nested layout)",
                orig.max_def_level(),
                orig.max_rep_level(),
                back.max_def_level(),
                back.max_rep_level()
            )));
        }
    }
    Ok(())
}

/// True when `orig` is a decimal the writer reproduces exactly although its natural layout
/// (`back`) differs: the writer converts Arrow decimals to the column's own physical type —
/// INT32 / INT64 always, FIXED_LEN_BYTE_ARRAY when its length is the minimal one for the
/// precision (the writer always writes that many bytes). BYTE_ARRAY decimals are not writable.
fn decimal_written_back(orig: &ColumnDescriptor, back: &ColumnDescriptor) -> bool {
    let is_decimal = |c: &ColumnDescriptor| {
        matches!(c.logical_type_ref(), Some(LogicalType::Decimal { .. }))
            || c.converted_type() == ConvertedType::DECIMAL
    };
    if !is_decimal(orig) || !is_decimal(back) || orig.type_precision() != back.type_precision() {
        return false;
    }
    match orig.physical_type() {
        PhysicalType::INT32 | PhysicalType::INT64 => true,
        PhysicalType::FIXED_LEN_BYTE_ARRAY => {
            usize::try_from(orig.type_length()).ok()
                == Some(minimal_decimal_length(orig.type_precision()))
        }
        _ => false,
    }
}

/// Bytes of the smallest two's-complement integer holding every decimal of `precision` digits
/// (the same rule as the Parquet writer's `decimal_length_from_precision`).
fn minimal_decimal_length(precision: i32) -> usize {
    (((10.0_f64.powi(precision) + 1.0).log2() + 1.0) / 8.0).ceil() as usize
}

/// The Arrow type of the top-level field a leaf belongs to (for messages only).
fn arrow_type_of(arrow: &Schema, parts: &[String]) -> String {
    parts
        .first()
        .and_then(|name| arrow.field_with_name(name).ok())
        .map(|f| f.data_type().to_string())
        .unwrap_or_else(|| "unknown".into())
}
