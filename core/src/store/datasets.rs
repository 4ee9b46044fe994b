//! Datasets: registration (audited in the same transaction), reads and listings. Removal is
//! in [`super::dataset_removal`].

use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::audit_chain::{append_audit_in, with_detail};
use super::db::{Store, db, now};
use super::rows::{DATASET_COLS, dataset_from};
use super::{Dataset, NewDataset, StoreResult};
use crate::audit::NewAuditEntry;
use crate::domain::to_db;

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
            "INSERT INTO datasets (id, name, root_url, subject_column, partition_columns, created_by, created_at, schema_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {DATASET_COLS}"
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
