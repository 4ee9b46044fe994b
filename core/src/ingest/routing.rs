//! Where a row is stored: the one place ingest decides a row's region.
//!
//! Today a row's region is the value of the dataset's `region_column`, which must be one of the
//! dataset's `regions` when it lists any. Residency policies (which jurisdictions may be stored
//! in which regions, GDPR Chapter V) plug in here.

use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::DataType;

use super::IngestError;
use crate::domain::DatasetSchema;

/// Checks every row of `batch` (logical schema) has a region it may be stored in.
///
/// # Errors
/// [`IngestError::Invalid`] naming the first row whose region is not allowed.
pub fn check(schema: &DatasetSchema, batch: &RecordBatch) -> Result<(), IngestError> {
    let Some(column) = &schema.region_column else {
        return Ok(());
    };
    if schema.regions.is_empty() {
        return Ok(());
    }
    let values = batch
        .column_by_name(column)
        .ok_or_else(|| IngestError::Unreadable(format!("region column {column} missing")))?;
    let text = arrow_cast::cast(values, &DataType::Utf8)
        .map_err(|e| IngestError::Unreadable(e.to_string()))?;
    let text = text
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8");
    for row in 0..text.len() {
        let region = text.is_valid(row).then(|| text.value(row));
        if !region.is_some_and(|r| schema.regions.iter().any(|a| a == r)) {
            return Err(IngestError::Invalid {
                row: row as u64 + 1,
                column: Some(column.clone()),
                reason: format!(
                    "region {:?} is not one of the dataset's regions ({})",
                    region.unwrap_or(""),
                    schema.regions.join(", ")
                ),
            });
        }
    }
    Ok(())
}
