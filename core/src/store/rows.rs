//! Row decoding: the columns each table is read with, and the row types built from them.

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::*;
use crate::audit::AuditEntry;
use crate::domain::{
    DatasetFormat, RequestStatus, RequestType, Role, SubjectId, Timestamp, from_db,
};

pub(super) fn corrupt(table: &'static str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table,
        detail: detail.to_string(),
    }
}

pub(super) fn get_s(row: &AnyRow, table: &'static str, col: &str) -> StoreResult<String> {
    row.try_get::<String, _>(col)
        .map_err(|e| corrupt(table, format!("{col}: {e}")))
}

pub(super) fn get_os(row: &AnyRow, table: &'static str, col: &str) -> StoreResult<Option<String>> {
    row.try_get::<Option<String>, _>(col)
        .map_err(|e| corrupt(table, format!("{col}: {e}")))
}

pub(super) fn get_ts(row: &AnyRow, table: &'static str, col: &str) -> StoreResult<Timestamp> {
    from_db(&get_s(row, table, col)?).map_err(|e| corrupt(table, format!("{col}: {e}")))
}

pub(super) fn get_ots(
    row: &AnyRow,
    table: &'static str,
    col: &str,
) -> StoreResult<Option<Timestamp>> {
    get_os(row, table, col)?
        .map(|t| from_db(&t).map_err(|e| corrupt(table, format!("{col}: {e}"))))
        .transpose()
}

pub(super) fn get_json(row: &AnyRow, table: &'static str, col: &str) -> StoreResult<Option<Value>> {
    get_os(row, table, col)?
        .map(|t| serde_json::from_str(&t).map_err(|e| corrupt(table, format!("{col}: {e}"))))
        .transpose()
}

pub(super) const USER_COLS: &str = "id, email, password_hash, role, subject_id, created_at, \
     token_epoch, disabled_at, email_verified_at";

pub(super) fn user_from(row: &AnyRow) -> StoreResult<User> {
    let t = "users";
    Ok(User {
        id: get_s(row, t, "id")?,
        email: get_s(row, t, "email")?,
        password_hash: get_s(row, t, "password_hash")?,
        role: Role::parse(&get_s(row, t, "role")?).map_err(|e| corrupt(t, e))?,
        subject_id: get_os(row, t, "subject_id")?
            .map(SubjectId::parse)
            .transpose()
            .map_err(|e| corrupt(t, e))?,
        created_at: get_ts(row, t, "created_at")?,
        token_epoch: row
            .try_get::<i64, _>("token_epoch")
            .map_err(|e| corrupt(t, e))?,
        disabled_at: get_ots(row, t, "disabled_at")?,
        email_verified_at: get_ots(row, t, "email_verified_at")?,
    })
}

pub(super) const DATASET_COLS: &str = "id, name, root_url, subject_column, partition_columns, created_by, created_at, schema_json, \
     format, iceberg_catalog, iceberg_table";

pub(super) fn dataset_from(row: &AnyRow) -> StoreResult<Dataset> {
    let t = "datasets";
    Ok(Dataset {
        id: get_s(row, t, "id")?,
        name: get_s(row, t, "name")?,
        root_url: get_s(row, t, "root_url")?,
        subject_column: get_s(row, t, "subject_column")?,
        partition_columns: serde_json::from_str(&get_s(row, t, "partition_columns")?)
            .map_err(|e| corrupt(t, e))?,
        created_by: get_s(row, t, "created_by")?,
        created_at: get_ts(row, t, "created_at")?,
        schema: get_os(row, t, "schema_json")?
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|e| corrupt(t, e))?,
        format: {
            let text = get_s(row, t, "format")?;
            DatasetFormat::parse(&text)
                .ok_or_else(|| corrupt(t, format!("unknown dataset format {text:?}")))?
        },
        iceberg: match (
            get_os(row, t, "iceberg_catalog")?,
            get_os(row, t, "iceberg_table")?,
        ) {
            (Some(catalog), Some(table)) => Some(IcebergTableRef { catalog, table }),
            _ => None,
        },
    })
}

pub(super) const REQUEST_COLS: &str = "id, request_type, subject_id, subject_pseudonym, status, \
    filed_by, verification_note, idempotency_key, received_at, due_at, decided_by, decided_at, \
    decision_reason, completed_at, result, error, export_path, key_destroyed_at, \
    original_due_at, extended_at, extended_by, extension_months, extension_reason, \
    cooling_off_until, export_expires_at, export_deleted_at, details";

