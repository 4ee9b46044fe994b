//! Ending sessions on the SQL store: the token epoch of an account, its password, and whether
//! it is disabled. Each change raises the epoch (every access token issued before is refused)
//! and is audited in the same transaction; it also revokes every refresh token of the account.

use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::audit_chain::{append_audit_in, with_detail};
use super::db::{Store, db, now};
use super::rows::{USER_COLS, user_from};
use super::{StoreError, StoreResult};
use crate::audit::NewAuditEntry;
use crate::domain::{Email, Role, SubjectId, to_db};

/// An account of a data subject, admin or auditor.
#[derive(Debug, Clone)]
pub struct User {
    /// UUID.
    pub id: String,
    /// Login, lower-cased.
    pub email: String,
    /// PHC string of the argon2id hash.
    pub password_hash: String,
    /// What the account may do.
    pub role: Role,
    /// The data subject this account speaks for; set by an admin only.
    pub subject_id: Option<SubjectId>,
    /// When the account was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Raised when every session of the account must end (sign-out everywhere, a password
    /// change, disabling): access tokens carry the epoch they were issued under and are
    /// refused once it moved on.
    pub token_epoch: i64,
    /// When an admin disabled the account; a disabled account cannot sign in.
    pub disabled_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the account proved it controls its e-mail (a one-time code); admins and auditors
    /// are verified at creation. An unverified subject account cannot be linked.
    pub email_verified_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A new account.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login.
    pub email: Email,
    /// PHC string of the argon2id hash (never the password).
    pub password_hash: String,
    /// Role.
    pub role: Role,
}

/// What to change on the account besides raising its epoch.
pub(super) enum AccountChange {
    /// Only the epoch (sign out everywhere).
    Epoch,
    /// A new password hash.
    Password(String),
    /// Disable (`true`) or enable it again.
    Disabled(bool),
}

impl Store {
    pub(super) async fn change_account(
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

impl Store {
    /// Creates an account. `Conflict` when the e-mail is taken.
    #[tracing::instrument(skip_all)]
    pub async fn create_user(&self, user: NewUser, audit: NewAuditEntry) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO users (id, email, password_hash, role, created_at, email_verified_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {USER_COLS}"
        )))
        .bind(Uuid::new_v4().to_string())
        .bind(user.email.as_str())
        .bind(&user.password_hash)
        .bind(user.role.as_str())
        .bind(to_db(now()))
        // Admins and auditors are created by an operator; a subject proves their e-mail.
        .bind((user.role != Role::Subject).then(|| to_db(now())))
        .fetch_one(&mut *tx)
        .await
        .map_err(db("creating an account"))?;
        let created = user_from(&row)?;
        append_audit_in(&mut tx, with_detail(audit, "user_id", &created.id)).await?;
        tx.commit().await.map_err(db("committing an account"))?;
        Ok(created)
    }

    /// The account with that e-mail, if any.
    pub async fn user_by_email(&self, email: &Email) -> StoreResult<Option<User>> {
        self.user_by_stored_email(email.as_str()).await
    }

    /// The account whose `email` column holds `stored`: an address, or the stand-in an
    /// erased subject's account keeps in its place (`erased:<keyed hash>`).
    pub async fn user_by_stored_email(&self, stored: &str) -> StoreResult<Option<User>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users WHERE email = $1"
        )))
        .bind(stored)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("looking up an account"))?
        .as_ref()
        .map(user_from)
        .transpose()
    }

    /// The account with that id; `NotFound` otherwise.
    pub async fn user(&self, id: &str) -> StoreResult<User> {
        self.by_id(
            format!("SELECT {USER_COLS} FROM users WHERE id = $1"),
            id,
            "user",
            "reading an account",
            user_from,
        )
        .await
    }

    /// Every account, oldest first.
    pub async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.all(
            format!("SELECT {USER_COLS} FROM users ORDER BY created_at, id"),
            "listing accounts",
            user_from,
        )
        .await
    }

    /// Raises the account's token epoch: every access token issued before is refused (sign
    /// out everywhere). Audited with `audit` in the same transaction.
    #[tracing::instrument(skip_all)]
    pub async fn end_sessions(&self, user_id: &str, audit: NewAuditEntry) -> StoreResult<User> {
        self.change_account(user_id, super::accounts::AccountChange::Epoch, audit)
            .await
    }

    /// Sets a new password hash and raises the token epoch (every other session ends).
    pub async fn set_password(
        &self,
        user_id: &str,
        password_hash: String,
        audit: NewAuditEntry,
    ) -> StoreResult<User> {
        self.change_account(
            user_id,
            super::accounts::AccountChange::Password(password_hash),
            audit,
        )
        .await
    }

    /// Disables (`true`) or enables an account, raising its token epoch either way.
    pub async fn set_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        audit: NewAuditEntry,
    ) -> StoreResult<User> {
        self.change_account(
            user_id,
            super::accounts::AccountChange::Disabled(disabled),
            audit,
        )
        .await
    }

    /// Links an account to a data subject id (admin only; never the user's own claim).
    pub async fn link_subject(
        &self,
        user_id: &str,
        subject: &SubjectId,
        audit: NewAuditEntry,
    ) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE users SET subject_id = $1 WHERE id = $2 RETURNING {USER_COLS}"
        )))
        .bind(subject.as_str())
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("linking an account to a subject"))?;
        let Some(row) = row else {
            return Err(StoreError::NotFound {
                entity: "user",
                id: user_id.to_string(),
            });
        };
        let user = user_from(&row)?;
        append_audit_in(&mut tx, audit).await?;
        tx.commit().await.map_err(db("committing a subject link"))?;
        Ok(user)
    }
}
