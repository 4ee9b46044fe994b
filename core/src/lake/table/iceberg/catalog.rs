//! The Iceberg SQL catalog: the JDBC catalog's table `iceberg_tables` (as Java's
//! `JdbcCatalog` and pyiceberg's `SqlCatalog` create it) on SQLite or PostgreSQL, through
//! sqlx's `Any` driver.
//!
//! ```text
//! iceberg_tables(catalog_name, table_namespace, table_name,
//!                metadata_location, previous_metadata_location)
//! ```
//!
//! Loading a table reads its `metadata_location`; a commit is a compare-and-swap of that
//! column (`UPDATE … WHERE … AND metadata_location = <the one read>`): 0 rows updated means
//! another writer committed first (Iceberg spec, "Metastore Tables"; Java's
//! `JdbcTableOperations.doCommit`).

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};
use std::str::FromStr;

use crate::lake::error::LakeError;

/// A SQL catalog: its connection pool and its `catalog_name`.
#[derive(Clone)]
pub struct SqlCatalog {
    pool: AnyPool,
    uri: String,
    name: String,
}

impl std::fmt::Debug for SqlCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlCatalog")
            .field("uri", &redacted(&self.uri))
            .field("name", &self.name)
            .finish()
    }
}

/// The catalog URI without a password, for messages.
fn redacted(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => uri.to_string(),
    }
}

impl SqlCatalog {
    /// Connects to the catalog database at `uri` (`sqlite:///PATH/catalog.db`,
    /// `postgres://user:pass@host/db`), catalog `name`. At most 2 connections.
    ///
    /// # Errors
    /// [`LakeError::Table`] when the URI is not SQLite / PostgreSQL or the database cannot
    /// be reached (an `https://` URI is a REST catalog: [`Catalog::connect`]).
    pub async fn connect(uri: &str, name: &str) -> Result<Self, LakeError> {
        let error = |reason: String| LakeError::Table {
            root: redacted(uri),
            reason,
        };
        if uri.starts_with("http://") || uri.starts_with("https://") {
            return Err(error(
                "an http(s) URI is a REST catalog: use Catalog::connect".into(),
            ));
        }
        if !(uri.starts_with("sqlite:") || uri.starts_with("postgres")) {
            return Err(error(
                "the catalog URI must be sqlite:///PATH or postgres://…".into(),
            ));
        }
        sqlx::any::install_default_drivers();
        let options = AnyConnectOptions::from_str(uri)
            .map_err(|e| error(format!("invalid catalog URI: {e}")))?;
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(|e| error(format!("catalog database unreachable: {e}")))?;
        Ok(Self {
            pool,
            uri: redacted(uri),
            name: name.to_string(),
        })
    }

    /// The catalog's name (`catalog_name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn error(&self, reason: String) -> LakeError {
        LakeError::Table {
            root: format!("{} ({})", self.uri, self.name),
            reason,
        }
    }

    /// The `metadata_location` of table `namespace`.`table`.
    ///
    /// # Errors
    /// [`LakeError::Table`] when the query fails or the table is not in the catalog.
    pub async fn metadata_location(
        &self,
        namespace: &str,
        table: &str,
    ) -> Result<String, LakeError> {
        let row = sqlx::query(
            "SELECT metadata_location FROM iceberg_tables \
             WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3",
        )
        .bind(&self.name)
        .bind(namespace)
        .bind(table)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.error(format!("reading iceberg_tables: {e}")))?;
        let row =
            row.ok_or_else(|| self.error(format!("no table {namespace}.{table} in the catalog")))?;
        row.try_get::<Option<String>, _>(0)
            .map_err(|e| self.error(format!("reading metadata_location: {e}")))?
            .ok_or_else(|| {
                self.error(format!(
                    "table {namespace}.{table} has no metadata_location"
                ))
            })
    }

    /// Swaps the table's `metadata_location` from `old` to `new` (and
    /// `previous_metadata_location` to `old`) if it is still `old`. Returns false when
    /// another writer committed first (nothing changed).
    ///
    /// # Errors
    /// [`LakeError::Table`] when the update fails.
    pub async fn swap(
        &self,
        namespace: &str,
        table: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, LakeError> {
        let done = sqlx::query(
            "UPDATE iceberg_tables SET metadata_location = $1, previous_metadata_location = $2 \
             WHERE catalog_name = $3 AND table_namespace = $4 AND table_name = $5 \
             AND metadata_location = $6",
        )
        .bind(new)
        .bind(old)
        .bind(&self.name)
        .bind(namespace)
        .bind(table)
        .bind(old)
        .execute(&self.pool)
        .await
        .map_err(|e| self.error(format!("committing to iceberg_tables: {e}")))?;
        Ok(done.rows_affected() == 1)
    }
}

/// The catalog of a table: SQL (JDBC schema) or REST.
#[derive(Debug, Clone)]
pub enum Catalog {
    /// `sqlite:///…`, `postgres://…`.
    Sql(SqlCatalog),
    /// `https://…`, `http://…`.
    Rest(super::rest::RestCatalog),
}

impl Catalog {
    /// Connects to the catalog at `uri`, named `name` (the SQL catalog's `catalog_name`, the
    /// REST catalog's `warehouse`).
    ///
    /// # Errors
    /// [`LakeError::Table`] when it cannot be reached or the URI is of no known kind.
    pub async fn connect(uri: &str, name: &str) -> Result<Self, LakeError> {
        Self::connect_with(uri, name, std::env::var("LETHE_ICEBERG_REST_TOKEN").ok()).await
    }

    /// [`Catalog::connect`] with a REST catalog's bearer `token` given (from Lethe's
    /// configuration) instead of read from `LETHE_ICEBERG_REST_TOKEN`.
    ///
    /// # Errors
    /// As [`Catalog::connect`].
    pub async fn connect_with(
        uri: &str,
        name: &str,
        token: Option<String>,
    ) -> Result<Self, LakeError> {
        if uri.starts_with("http://") || uri.starts_with("https://") {
            Ok(Self::Rest(
                super::rest::RestCatalog::connect_with(uri, name, token).await?,
            ))
        } else {
            Ok(Self::Sql(SqlCatalog::connect(uri, name).await?))
        }
    }
}
