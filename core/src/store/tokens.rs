//! API tokens of pipelines (the producer role) on the SQL store.
//!
//! Only the hex SHA-256 of a token is stored (`api_tokens.token_hash`, unique); a token is found
//! by that hash on every call. Creation and revocation append their audit entry in the same
//! transaction.

use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::audit_chain::{append_audit_in, with_detail};
use super::db::{Store, db, now};
use super::rows::{corrupt, get_os, get_ots, get_s, get_ts};
use super::{StoreError, StoreResult};
use crate::audit::NewAuditEntry;
use crate::domain::Timestamp;
use crate::domain::{Role, to_db};
use serde::Deserialize;
use serde::Serialize;

/// An API token of a pipeline (the producer role). The secret is never stored: only its
/// SHA-256, which is not part of this view.
#[derive(Debug, Clone)]
pub struct ApiToken {
    /// UUID; producers act as `token:<id>` in history and audit entries.
    pub id: String,
    /// What it is for, e.g. `events-pipeline`.
    pub name: String,
    /// Always [`Role::Producer`].
    pub role: Role,
    /// Who created it (`user:<uuid>`, `system:cli`).
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
    /// When it was revoked; a revoked token authenticates nothing.
    pub revoked_at: Option<Timestamp>,
    /// What the token may do; `None` for tokens created before scopes existed (every dataset
    /// and the restricted list).
    pub scope: Option<TokenScope>,
}

/// What a producer token may do (least privilege).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"datasets": ["7f8e…"], "list_restricted": false}))]
pub struct TokenScope {
    /// Ids of the datasets it may ingest into; any other dataset is 403.
    pub datasets: Vec<String>,
    /// Whether it may read the list of restricted subjects (`GET /v1/subjects/restricted`,
    /// GDPR Art. 18), which holds subject ids.
    #[serde(default)]
    pub list_restricted: bool,
}

impl TokenScope {
    /// Whether the token may ingest into the dataset `dataset_id`.
    pub fn allows_dataset(scope: Option<&Self>, dataset_id: &str) -> bool {
        scope.is_none_or(|s| s.datasets.iter().any(|d| d == dataset_id))
    }

    /// Whether the token may read the restricted list.
    pub fn allows_restricted_list(scope: Option<&Self>) -> bool {
        scope.is_none_or(|s| s.list_restricted)
    }
}

/// An API token to record.
#[derive(Debug, Clone)]
pub struct NewApiToken {
    /// What it is for.
    pub name: String,
    /// Hex SHA-256 of the whole token ([`crate::domain::ApiTokenSecret::hash`]).
    pub token_hash: String,
    /// Who creates it.
    pub created_by: String,
    /// What it may do.
    pub scope: TokenScope,
}

const TOKEN_COLS: &str = "id, name, role, created_by, created_at, revoked_at, scope";

fn token_from(row: &AnyRow) -> StoreResult<ApiToken> {
    let t = "api_tokens";
    Ok(ApiToken {
        id: get_s(row, t, "id")?,
        name: get_s(row, t, "name")?,
        role: Role::parse(&get_s(row, t, "role")?).map_err(|e| corrupt(t, e))?,
        created_by: get_s(row, t, "created_by")?,
        created_at: get_ts(row, t, "created_at")?,
        revoked_at: get_ots(row, t, "revoked_at")?,
        scope: get_os(row, t, "scope")?
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|e| corrupt(t, e))?,
    })
}

impl Store {
    /// Records an API token (its hash only) with its audit entry, to which the token's id is
    /// added as `token_id`. `Conflict` when the hash is already known.
    pub async fn create_api_token(
        &self,
        token: NewApiToken,
        audit: NewAuditEntry,
    ) -> StoreResult<ApiToken> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO api_tokens (id, name, token_hash, role, created_by, created_at, scope) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {TOKEN_COLS}"
        )))
        .bind(Uuid::new_v4().to_string())
        .bind(&token.name)
        .bind(&token.token_hash)
        .bind(Role::Producer.as_str())
        .bind(&token.created_by)
        .bind(to_db(now()))
        .bind(serde_json::to_string(&token.scope).map_err(|e| corrupt("api_tokens", e))?)
        .fetch_one(&mut *tx)
        .await
        .map_err(db("creating an API token"))?;
        let created = token_from(&row)?;
        append_audit_in(&mut tx, with_detail(audit, "token_id", &created.id)).await?;
        tx.commit().await.map_err(db("committing an API token"))?;
        Ok(created)
    }

    /// The token whose secret hashes to `token_hash`, revoked or not.
    pub async fn api_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<ApiToken>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {TOKEN_COLS} FROM api_tokens WHERE token_hash = $1"
        )))
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await
        .map_err(db("looking up an API token"))?
        .as_ref()
        .map(token_from)
        .transpose()
    }

    /// Every API token, revoked ones included, oldest first.
    pub async fn list_api_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {TOKEN_COLS} FROM api_tokens ORDER BY created_at, id"
        )))
        .fetch_all(self.pool())
        .await
        .map_err(db("listing API tokens"))?
        .iter()
        .map(token_from)
        .collect()
    }

    /// Revokes a token and appends the audit entry; revoking a revoked token changes nothing
    /// and audits nothing. `NotFound` when there is no such token.
    pub async fn revoke_api_token(&self, id: &str, audit: NewAuditEntry) -> StoreResult<ApiToken> {
        let mut tx = self.begin_write().await?;
        let revoked = sqlx::query(AssertSqlSafe(format!(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
             RETURNING {TOKEN_COLS}"
        )))
        .bind(to_db(now()))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("revoking an API token"))?;
        let token = match revoked {
            Some(row) => {
                let token = token_from(&row)?;
                append_audit_in(&mut tx, audit).await?;
                token
            }
            None => {
                let existing = sqlx::query(AssertSqlSafe(format!(
                    "SELECT {TOKEN_COLS} FROM api_tokens WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("reading an API token"))?;
                match existing {
                    Some(row) => token_from(&row)?,
                    None => {
                        return Err(StoreError::NotFound {
                            entity: "api token",
                            id: id.to_string(),
                        });
                    }
                }
            }
        };
        tx.commit()
            .await
            .map_err(db("committing an API token revocation"))?;
        Ok(token)
    }
}
