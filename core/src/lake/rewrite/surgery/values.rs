//! New cell values in a column's own physical type: an Arrow cell (typed as the reader maps
//! the column) encoded as the Parquet physical value the column stores, so a rectified or
//! nulled cell is written exactly as the original writer would have (INT96 stays INT96,
//! FIXED_LEN_BYTE_ARRAY keeps its length).
//!
//! Sources: the Parquet format spec, `LogicalTypes.md` (decimals as big-endian two's
//! complement, INT96 as nanoseconds of the day + Julian day, FLOAT16 as little-endian bytes).

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};
use parquet::basic::Type as PhysicalType;
use parquet::data_type::{ByteArray, FixedLenByteArray, Int96};
use parquet::schema::types::ColumnDescriptor;

/// One physical Parquet value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PhysValue {
    /// BOOLEAN.
    Bool(bool),
    /// INT32.
    I32(i32),
    /// INT64.
    I64(i64),
    /// INT96 (legacy timestamp).
    I96(Int96),
    /// FLOAT.
    F32(f32),
    /// DOUBLE.
    F64(f64),
    /// BYTE_ARRAY.
    Bytes(ByteArray),
    /// FIXED_LEN_BYTE_ARRAY.
    Fixed(FixedLenByteArray),
}

/// Julian day number of 1970-01-01 (the INT96 epoch offset).
const JULIAN_DAY_OF_EPOCH: i64 = 2_440_588;
const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// An INT96 timestamp from nanoseconds since the Unix epoch.
fn int96_from_nanos(nanos: i64) -> Int96 {
    let days = nanos.div_euclid(NANOS_PER_DAY) + JULIAN_DAY_OF_EPOCH;
    let of_day = nanos.rem_euclid(NANOS_PER_DAY) as u64;
    let mut v = Int96::new();
    v.set_data(of_day as u32, (of_day >> 32) as u32, days as u32);
    v
}

/// Big-endian two's complement of `v` in exactly `len` bytes.
fn decimal_bytes(v: i128, len: usize) -> Result<Vec<u8>, String> {
    let full = v.to_be_bytes();
    if len >= 16 {
        let fill = if v < 0 { 0xff } else { 0 };
        let mut out = vec![fill; len - 16];
        out.extend_from_slice(&full);
        return Ok(out);
    }
    let (head, tail) = full.split_at(16 - len);
    let fill = if v < 0 { 0xff } else { 0 };
    let sign_ok = tail.first().is_some_and(|b| (b & 0x80 != 0) == (v < 0));
    if head.iter().any(|b| *b != fill) || !sign_ok {
        return Err(format!("the decimal does not fit in {len} bytes"));
    }
    Ok(tail.to_vec())
}

/// The smallest big-endian two's complement of `v` (BYTE_ARRAY decimals).
fn minimal_decimal_bytes(v: i128) -> Vec<u8> {
    (1..=16)
        .find_map(|len| decimal_bytes(v, len).ok())
        .unwrap_or_else(|| v.to_be_bytes().to_vec())
}

