//! The residency rule applied to the rows of one file: which rows are stored outside a region
//! their subjects' jurisdictions allow, and where each of them may go. Scan, copy and rewrite
//! use the same [`Rule`], so remediation removes exactly the rows it copied.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow_array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType};
use serde::{Deserialize, Serialize};

use crate::lake::{LakeError, RowEdits, RowFilter, subject_values};

/// Where the rows of one file are stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionSource {
    /// Every row of the file is in this region: the file is under the region's own root, or
    /// in its `region=` partition of the dataset's root.
    Fixed(String),
    /// Each row is in the region its value of this (stored) column names.
    Column(String),
}

/// A misplaced row: where it is, and where it may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Misplaced {
    /// The region the row is stored in.
    pub region: String,
    /// The first region every restricted subject of the row allows and the dataset has;
    /// `None` when there is none (the row cannot be moved).
    pub target: Option<String>,
}

/// The residency rule for the rows of one file.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    /// Columns holding subject ids.
    pub subject_columns: Vec<String>,
    /// Where the rows are stored.
    pub region: RegionSource,
    /// Restricted subjects (ids as in the lake) → regions their jurisdiction allows, in order
    /// of preference. Subjects not here are unrestricted.
    pub allowed: HashMap<String, Vec<String>>,
    /// Regions the dataset may store rows in (empty: any).
    pub dataset_regions: Vec<String>,
}

impl Rule {
    /// Per row of `batch`: `None` when it is stored where it may be, else where it is and where
    /// it may go.
    ///
    /// # Errors
    /// [`ArrowError`] when a subject or the region column cannot be read as text, or the
    /// region column is missing.
    pub fn classify(&self, batch: &RecordBatch) -> Result<Vec<Option<Misplaced>>, ArrowError> {
        let rows = batch.num_rows();
        let mut out = vec![None; rows];
        if self.allowed.is_empty() {
            return Ok(out);
        }
        let columns: Vec<StringArray> = self
            .subject_columns
            .iter()
            .filter_map(|c| subject_values(batch, c).transpose())
            .collect::<Result<_, _>>()?;
        let regions = match &self.region {
            RegionSource::Fixed(_) => None,
            RegionSource::Column(name) => Some(text_column(batch, name)?),
        };
        let mut restricted: Vec<&[String]> = Vec::with_capacity(columns.len());
        for (row, slot) in out.iter_mut().enumerate() {
            restricted.clear();
            for col in &columns {
                if col.is_valid(row)
                    && let Some(allowed) = self.allowed.get(col.value(row))
                {
                    restricted.push(allowed);
                }
            }
            if restricted.is_empty() {
                continue;
            }
            let region = match (&self.region, &regions) {
                (RegionSource::Fixed(r), _) => r.as_str(),
                (RegionSource::Column(_), Some(values)) if values.is_valid(row) => {
                    values.value(row)
                }
                _ => "",
            };
            if restricted
                .iter()
                .all(|allowed| allowed.iter().any(|a| a == region))
            {
                continue;
            }
            let target = restricted[0]
                .iter()
                .find(|candidate| {
                    restricted.iter().all(|allowed| allowed.contains(candidate))
                        && (self.dataset_regions.is_empty()
                            || self.dataset_regions.contains(candidate))
                })
                .cloned();
            *slot = Some(Misplaced {
                region: region.to_string(),
                target,
            });
        }
        Ok(out)
    }
}

/// The column `name` of `batch` as text.
///
/// # Errors
/// [`ArrowError`] when missing or not castable to text.
pub(crate) fn text_column(batch: &RecordBatch, name: &str) -> Result<StringArray, ArrowError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| ArrowError::SchemaError(format!("column {name} is missing")))?;
    let text = arrow_cast::cast(col, &DataType::Utf8)?;
    Ok(text
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8")
        .clone())
}

/// The rewrite filter of remediation: removes the misplaced rows that have a target region
/// (those were copied there); rows that cannot be moved stay.
#[derive(Debug)]
pub(crate) struct RemoveMoved {
    rule: Rule,
    subjects: BTreeSet<String>,
}

