//! Deadline extensions (GDPR Art. 12(3)) and the register of requests (Art. 5(2)) on the SQL
//! store.
//!
//! The rules are checked on the row as read (to say which one refuses), and again by the
//! conditional `UPDATE` itself: it only touches a request that is open, not yet extended and
//! still before its due date, so they hold under concurrency too. The register is read page by
//! page with a keyset cursor on `(received_at, id)`.

use sqlx::AssertSqlSafe;

use super::audit_chain::{append_audit_in, with_detail};
use super::db::{Store, db, now};
use super::rows::{REQUEST_COLS, final_statuses_sql, request_from};
use super::webhooks::RequestEventKind;
use super::{PrivacyRequest, StoreError, StoreResult};
use crate::audit::NewAuditEntry;
use crate::domain::ExtensionMonths;
use crate::domain::ExtensionReason;
use crate::domain::RequestStatus;
use crate::domain::RequestType;
use crate::domain::Timestamp;
use crate::domain::{check_extension, extended_due_date, from_db, to_db};
use serde::Deserialize;
use serde::Serialize;

/// A deadline extension recorded on a request (GDPR Art. 12(3)): at most one per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineExtension {
    /// Further months granted: 1 or 2.
    pub months: u32,
    /// Why; shown to the subject.
    pub reason: String,
    /// Admin who granted it (`user:<uuid>`).
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// The one-month deadline it replaced.
    pub original_due_at: Timestamp,
}

/// An extension to grant ([`super::Store::extend_deadline`]).
#[derive(Debug, Clone)]
pub struct NewExtension {
    /// Further months.
    pub months: ExtensionMonths,
    /// Why.
    pub reason: ExtensionReason,
    /// Admin granting it (`user:<uuid>`).
    pub by: String,
}

/// Which requests the register lists ([`super::Store::register_page`]): received in
/// `[from, to)`, after the keyset cursor, oldest first.
#[derive(Debug, Clone, Default)]
pub struct RegisterFilter {
    /// Received at or after this instant.
    pub from: Option<Timestamp>,
    /// Received before this instant.
    pub to: Option<Timestamp>,
    /// Keyset cursor: only entries after this `(received_at, id)`.
    pub after: Option<(Timestamp, String)>,
    /// At most this many (default 1000, max 10000).
    pub limit: Option<i64>,
}

