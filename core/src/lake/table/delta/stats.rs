//! The `stats` of an `add` action for a file Lethe wrote: `numRecords`, `minValues`,
//! `maxValues` and `nullCount`, from the file's own footer (the row groups' statistics, which
//! the rewrite engine computed from the values kept).
//!
//! Source: Delta protocol, PROTOCOL.md "Per-file Statistics". A column is left out of
//! `minValues` / `maxValues` when a row group lacks its bounds, and out of `nullCount` when a
//! row group lacks its null count: readers then do not skip on it, which is always correct.
//! Bounds are given for top-level columns of primitive types: integers, floats, strings,
//! dates and timestamps. Timestamps are written with millisecond precision (as Spark and
//! delta-rs read them), the minimum rounded down and the maximum rounded up, so both stay
//! bounds. Booleans, binaries, decimals and nested columns get a null count only.

use std::cmp::Ordering;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, Schema, TimeUnit};
use chrono::{DateTime, NaiveDate};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::file::metadata::ParquetMetaData;
use serde_json::{Map, Value, json};

/// One bound, comparable within a column.
#[derive(Debug, Clone, PartialEq)]
enum Bound {
    Int(i128),
    Float(f64),
    Str(String),
    /// Days since the epoch.
    Date(i32),
    /// Microseconds since the epoch, UTC.
    Micros(i64),
}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (Bound::Int(a), Bound::Int(b)) => a.partial_cmp(b),
            (Bound::Float(a), Bound::Float(b)) => a.partial_cmp(b),
            (Bound::Str(a), Bound::Str(b)) => a.partial_cmp(b),
            (Bound::Date(a), Bound::Date(b)) => a.partial_cmp(b),
            (Bound::Micros(a), Bound::Micros(b)) => a.partial_cmp(b),
            _ => None,
        }
    }
}

/// Which end of the range a bound is (decides the rounding of timestamps).
#[derive(Clone, Copy)]
enum End {
    Min,
    Max,
}

