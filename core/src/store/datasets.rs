//! Datasets: registration (audited in the same transaction), reads and listings. Removal is
//! in [`super::dataset_removal`].

use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::StoreResult;
use super::audit_chain::{append_audit_in, with_detail};
use super::db::{Store, db, now};
use super::rows::{DATASET_COLS, dataset_from};
use crate::audit::NewAuditEntry;
use crate::domain::to_db;
use crate::domain::{DatasetFormat, DatasetSchema};
use serde::Deserialize;
use serde::Serialize;

/// A registered dataset (one entry of the data map).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dataset {
    /// UUID.
    pub id: String,
    /// Unique name, e.g. `running_events`.
    pub name: String,
    /// Root of the Hive-partitioned lake (`file:///…`, a path, later `s3://…`).
    pub root_url: String,
    /// Column holding the subject id, e.g. `user_id`.
    pub subject_column: String,
    /// Partition keys in path order, e.g. `["date", "region"]`.
    pub partition_columns: Vec<String>,
    /// Who registered it (`user:<uuid>`).
    pub created_by: String,
    /// When.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The declared schema of a dataset Lethe writes (ingest); `None` for datasets written by
    /// others, which are located and erased by `subject_column` only.
    pub schema: Option<DatasetSchema>,
    /// Parquet folders, a Delta table or an Iceberg table.
    #[serde(default)]
    pub format: DatasetFormat,
    /// The catalog and table of an Iceberg dataset (`None` for the other formats).
    #[serde(default)]
    pub iceberg: Option<IcebergTableRef>,
}

/// Where an Iceberg dataset's table is: a catalog configured under `[iceberg.catalogs.NAME]`
/// and a table of it. Credentials are in the configuration, never here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcebergTableRef {
    /// The catalog's name in the configuration.
    pub catalog: String,
    /// `NAMESPACE.TABLE`.
    pub table: String,
}

/// One root of a dataset: where the rows of a region are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetRoot {
    /// The region whose root this is; `None` for the dataset's `root_url`, which holds every
    /// region without a root of its own.
    pub region: Option<String>,
    /// URL or path of the root.
    pub url: String,
}

impl Dataset {
    /// Every root of the dataset: `root_url` first, then one per entry of the schema's
    /// `region_roots` (data residency). Locate, erasure, export, compaction and the residency
    /// scan visit each of them.
    pub fn roots(&self) -> Vec<DatasetRoot> {
        let mut roots = vec![DatasetRoot {
            region: None,
            url: self.root_url.clone(),
        }];
        if let Some(schema) = &self.schema {
            roots.extend(schema.region_roots.iter().map(|(region, url)| DatasetRoot {
                region: Some(region.clone()),
                url: url.clone(),
            }));
        }
        roots
    }

    /// The root rows of `region` are written to: its own root, else `root_url`.
    pub fn root_for(&self, region: Option<&str>) -> DatasetRoot {
        let own = self
            .schema
            .as_ref()
            .zip(region)
            .and_then(|(schema, region)| {
                schema.region_roots.get(region).map(|url| DatasetRoot {
                    region: Some(region.to_string()),
                    url: url.clone(),
                })
            });
        own.unwrap_or_else(|| DatasetRoot {
            region: None,
            url: self.root_url.clone(),
        })
    }

    /// The columns holding subject ids: the schema's, or the one `subject_column`.
    pub fn subject_columns(&self) -> Vec<String> {
        match &self.schema {
            Some(schema) => schema.subject_columns.clone(),
            None => vec![self.subject_column.clone()],
        }
    }
}

/// A dataset to register.
#[derive(Debug, Clone)]
pub struct NewDataset {
    /// Unique name.
    pub name: String,
    /// Root URL or path.
    pub root_url: String,
    /// Subject column.
    pub subject_column: String,
    /// Partition keys.
    pub partition_columns: Vec<String>,
    /// Who registers it.
    pub created_by: String,
    /// Declared schema (datasets Lethe writes).
    pub schema: Option<DatasetSchema>,
    /// Format.
    pub format: DatasetFormat,
    /// Catalog and table of an Iceberg dataset.
    pub iceberg: Option<IcebergTableRef>,
}

impl Store {
    /// Registers a dataset. `Conflict` when the name is taken.
    #[tracing::instrument(skip_all)]
    pub async fn create_dataset(
        &self,
        dataset: NewDataset,
        audit: NewAuditEntry,
    ) -> StoreResult<Dataset> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO datasets (id, name, root_url, subject_column, partition_columns, created_by, created_at, schema_json, format, iceberg_catalog, iceberg_table) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {DATASET_COLS}"
        )))
        .bind(Uuid::new_v4().to_string())
        .bind(&dataset.name)
        .bind(&dataset.root_url)
        .bind(&dataset.subject_column)
        .bind(serde_json::to_string(&dataset.partition_columns).expect("strings serialise"))
        .bind(&dataset.created_by)
        .bind(to_db(now()))
        .bind(
            dataset
                .schema
                .as_ref()
                .map(|s| serde_json::to_string(s).expect("schema serialises")),
        )
        .bind(dataset.format.as_str())
        .bind(dataset.iceberg.as_ref().map(|t| t.catalog.clone()))
        .bind(dataset.iceberg.as_ref().map(|t| t.table.clone()))
        .fetch_one(&mut *tx)
        .await
        .map_err(db("registering a dataset"))?;
        let created = dataset_from(&row)?;
        append_audit_in(&mut tx, with_detail(audit, "dataset_id", &created.id)).await?;
        tx.commit().await.map_err(db("committing a dataset"))?;
        Ok(created)
    }

    /// Every dataset, by name (deleted ones left out).
    pub async fn list_datasets(&self) -> StoreResult<Vec<Dataset>> {
        self.all(
            format!("SELECT {DATASET_COLS} FROM datasets WHERE deleted_at IS NULL ORDER BY name"),
            "listing datasets",
            dataset_from,
        )
        .await
    }

    /// The dataset with that id; `NotFound` otherwise (deleted ones too).
    pub async fn dataset(&self, id: &str) -> StoreResult<Dataset> {
        self.by_id(
            format!("SELECT {DATASET_COLS} FROM datasets WHERE id = $1 AND deleted_at IS NULL"),
            id,
            "dataset",
            "reading a dataset",
            dataset_from,
        )
        .await
    }
}