/// One entry of the register of requests kept for accountability (GDPR Art. 5(2); a record in
/// the spirit of Art. 30): what was asked and when, what was decided, by whom and why, the
/// deadline and its extension. It holds no subject id or e-mail: the subject appears only as
/// the keyed pseudonym also used in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "id": "1e7c…", "type": "erasure", "status": "completed", "subject_pseudonym": "9f86d0…",
    "received_at": "2025-01-31T09:00:00Z", "due_at": "2025-04-30T09:00:00Z", "extended": true,
    "original_due_at": "2025-02-28T09:00:00Z", "extended_at": "2025-02-10T08:00:00Z",
    "extended_by": "user:1b2c…", "extension_months": 2,
    "extension_reason": "Twelve datasets across three regions must be searched.",
    "decided_by": "user:1b2c…", "decided_at": "2025-02-11T10:00:00Z", "decision_reason": null,
    "completed_at": "2025-02-11T10:00:05Z"
}))]
pub struct RegisterEntry {
    /// Request id.
    pub id: String,
    /// Right exercised.
    #[serde(rename = "type")]
    pub request_type: RequestType,
    /// Status at export time.
    pub status: RequestStatus,
    /// Keyed pseudonym of the subject (as in the audit log), never the subject id.
    pub subject_pseudonym: String,
    /// Received.
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// Deadline in force (extended, if `extended`).
    pub due_at: chrono::DateTime<chrono::Utc>,
    /// Whether the deadline was extended (GDPR Art. 12(3)).
    pub extended: bool,
    /// The one-month deadline an extension replaced.
    pub original_due_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the deadline was extended.
    pub extended_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Admin who extended it.
    pub extended_by: Option<String>,
    /// Further months granted (1 or 2).
    pub extension_months: Option<u32>,
    /// Why it was extended (as told to the subject).
    pub extension_reason: Option<String>,
    /// Admin who approved or rejected it.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Rejection reason (GDPR Art. 12(4)).
    pub decision_reason: Option<String>,
    /// Completed or failed at.
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl RegisterEntry {
    /// Column names, in CSV order; the JSON field names are the same.
    pub const COLUMNS: [&'static str; 16] = [
        "id",
        "type",
        "status",
        "subject_pseudonym",
        "received_at",
        "due_at",
        "extended",
        "original_due_at",
        "extended_at",
        "extended_by",
        "extension_months",
        "extension_reason",
        "decided_by",
        "decided_at",
        "decision_reason",
        "completed_at",
    ];

    /// The entry as one CSV record in [`Self::COLUMNS`] order: instants as RFC 3339 in UTC
    /// (`2025-01-31T09:00:00Z`, fractions of a second when present), booleans as
    /// `true`/`false`, absent values as empty fields.
    pub fn csv_record(&self) -> [String; 16] {
        fn ts(t: Timestamp) -> String {
            t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        }
        fn ots(t: Option<Timestamp>) -> String {
            t.map(ts).unwrap_or_default()
        }
        fn os(s: &Option<String>) -> String {
            s.clone().unwrap_or_default()
        }
        [
            self.id.clone(),
            self.request_type.as_str().into(),
            self.status.as_str().into(),
            self.subject_pseudonym.clone(),
            ts(self.received_at),
            ts(self.due_at),
            self.extended.to_string(),
            ots(self.original_due_at),
            ots(self.extended_at),
            os(&self.extended_by),
            self.extension_months
                .map(|m| m.to_string())
                .unwrap_or_default(),
            os(&self.extension_reason),
            os(&self.decided_by),
            ots(self.decided_at),
            os(&self.decision_reason),
            ots(self.completed_at),
        ]
    }
}

impl From<PrivacyRequest> for RegisterEntry {
    /// Keeps what the register shows and drops the rest: the subject id, the filer, the
    /// verification note, the result, the export.
    fn from(r: PrivacyRequest) -> Self {
        let extension = r.extension;
        Self {
            id: r.id,
            request_type: r.request_type,
            status: r.status,
            subject_pseudonym: r.subject_pseudonym,
            received_at: r.received_at,
            due_at: r.due_at,
            extended: extension.is_some(),
            original_due_at: extension.as_ref().map(|e| e.original_due_at),
            extended_at: extension.as_ref().map(|e| e.at),
            extended_by: extension.as_ref().map(|e| e.by.clone()),
            extension_months: extension.as_ref().map(|e| e.months),
            extension_reason: extension.map(|e| e.reason),
            decided_by: r.decided_by,
            decided_at: r.decided_at,
            decision_reason: r.decision_reason,
            completed_at: r.completed_at,
        }
    }
}

impl Store {
    /// Extends the deadline of a request once (GDPR Art. 12(3)): `due_at` becomes received +
    /// (1 + months) calendar months ([`crate::domain::extended_due_date`]), the one-month
    /// deadline is kept as the extension's `original_due_at`, and `audit` is appended with
    /// `due_at` and `original_due_at` added to its details, in one transaction. The rules are
    /// checked by the update itself, so two concurrent extensions cannot both succeed.
    ///
    /// # Errors
    /// `NotFound`; `ExtensionRefused` when the request is final, already extended, or its
    /// original due date has passed ([`crate::domain::check_extension`]).
    pub async fn extend_deadline(
        &self,
        id: &str,
        extension: NewExtension,
        audit: NewAuditEntry,
    ) -> StoreResult<PrivacyRequest> {
        // Truncated to microseconds, as stored, so the checks below see what the row will hold.
        let at = from_db(&to_db(now())).expect("own format parses");
        let current = self.request(id).await?;
        let extended_at = current.extension.as_ref().map(|e| e.at);
        check_extension(current.status, extended_at, current.due_at, at)?;
        let due_at = extended_due_date(current.received_at, extension.months);
        // The update is the transaction's first statement, so on SQLite it takes the write
        // lock at once (no stale read snapshot to upgrade).
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(AssertSqlSafe(format!(
            "UPDATE requests SET original_due_at = due_at, due_at = $1, extended_at = $2, \
               extended_by = $3, extension_months = $4, extension_reason = $5, updated_at = $2 \
             WHERE id = $6 AND extended_at IS NULL AND status NOT IN ({}) AND due_at > $2 \
             RETURNING {REQUEST_COLS}",
            final_statuses_sql()
        )))
        .bind(to_db(due_at))
        .bind(to_db(at))
        .bind(&extension.by)
        .bind(i64::from(extension.months.get()))
        .bind(extension.reason.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("extending a deadline"))?;
        let Some(updated) = updated else {
            // Another writer changed the request between the read and the update.
            drop(tx);
            let now_row = self.request(id).await?;
            let extended_at = now_row.extension.as_ref().map(|e| e.at);
            check_extension(now_row.status, extended_at, now_row.due_at, at)?;
            return Err(StoreError::Conflict(
                "the request changed while its deadline was being extended; try again".into(),
            ));
        };
        let updated = request_from(&updated)?;
        let original = updated
            .extension
            .as_ref()
            .map_or(current.due_at, |e| e.original_due_at);
        super::webhooks::enqueue_request_event_in(
            &mut tx,
            &updated,
            RequestEventKind::DeadlineExtended,
        )
        .await?;
        let audit = with_detail(audit, "due_at", &to_db(updated.due_at));
        let audit = with_detail(audit, "original_due_at", &to_db(original));
        append_audit_in(&mut tx, audit).await?;
        tx.commit()
            .await
            .map_err(db("committing a deadline extension"))?;
        Ok(updated)
    }

