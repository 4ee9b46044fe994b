//! The schema a dataset declares when Lethe writes it (ingest): its subject columns, its PII
//! columns and how each is handled, its partitioning, and its erasure strategy for rows that
//! hold several subjects.
//!
//! Datasets written by others (registered by root only) have no schema: Lethe locates, erases
//! and exports them by their one subject column, and nothing in them is encrypted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Default target size of a written Parquet file: 128 MiB.
pub const DEFAULT_TARGET_FILE_BYTES: u64 = 128 * 1024 * 1024;
/// Default rows per row group of a written file.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 65_536;

/// The logical type of a column. Stored in Parquet as the matching Arrow type, except
/// encrypted columns, which are stored as `BINARY` cell envelopes (see `docs/encryption.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// UTF-8 text.
    String,
    /// 16-bit signed integer.
    Int16,
    /// 32-bit signed integer.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// IEEE 754 double.
    Float64,
    /// `true` / `false`.
    Bool,
    /// Calendar date, `YYYY-MM-DD`.
    Date,
    /// Instant with microsecond precision, RFC 3339 in text inputs; stored in UTC.
    Timestamp,
}

impl ColumnType {
    /// The Arrow type of a plain (not encrypted) column of this type.
    pub fn arrow(self) -> DataType {
        match self {
            Self::String => DataType::Utf8,
            Self::Int16 => DataType::Int16,
            Self::Int32 => DataType::Int32,
            Self::Int64 => DataType::Int64,
            Self::Float64 => DataType::Float64,
            Self::Bool => DataType::Boolean,
            Self::Date => DataType::Date32,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
}

/// How a PII column is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PiiHandling {
    /// Sealed per cell with the owning subject's DEK: crypto-shredding makes it unreadable
    /// in every copy at once.
    Encrypt,
    /// Stored in clear (needed for joins or analytics); erased only by the rewrite.
    Plain,
}

/// One column of a dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"name": "email", "type": "string", "pii": "encrypt"}))]
pub struct ColumnSpec {
    /// Column name (as in inputs and in the Parquet files).
    pub name: String,
    /// Logical type.
    #[serde(rename = "type")]
    pub column_type: ColumnType,
    /// Whether the value may be missing (default `false`).
    #[serde(default)]
    pub nullable: bool,
    /// Set for personal data: how it is stored. Absent: not personal data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii: Option<PiiHandling>,
    /// For PII columns: the subject column of the person the value belongs to, whose key
    /// encrypts it (default: the first subject column). In a message table, `receiver_email`
    /// belongs to `receiver`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// How a partition value is derived from a column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartitionTransform {
    /// The column's value itself; the column then lives in the path only (Hive style).
    #[default]
    Identity,
    /// The UTC day (`YYYY-MM-DD`) of a timestamp or date column, which stays in the file.
    Day,
}

/// One Hive partition key: `<name>=<value>` folders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"name": "date", "source": "ts", "transform": "day"}))]
pub struct PartitionSpec {
    /// Folder key, e.g. `date`.
    pub name: String,
    /// Column the value comes from, e.g. `ts`.
    pub source: String,
    /// How.
    #[serde(default)]
    pub transform: PartitionTransform,
}

/// What erasure does to a row holding several subjects when one of them is erased.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErasureStrategy {
    /// Remove the whole row.
    #[default]
    DeleteRow,
    /// Keep the row for the other subjects; set the erased subject's id column and the PII
    /// columns they own to null (their encrypted cells were already unreadable).
    NullSubjectColumns,
}

/// File layout of written files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Layout {
    /// Target size of a Parquet file in bytes (default 128 MiB); a partition's rows are split
    /// into files of about this size, and compaction merges smaller ones up to it.
    #[serde(default = "default_target_file_bytes")]
    pub target_file_bytes: u64,
    /// Rows per row group (default 65,536). Smaller groups make locating and rewriting one
    /// subject cheaper; larger ones compress better.
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            target_file_bytes: DEFAULT_TARGET_FILE_BYTES,
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
        }
    }
}

fn default_target_file_bytes() -> u64 {
    DEFAULT_TARGET_FILE_BYTES
}

fn default_row_group_rows() -> usize {
    DEFAULT_ROW_GROUP_ROWS
}

