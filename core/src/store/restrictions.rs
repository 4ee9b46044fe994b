//! Restriction of processing (GDPR Art. 18) on the SQL store: the subjects pipelines must not
//! process.
//!
//! Unlike the rest of the store, which names subjects by pseudonym wherever it can, this table
//! is keyed by subject id: pipelines hold subject ids, not pseudonyms, so this is what they can
//! honour. Only admins and producer tokens may read it (`GET /v1/subjects/restricted`); the
//! audit entries of both changes name the subject by pseudonym only.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::StoreResult;
use super::audit_chain::append_audit_in;
use super::db::{Store, db, now};
use super::rows::{get_s, get_ts};
use crate::audit::NewAuditEntry;
use crate::domain::{SubjectId, to_db};
use serde::Deserialize;
use serde::Serialize;

/// A subject whose processing is restricted (GDPR Art. 18): pipelines must keep their data
/// stored but not process it. Listed by `GET /v1/subjects/restricted` for admins and
/// pipelines, which need the subject ids to honour it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"subject_id": "u-1042", "restricted_since": "2025-02-01T09:00:05Z",
    "request_id": "1e7c…"}))]
pub struct RestrictedSubject {
    /// The data subject.
    pub subject_id: String,
    /// When the restriction took effect (its request completed).
    pub restricted_since: chrono::DateTime<chrono::Utc>,
    /// The restriction request that set it.
    pub request_id: String,
}

const COLS: &str = "subject_id, restricted_since, request_id";

fn restricted_from(row: &AnyRow) -> StoreResult<RestrictedSubject> {
    let t = "restricted_subjects";
    Ok(RestrictedSubject {
        subject_id: get_s(row, t, "subject_id")?,
        restricted_since: get_ts(row, t, "restricted_since")?,
        request_id: get_s(row, t, "request_id")?,
    })
}

/// `audit` with `key: value` added to its details.
fn with_flag(mut audit: NewAuditEntry, key: &str, value: bool) -> NewAuditEntry {
    if let Value::Object(map) = &mut audit.details {
        map.insert(key.into(), Value::Bool(value));
    }
    audit
}

async fn entry_in(
    conn: &mut AnyConnection,
    subject: &SubjectId,
) -> StoreResult<Option<RestrictedSubject>> {
    sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLS} FROM restricted_subjects WHERE subject_id = $1"
    )))
    .bind(subject.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("reading a restriction"))?
    .as_ref()
    .map(restricted_from)
    .transpose()
}

impl Store {
    /// Marks `subject` restricted by request `request_id` and appends `audit` (with
    /// `already_restricted` added to its details), in one transaction. A subject already
    /// restricted keeps its first entry, which is returned.
    pub async fn restrict_subject(
        &self,
        subject: &SubjectId,
        request_id: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<RestrictedSubject> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO restricted_subjects (subject_id, restricted_since, request_id) \
             VALUES ($1, $2, $3) ON CONFLICT (subject_id) DO NOTHING",
        )
        .bind(subject.as_str())
        .bind(to_db(now()))
        .bind(request_id)
        .execute(&mut *tx)
        .await
        .map_err(db("restricting a subject"))?;
        let entry = entry_in(&mut tx, subject).await?.ok_or_else(|| {
            super::rows::corrupt(
                "restricted_subjects",
                "the restriction just written is gone",
            )
        })?;
        let already = inserted.rows_affected() == 0;
        append_audit_in(&mut tx, with_flag(audit, "already_restricted", already)).await?;
        tx.commit().await.map_err(db("committing a restriction"))?;
        Ok(entry)
    }

    /// Lifts `subject`'s restriction and appends `audit`, in one transaction; returns the entry
    /// removed. `None`: the subject was not restricted, and nothing is audited.
    pub async fn lift_restriction(
        &self,
        subject: &SubjectId,
        audit: NewAuditEntry,
    ) -> StoreResult<Option<RestrictedSubject>> {
        let mut tx = self.begin_write().await?;
        let entry = entry_in(&mut tx, subject).await?;
        sqlx::query("DELETE FROM restricted_subjects WHERE subject_id = $1")
            .bind(subject.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db("lifting a restriction"))?;
        if entry.is_some() {
            append_audit_in(&mut tx, audit).await?;
        }
        tx.commit()
            .await
            .map_err(db("committing the lift of a restriction"))?;
        Ok(entry)
    }

    /// Restricted subjects ordered by subject id, those after `after` only (keyset cursor),
    /// at most `limit` (clamped to 1–1000).
    pub async fn restricted_subjects(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<RestrictedSubject>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLS} FROM restricted_subjects WHERE ($1 IS NULL OR subject_id > $1) \
             ORDER BY subject_id LIMIT $2"
        )))
        .bind(after)
        .bind(limit.clamp(1, 1000))
        .fetch_all(self.pool())
        .await
        .map_err(db("listing restricted subjects"))?
        .iter()
        .map(restricted_from)
        .collect()
    }
}
