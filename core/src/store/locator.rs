//! The locator index on the SQL store: which files of a dataset hold which subjects.
//!
//! Subjects are named by the keyring's subject reference (a keyed hash), never by id. Writes
//! are batched multi-row inserts (a 5-million-row ingest adds hundreds of thousands of
//! entries), in one transaction per call.

use sqlx::{AssertSqlSafe, Row};

use super::db::{Store, fetch_in};
use super::{StoreError, StoreResult};
use crate::domain::to_db;

/// A file the locator index knows, with the subjects it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexedFile {
    /// Path relative to the dataset root.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes (a listed file of another size is treated as unknown).
    pub bytes: u64,
    /// Subject references (the keyring's keyed hash) with their row counts in the file.
    pub subjects: Vec<(String, u64)>,
}

/// Rows per multi-row INSERT (4 parameters each). Small on purpose: sqlx resolves each SQLite
/// `$n` parameter by scanning the statement's parameters, which is quadratic in their number.
const INSERT_CHUNK: usize = 64;
/// Parameters per `IN (…)` lookup chunk.
const LOOKUP_CHUNK: usize = 100;

fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database { context, source }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn placeholders(start: usize, rows: usize, per_row: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (0..per_row)
                .map(|c| format!("${}", start + r * per_row + c))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Records files Lethe wrote into `dataset_id` (ingest, compaction) and forgets the
    /// `replaced` ones, in one transaction. Re-recording a known path replaces its entries.
    pub async fn index_files(
        &self,
        dataset_id: &str,
        added: &[IndexedFile],
        replaced: &[String],
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let stale = replaced
            .iter()
            .map(String::as_str)
            .chain(added.iter().map(|f| f.path.as_str()));
        for path in stale {
            for table in ["locator", "lake_files"] {
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE dataset_id = $1 AND path = $2"
                )))
                .bind(dataset_id)
                .bind(path)
                .execute(&mut *tx)
                .await
                .map_err(db("forgetting an indexed file"))?;
            }
        }
        let indexed_at = to_db(chrono::Utc::now());
        for file in added {
            sqlx::query(
                "INSERT INTO lake_files (dataset_id, path, row_count, byte_size, indexed_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(dataset_id)
            .bind(&file.path)
            .bind(to_i64(file.rows))
            .bind(to_i64(file.bytes))
            .bind(&indexed_at)
            .execute(&mut *tx)
            .await
            .map_err(db("indexing a file"))?;
            for chunk in file.subjects.chunks(INSERT_CHUNK) {
                let sql = format!(
                    "INSERT INTO locator (dataset_id, subject_ref, path, row_count) VALUES {}",
                    placeholders(1, chunk.len(), 4)
                );
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for (subject_ref, rows) in chunk {
                    query = query
                        .bind(dataset_id)
                        .bind(subject_ref)
                        .bind(&file.path)
                        .bind(to_i64(*rows));
                }
                query
                    .execute(&mut *tx)
                    .await
                    .map_err(db("indexing a file's subjects"))?;
            }
        }
        tx.commit().await.map_err(db("committing the index"))
    }

    /// Every indexed file of the dataset as `(path, bytes)`.
    pub async fn indexed_files(&self, dataset_id: &str) -> StoreResult<Vec<(String, u64)>> {
        let rows = sqlx::query(
            "SELECT path, byte_size FROM lake_files WHERE dataset_id = $1 ORDER BY path",
        )
        .bind(dataset_id)
        .fetch_all(self.pool())
        .await
        .map_err(db("listing indexed files"))?;
        rows.iter()
            .map(|row| {
                let path: String = row.try_get("path").map_err(db("reading lake_files"))?;
                let bytes: i64 = row.try_get("byte_size").map_err(db("reading lake_files"))?;
                Ok((path, u64::try_from(bytes).unwrap_or(0)))
            })
            .collect()
    }

    /// The indexed files holding rows of the subject references, as
    /// `(subject_ref, path, rows)`.
    pub async fn index_lookup(
        &self,
        dataset_id: &str,
        subject_refs: &[String],
    ) -> StoreResult<Vec<(String, String, u64)>> {
        let mut conn = self.pool().acquire().await.map_err(db("connecting"))?;
        let rows = fetch_in(
            &mut conn,
            &[dataset_id],
            subject_refs,
            LOOKUP_CHUNK,
            |list| {
                format!(
                    "SELECT subject_ref, path, row_count FROM locator \
                 WHERE dataset_id = $1 AND subject_ref IN ({list}) ORDER BY path"
                )
            },
        )
        .await
        .map_err(db("looking subjects up in the locator index"))?;
        rows.iter()
            .map(|row| {
                let count: i64 = row.try_get("row_count").map_err(db("reading locator"))?;
                Ok((
                    row.try_get("subject_ref").map_err(db("reading locator"))?,
                    row.try_get("path").map_err(db("reading locator"))?,
                    u64::try_from(count).unwrap_or(0),
                ))
            })
            .collect()
    }

    /// After `path` was rewritten without the subjects: drops their entries and records the
    /// file's new row count and size. Unknown paths are left unknown.
    pub async fn index_rewritten(
        &self,
        dataset_id: &str,
        path: &str,
        subject_refs: &[String],
        rows: u64,
        bytes: u64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE lake_files SET row_count = $1, byte_size = $2, indexed_at = $3 \
             WHERE dataset_id = $4 AND path = $5",
        )
        .bind(to_i64(rows))
        .bind(to_i64(bytes))
        .bind(to_db(chrono::Utc::now()))
        .bind(dataset_id)
        .bind(path)
        .execute(&mut *tx)
        .await
        .map_err(db("updating an indexed file"))?;
        if updated.rows_affected() > 0 {
            for subject_ref in subject_refs {
                sqlx::query(
                    "DELETE FROM locator WHERE dataset_id = $1 AND subject_ref = $2 AND path = $3",
                )
                .bind(dataset_id)
                .bind(subject_ref)
                .bind(path)
                .execute(&mut *tx)
                .await
                .map_err(db("dropping erased subjects from the index"))?;
            }
        }
        tx.commit().await.map_err(db("committing the index"))
    }
}
