//! Legal holds (GDPR Art. 17(3)) and the expiry of access exports, on the SQL store.
//!
//! A hold names a dataset or a subject (by the audit pseudonym, never the id). It is active
//! while not released and before its end date. Creation and release are audited in the same
//! transaction.

use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::audit_chain::{append_audit_in, with_detail};
use super::db::{Store, db, now};
use super::rows::{REQUEST_COLS, request_from};
use super::rows::{get_os, get_ots, get_s, get_ts};
use super::{PrivacyRequest, StoreError, StoreResult};
use crate::audit::NewAuditEntry;
use crate::domain::Timestamp;
use crate::domain::to_db;
use serde::Deserialize;
use serde::Serialize;

/// A legal hold (GDPR Art. 17(3)): data an erasure must keep, of one dataset or one subject.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "8c1d…", "dataset_id": null, "subject_pseudonym": "5e0b…",
    "legal_basis": "Art. 17(3)(e): establishment, exercise or defence of legal claims",
    "reason": "Litigation hold, case 2025-117", "ends_at": "2026-06-30T00:00:00Z",
    "created_by": "user:1b2c…", "created_at": "2025-02-01T09:00:00Z", "released_by": null, "released_at": null}))]
pub struct LegalHold {
    /// UUID.
    pub id: String,
    /// The held dataset (a dataset hold), or null.
    pub dataset_id: Option<String>,
    /// The held subject's pseudonym (a subject hold), or null. Never the subject id.
    pub subject_pseudonym: Option<String>,
    /// The held subject's keyed reference in the keyring (a subject hold placed with a
    /// keyring), by which an erasure recognises the subject in rows shared with others. Not
    /// served.
    #[serde(skip)]
    pub subject_ref: Option<String>,
    /// Legal basis, e.g. `Art. 17(3)(b)`: a legal obligation to retain.
    pub legal_basis: String,
    /// Why, for the record.
    pub reason: String,
    /// When the hold lapses by itself (null: until released).
    pub ends_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Who placed it.
    pub created_by: String,
    /// When.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Who released it.
    pub released_by: Option<String>,
    /// When.
    pub released_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl LegalHold {
    /// Whether the hold applies at `at`: not released and not past its end date.
    pub fn is_active(&self, at: Timestamp) -> bool {
        self.released_at.is_none() && self.ends_at.is_none_or(|end| end > at)
    }
}

/// A legal hold to place: exactly one of `dataset_id` and `subject_pseudonym`.
#[derive(Debug, Clone)]
pub struct NewLegalHold {
    /// The held dataset.
    pub dataset_id: Option<String>,
    /// The held subject's pseudonym.
    pub subject_pseudonym: Option<String>,
    /// The held subject's keyed reference in the keyring ([`LegalHold::subject_ref`]).
    pub subject_ref: Option<String>,
    /// Legal basis.
    pub legal_basis: String,
    /// Why.
    pub reason: String,
    /// End date.
    pub ends_at: Option<Timestamp>,
    /// Who places it.
    pub created_by: String,
}

const HOLD_COLS: &str = "id, dataset_id, subject_pseudonym, subject_ref, legal_basis, reason, \
    ends_at, created_by, created_at, released_by, released_at";

fn hold_from(row: &AnyRow) -> StoreResult<LegalHold> {
    let t = "legal_holds";
    Ok(LegalHold {
        id: get_s(row, t, "id")?,
        dataset_id: get_os(row, t, "dataset_id")?,
        subject_pseudonym: get_os(row, t, "subject_pseudonym")?,
        subject_ref: get_os(row, t, "subject_ref")?,
        legal_basis: get_s(row, t, "legal_basis")?,
        reason: get_s(row, t, "reason")?,
        ends_at: get_ots(row, t, "ends_at")?,
        created_by: get_s(row, t, "created_by")?,
        created_at: get_ts(row, t, "created_at")?,
        released_by: get_os(row, t, "released_by")?,
        released_at: get_ots(row, t, "released_at")?,
    })
}

impl Store {
    /// Places a legal hold (audited).
    pub async fn create_legal_hold(
        &self,
        hold: NewLegalHold,
        audit: NewAuditEntry,
    ) -> StoreResult<LegalHold> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO legal_holds (id, dataset_id, subject_pseudonym, subject_ref, \
             legal_basis, reason, ends_at, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {HOLD_COLS}"
        )))
        .bind(Uuid::new_v4().to_string())
        .bind(&hold.dataset_id)
        .bind(&hold.subject_pseudonym)
        .bind(&hold.subject_ref)
        .bind(&hold.legal_basis)
        .bind(&hold.reason)
        .bind(hold.ends_at.map(to_db))
        .bind(&hold.created_by)
        .bind(to_db(now()))
        .fetch_one(&mut *tx)
        .await
        .map_err(db("placing a legal hold"))?;
        let created = hold_from(&row)?;
        append_audit_in(&mut tx, with_detail(audit, "hold_id", &created.id)).await?;
        tx.commit().await.map_err(db("committing a legal hold"))?;
        Ok(created)
    }

    /// Legal holds, oldest first; only active ones when `active_only`.
    pub async fn list_legal_holds(&self, active_only: bool) -> StoreResult<Vec<LegalHold>> {
        let filter = if active_only {
            "WHERE released_at IS NULL AND (ends_at IS NULL OR ends_at > $1)"
        } else {
            "WHERE $1 = $1"
        };
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {HOLD_COLS} FROM legal_holds {filter} ORDER BY created_at, id"
        )))
        .bind(to_db(now()))
        .fetch_all(self.pool())
        .await
        .map_err(db("listing legal holds"))?
        .iter()
        .map(hold_from)
        .collect()
    }

    /// The active holds an erasure of this subject must respect: every dataset hold and the
    /// subject's own.
    pub async fn active_holds_for(&self, subject_pseudonym: &str) -> StoreResult<Vec<LegalHold>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {HOLD_COLS} FROM legal_holds \
             WHERE released_at IS NULL AND (ends_at IS NULL OR ends_at > $1) \
               AND (dataset_id IS NOT NULL OR subject_pseudonym = $2) \
             ORDER BY created_at, id"
        )))
        .bind(to_db(now()))
        .bind(subject_pseudonym)
        .fetch_all(self.pool())
        .await
        .map_err(db("reading legal holds"))?
        .iter()
        .map(hold_from)
        .collect()
    }

    /// Releases a hold (audited); `NotFound`, or `Conflict` when already released.
    pub async fn release_legal_hold(
        &self,
        id: &str,
        actor: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<LegalHold> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE legal_holds SET released_by = $1, released_at = $2 \
             WHERE id = $3 AND released_at IS NULL RETURNING {HOLD_COLS}"
        )))
        .bind(actor)
        .bind(to_db(now()))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("releasing a legal hold"))?;
        let Some(row) = row else {
            let exists = sqlx::query("SELECT 1 AS one FROM legal_holds WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("reading a legal hold"))?;
            return Err(match exists {
                None => StoreError::NotFound {
                    entity: "legal hold",
                    id: id.to_string(),
                },
                Some(_) => StoreError::Conflict(format!("legal hold {id} is already released")),
            });
        };
        let released = hold_from(&row)?;
        append_audit_in(&mut tx, with_detail(audit, "hold_id", id)).await?;
        tx.commit().await.map_err(db("committing a release"))?;
        Ok(released)
    }

    /// Requests whose export expired and was not deleted yet, oldest first, at most `limit`.
    pub async fn expired_exports(&self, limit: i64) -> StoreResult<Vec<PrivacyRequest>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {REQUEST_COLS} FROM requests \
             WHERE export_expires_at <= $1 AND export_deleted_at IS NULL \
               AND export_path IS NOT NULL ORDER BY export_expires_at LIMIT $2"
        )))
        .bind(to_db(now()))
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db("listing expired exports"))?
        .iter()
        .map(request_from)
        .collect()
    }

    /// Requests of the subject named by `subject_pseudonym` whose export is on file (written
    /// and not deleted yet), expired or not: what an erasure must delete.
    pub async fn live_exports_of(
        &self,
        subject_pseudonym: &str,
    ) -> StoreResult<Vec<PrivacyRequest>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {REQUEST_COLS} FROM requests \
             WHERE subject_pseudonym = $1 AND export_deleted_at IS NULL \
               AND export_path IS NOT NULL ORDER BY received_at"
        )))
        .bind(subject_pseudonym)
        .fetch_all(self.pool())
        .await
        .map_err(db("listing a subject's exports"))?
        .iter()
        .map(request_from)
        .collect()
    }

    /// Records that a request's expired export was deleted (audited once); `false` when it
    /// already was.
    pub async fn mark_export_deleted(
        &self,
        request_id: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE requests SET export_deleted_at = $1 \
             WHERE id = $2 AND export_deleted_at IS NULL",
        )
        .bind(to_db(now()))
        .bind(request_id)
        .execute(&mut *tx)
        .await
        .map_err(db("recording a deleted export"))?;
        if done.rows_affected() == 1 {
            append_audit_in(&mut tx, audit).await?;
        }
        tx.commit()
            .await
            .map_err(db("committing a deleted export"))?;
        Ok(done.rows_affected() == 1)
    }
}
