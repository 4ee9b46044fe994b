//! E-mail verification codes on the SQL store: one live code per account, kept as a hash with
//! its expiry and the wrong guesses made so far.

use sqlx::{AssertSqlSafe, Row};

use super::audit_chain::append_audit_in;
use super::db::{Store, db, now};
use super::rows::{USER_COLS, user_from};
use super::rows::{corrupt, get_s, get_ts};
use super::{StoreResult, User};
use crate::audit::NewAuditEntry;
use crate::domain::{Timestamp, to_db};

/// What checking an e-mail verification code led to.
#[derive(Debug, Clone)]
pub enum EmailCodeOutcome {
    /// Right: the account is verified now (audited as `account.email_verified`).
    Verified(User),
    /// Wrong; this many more tries are left for this code.
    Wrong {
        /// Tries left.
        left: u32,
    },
    /// No live code: never sent, expired, used up by wrong guesses, or already used.
    NoCode,
}

/// Deletes the account's code (spent, expired or used up).
async fn void(tx: &mut super::db::WriteTx, user_id: &str) -> StoreResult<()> {
    sqlx::query("DELETE FROM email_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .map_err(db("voiding an e-mail code"))?;
    Ok(())
}

impl Store {
    /// Records the hash of a new e-mail verification code for the account, replacing any
    /// earlier one (one live code per account).
    pub async fn set_email_code(
        &self,
        user_id: &str,
        code_hash: &str,
        expires_at: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM email_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db("replacing an e-mail code"))?;
        sqlx::query(
            "INSERT INTO email_codes (user_id, code_hash, expires_at, attempts, created_at) \
             VALUES ($1, $2, $3, 0, $4)",
        )
        .bind(user_id)
        .bind(code_hash)
        .bind(to_db(expires_at))
        .bind(to_db(now()))
        .execute(&mut *tx)
        .await
        .map_err(db("recording an e-mail code"))?;
        tx.commit().await.map_err(db("committing an e-mail code"))?;
        Ok(())
    }

    /// Checks a code's hash against the account's live code, in one transaction: a right code
    /// verifies the account (appending `audit`) and is spent; a wrong one counts, and the
    /// `max_attempts`-th wrong one voids the code; an expired code is void.
    pub async fn check_email_code(
        &self,
        user_id: &str,
        code_hash: &str,
        max_attempts: u32,
        audit: NewAuditEntry,
    ) -> StoreResult<EmailCodeOutcome> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT code_hash, expires_at, attempts FROM email_codes WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("reading an e-mail code"))?;
        let Some(row) = row else {
            return Ok(EmailCodeOutcome::NoCode);
        };
        let t = "email_codes";
        let stored = get_s(&row, t, "code_hash")?;
        let expires_at = get_ts(&row, t, "expires_at")?;
        let attempts = row
            .try_get::<i64, _>("attempts")
            .map_err(|e| corrupt(t, e))?;
        let max = i64::from(max_attempts.max(1));
        if expires_at <= now() || attempts >= max {
            void(&mut tx, user_id).await?;
            tx.commit().await.map_err(db("committing an e-mail code"))?;
            return Ok(EmailCodeOutcome::NoCode);
        }
        if stored != code_hash {
            let left = max - attempts - 1;
            if left <= 0 {
                void(&mut tx, user_id).await?;
            } else {
                sqlx::query("UPDATE email_codes SET attempts = attempts + 1 WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("counting a wrong e-mail code"))?;
            }
            tx.commit().await.map_err(db("committing an e-mail code"))?;
            return Ok(EmailCodeOutcome::Wrong {
                left: u32::try_from(left.max(0)).unwrap_or(0),
            });
        }
        void(&mut tx, user_id).await?;
        let user = sqlx::query(AssertSqlSafe(format!(
            "UPDATE users SET email_verified_at = $1 WHERE id = $2 RETURNING {USER_COLS}"
        )))
        .bind(to_db(now()))
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db("verifying an e-mail"))?;
        let user = user_from(&user)?;
        append_audit_in(&mut tx, audit).await?;
        tx.commit()
            .await
            .map_err(db("committing an e-mail verification"))?;
        Ok(EmailCodeOutcome::Verified(user))
    }
}