/// The schema of a dataset Lethe writes (GDPR Art. 25, data protection by design: PII columns
/// are declared, and encrypted per subject unless declared `plain`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "subject_columns": ["user_id"],
    "columns": [
        {"name": "event_id", "type": "string"},
        {"name": "user_id", "type": "string"},
        {"name": "ts", "type": "timestamp"},
        {"name": "region", "type": "string"},
        {"name": "email", "type": "string", "pii": "encrypt"},
        {"name": "full_name", "type": "string", "pii": "encrypt"}
    ],
    "partition_by": [{"name": "date", "source": "ts", "transform": "day"}, {"name": "region", "source": "region"}],
    "region_column": "region",
    "regions": ["EU", "US", "APAC"],
    "region_roots": {"EU": "s3://lake-eu/running_app", "US": "s3://lake-us/running_app"},
    "erasure": "delete_row"
}))]
pub struct DatasetSchema {
    /// Columns holding subject ids (strings, stored in clear so rows can be found); the first
    /// is the primary one files are sorted by.
    pub subject_columns: Vec<String>,
    /// Every column of an input row, in file order.
    pub columns: Vec<ColumnSpec>,
    /// Hive partition keys in path order.
    #[serde(default)]
    pub partition_by: Vec<PartitionSpec>,
    /// Column naming the storage region of each row (routing; see `ingest::routing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_column: Option<String>,
    /// Regions rows may be routed to; empty: any value of `region_column` (or, with
    /// `region_roots`, any region that has a root).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// One root per region (data residency, GDPR Chapter V): rows whose region is a key are
    /// written under that root (`file://`, a path, `s3://…`), in the same partition layout;
    /// rows of other regions go to the dataset's `root_url`. Empty: the one `root_url` holds
    /// every region (in `region=` partitions when the region column is a partition source).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(example = json!({"EU": "s3://lake-eu/running_app", "US": "s3://lake-us/running_app"}))]
    pub region_roots: BTreeMap<String, String>,
    /// Column naming each row's data subject jurisdiction (e.g. `EU`, `BR`): the jurisdiction
    /// of the primary subject, recorded at ingest for subjects who have none yet. A value
    /// that differs from the subject's recorded jurisdiction refuses the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdiction_column: Option<String>,
    /// Erasure of rows holding several subjects.
    #[serde(default)]
    pub erasure: ErasureStrategy,
    /// File layout.
    #[serde(default)]
    pub layout: Layout,
}

/// Why a dataset schema was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid dataset schema: {0}")]
pub struct SchemaError(pub String);