impl Bound {
    fn to_json(&self, end: End) -> Option<Value> {
        Some(match self {
            Bound::Int(v) => json!(
                i64::try_from(*v)
                    .ok()
                    .map(Value::from)
                    .unwrap_or_else(|| Value::from(u64::try_from(*v).unwrap_or(u64::MAX)))
            ),
            Bound::Float(v) if v.is_finite() => json!(v),
            Bound::Float(_) => return None,
            Bound::Str(s) => json!(s),
            Bound::Date(days) => {
                let date = NaiveDate::from_ymd_opt(1970, 1, 1)?
                    .checked_add_signed(chrono::Duration::days(i64::from(*days)))?;
                json!(date.format("%Y-%m-%d").to_string())
            }
            Bound::Micros(us) => {
                let ms = match end {
                    End::Min => us.div_euclid(1000),
                    End::Max => us.div_euclid(1000) + i64::from(us.rem_euclid(1000) != 0),
                };
                let at = DateTime::from_timestamp_millis(ms)?;
                json!(at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            }
        })
    }
}

/// The bound at `i` of a statistics array (`None`: null or a type without bounds).
fn bound_at(array: &ArrayRef, i: usize) -> Option<Bound> {
    if array.is_null(i) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Int8 => Bound::Int(array.as_primitive::<Int8Type>().value(i).into()),
        DataType::Int16 => Bound::Int(array.as_primitive::<Int16Type>().value(i).into()),
        DataType::Int32 => Bound::Int(array.as_primitive::<Int32Type>().value(i).into()),
        DataType::Int64 => Bound::Int(array.as_primitive::<Int64Type>().value(i).into()),
        DataType::UInt8 => Bound::Int(array.as_primitive::<UInt8Type>().value(i).into()),
        DataType::UInt16 => Bound::Int(array.as_primitive::<UInt16Type>().value(i).into()),
        DataType::UInt32 => Bound::Int(array.as_primitive::<UInt32Type>().value(i).into()),
        DataType::UInt64 => Bound::Int(array.as_primitive::<UInt64Type>().value(i).into()),
        DataType::Float32 => Bound::Float(array.as_primitive::<Float32Type>().value(i).into()),
        DataType::Float64 => Bound::Float(array.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => Bound::Str(array.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Bound::Str(array.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Bound::Str(array.as_string_view().value(i).to_string()),
        DataType::Date32 => Bound::Date(array.as_primitive::<Date32Type>().value(i)),
        DataType::Timestamp(unit, _) => Bound::Micros(match unit {
            TimeUnit::Second => array
                .as_primitive::<TimestampSecondType>()
                .value(i)
                .checked_mul(1_000_000)?,
            TimeUnit::Millisecond => array
                .as_primitive::<TimestampMillisecondType>()
                .value(i)
                .checked_mul(1000)?,
            TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(i),
            TimeUnit::Nanosecond => array
                .as_primitive::<TimestampNanosecondType>()
                .value(i)
                .div_euclid(1000),
        }),
        _ => return None,
    })
}

/// The lowest (`End::Min`) or highest bound over the row groups holding a non-null value, or
/// `None` when one of them has no bound.
fn fold(array: &ArrayRef, all_null: &[bool], end: End) -> Option<Bound> {
    let mut best: Option<Bound> = None;
    for (i, &skip) in all_null.iter().enumerate() {
        if skip {
            continue;
        }
        let b = bound_at(array, i)?;
        best = Some(match best {
            None => b,
            Some(cur) => {
                let ord = b.partial_cmp(&cur)?;
                match (end, ord) {
                    (End::Min, Ordering::Less) | (End::Max, Ordering::Greater) => b,
                    _ => cur,
                }
            }
        });
    }
    best
}

/// The `stats` JSON string of an `add` action for a Parquet file with footer `md` and Arrow
/// schema `schema` (PROTOCOL.md "Per-file Statistics"): `numRecords` (the row groups' row
/// counts), and per top-level column `nullCount`, `minValues`, `maxValues` where every row
/// group's footer gives them. Partition columns are not in the file and get no statistics.
pub(crate) fn add_stats(md: &ParquetMetaData, schema: &Schema) -> String {
    let row_groups = md.row_groups();
    let rows: Vec<i64> = row_groups.iter().map(|rg| rg.num_rows()).collect();
    let num_records: i64 = rows.iter().sum();
    let mut mins = Map::new();
    let mut maxes = Map::new();
    let mut nulls = Map::new();
    for field in schema.fields() {
        if field.data_type().is_nested() {
            continue;
        }
        let Ok(converter) =
            StatisticsConverter::try_new(field.name(), schema, md.file_metadata().schema_descr())
        else {
            continue;
        };
        let Ok(null_counts) = converter.row_group_null_counts(row_groups.iter()) else {
            continue;
        };
        if null_counts.null_count() > 0 {
            continue;
        }
        let all_null: Vec<bool> = null_counts
            .values()
            .iter()
            .zip(&rows)
            .map(|(&n, &r)| i64::try_from(n).is_ok_and(|n| n == r))
            .collect();
        nulls.insert(
            field.name().clone(),
            json!(null_counts.values().iter().sum::<u64>()),
        );
        if all_null.iter().all(|&b| b) {
            continue;
        }
        let (Ok(min), Ok(max)) = (
            converter.row_group_mins(row_groups.iter()),
            converter.row_group_maxes(row_groups.iter()),
        ) else {
            continue;
        };
        if let (Some(lo), Some(hi)) = (
            fold(&min, &all_null, End::Min).and_then(|b| b.to_json(End::Min)),
            fold(&max, &all_null, End::Max).and_then(|b| b.to_json(End::Max)),
        ) {
            mins.insert(field.name().clone(), lo);
            maxes.insert(field.name().clone(), hi);
        }
    }
    json!({
        "numRecords": num_records,
        "minValues": mins,
        "maxValues": maxes,
        "nullCount": nulls,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_bounds_round_outwards_to_milliseconds() {
        let b = Bound::Micros(1_736_229_600_000_001);
        assert_eq!(
            b.to_json(End::Min).unwrap(),
            json!("2025-01-07T06:00:00.000Z")
        );
        assert_eq!(
            b.to_json(End::Max).unwrap(),
            json!("2025-01-07T06:00:00.001Z")
        );
        assert_eq!(
            Bound::Date(20095).to_json(End::Min).unwrap(),
            json!("2025-01-07")
        );
        assert!(Bound::Float(f64::NAN).to_json(End::Max).is_none());
    }
}
