//! The audit chain's append, inside the transaction of the change it records, so the log
//! and the state it describes cannot disagree.

use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::db::{db, now};
use super::rows::{corrupt, get_s};
use super::*;
use crate::audit::{AuditEntry, NewAuditEntry, entry_hash};
use crate::domain::{from_db, to_db};

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