    /// One page of the register of requests: requests received in the filter's period, after
    /// its cursor, ordered by `(received_at, id)`; without subject ids.
    pub async fn register_page(&self, filter: &RegisterFilter) -> StoreResult<Vec<RegisterEntry>> {
        let limit = filter.limit.unwrap_or(1000).clamp(1, 10_000);
        let (after_at, after_id) = match &filter.after {
            Some((at, id)) => (Some(to_db(*at)), Some(id.as_str())),
            None => (None, None),
        };
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {REQUEST_COLS} FROM requests \
             WHERE ($1 IS NULL OR received_at >= $1) AND ($2 IS NULL OR received_at < $2) \
               AND ($3 IS NULL OR received_at > $3 OR (received_at = $3 AND id > $4)) \
             ORDER BY received_at, id LIMIT $5"
        )))
        .bind(filter.from.map(to_db))
        .bind(filter.to.map(to_db))
        .bind(after_at)
        .bind(after_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db("reading the register of requests"))?
        .iter()
        .map(|row| request_from(row).map(RegisterEntry::from))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    use crate::domain::{RequestStatus, RequestType, SubjectId};

    fn request() -> PrivacyRequest {
        let at = |d| chrono::Utc.with_ymd_and_hms(2025, 1, d, 9, 0, 0).unwrap();
        PrivacyRequest {
            id: "r-1".into(),
            request_type: RequestType::Erasure,
            subject_id: SubjectId::parse("u-secret").unwrap(),
            subject_pseudonym: "ps-1".into(),
            status: RequestStatus::Approved,
            filed_by: "user:s".into(),
            verification_note: Some("passport".into()),
            idempotency_key: None,
            received_at: at(2),
            due_at: chrono::Utc.with_ymd_and_hms(2025, 4, 2, 9, 0, 0).unwrap(),
            extension: Some(DeadlineExtension {
                months: 2,
                reason: "many datasets, \"three\" regions".into(),
                by: "user:a".into(),
                at: at(10),
                original_due_at: chrono::Utc.with_ymd_and_hms(2025, 2, 2, 9, 0, 0).unwrap(),
            }),
            decided_by: Some("user:a".into()),
            decided_at: Some(at(11)),
            decision_reason: None,
            completed_at: None,
            result: None,
            error: None,
            export_path: None,
            key_destroyed_at: None,
            cooling_off_until: None,
            export_expires_at: None,
            export_deleted_at: None,
            details: None,
        }
    }

    #[test]
    fn a_register_entry_has_the_same_columns_in_csv_and_json_and_no_subject_id() {
        let entry = RegisterEntry::from(request());
        let json = serde_json::to_value(&entry).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut columns = RegisterEntry::COLUMNS.to_vec();
        keys.sort_unstable();
        columns.sort_unstable();
        assert_eq!(keys, columns);
        let record = entry.csv_record();
        assert_eq!(record[0], "r-1");
        assert_eq!(record[1], "erasure");
        assert_eq!(record[4], "2025-01-02T09:00:00Z");
        assert_eq!(record[5], "2025-04-02T09:00:00Z");
        assert_eq!(record[6], "true");
        assert_eq!(record[7], "2025-02-02T09:00:00Z");
        assert_eq!(record[10], "2");
        assert_eq!(record[15], "", "not completed");
        let text = format!("{json}{}", record.join(","));
        assert!(!text.contains("u-secret") && !text.contains("passport"));
    }
}
