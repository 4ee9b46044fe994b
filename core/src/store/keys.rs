//! [`KeyStore`] on the SQL store: wrapped DEKs and tombstones (crypto-shredding).
//!
//! A destroyed key never comes back: `destroy` writes the tombstone and deletes the key in one
//! transaction, and `put_if_absent` inserts only while no tombstone exists, in the same
//! statement. On PostgreSQL both first take a transaction-scoped advisory lock on the subject
//! reference so they cannot interleave; SQLite serialises writers already.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::db::{Backend, Store, fetch_in};
use crate::domain::{from_db, to_db};
use crate::keyring::{KeyStore, KeyringError, StoredKey, WrappedDek};

fn store_error(context: &'static str) -> impl FnOnce(sqlx::Error) -> KeyringError {
    move |e| KeyringError::store(format!("{context}: {e}"))
}

fn key_from(row: &AnyRow) -> Result<StoredKey, KeyringError> {
    let text = |col: &str| {
        row.try_get::<String, _>(col)
            .map_err(|e| KeyringError::store(format!("subject_keys.{col}: {e}")))
    };
    let nonce_hex = text("nonce")?;
    let nonce: [u8; 12] = hex::decode(&nonce_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| KeyringError::store("subject_keys.nonce is not 12 hex-encoded bytes"))?;
    let version: i64 = row
        .try_get("version")
        .map_err(|e| KeyringError::store(format!("subject_keys.version: {e}")))?;
    Ok(StoredKey {
        wrapped: WrappedDek {
            kek_id: text("kek_id")?,
            version: u32::try_from(version)
                .map_err(|_| KeyringError::store("subject_keys.version out of range"))?,
            nonce,
            ciphertext: hex::decode(text("ciphertext")?)
                .map_err(|e| KeyringError::store(format!("subject_keys.ciphertext: {e}")))?,
        },
        created_at: from_db(&text("created_at")?)
            .map_err(|e| KeyringError::store(format!("subject_keys.created_at: {e}")))?,
    })
}

const KEY_COLS: &str = "subject_ref, kek_id, version, nonce, ciphertext, created_at";

impl Store {
    /// On PostgreSQL, serialises key writes of one subject reference for the transaction.
    async fn lock_subject(
        &self,
        conn: &mut AnyConnection,
        subject_ref: &str,
    ) -> Result<(), KeyringError> {
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(subject_ref)
                .execute(&mut *conn)
                .await
                .map_err(store_error("locking a subject key"))?;
        }
        Ok(())
    }
}

