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
use super::{NewExtension, PrivacyRequest, RegisterEntry, RegisterFilter, StoreError, StoreResult};
use crate::audit::NewAuditEntry;
use crate::domain::{check_extension, extended_due_date, from_db, to_db};

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