impl RemoveMoved {
    /// The filter of `rule`.
    pub fn new(rule: Rule) -> Arc<Self> {
        let subjects = rule.allowed.keys().cloned().collect();
        Arc::new(Self { rule, subjects })
    }
}

impl RowFilter for RemoveMoved {
    fn subjects(&self) -> &BTreeSet<String> {
        &self.subjects
    }

    fn columns(&self) -> &[String] {
        &self.rule.subject_columns
    }

    fn input_columns(&self) -> Vec<String> {
        let mut columns = self.rule.subject_columns.clone();
        if let RegionSource::Column(name) = &self.rule.region {
            columns.push(name.clone());
        }
        columns
    }

    fn plan(&self, file: &str, batch: &RecordBatch) -> Result<RowEdits, LakeError> {
        let placed = self
            .rule
            .classify(batch)
            .map_err(|e| LakeError::arrow(file, e))?;
        let keep: BooleanArray = placed
            .iter()
            .map(|p| Some(p.as_ref().is_none_or(|m| m.target.is_none())))
            .collect();
        Ok(RowEdits {
            keep,
            cells: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{Field, Schema};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("sender", DataType::Utf8, true),
            Field::new("receiver", DataType::Utf8, true),
            Field::new("region", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("eu-1"),
                    Some("us-1"),
                    Some("us-1"),
                    Some("br-1"),
                    Some("eu-1"),
                ])),
                Arc::new(StringArray::from(vec![
                    None,
                    Some("eu-1"),
                    None,
                    Some("eu-1"),
                    None,
                ])),
                Arc::new(StringArray::from(vec!["US", "US", "US", "US", "EU"])),
            ],
        )
        .unwrap()
    }

    fn rule(region: RegionSource, dataset_regions: &[&str]) -> Rule {
        Rule {
            subject_columns: vec!["sender".into(), "receiver".into()],
            region,
            allowed: [
                ("eu-1".to_string(), vec!["EU".to_string()]),
                ("br-1".to_string(), vec!["BR".to_string(), "US".to_string()]),
            ]
            .into(),
            dataset_regions: dataset_regions.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_row_is_misplaced_when_any_of_its_subjects_forbids_its_region() {
        let placed = rule(RegionSource::Column("region".into()), &[])
            .classify(&batch())
            .unwrap();
        let moved = |target: Option<&str>| {
            Some(Misplaced {
                region: "US".into(),
                target: target.map(String::from),
            })
        };
        assert_eq!(placed[0], moved(Some("EU")), "an EU subject in the US");
        assert_eq!(
            placed[1],
            moved(Some("EU")),
            "the receiver is an EU subject"
        );
        assert_eq!(placed[2], None, "an unrestricted subject");
        // br-1 allows BR and US, eu-1 only EU: no region suits both.
        assert_eq!(placed[3], moved(None));
        assert_eq!(placed[4], None, "an EU subject in the EU");
    }

    #[test]
    fn a_fixed_region_applies_to_every_row_and_targets_are_regions_of_the_dataset() {
        let placed = rule(RegionSource::Fixed("APAC".into()), &["US", "APAC"])
            .classify(&batch())
            .unwrap();
        assert_eq!(placed[0].as_ref().unwrap().region, "APAC");
        assert_eq!(placed[0].as_ref().unwrap().target, None, "no EU root");
        assert_eq!(placed[2], None);
        assert_eq!(placed[4].as_ref().unwrap().target, None);
    }

    #[test]
    fn the_filter_removes_only_rows_that_can_move() {
        let filter = RemoveMoved::new(rule(RegionSource::Column("region".into()), &[]));
        assert_eq!(
            filter.subjects().iter().collect::<Vec<_>>(),
            ["br-1", "eu-1"]
        );
        assert_eq!(filter.input_columns(), ["sender", "receiver", "region"]);
        let edits = filter.plan("f", &batch()).unwrap();
        assert_eq!(edits.rows_removed(), 2);
        let kept = edits.apply(&batch()).unwrap();
        let senders = subject_values(&kept, "sender").unwrap().unwrap();
        assert_eq!(
            senders.iter().collect::<Vec<_>>(),
            [Some("us-1"), Some("br-1"), Some("eu-1")]
        );
    }
}