#[async_trait]
impl KeyStore for Store {
    async fn get(&self, subject_ref: &str) -> Result<Option<StoredKey>, KeyringError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLS} FROM subject_keys WHERE subject_ref = $1"
        )))
        .bind(subject_ref)
        .fetch_optional(self.pool())
        .await
        .map_err(store_error("reading a subject key"))?
        .as_ref()
        .map(key_from)
        .transpose()
    }

    async fn get_many(
        &self,
        subject_refs: &[String],
    ) -> Result<Vec<(String, StoredKey)>, KeyringError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(store_error("connecting"))?;
        let rows = fetch_in(&mut conn, &[], subject_refs, 100, |list| {
            format!("SELECT {KEY_COLS} FROM subject_keys WHERE subject_ref IN ({list})")
        })
        .await
        .map_err(store_error("reading subject keys"))?;
        rows.iter()
            .map(|row| {
                let subject_ref: String = row
                    .try_get("subject_ref")
                    .map_err(store_error("reading subject keys"))?;
                Ok((subject_ref, key_from(row)?))
            })
            .collect()
    }

    async fn put_if_absent(
        &self,
        subject_ref: &str,
        key: &StoredKey,
    ) -> Result<StoredKey, KeyringError> {
        let mut out = self
            .put_many_if_absent(&[(subject_ref.to_string(), key.clone())])
            .await?;
        match out.pop().and_then(|(_, stored)| stored) {
            Some(stored) => Ok(stored),
            // Not inserted and not there: the reference is tombstoned.
            None => Err(KeyringError::Shredded),
        }
    }

    async fn put_many_if_absent(
        &self,
        keys: &[(String, StoredKey)],
    ) -> Result<Vec<(String, Option<StoredKey>)>, KeyringError> {
        // One transaction for the whole batch; references in sorted order so that concurrent
        // batches take PostgreSQL's advisory locks in the same order (no deadlock).
        let mut order: Vec<&(String, StoredKey)> = keys.iter().collect();
        order.sort_by(|a, b| a.0.cmp(&b.0));
        let mut tx = self
            .begin_write()
            .await
            .map_err(|e| KeyringError::store(e.to_string()))?;
        let mut out = Vec::with_capacity(keys.len());
        for (subject_ref, key) in order {
            self.lock_subject(&mut tx, subject_ref).await?;
            let w = &key.wrapped;
            sqlx::query(
                "INSERT INTO subject_keys (subject_ref, kek_id, version, nonce, ciphertext, created_at) \
                 SELECT $1, $2, $3, $4, $5, $6 \
                 WHERE NOT EXISTS (SELECT 1 FROM tombstones WHERE subject_ref = $1) \
                 ON CONFLICT (subject_ref) DO NOTHING",
            )
            .bind(subject_ref)
            .bind(&w.kek_id)
            .bind(i64::from(w.version))
            .bind(hex::encode(w.nonce))
            .bind(hex::encode(&w.ciphertext))
            .bind(to_db(key.created_at))
            .execute(&mut *tx)
            .await
            .map_err(store_error("storing a subject key"))?;
            let stored = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {KEY_COLS} FROM subject_keys WHERE subject_ref = $1"
            )))
            .bind(subject_ref)
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error("reading a subject key"))?;
            out.push((
                subject_ref.clone(),
                stored.as_ref().map(key_from).transpose()?,
            ));
        }
        tx.commit()
            .await
            .map_err(store_error("committing subject keys"))?;
        Ok(out)
    }

    async fn destroy(&self, subject_ref: &str) -> Result<bool, KeyringError> {
        let mut tx = self
            .begin_write()
            .await
            .map_err(|e| KeyringError::store(e.to_string()))?;
        self.lock_subject(&mut tx, subject_ref).await?;
        sqlx::query(
            "INSERT INTO tombstones (subject_ref, shredded_at) VALUES ($1, $2) \
             ON CONFLICT (subject_ref) DO NOTHING",
        )
        .bind(subject_ref)
        .bind(to_db(chrono::Utc::now()))
        .execute(&mut *tx)
        .await
        .map_err(store_error("writing a tombstone"))?;
        let deleted = sqlx::query("DELETE FROM subject_keys WHERE subject_ref = $1")
            .bind(subject_ref)
            .execute(&mut *tx)
            .await
            .map_err(store_error("destroying a subject key"))?;
        tx.commit()
            .await
            .map_err(store_error("committing a key destruction"))?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn is_tombstoned(&self, subject_ref: &str) -> Result<bool, KeyringError> {
        let row = sqlx::query("SELECT 1 AS one FROM tombstones WHERE subject_ref = $1")
            .bind(subject_ref)
            .fetch_optional(self.pool())
            .await
            .map_err(store_error("reading a tombstone"))?;
        Ok(row.is_some())
    }

    async fn tombstoned_among(&self, subject_refs: &[String]) -> Result<Vec<String>, KeyringError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(store_error("connecting"))?;
        let rows = fetch_in(&mut conn, &[], subject_refs, 100, |list| {
            format!("SELECT subject_ref FROM tombstones WHERE subject_ref IN ({list})")
        })
        .await
        .map_err(store_error("reading tombstones"))?;
        rows.iter()
            .map(|row| {
                row.try_get::<String, _>("subject_ref")
                    .map_err(store_error("reading tombstones"))
            })
            .collect()
    }

    async fn list(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, StoredKey)>, KeyringError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLS} FROM subject_keys WHERE subject_ref > $1 ORDER BY subject_ref LIMIT $2"
        )))
        .bind(after.unwrap_or(""))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(store_error("listing subject keys"))?;
        rows.iter()
            .map(|row| {
                let subject_ref: String = row
                    .try_get("subject_ref")
                    .map_err(|e| KeyringError::store(format!("subject_keys.subject_ref: {e}")))?;
                Ok((subject_ref, key_from(row)?))
            })
            .collect()
    }

    async fn replace(
        &self,
        subject_ref: &str,
        old: &StoredKey,
        new: &StoredKey,
    ) -> Result<bool, KeyringError> {
        let (o, n) = (&old.wrapped, &new.wrapped);
        let done = sqlx::query(
            "UPDATE subject_keys SET kek_id = $1, version = $2, nonce = $3, ciphertext = $4, created_at = $5 \
             WHERE subject_ref = $6 AND kek_id = $7 AND version = $8 AND nonce = $9 AND ciphertext = $10",
        )
        .bind(&n.kek_id)
        .bind(i64::from(n.version))
        .bind(hex::encode(n.nonce))
        .bind(hex::encode(&n.ciphertext))
        .bind(to_db(new.created_at))
        .bind(subject_ref)
        .bind(&o.kek_id)
        .bind(i64::from(o.version))
        .bind(hex::encode(o.nonce))
        .bind(hex::encode(&o.ciphertext))
        .execute(self.pool())
        .await
        .map_err(store_error("re-wrapping a subject key"))?;
        Ok(done.rows_affected() == 1)
    }
}