/// `'completed', 'rejected', 'failed'`: the final statuses as an SQL list (for `NOT IN`).
pub(super) fn final_statuses_sql() -> String {
    RequestStatus::ALL
        .into_iter()
        .filter(|s| s.is_final())
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The extension columns: all set, or none.
pub(super) fn extension_from(row: &AnyRow) -> StoreResult<Option<DeadlineExtension>> {
    let t = "requests";
    let Some(at) = get_ots(row, t, "extended_at")? else {
        return Ok(None);
    };
    let missing = |col: &str| corrupt(t, format!("{col} is null on an extended request"));
    let months = row
        .try_get::<Option<i64>, _>("extension_months")
        .map_err(|e| corrupt(t, format!("extension_months: {e}")))?
        .ok_or_else(|| missing("extension_months"))?;
    Ok(Some(DeadlineExtension {
        months: u32::try_from(months).map_err(|e| corrupt(t, format!("extension_months: {e}")))?,
        reason: get_os(row, t, "extension_reason")?.ok_or_else(|| missing("extension_reason"))?,
        by: get_os(row, t, "extended_by")?.ok_or_else(|| missing("extended_by"))?,
        at,
        original_due_at: get_ots(row, t, "original_due_at")?
            .ok_or_else(|| missing("original_due_at"))?,
    }))
}

pub(super) fn request_from(row: &AnyRow) -> StoreResult<PrivacyRequest> {
    let t = "requests";
    Ok(PrivacyRequest {
        id: get_s(row, t, "id")?,
        request_type: RequestType::parse(&get_s(row, t, "request_type")?)
            .map_err(|e| corrupt(t, e))?,
        subject_id: SubjectId::parse(get_s(row, t, "subject_id")?).map_err(|e| corrupt(t, e))?,
        subject_pseudonym: get_s(row, t, "subject_pseudonym")?,
        status: RequestStatus::parse(&get_s(row, t, "status")?).map_err(|e| corrupt(t, e))?,
        filed_by: get_s(row, t, "filed_by")?,
        verification_note: get_os(row, t, "verification_note")?,
        idempotency_key: get_os(row, t, "idempotency_key")?,
        received_at: get_ts(row, t, "received_at")?,
        due_at: get_ts(row, t, "due_at")?,
        extension: extension_from(row)?,
        decided_by: get_os(row, t, "decided_by")?,
        decided_at: get_ots(row, t, "decided_at")?,
        decision_reason: get_os(row, t, "decision_reason")?,
        completed_at: get_ots(row, t, "completed_at")?,
        result: get_json(row, t, "result")?,
        error: get_os(row, t, "error")?,
        export_path: get_os(row, t, "export_path")?,
        key_destroyed_at: get_ots(row, t, "key_destroyed_at")?,
        cooling_off_until: get_ots(row, t, "cooling_off_until")?,
        export_expires_at: get_ots(row, t, "export_expires_at")?,
        export_deleted_at: get_ots(row, t, "export_deleted_at")?,
        details: get_json(row, t, "details")?,
    })
}

pub(super) const JOB_COLS: &str = "id, kind, request_id, parent_id, payload, status, result, attempts, \
    max_attempts, run_at, lease_owner, lease_token, lease_expires_at, last_error, created_at, \
    updated_at";

pub(super) fn job_from(row: &AnyRow) -> StoreResult<Job> {
    let t = "jobs";
    let kind = get_s(row, t, "kind")?;
    let kind =
        JobKind::parse(&kind).ok_or_else(|| corrupt(t, format!("unknown job kind {kind}")))?;
    let status = get_s(row, t, "status")?;
    let status = JobStatus::parse(&status)
        .ok_or_else(|| corrupt(t, format!("unknown job status {status}")))?;
    Ok(Job {
        id: get_s(row, t, "id")?,
        kind,
        request_id: get_os(row, t, "request_id")?,
        parent_id: get_os(row, t, "parent_id")?,
        payload: get_json(row, t, "payload")?.unwrap_or(Value::Null),
        status,
        result: get_json(row, t, "result")?,
        attempts: row.try_get("attempts").map_err(|e| corrupt(t, e))?,
        max_attempts: row.try_get("max_attempts").map_err(|e| corrupt(t, e))?,
        run_at: get_ts(row, t, "run_at")?,
        lease_owner: get_os(row, t, "lease_owner")?,
        lease_token: get_os(row, t, "lease_token")?,
        lease_expires_at: get_ots(row, t, "lease_expires_at")?,
        last_error: get_os(row, t, "last_error")?,
        created_at: get_ts(row, t, "created_at")?,
        updated_at: get_ts(row, t, "updated_at")?,
    })
}

pub(super) const AUDIT_COLS: &str =
    "seq, at, actor, action, request_id, subject, details, prev_hash, hash";

pub(super) fn audit_from(row: &AnyRow) -> StoreResult<AuditEntry> {
    let t = "audit_log";
    Ok(AuditEntry {
        seq: row.try_get("seq").map_err(|e| corrupt(t, e))?,
        at: get_ts(row, t, "at")?,
        actor: get_s(row, t, "actor")?,
        action: get_s(row, t, "action")?,
        request_id: get_os(row, t, "request_id")?,
        subject: get_os(row, t, "subject")?,
        details: get_json(row, t, "details")?.unwrap_or(Value::Null),
        prev_hash: get_s(row, t, "prev_hash")?,
        hash: get_s(row, t, "hash")?,
    })
}
