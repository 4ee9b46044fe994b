//! Ending sessions on the SQL store: the token epoch of an account, its password, and whether
//! it is disabled. Each change raises the epoch (every access token issued before is refused)
//! and is audited in the same transaction; it also revokes every refresh token of the account.

use sqlx::AssertSqlSafe;

use super::audit_chain::append_audit_in;
use super::db::{SqlStore, db, now};
use super::rows::{USER_COLS, user_from};
use super::{StoreError, StoreResult, User};
use crate::audit::NewAuditEntry;
use crate::domain::to_db;

/// What to change on the account besides raising its epoch.
pub(super) enum AccountChange {
    /// Only the epoch (sign out everywhere).
    Epoch,
    /// A new password hash.
    Password(String),
    /// Disable (`true`) or enable it again.
    Disabled(bool),
}

impl SqlStore {
    pub(super) async fn change_account_impl(
        &self,
        user_id: &str,
        change: AccountChange,
        audit: NewAuditEntry,
    ) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
        let (set, value): (&str, Option<String>) = match change {
            AccountChange::Epoch => ("", None),
            AccountChange::Password(hash) => (", password_hash = $2", Some(hash)),
            AccountChange::Disabled(true) => (", disabled_at = $2", Some(to_db(now()))),
            AccountChange::Disabled(false) => (", disabled_at = NULL", None),
        };
        let sql = format!(
            "UPDATE users SET token_epoch = token_epoch + 1{set} WHERE id = $1 RETURNING {USER_COLS}"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(user_id);
        if let Some(value) = value {
            query = query.bind(value);
        }
        let row = query
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("changing an account"))?
            .ok_or_else(|| StoreError::NotFound {
                entity: "user",
                id: user_id.to_string(),
            })?;
        let user = user_from(&row)?;
        super::refresh::revoke_all_of(&mut tx, user_id).await?;
        append_audit_in(&mut tx, audit).await?;
        tx.commit()
            .await
            .map_err(db("committing an account change"))?;
        Ok(user)
    }
}
