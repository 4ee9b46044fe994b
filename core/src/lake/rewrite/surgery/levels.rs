//! One leaf column of a row group filtered at Parquet's physical level: its values with their
//! definition and repetition levels read with the typed column reader, the removed records
//! dropped (records start at repetition level 0), edited cells replaced, and the rest written
//! with the typed column writer of the same physical type. Nothing goes through Arrow, so
//! INT96, FIXED_LEN_BYTE_ARRAY, legacy lists and maps, and unknown logical types come out as
//! they went in.

use std::collections::HashMap;

use parquet::column::reader::{ColumnReader, get_typed_column_reader};
use parquet::column::writer::ColumnWriterImpl;
use parquet::data_type::{
    BoolType, ByteArrayType, DataType, DoubleType, FixedLenByteArrayType, FloatType, Int32Type,
    Int64Type, Int96Type,
};
use parquet::errors::ParquetError;
use parquet::schema::types::ColumnDescriptor;

use super::values::PhysValue;

/// Records decoded per read.
const RECORDS_PER_READ: usize = 64 * 1024;

/// A physical type whose values an edit can hold.
pub(crate) trait FromPhys: DataType {
    /// `v` as a value of this type, `None` when it is of another type.
    fn from_phys(v: &PhysValue) -> Option<Self::T>;
}

macro_rules! from_phys {
    ($t:ty, $variant:ident) => {
        impl FromPhys for $t {
            fn from_phys(v: &PhysValue) -> Option<Self::T> {
                match v {
                    PhysValue::$variant(x) => Some(x.clone()),
                    _ => None,
                }
            }
        }
    };
}
from_phys!(BoolType, Bool);
from_phys!(Int32Type, I32);
from_phys!(Int64Type, I64);
from_phys!(Int96Type, I96);
from_phys!(FloatType, F32);
from_phys!(DoubleType, F64);
from_phys!(ByteArrayType, Bytes);
from_phys!(FixedLenByteArrayType, Fixed);

/// What to do with one leaf column of a row group.
pub(crate) struct ColumnPlan<'a> {
    /// Per record of the row group: kept or not.
    pub keep: &'a [bool],
    /// Records whose cell is set (top-level, non-repeated columns only) → new value
    /// (`None`: null).
    pub edits: Option<&'a HashMap<usize, Option<PhysValue>>>,
}