impl DatasetSchema {
    /// Checks the schema is coherent.
    ///
    /// # Errors
    /// [`SchemaError`] naming the first problem: duplicate or empty column names, a subject
    /// column that is not a declared non-encrypted string column, a PII owner that is not a
    /// subject column, a partition source that is not a column, an encrypted partition source,
    /// an encrypted region column, or a layout out of range.
    pub fn validate(&self) -> Result<(), SchemaError> {
        let err = |m: String| Err(SchemaError(m));
        if self.columns.is_empty() {
            return err("at least one column is required".into());
        }
        let mut names = BTreeSet::new();
        for c in &self.columns {
            if c.name.trim().is_empty() || c.name.starts_with("__") {
                return err(format!("column name {:?} is not allowed", c.name));
            }
            if !names.insert(c.name.as_str()) {
                return err(format!("column {} is declared twice", c.name));
            }
        }
        if self.subject_columns.is_empty() {
            return err("at least one subject column is required".into());
        }
        for s in &self.subject_columns {
            match self.column(s) {
                None => return err(format!("subject column {s} is not a declared column")),
                Some(c) if c.column_type != ColumnType::String => {
                    return err(format!("subject column {s} must be of type string"));
                }
                Some(c) if c.pii == Some(PiiHandling::Encrypt) => {
                    return err(format!(
                        "subject column {s} cannot be encrypted: rows are found by it"
                    ));
                }
                Some(_) => {}
            }
        }
        for c in &self.columns {
            if let Some(owner) = &c.subject {
                if c.pii.is_none() {
                    return err(format!("column {} names a subject but is not PII", c.name));
                }
                if !self.subject_columns.contains(owner) {
                    return err(format!(
                        "column {} belongs to {owner}, which is not a subject column",
                        c.name
                    ));
                }
            }
        }
        let mut keys = BTreeSet::new();
        for p in &self.partition_by {
            if !keys.insert(p.name.as_str()) {
                return err(format!("partition key {} is declared twice", p.name));
            }
            let Some(source) = self.column(&p.source) else {
                return err(format!(
                    "partition {} comes from {}, which is not a declared column",
                    p.name, p.source
                ));
            };
            if source.pii == Some(PiiHandling::Encrypt) {
                return err(format!(
                    "partition {} cannot come from encrypted column {}",
                    p.name, p.source
                ));
            }
            if self.subject_columns.contains(&p.source) {
                return err(format!(
                    "partition {} cannot come from subject column {}",
                    p.name, p.source
                ));
            }
            if p.transform == PartitionTransform::Day
                && !matches!(source.column_type, ColumnType::Timestamp | ColumnType::Date)
            {
                return err(format!(
                    "partition {} takes the day of {}, which is not a timestamp or date",
                    p.name, p.source
                ));
            }
            if p.transform == PartitionTransform::Identity && source.nullable {
                return err(format!(
                    "partition {} comes from nullable column {}",
                    p.name, p.source
                ));
            }
        }
        if let Some(region) = &self.region_column {
            match self.column(region) {
                None => return err(format!("region column {region} is not a declared column")),
                Some(c) if c.pii == Some(PiiHandling::Encrypt) || c.nullable => {
                    return err(format!(
                        "region column {region} must be a non-null, non-encrypted column"
                    ));
                }
                Some(_) => {}
            }
        }
        if !self.regions.is_empty() && self.region_column.is_none() {
            return err("regions are listed but no region_column says where rows go".into());
        }
        for region in &self.regions {
            if let Err(e) = super::Region::parse(region) {
                return err(format!("regions: {region:?}: {}", e.reason));
            }
        }
        if !self.region_roots.is_empty() {
            if self.region_column.is_none() {
                return err(
                    "region_roots are given but no region_column says where rows go".into(),
                );
            }
            let mut urls = BTreeSet::new();
            for (region, url) in &self.region_roots {
                if let Err(e) = super::Region::parse(region) {
                    return err(format!("region_roots: {region:?}: {}", e.reason));
                }
                if !self.regions.is_empty() && !self.regions.contains(region) {
                    return err(format!(
                        "region_roots names region {region}, which is not one of regions"
                    ));
                }
                if url.trim().is_empty() {
                    return err(format!("region_roots: the root of {region} is empty"));
                }
                if !urls.insert(url.trim_end_matches('/')) {
                    return err(format!("region_roots: {url} is the root of two regions"));
                }
            }
        }
        if let Some(jurisdiction) = &self.jurisdiction_column {
            match self.column(jurisdiction) {
                None => {
                    return err(format!(
                        "jurisdiction column {jurisdiction} is not a declared column"
                    ));
                }
                Some(c)
                    if c.column_type != ColumnType::String
                        || c.pii == Some(PiiHandling::Encrypt)
                        || self.subject_columns.contains(&c.name) =>
                {
                    return err(format!(
                        "jurisdiction column {jurisdiction} must be a non-encrypted string column other than a subject column"
                    ));
                }
                Some(_) => {}
            }
        }
        if self.layout.row_group_rows == 0 || self.layout.row_group_rows > 16 * 1024 * 1024 {
            return err("layout.row_group_rows must be between 1 and 16,777,216".into());
        }
        if self.layout.target_file_bytes < 1024 * 1024 {
            return err("layout.target_file_bytes must be at least 1 MiB".into());
        }
        Ok(())
    }

    /// The declared column `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The primary subject column (files are sorted by it).
    pub fn primary_subject(&self) -> &str {
        &self.subject_columns[0]
    }

    /// The subject column owning PII column `column` (its own `subject`, else the primary).
    pub fn owner_of<'a>(&'a self, column: &'a ColumnSpec) -> &'a str {
        column.subject.as_deref().unwrap_or(self.primary_subject())
    }

    /// Whether `column` is stored encrypted.
    pub fn is_encrypted(&self, column: &str) -> bool {
        self.column(column)
            .is_some_and(|c| c.pii == Some(PiiHandling::Encrypt))
    }

    /// Whether column `name` lives only in the partition path (an identity partition source).
    pub fn in_path_only(&self, name: &str) -> bool {
        self.partition_by
            .iter()
            .any(|p| p.source == name && p.transform == PartitionTransform::Identity)
    }

    /// The regions rows of this dataset may be stored in: `regions`, else the keys of
    /// `region_roots`; empty when any region is accepted.
    pub fn dataset_regions(&self) -> Vec<String> {
        if self.regions.is_empty() {
            self.region_roots.keys().cloned().collect()
        } else {
            self.regions.clone()
        }
    }

    /// The Hive partition key holding the region (an identity partition of `region_column`),
    /// e.g. `region`.
    pub fn region_partition(&self) -> Option<&str> {
        let column = self.region_column.as_deref()?;
        self.partition_by
            .iter()
            .find(|p| p.source == column && p.transform == PartitionTransform::Identity)
            .map(|p| p.name.as_str())
    }

    /// Columns stored in the files, in order: every declared column except identity partition
    /// sources.
    pub fn stored_columns(&self) -> impl Iterator<Item = &ColumnSpec> {
        self.columns.iter().filter(|c| !self.in_path_only(&c.name))
    }

