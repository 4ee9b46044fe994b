//! Refresh tokens on the SQL store: token families, rotation and reuse detection
//! (OAuth 2.0 Security BCP, RFC 9700 §4.14.2).
//!
//! A sign-in starts a family with its first token; each refresh spends the token presented
//! (`used_at`) and records the next one of the same family, in one write transaction. A spent
//! token presented again means two parties hold the family (one of them stole it): every token
//! of the family is revoked and an `account.refresh_token_reused` audit entry is appended.
//! Only the hex SHA-256 of a token is stored.

use sqlx::AssertSqlSafe;
use sqlx::Row;
use uuid::Uuid;

use super::audit_chain::append_audit_in;
use super::db::{Store, WriteTx, db, now};
use super::rows::{USER_COLS, user_from};
use super::rows::{get_ots, get_s, get_ts};
use super::{StoreResult, User};
use crate::audit::NewAuditEntry;
use crate::domain::{Timestamp, to_db};

/// A refresh token to record: only its hash is stored.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    /// The account it refreshes.
    pub user_id: String,
    /// Hex SHA-256 of the whole token.
    pub token_hash: String,
    /// The account's token epoch at sign-in; the family stops refreshing once it moved on.
    pub epoch: i64,
    /// When this token stops being accepted (idle timeout: `auth.refresh_token_ttl_s`).
    pub expires_at: Timestamp,
    /// When the whole family stops (absolute session lifetime: `auth.session_max_s`).
    pub family_expires_at: Timestamp,
}

/// What presenting a refresh token led to.
#[derive(Debug, Clone)]
pub enum RefreshOutcome {
    /// The token was spent and its successor recorded; the account as it is now.
    Rotated {
        /// The account (not disabled, same token epoch).
        user: User,
        /// The token family (one per sign-in).
        family_id: String,
        /// When the successor stops being accepted.
        expires_at: Timestamp,
    },
    /// The token had been spent already: its whole family is now revoked (audited as
    /// `account.refresh_token_reused`).
    Reused,
    /// Unknown, expired or revoked, or its account disabled or signed out since.
    Refused,
}

const REFRESH_COLS: &str =
    "id, family_id, user_id, epoch, expires_at, family_expires_at, used_at, revoked_at";

struct RefreshRow {
    id: String,
    family_id: String,
    user_id: String,
    epoch: i64,
    expires_at: Timestamp,
    family_expires_at: Timestamp,
    used_at: Option<Timestamp>,
    revoked_at: Option<Timestamp>,
}

fn refresh_from(row: &sqlx::any::AnyRow) -> StoreResult<RefreshRow> {
    let t = "refresh_tokens";
    Ok(RefreshRow {
        id: get_s(row, t, "id")?,
        family_id: get_s(row, t, "family_id")?,
        user_id: get_s(row, t, "user_id")?,
        epoch: row
            .try_get::<i64, _>("epoch")
            .map_err(|e| super::rows::corrupt(t, e))?,
        expires_at: get_ts(row, t, "expires_at")?,
        family_expires_at: get_ts(row, t, "family_expires_at")?,
        used_at: get_ots(row, t, "used_at")?,
        revoked_at: get_ots(row, t, "revoked_at")?,
    })
}

async fn insert(
    tx: &mut WriteTx,
    family_id: &str,
    token: &NewRefreshToken,
    expires_at: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, epoch, created_at, \
         expires_at, family_expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(family_id)
    .bind(&token.user_id)
    .bind(&token.token_hash)
    .bind(token.epoch)
    .bind(to_db(now()))
    .bind(to_db(expires_at))
    .bind(to_db(token.family_expires_at))
    .execute(&mut **tx)
    .await
    .map_err(db("recording a refresh token"))?;
    Ok(())
}

/// Revokes every live token of one family.
async fn revoke_family(tx: &mut WriteTx, family_id: &str) -> StoreResult<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
    )
    .bind(to_db(now()))
    .bind(family_id)
    .execute(&mut **tx)
    .await
    .map_err(db("revoking a refresh-token family"))?;
    Ok(())
}

