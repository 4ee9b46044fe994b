//! The audit chain's append, inside the transaction of the change it records, so the log
//! and the state it describes cannot disagree.

use serde_json::Value;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::StoreResult;
use super::db::Store;
use super::db::{db, now};
use super::rows::{AUDIT_COLS, audit_from, corrupt, get_s};
use crate::audit::{AuditEntry, NewAuditEntry, entry_hash};
use crate::domain::{from_db, to_db};

/// Which audit entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only entries with `seq > after_seq` (keyset pagination).
    pub after_seq: Option<i64>,
    /// Only entries with `seq <= until_seq` (an export that ends at a checkpoint).
    pub until_seq: Option<i64>,
    /// Only entries at or after this time.
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only entries before this time.
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// Only this action (e.g. `request.approved`).
    pub action: Option<String>,
    /// Only this request.
    pub request_id: Option<String>,
    /// At most this many.
    pub limit: Option<i64>,
}

/// Appends an audit entry inside the caller's transaction. The first statement takes the
/// write lock on `audit_head` (a row lock on PostgreSQL, the database write lock on SQLite), so
/// concurrent appends serialise and the chain never forks.
pub(super) async fn append_audit_in(
    conn: &mut AnyConnection,
    entry: NewAuditEntry,
) -> StoreResult<AuditEntry> {
    let row = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
        .fetch_one(&mut *conn)
        .await
        .map_err(db("locking the audit head"))?;
    let seq: i64 = row.try_get("seq").map_err(|e| corrupt("audit_head", e))?;
    let prev_hash = get_s(&row, "audit_head", "hash")?;
    // Truncate to microseconds so the hash is computed on exactly what is stored.
    let at = from_db(&to_db(now())).expect("own format parses");
    let hash = entry_hash(
        &prev_hash,
        seq,
        at,
        &entry.actor,
        &entry.action,
        entry.request_id.as_deref(),
        entry.subject.as_deref(),
        &entry.details,
    );
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(&hash)
        .execute(&mut *conn)
        .await
        .map_err(db("moving the audit head"))?;
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, request_id, subject, details, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(seq)
    .bind(to_db(at))
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(&entry.request_id)
    .bind(&entry.subject)
    .bind(entry.details.to_string())
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut *conn)
    .await
    .map_err(db("appending an audit entry"))?;
    Ok(AuditEntry {
        seq,
        at,
        actor: entry.actor,
        action: entry.action,
        request_id: entry.request_id,
        subject: entry.subject,
        details: entry.details,
        prev_hash,
        hash,
    })
}

/// Adds `key: value` to an audit entry's details (the id the database just assigned).
pub(super) fn with_detail(mut audit: NewAuditEntry, key: &str, value: &str) -> NewAuditEntry {
    if let Value::Object(map) = &mut audit.details {
        map.insert(key.into(), Value::String(value.to_string()));
    }
    audit
}

impl Store {
    /// Appends one entry to the chain.
    pub async fn append_audit(&self, entry: NewAuditEntry) -> StoreResult<AuditEntry> {
        let mut tx = self.begin_write().await?;
        let appended = append_audit_in(&mut tx, entry).await?;
        tx.commit().await.map_err(db("committing an audit entry"))?;
        Ok(appended)
    }

    /// Entries matching the filter, in chain order.
    pub async fn audit_entries(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
        let limit = filter.limit.unwrap_or(1000).clamp(1, 10_000);
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {AUDIT_COLS} FROM audit_log \
             WHERE seq > $1 AND ($2 IS NULL OR at >= $2) AND ($3 IS NULL OR at < $3) \
               AND ($4 IS NULL OR action = $4) AND ($5 IS NULL OR request_id = $5) \
               AND seq <= $7 \
             ORDER BY seq LIMIT $6"
        )))
        .bind(filter.after_seq.unwrap_or(0))
        .bind(filter.from.map(to_db))
        .bind(filter.to.map(to_db))
        .bind(&filter.action)
        .bind(&filter.request_id)
        .bind(limit)
        .bind(filter.until_seq.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading the audit log"))?
        .iter()
        .map(audit_from)
        .collect()
    }

    /// The recorded head of the chain: `(seq, hash)` of the last append (`(0, GENESIS)` when
    /// empty).
    pub async fn audit_head(&self) -> StoreResult<(i64, String)> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db("reading the audit head"))?;
        Ok((
            row.try_get("seq").map_err(|e| corrupt("audit_head", e))?,
            get_s(&row, "audit_head", "hash")?,
        ))
    }
}