    /// The Arrow schema of the files Lethe writes: encrypted columns are `Binary`; subject
    /// columns are nullable only under [`ErasureStrategy::NullSubjectColumns`].
    pub fn file_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .stored_columns()
            .map(|c| {
                let data_type = if c.pii == Some(PiiHandling::Encrypt) {
                    DataType::Binary
                } else {
                    c.column_type.arrow()
                };
                let nullable = c.nullable
                    || (self.erasure == ErasureStrategy::NullSubjectColumns
                        && (self.subject_columns.contains(&c.name) || c.pii.is_some()));
                Field::new(&c.name, data_type, nullable)
            })
            .collect();
        Arc::new(Schema::new(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> DatasetSchema {
        serde_json::from_value(serde_json::json!({
            "subject_columns": ["user_id"],
            "columns": [
                {"name": "event_id", "type": "string"},
                {"name": "user_id", "type": "string"},
                {"name": "ts", "type": "timestamp"},
                {"name": "region", "type": "string"},
                {"name": "email", "type": "string", "pii": "encrypt"},
                {"name": "notes", "type": "string", "nullable": true}
            ],
            "partition_by": [{"name": "date", "source": "ts", "transform": "day"},
                             {"name": "region", "source": "region"}],
            "region_column": "region"
        }))
        .unwrap()
    }

    #[test]
    fn regions_come_from_the_list_or_the_roots_and_the_region_partition_is_found() {
        let mut s = running();
        assert!(s.dataset_regions().is_empty(), "any region");
        assert_eq!(s.region_partition(), Some("region"));
        s.region_roots = [
            ("US".to_string(), "/lake-us".to_string()),
            ("EU".to_string(), "/lake-eu".to_string()),
        ]
        .into();
        s.jurisdiction_column = Some("notes".into());
        s.validate().unwrap();
        assert_eq!(s.dataset_regions(), ["EU", "US"]);
        s.regions = vec!["US".into(), "EU".into(), "APAC".into()];
        s.validate().unwrap();
        assert_eq!(s.dataset_regions(), ["US", "EU", "APAC"]);
        s.partition_by.pop();
        assert_eq!(
            s.region_partition(),
            None,
            "the region is stored in the files"
        );
    }

    #[test]
    fn a_coherent_schema_is_accepted_and_defaults_apply() {
        let s = running();
        s.validate().unwrap();
        assert_eq!(s.erasure, ErasureStrategy::DeleteRow);
        assert_eq!(s.layout.target_file_bytes, DEFAULT_TARGET_FILE_BYTES);
        let file = s.file_schema();
        let names: Vec<&str> = file.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["event_id", "user_id", "ts", "email", "notes"]);
        assert_eq!(
            file.field_with_name("email").unwrap().data_type(),
            &DataType::Binary
        );
    }

    type Change = Box<dyn Fn(&mut DatasetSchema)>;

    #[test]
    fn incoherent_schemas_name_their_problem() {
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|s| s.subject_columns = vec!["nope".into()]),
                "subject column nope",
            ),
            (
                Box::new(|s| s.columns[1].pii = Some(PiiHandling::Encrypt)),
                "cannot be encrypted",
            ),
            (
                Box::new(|s| s.columns[4].subject = Some("event_id".into())),
                "not a subject column",
            ),
            (
                Box::new(|s| s.partition_by[0].source = "email".into()),
                "encrypted column email",
            ),
            (
                Box::new(|s| s.partition_by[0].source = "event_id".into()),
                "not a timestamp",
            ),
            (
                Box::new(|s| s.columns.push(s.columns[0].clone())),
                "declared twice",
            ),
            (Box::new(|s| s.layout.row_group_rows = 0), "row_group_rows"),
            (
                Box::new(|s| {
                    s.regions = vec!["EU".into()];
                    s.region_roots = [("US".to_string(), "/lake-us".to_string())].into();
                }),
                "not one of regions",
            ),
            (
                Box::new(|s| {
                    s.region_roots = [
                        ("EU".to_string(), "/lake".to_string()),
                        ("US".to_string(), "/lake/".to_string()),
                    ]
                    .into();
                }),
                "root of two regions",
            ),
            (
                Box::new(|s| {
                    s.region_column = None;
                    s.partition_by.pop();
                    s.region_roots = [("EU".to_string(), "/lake-eu".to_string())].into();
                }),
                "no region_column",
            ),
            (
                Box::new(|s| s.jurisdiction_column = Some("email".into())),
                "jurisdiction column email",
            ),
            (
                Box::new(|s| s.regions = vec!["E/U".into()]),
                "regions: \"E/U\"",
            ),
        ];
        for (change, expected) in cases {
            let mut s = running();
            change(&mut s);
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(expected), "{e} should mention {expected}");
        }
    }
}