/// Copies the kept records of one column chunk from `reader` to `writer`, applying the
/// plan's edits. Returns the number of records read.
///
/// # Errors
/// The reader's or writer's errors; an edit of a repeated column, a null set in a required
/// column, or an edit value of another physical type.
pub(crate) fn filter_column<T: FromPhys>(
    reader: ColumnReader,
    writer: &mut ColumnWriterImpl<'_, T>,
    descr: &ColumnDescriptor,
    plan: &ColumnPlan<'_>,
) -> Result<usize, ParquetError> {
    let mut reader = get_typed_column_reader::<T>(reader);
    let max_def = descr.max_def_level();
    let max_rep = descr.max_rep_level();
    if plan.edits.is_some() && max_rep > 0 {
        return Err(ParquetError::General(format!(
            "column {:?} is repeated; only top-level columns can be set",
            descr.path().string()
        )));
    }
    let mut defs: Vec<i16> = Vec::new();
    let mut reps: Vec<i16> = Vec::new();
    let mut values: Vec<T::T> = Vec::new();
    let (mut out_defs, mut out_reps, mut out_values) = (Vec::new(), Vec::new(), Vec::new());
    let mut record = 0usize;
    loop {
        defs.clear();
        reps.clear();
        values.clear();
        let (records, _values, levels) = reader.read_records(
            RECORDS_PER_READ,
            (max_def > 0).then_some(&mut defs),
            (max_rep > 0).then_some(&mut reps),
            &mut values,
        )?;
        if records == 0 && levels == 0 {
            break;
        }
        let levels = if max_def > 0 || max_rep > 0 {
            levels
        } else {
            records
        };
        if plan.edits.is_none() {
            record = copy_kept_runs(
                writer,
                descr,
                plan.keep,
                record,
                (levels, &defs, &reps, &values),
            )?;
            continue;
        }
        out_defs.clear();
        out_reps.clear();
        out_values.clear();
        let mut next_value = values.iter();
        // The record the current level belongs to (`record` counts records started).
        let mut current = record;
        for level in 0..levels {
            if max_rep == 0 || reps[level] == 0 {
                current = record;
                record += 1;
            }
            let has_value = max_def == 0 || defs[level] == max_def;
            let value = if has_value { next_value.next() } else { None };
            if has_value && value.is_none() {
                return Err(ParquetError::General(format!(
                    "column {:?}: fewer values than its definition levels say",
                    descr.path().string()
                )));
            }
            if !plan.keep.get(current).copied().unwrap_or(true) {
                continue;
            }
            if let Some(edit) = plan.edits.and_then(|e| e.get(&current)) {
                match edit {
                    Some(v) => {
                        let v = T::from_phys(v).ok_or_else(|| {
                            ParquetError::General(format!(
                                "column {:?}: the new value is not a {}",
                                descr.path().string(),
                                descr.physical_type()
                            ))
                        })?;
                        out_values.push(v);
                        if max_def > 0 {
                            out_defs.push(max_def);
                        }
                    }
                    None if max_def == 0 => {
                        return Err(ParquetError::General(format!(
                            "column {:?} is required; it cannot be set to null",
                            descr.path().string()
                        )));
                    }
                    None => out_defs.push(max_def - 1),
                }
                continue;
            }
            if max_def > 0 {
                out_defs.push(defs[level]);
            }
            if max_rep > 0 {
                out_reps.push(reps[level]);
            }
            if let Some(v) = value {
                out_values.push(v.clone());
            }
        }
        if next_value.next().is_some() {
            return Err(ParquetError::General(format!(
                "column {:?}: more values than its definition levels say",
                descr.path().string()
            )));
        }
        if !out_values.is_empty() || !out_defs.is_empty() {
            writer.write_batch(
                &out_values,
                (max_def > 0).then_some(out_defs.as_slice()),
                (max_rep > 0).then_some(out_reps.as_slice()),
            )?;
        }
    }
    Ok(record)
}

/// Writes the kept records of one read (`levels` levels starting at record `first`) as runs
/// of whole slices, without copying values one by one: erasures remove few rows, so a read is
/// a handful of long kept runs. Returns the number of records seen after this read.
///
/// # Errors
/// The writer's errors; more or fewer values than the definition levels say.
fn copy_kept_runs<T: FromPhys>(
    writer: &mut ColumnWriterImpl<'_, T>,
    descr: &ColumnDescriptor,
    keep: &[bool],
    first: usize,
    (levels, defs, reps, values): (usize, &[i16], &[i16], &[T::T]),
) -> Result<usize, ParquetError> {
    let max_def = descr.max_def_level();
    let max_rep = descr.max_rep_level();
    let kept = |record: usize| keep.get(record).copied().unwrap_or(true);
    let mut flush = |levels: std::ops::Range<usize>, vals: std::ops::Range<usize>| {
        if levels.is_empty() {
            return Ok::<_, ParquetError>(());
        }
        let d = (max_def > 0).then(|| &defs[levels.clone()]);
        let r = (max_rep > 0).then(|| &reps[levels]);
        writer.write_batch(&values[vals], d, r)?;
        Ok(())
    };
    let mut record = first;
    // The run being kept or skipped: its first level and first value, and whether it is kept.
    let (mut run_level, mut run_value, mut run_kept) = (0usize, 0usize, true);
    let mut value = 0usize;
    for level in 0..levels {
        if max_rep == 0 || reps[level] == 0 {
            let k = kept(record);
            if level == 0 {
                run_kept = k;
            } else if k != run_kept {
                if run_kept {
                    flush(run_level..level, run_value..value)?;
                }
                (run_level, run_value, run_kept) = (level, value, k);
            }
            record += 1;
        }
        if max_def == 0 || defs[level] == max_def {
            value += 1;
        }
    }
    if value != values.len() {
        return Err(ParquetError::General(format!(
            "column {:?}: {} values where its definition levels say {value}",
            descr.path().string(),
            values.len()
        )));
    }
    if run_kept {
        flush(run_level..levels, run_value..value)?;
    }
    Ok(record)
}
