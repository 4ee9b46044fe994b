//! Where a row is stored: the one place ingest decides a row's region, and checks it against
//! residency policies (GDPR Chapter V).
//!
//! - A row's region is the value of the dataset's `region_column`. It must be one of the
//!   dataset's regions (`regions`, else the keys of `region_roots`) when it has any.
//! - It must be allowed by the residency policy of the jurisdiction of each subject of the row
//!   (every subject column). A subject's jurisdiction is the recorded one; a subject without one
//!   takes the value of the row's `jurisdiction_column`, if the dataset declares one (recorded
//!   once the batch is accepted). A subject without jurisdiction, and a jurisdiction without a
//!   policy, are not restricted.
//! - One row that breaks a rule refuses the whole batch ([`IngestError::Invalid`], naming the
//!   row and the column; never a subject id), so nothing is written.
//!
//! Ingest then writes each row under its region's root ([`crate::store::Dataset::root_for`]).

use std::collections::{BTreeSet, HashMap};

use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::DataType;

use super::IngestError;
use crate::domain::{DatasetSchema, Jurisdiction};
use crate::keyring::Keyring;
use crate::lake::subject_values;
use crate::store::{Jurisdictions, PolicyBook, Store};

/// What routing learned about a batch it accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    /// Jurisdictions read from the jurisdiction column for subjects who had none recorded, as
    /// `(subject id, jurisdiction)`: to record once the batch is written.
    pub learned: Vec<(String, String)>,
}

/// Checks every row of `batch` (logical schema) has a region of the dataset.
///
/// # Errors
/// [`IngestError::Invalid`] naming the first row whose region is not one of the dataset's.
pub fn check(schema: &DatasetSchema, batch: &RecordBatch) -> Result<(), IngestError> {
    let Some(column) = &schema.region_column else {
        return Ok(());
    };
    let regions = schema.dataset_regions();
    if regions.is_empty() {
        return Ok(());
    }
    let text = text(batch, column)?;
    for row in 0..text.len() {
        let region = text.is_valid(row).then(|| text.value(row));
        if !region.is_some_and(|r| regions.iter().any(|a| a == r)) {
            return Err(IngestError::Invalid {
                row: row as u64 + 1,
                column: Some(column.clone()),
                reason: format!(
                    "region {:?} is not one of the dataset's regions ({})",
                    region.unwrap_or(""),
                    regions.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// Checks every row of `batch` (logical schema) has a region of the dataset that the
/// residency policies of its subjects' jurisdictions allow (see the module docs).
///
/// # Errors
/// [`IngestError::Invalid`] naming the first row (and column) breaking a rule: a region not of
/// the dataset, an invalid jurisdiction, a jurisdiction differing from the subject's recorded
/// one or from another row of the same subject, a region the policy does not allow;
/// [`IngestError::Store`] when the database fails.
pub async fn route(
    store: &Store,
    keyring: &Keyring,
    schema: &DatasetSchema,
    batch: &RecordBatch,
) -> Result<Routing, IngestError> {
    check(schema, batch)?;
    let policies = PolicyBook::load(store).await?;
    let restricts = !policies.is_empty() && schema.region_column.is_some();
    if !restricts && schema.jurisdiction_column.is_none() {
        return Ok(Routing::default());
    }
    let mut columns: Vec<StringArray> = Vec::new();
    for c in &schema.subject_columns {
        if let Some(values) =
            subject_values(batch, c).map_err(|e| IngestError::Unreadable(e.to_string()))?
        {
            columns.push(values);
        }
    }
    let subjects: BTreeSet<&str> = columns.iter().flat_map(|c| c.iter().flatten()).collect();
    let mut recorded = Jurisdictions::new(store, keyring);
    recorded.resolve(subjects.iter().copied()).await?;

    let mut learned: HashMap<String, String> = HashMap::new();
    if let Some(column) = &schema.jurisdiction_column {
        let values = text(batch, column)?;
        let primary = &columns[0];
        for row in 0..values.len() {
            if values.is_null(row) || values.value(row).trim().is_empty() || primary.is_null(row) {
                continue;
            }
            let invalid = |reason: String| IngestError::Invalid {
                row: row as u64 + 1,
                column: Some(column.clone()),
                reason,
            };
            let given =
                Jurisdiction::parse(values.value(row)).map_err(|e| invalid(e.to_string()))?;
            let subject = primary.value(row);
            match (recorded.get(subject), learned.get(subject)) {
                (Some(known), _) if known != given.as_str() => {
                    return Err(invalid(format!(
                        "jurisdiction {given} differs from the data subject's recorded jurisdiction {known} \
                         (an admin changes it with PUT /v1/subjects/{{subject_id}}/jurisdiction)"
                    )));
                }
                (Some(_), _) => {}
                (None, Some(earlier)) if earlier != given.as_str() => {
                    return Err(invalid(format!(
                        "the data subject's rows name two jurisdictions, {earlier} and {given}"
                    )));
                }
                (None, _) => {
                    learned.insert(subject.to_string(), given.as_str().to_string());
                }
            }
        }
    }

    if restricts {
        let column = schema.region_column.as_ref().expect("restricts needs it");
        let regions = text(batch, column)?;
        for row in 0..regions.len() {
            let region = regions.value(row);
            for subjects in &columns {
                if subjects.is_null(row) {
                    continue;
                }
                let subject = subjects.value(row);
                let Some(jurisdiction) = recorded
                    .get(subject)
                    .or_else(|| learned.get(subject).map(String::as_str))
                else {
                    continue;
                };
                let Some(allowed) = policies.allowed(jurisdiction) else {
                    continue;
                };
                if !allowed.iter().any(|a| a == region) {
                    return Err(IngestError::Invalid {
                        row: row as u64 + 1,
                        column: Some(column.clone()),
                        reason: format!(
                            "region {region:?} is not allowed for a data subject of jurisdiction {jurisdiction}: \
                             its residency policy allows {} (GDPR Chapter V)",
                            if allowed.is_empty() {
                                "no region".to_string()
                            } else {
                                allowed.join(", ")
                            }
                        ),
                    });
                }
            }
        }
    }
    let mut learned: Vec<(String, String)> = learned.into_iter().collect();
    learned.sort();
    Ok(Routing { learned })
}

/// The column `name` of `batch` as text.
fn text(batch: &RecordBatch, name: &str) -> Result<StringArray, IngestError> {
    let values = batch
        .column_by_name(name)
        .ok_or_else(|| IngestError::Unreadable(format!("column {name} missing")))?;
    let text = arrow_cast::cast(values, &DataType::Utf8)
        .map_err(|e| IngestError::Unreadable(e.to_string()))?;
    Ok(text
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8")
        .clone())
}