/// Cell `row` of `array` as the physical value of column `descr` (`None`: the cell is null).
///
/// # Errors
/// A sentence naming the Arrow and physical types when the value has no faithful encoding in
/// the column (e.g. a value out of range, or a combination not written by any writer).
pub(crate) fn physical_value(
    array: &ArrayRef,
    row: usize,
    descr: &ColumnDescriptor,
) -> Result<Option<PhysValue>, String> {
    // A `NullArray` has no validity buffer: `is_null` says false for its cells.
    if array.data_type() == &DataType::Null || array.is_null(row) {
        return Ok(None);
    }
    let physical = descr.physical_type();
    let unsupported = || {
        format!(
            "a {} value cannot be written to a {physical} column",
            array.data_type()
        )
    };
    let int32 = |v: i64| {
        i32::try_from(v)
            .map(PhysValue::I32)
            .map_err(|_| format!("{v} does not fit the INT32 column"))
    };
    let value = match (physical, array.data_type()) {
        (PhysicalType::BOOLEAN, DataType::Boolean) => {
            PhysValue::Bool(array.as_boolean().value(row))
        }
        (PhysicalType::INT32, DataType::Int8) => {
            int32(array.as_primitive::<Int8Type>().value(row).into())?
        }
        (PhysicalType::INT32, DataType::Int16) => {
            int32(array.as_primitive::<Int16Type>().value(row).into())?
        }
        (PhysicalType::INT32, DataType::Int32) => {
            PhysValue::I32(array.as_primitive::<Int32Type>().value(row))
        }
        (PhysicalType::INT32, DataType::UInt8) => {
            int32(array.as_primitive::<UInt8Type>().value(row).into())?
        }
        (PhysicalType::INT32, DataType::UInt16) => {
            int32(array.as_primitive::<UInt16Type>().value(row).into())?
        }
        // UINT_32 is stored as the same 32 bits in an INT32.
        (PhysicalType::INT32, DataType::UInt32) => {
            PhysValue::I32(array.as_primitive::<UInt32Type>().value(row) as i32)
        }
        (PhysicalType::INT32, DataType::Date32) => {
            PhysValue::I32(array.as_primitive::<Date32Type>().value(row))
        }
        (PhysicalType::INT32, DataType::Time32(_)) => {
            let cast = arrow_cast::cast(array, &DataType::Int32).map_err(|e| e.to_string())?;
            PhysValue::I32(cast.as_primitive::<Int32Type>().value(row))
        }
        (PhysicalType::INT32, DataType::Decimal128(_, _)) => {
            let v = array.as_primitive::<Decimal128Type>().value(row);
            PhysValue::I32(i32::try_from(v).map_err(|_| unsupported())?)
        }
        (PhysicalType::INT64, DataType::Int64) => {
            PhysValue::I64(array.as_primitive::<Int64Type>().value(row))
        }
        (PhysicalType::INT64, DataType::UInt64) => {
            PhysValue::I64(array.as_primitive::<UInt64Type>().value(row) as i64)
        }
        (
            PhysicalType::INT64,
            DataType::Timestamp(_, _)
            | DataType::Time64(_)
            | DataType::Date64
            | DataType::Duration(_),
        ) => {
            let cast = arrow_cast::cast(array, &DataType::Int64).map_err(|e| e.to_string())?;
            PhysValue::I64(cast.as_primitive::<Int64Type>().value(row))
        }
        (PhysicalType::INT64, DataType::Decimal128(_, _)) => {
            let v = array.as_primitive::<Decimal128Type>().value(row);
            PhysValue::I64(i64::try_from(v).map_err(|_| unsupported())?)
        }
        (PhysicalType::INT96, DataType::Timestamp(unit, _)) => {
            let cast = arrow_cast::cast(array, &DataType::Int64).map_err(|e| e.to_string())?;
            let v = cast.as_primitive::<Int64Type>().value(row);
            let per_unit: i64 = match unit {
                TimeUnit::Second => 1_000_000_000,
                TimeUnit::Millisecond => 1_000_000,
                TimeUnit::Microsecond => 1_000,
                TimeUnit::Nanosecond => 1,
            };
            let nanos = v
                .checked_mul(per_unit)
                .ok_or_else(|| format!("{v} is out of the INT96 timestamp range"))?;
            PhysValue::I96(int96_from_nanos(nanos))
        }
        (PhysicalType::FLOAT, DataType::Float32) => {
            PhysValue::F32(array.as_primitive::<Float32Type>().value(row))
        }
        (PhysicalType::DOUBLE, DataType::Float64) => {
            PhysValue::F64(array.as_primitive::<Float64Type>().value(row))
        }
        (PhysicalType::BYTE_ARRAY, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => {
            let cast = arrow_cast::cast(array, &DataType::Utf8).map_err(|e| e.to_string())?;
            PhysValue::Bytes(ByteArray::from(
                cast.as_string::<i32>().value(row).as_bytes().to_vec(),
            ))
        }
        (
            PhysicalType::BYTE_ARRAY,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView,
        ) => {
            let cast = arrow_cast::cast(array, &DataType::Binary).map_err(|e| e.to_string())?;
            PhysValue::Bytes(ByteArray::from(cast.as_binary::<i32>().value(row).to_vec()))
        }
        (PhysicalType::BYTE_ARRAY, DataType::Decimal128(_, _)) => {
            let v = array.as_primitive::<Decimal128Type>().value(row);
            PhysValue::Bytes(ByteArray::from(minimal_decimal_bytes(v)))
        }
        (PhysicalType::FIXED_LEN_BYTE_ARRAY, DataType::FixedSizeBinary(n))
            if *n == descr.type_length() =>
        {
            let v = array.as_fixed_size_binary().value(row);
            PhysValue::Fixed(FixedLenByteArray::from(v.to_vec()))
        }
        (PhysicalType::FIXED_LEN_BYTE_ARRAY, DataType::Decimal128(_, _)) => {
            let v = array.as_primitive::<Decimal128Type>().value(row);
            let len = usize::try_from(descr.type_length()).map_err(|_| unsupported())?;
            PhysValue::Fixed(FixedLenByteArray::from(decimal_bytes(v, len)?))
        }
        (PhysicalType::FIXED_LEN_BYTE_ARRAY, DataType::Float16) if descr.type_length() == 2 => {
            let v = array.as_primitive::<Float16Type>().value(row);
            PhysValue::Fixed(FixedLenByteArray::from(v.to_le_bytes().to_vec()))
        }
        _ => return Err(unsupported()),
    };
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Decimal128Array, StringArray, TimestampNanosecondArray};
    use parquet::basic::Repetition;
    use parquet::schema::types::{ColumnPath, Type};
    use std::sync::Arc;

    fn descr(physical: PhysicalType, length: i32) -> ColumnDescriptor {
        let t = Type::primitive_type_builder("c", physical)
            .with_repetition(Repetition::OPTIONAL)
            .with_length(length)
            .build()
            .unwrap();
        ColumnDescriptor::new(Arc::new(t), 1, 0, ColumnPath::from("c"))
    }

    #[test]
    fn int96_encodes_nanoseconds_of_the_day_and_the_julian_day() {
        // 2025-01-07T00:00:01Z
        let nanos = 1_736_208_001_000_000_000_i64;
        let v = int96_from_nanos(nanos);
        assert_eq!(v.data()[2], 2_460_683, "Julian day of 2025-01-07");
        assert_eq!(
            u64::from(v.data()[0]) | (u64::from(v.data()[1]) << 32),
            1_000_000_000
        );
        let array: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![nanos]));
        let got = physical_value(&array, 0, &descr(PhysicalType::INT96, 0)).unwrap();
        assert_eq!(got, Some(PhysValue::I96(v)));
    }

    #[test]
    fn decimals_take_the_columns_fixed_length_in_twos_complement() {
        let array: ArrayRef = Arc::new(
            Decimal128Array::from(vec![-2_i128, 300])
                .with_precision_and_scale(9, 2)
                .unwrap(),
        );
        let d = descr(PhysicalType::FIXED_LEN_BYTE_ARRAY, 4);
        assert_eq!(
            physical_value(&array, 0, &d).unwrap(),
            Some(PhysValue::Fixed(vec![0xff, 0xff, 0xff, 0xfe].into()))
        );
        assert_eq!(
            physical_value(&array, 1, &d).unwrap(),
            Some(PhysValue::Fixed(vec![0, 0, 1, 0x2c].into()))
        );
        assert_eq!(minimal_decimal_bytes(300), vec![1, 0x2c]);
        assert_eq!(minimal_decimal_bytes(-1), vec![0xff]);
        assert!(decimal_bytes(300, 1).is_err());
    }

    #[test]
    fn a_value_of_another_kind_is_refused_with_both_types_named() {
        let array: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        let e = physical_value(&array, 0, &descr(PhysicalType::INT64, 0)).unwrap_err();
        assert!(e.contains("Utf8") && e.contains("INT64"), "{e}");
        let nulls: ArrayRef = Arc::new(StringArray::from(vec![None::<&str>]));
        assert_eq!(
            physical_value(&nulls, 0, &descr(PhysicalType::INT64, 0)).unwrap(),
            None
        );
        let nulls: ArrayRef = Arc::new(arrow_array::NullArray::new(2));
        assert_eq!(
            physical_value(&nulls, 1, &descr(PhysicalType::BYTE_ARRAY, 0)).unwrap(),
            None
        );
    }
}