/// Revokes every live refresh token of an account (sign-out everywhere, a password change,
/// disabling), inside the caller's transaction.
pub(super) async fn revoke_all_of(tx: &mut WriteTx, user_id: &str) -> StoreResult<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
    )
    .bind(to_db(now()))
    .bind(user_id)
    .execute(&mut **tx)
    .await
    .map_err(db("revoking an account's refresh tokens"))?;
    Ok(())
}

impl Store {
    /// Starts a refresh-token family (a sign-in) with its first token; returns the family id.
    pub async fn start_refresh_family(&self, token: NewRefreshToken) -> StoreResult<String> {
        let family_id = Uuid::new_v4().to_string();
        let mut tx = self.begin_write().await?;
        // Families past their end are of no use to anyone: forget the account's (fixed-width
        // RFC 3339 text, so text order is time order).
        sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1 AND family_expires_at < $2")
            .bind(&token.user_id)
            .bind(to_db(now()))
            .execute(&mut *tx)
            .await
            .map_err(db("forgetting ended refresh-token families"))?;
        let expires_at = token.expires_at.min(token.family_expires_at);
        insert(&mut tx, &family_id, &token, expires_at).await?;
        tx.commit()
            .await
            .map_err(db("committing a refresh token"))?;
        Ok(family_id)
    }

    /// Spends the refresh token whose hash is `token_hash` and records its successor
    /// (`next_hash`, accepted until `next_expires_at` and never past the family's end) in one
    /// transaction. A token spent before revokes its whole family (reuse detection, RFC 9700
    /// §4.14.2) and appends `account.refresh_token_reused`.
    pub async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        next_hash: &str,
        next_expires_at: Timestamp,
    ) -> StoreResult<RefreshOutcome> {
        let mut tx = self.begin_write().await?;
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT {REFRESH_COLS} FROM refresh_tokens WHERE token_hash = $1"
        )))
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("looking up a refresh token"))?;
        let Some(row) = found else {
            return Ok(RefreshOutcome::Refused);
        };
        let token = refresh_from(&row)?;
        if token.revoked_at.is_some() {
            return Ok(RefreshOutcome::Refused);
        }
        if token.used_at.is_some() {
            revoke_family(&mut tx, &token.family_id).await?;
            let audit = NewAuditEntry::new(
                format!("user:{}", token.user_id),
                "account.refresh_token_reused",
            )
            .details(serde_json::json!({ "family_id": token.family_id }));
            append_audit_in(&mut tx, audit).await?;
            tx.commit()
                .await
                .map_err(db("committing a refresh-token revocation"))?;
            return Ok(RefreshOutcome::Reused);
        }
        let at = now();
        if token.expires_at <= at || token.family_expires_at <= at {
            return Ok(RefreshOutcome::Refused);
        }
        let user = sqlx::query(AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users WHERE id = $1"
        )))
        .bind(&token.user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("reading a refresh token's account"))?
        .as_ref()
        .map(user_from)
        .transpose()?;
        let user = match user {
            Some(user) if user.disabled_at.is_none() && user.token_epoch == token.epoch => user,
            _ => {
                revoke_family(&mut tx, &token.family_id).await?;
                tx.commit()
                    .await
                    .map_err(db("committing a refresh-token revocation"))?;
                return Ok(RefreshOutcome::Refused);
            }
        };
        sqlx::query("UPDATE refresh_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
            .bind(to_db(at))
            .bind(&token.id)
            .execute(&mut *tx)
            .await
            .map_err(db("spending a refresh token"))?;
        let next = NewRefreshToken {
            user_id: token.user_id.clone(),
            token_hash: next_hash.to_string(),
            epoch: token.epoch,
            expires_at: next_expires_at,
            family_expires_at: token.family_expires_at,
        };
        let expires_at = next_expires_at.min(token.family_expires_at);
        insert(&mut tx, &token.family_id, &next, expires_at).await?;
        tx.commit().await.map_err(db("committing a refresh"))?;
        Ok(RefreshOutcome::Rotated {
            user,
            family_id: token.family_id,
            expires_at,
        })
    }
}
