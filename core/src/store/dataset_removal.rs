//! Deleting a dataset on the SQL store: refused while anything may still work on it, then
//! unregistered in one transaction with its audit entry.
//!
//! The row stays, marked `deleted_at` and renamed `<name>~deleted~<id>` (so the name and root
//! are free again), because legal holds, audit entries and request results name it. What only
//! served the live dataset goes: the locator index and its files, residency findings, expired
//! leases.

use sqlx::{AssertSqlSafe, Row};

use super::audit_chain::append_audit_in;
use super::db::{Store, WriteTx, db, now};
use super::rows::get_os;
use super::rows::{DATASET_COLS, dataset_from, final_statuses_sql};
use super::{Dataset, StoreError, StoreResult};
use crate::audit::NewAuditEntry;
use crate::domain::{from_db, to_db};

/// `SELECT COUNT(*) …` with an optional first parameter.
async fn count(
    tx: &mut WriteTx,
    sql: String,
    bind: Option<&str>,
    context: &'static str,
) -> StoreResult<i64> {
    let mut query = sqlx::query(AssertSqlSafe(sql));
    if let Some(value) = bind {
        query = query.bind(value.to_string());
    }
    let row = query.fetch_one(&mut **tx).await.map_err(db(context))?;
    row.try_get::<i64, _>(0)
        .map_err(|e| super::rows::corrupt("datasets", e))
}

impl Store {
    /// Deletes (unregisters) a dataset, appending `audit` in the same transaction; its files
    /// are not touched. Refused with [`StoreError::DatasetInUse`] while a legal hold is on it
    /// (`dataset_held`) or while a lease is live on its files, any job is unfinished, or an
    /// erasure or rectification is open (`dataset_in_use`): those may still need it. `NotFound`
    /// when there is no such dataset (or it is deleted already).
    pub async fn delete_dataset(&self, id: &str, audit: NewAuditEntry) -> StoreResult<Dataset> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {DATASET_COLS} FROM datasets WHERE id = $1 AND deleted_at IS NULL"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("reading a dataset"))?
        .ok_or_else(|| StoreError::NotFound {
            entity: "dataset",
            id: id.to_string(),
        })?;
        let dataset = dataset_from(&row)?;
        let at = now();
        let holds = sqlx::query(
            "SELECT ends_at FROM legal_holds WHERE dataset_id = $1 AND released_at IS NULL",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("reading a dataset's legal holds"))?;
        for hold in &holds {
            let ends = get_os(hold, "legal_holds", "ends_at")?;
            let active = match ends {
                None => true,
                Some(end) => from_db(&end).map_or(true, |end| end > at),
            };
            if active {
                return Err(StoreError::DatasetInUse {
                    code: "dataset_held",
                    detail: format!(
                        "dataset {} is under a legal hold (GDPR Art. 17(3)); release it first",
                        dataset.name
                    ),
                });
            }
        }
        let leases = count(
            &mut tx,
            format!(
                "SELECT COUNT(*) FROM dataset_leases WHERE dataset_id = $1 AND expires_at > '{}'",
                to_db(at)
            ),
            Some(id),
            "reading a dataset's leases",
        )
        .await?;
        let jobs = count(
            &mut tx,
            "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running', 'waiting')"
                .to_string(),
            None,
            "counting unfinished jobs",
        )
        .await?;
        let open = count(
            &mut tx,
            format!(
                "SELECT COUNT(*) FROM requests WHERE request_type IN ('erasure', 'rectification') \
                 AND status NOT IN ({})",
                final_statuses_sql()
            ),
            None,
            "counting open erasures and rectifications",
        )
        .await?;
        if leases + jobs + open > 0 {
            return Err(StoreError::DatasetInUse {
                code: "dataset_in_use",
                detail: format!(
                    "dataset {} is in use ({leases} leases on its files, {jobs} unfinished jobs, \
                     {open} open erasure or rectification requests); try again when they are done",
                    dataset.name
                ),
            });
        }
        for (table, context) in [
            ("locator", "forgetting a dataset's locator index"),
            ("lake_files", "forgetting a dataset's indexed files"),
            (
                "residency_violations",
                "forgetting a dataset's residency findings",
            ),
            ("residency_scans", "forgetting a dataset's residency scan"),
            ("dataset_leases", "forgetting a dataset's expired leases"),
        ] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE dataset_id = $1"
            )))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db(context))?;
        }
        sqlx::query("UPDATE datasets SET deleted_at = $1, name = $2 WHERE id = $3")
            .bind(to_db(at))
            .bind(format!("{}~deleted~{id}", dataset.name))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db("deleting a dataset"))?;
        append_audit_in(&mut tx, audit).await?;
        tx.commit()
            .await
            .map_err(db("committing a dataset deletion"))?;
        Ok(dataset)
    }
}
