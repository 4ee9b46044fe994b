//! The connection to SQLite or PostgreSQL through sqlx's `Any` driver: [`Store`], its
//! migrations, write transactions, and the helpers every aggregate's SQL shares (error
//! mapping, column getters).
//!
//! One SQL text serves both databases: the SQL is portable (`$n` placeholders, `RETURNING`,
//! partial unique indexes, text timestamps) and the few dialect differences (claiming a job
//! with `FOR UPDATE SKIP LOCKED`, connection pragmas) branch on [`Backend`]. Each backend runs
//! its own embedded migrations from `migrations/<backend>/` at connect.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Executor, Row};
use uuid::Uuid;

use super::rows::{JOB_COLS, corrupt, job_from};
use super::*;
use crate::domain::{Timestamp, to_db};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (embedded default), WAL mode.
    Sqlite,
    /// PostgreSQL (production).
    Postgres,
}

/// The SQL store.
#[derive(Clone)]
pub struct Store {
    pub(super) pool: AnyPool,
    pub(super) backend: Backend,
    /// SQLite's one writer, taken in turn by this process's write transactions (see
    /// [`Store::begin_write`]).
    writer: Arc<tokio::sync::Mutex<()>>,
}

/// A write transaction from [`Store::begin_write`]: the transaction (used through its
/// connection, as `&mut *tx`) and, on SQLite, this process's writer turn, given back when the
/// transaction ends.
pub(crate) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// On SQLite: the pool, to empty the write-ahead log after a commit that erased personal
    /// data.
    sqlite: Option<AnyPool>,
    erases: bool,
}

impl WriteTx {
    /// Marks the transaction as one that removes personal data from Lethe's own tables (an
    /// erased subject's id and e-mail): on SQLite, its commit also empties the write-ahead
    /// log, whose frames would otherwise keep the old rows until overwritten.
    pub(crate) fn erases_personal_data(&mut self) {
        self.erases = true;
    }

    /// Commits the transaction; see [`WriteTx::erases_personal_data`].
    ///
    /// # Errors
    /// The database's error.
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        if let (true, Some(pool)) = (self.erases, &self.sqlite) {
            empty_wal(pool).await;
        }
        Ok(())
    }
}

/// Checkpoints the SQLite write-ahead log into the database and truncates it to 0 bytes
/// (`PRAGMA wal_checkpoint(TRUNCATE)`), while this process's writer turn is still held. With
/// `secure_delete` on, the rows replaced in the database are zeroed, so after this no file of
/// the database holds them. A reader still on an older snapshot keeps the log from being
/// truncated: that is logged, and the next such commit tries again.
async fn empty_wal(pool: &AnyPool) {
    match sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(pool)
        .await
    {
        Ok(row) if row.try_get::<i64, _>(0).unwrap_or(1) == 0 => {}
        Ok(_) => tracing::warn!(
            "the SQLite write-ahead log could not be emptied after an erasure (a reader was busy); \
             its old frames are overwritten by later writes or emptied by the next erasure"
        ),
        Err(e) => tracing::warn!(error = %e, "emptying the SQLite write-ahead log failed"),
    }
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

pub(super) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| match &source {
        sqlx::Error::Database(e) if e.is_unique_violation() => {
            StoreError::Conflict(format!("{context}: already exists"))
        }
        _ => StoreError::Database { context, source },
    }
}

/// Every row of a statement with an `IN (…)` list over `values`, run once per chunk of at
/// most `chunk` values (SQLite binds at most 32,766 parameters, PostgreSQL 65,535):
/// `select(list)` builds the statement around `list`, the chunk's placeholders
/// `$k+1, …, $k+n`, after the `leading` values bound first as `$1 … $k`.
///
/// # Errors
/// The database's.
pub(super) async fn fetch_in(
    conn: &mut AnyConnection,
    leading: &[&str],
    values: &[String],
    chunk: usize,
    select: impl Fn(&str) -> String,
) -> Result<Vec<AnyRow>, sqlx::Error> {
    let mut rows = Vec::new();
    for part in values.chunks(chunk.max(1)) {
        let list = (leading.len() + 1..=leading.len() + part.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut query = sqlx::query(AssertSqlSafe(select(&list)));
        for v in leading {
            query = query.bind(*v);
        }
        for v in part {
            query = query.bind(v.as_str());
        }
        rows.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(rows)
}

pub(super) fn now() -> Timestamp {
    chrono::Utc::now()
}

impl Store {
    /// Connects to `url` (`sqlite://path` or `postgres://…`), creating a SQLite file and its
    /// folder when missing, and runs the backend's migrations.
    ///
    /// # Errors
    /// `Database` when the connection fails, `Migrate` when migrations fail, `Conflict`… never.
    pub async fn connect(url: &SecretString, max_connections: u32) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let raw = url.expose_secret();
        let backend = if raw.starts_with("sqlite:") {
            Backend::Sqlite
        } else if raw.starts_with("postgres:") || raw.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Database {
                context: "parsing the database URL",
                source: sqlx::Error::Configuration(
                    "database URL must start with sqlite: or postgres:".into(),
                ),
            });
        };
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(raw)?,
            Backend::Postgres => raw.to_string(),
        };
        let options = AnyConnectOptions::from_str(&url).map_err(db("parsing the database URL"))?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 15000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        // Deleted and overwritten content is zeroed, not left on free pages:
                        // an erased subject's id must not linger in the file.
                        conn.execute("PRAGMA secure_delete = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(db("connecting to the database"))?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Self {
            pool,
            backend,
            writer: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// A bare pool on `url` without migrations (maintenance, e.g. creating test databases).
    ///
    /// # Errors
    /// `Database` when the connection fails.
    pub async fn connect_raw(url: &str) -> StoreResult<AnyPool> {
        sqlx::any::install_default_drivers();
        AnyPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .map_err(db("connecting to the database"))
    }

    /// One row by primary key `id`, decoded; `NotFound { entity }` when absent.
    pub(super) async fn by_id<T>(
        &self,
        sql: String,
        id: &str,
        entity: &'static str,
        context: &'static str,
        decode: fn(&AnyRow) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db(context))?;
        match row {
            Some(row) => decode(&row),
            None => Err(StoreError::NotFound {
                entity,
                id: id.to_string(),
            }),
        }
    }

    /// Every row of a parameterless query, decoded.
    pub(super) async fn all<T>(
        &self,
        sql: String,
        context: &'static str,
        decode: fn(&AnyRow) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(db(context))?
            .iter()
            .map(decode)
            .collect()
    }

    /// Claims the first job matching `condition` (SQL over `jobs`, `$4` = now), oldest due
    /// first. With `exclusive`, claims serialise on a PostgreSQL advisory lock (tried, not
    /// waited for: a busy lock means another worker is claiming, and `None` is returned) so
    /// that a condition reading other rows (no plan running) holds across concurrent
    /// claimers; SQLite serialises writers anyway, so the single statement is enough there.
    pub(super) async fn claim_where(
        &self,
        worker: &str,
        lease: Duration,
        condition: &str,
        exclusive: bool,
    ) -> StoreResult<Option<Job>> {
        let at = now();
        let expires = at + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            // SQLite serialises writers: the UPDATE below holds the write lock for the whole
            // select-and-update, so two workers can never claim the same row.
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET status = 'running', lease_owner = $1, lease_token = $2, \
               lease_expires_at = $3, attempts = attempts + 1, updated_at = $4 \
             WHERE id = (SELECT id FROM jobs WHERE {condition} \
                         ORDER BY run_at, created_at LIMIT 1 {lock}) \
             RETURNING {JOB_COLS}"
        );
        let mut tx = self.begin_write().await?;
        if exclusive && self.backend == Backend::Postgres {
            // Another worker is claiming a plan right now: it will take the batch; move on to
            // other work instead of queueing up behind it.
            let got: bool = sqlx::query("SELECT pg_try_advisory_xact_lock(7472696) AS got")
                .fetch_one(&mut *tx)
                .await
                .map_err(db("serialising erasure planners"))?
                .try_get("got")
                .map_err(|e| corrupt("jobs", e))?;
            if !got {
                return Ok(None);
            }
        }
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(worker)
            .bind(Uuid::new_v4().to_string())
            .bind(to_db(expires))
            .bind(to_db(at))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("claiming a job"))?;
        tx.commit().await.map_err(db("committing a claim"))?;
        row.as_ref().map(job_from).transpose()
    }

    /// The pool, for tests and maintenance commands.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begins a transaction that may write. On SQLite it takes the write lock at `BEGIN`
    /// (`BEGIN IMMEDIATE`, waiting up to `busy_timeout`): a deferred transaction that reads
    /// first cannot become a writer once another connection has committed since its read
    /// (`SQLITE_BUSY_SNAPSHOT`, which no busy timeout retries), so a read-then-write such as a
    /// cancellation would fail at random under load. PostgreSQL begins as usual.
    ///
    /// # Errors
    /// `Database` when no connection is free within the acquire timeout, or the lock is not
    /// granted within `busy_timeout`.
    pub(crate) async fn begin_write(&self) -> StoreResult<WriteTx> {
        let (tx, turn) = match self.backend {
            Backend::Sqlite => {
                // Writers of this process queue here, in order, rather than in SQLite's busy
                // handler, which sleeps 1, 2, 5 … 100 ms between tries: with several jobs at
                // once those sleeps were most of a short task's overhead.
                let turn = Arc::clone(&self.writer).lock_owned().await;
                (self.pool.begin_with("BEGIN IMMEDIATE").await, Some(turn))
            }
            Backend::Postgres => (self.pool.begin().await, None),
        };
        Ok(WriteTx {
            tx: tx.map_err(db("starting a transaction"))?,
            _turn: turn,
            sqlite: (self.backend == Backend::Sqlite).then(|| self.pool.clone()),
            erases: false,
        })
    }
}

/// Adds `mode=rwc` so SQLite creates the file, and creates its folder.
/// Creates the SQLite database file with mode 0600 when it is missing (SQLite then creates its
/// `-wal` and `-shm` files with the same mode), and takes group and other access away from
/// existing ones: the database holds every account's password hash and the wrapped keys, like
/// the key files beside it.
fn restrict_sqlite_files(path: &std::path::Path) -> StoreResult<()> {
    let failed = |e| StoreError::Database {
        context: "restricting the SQLite files to their owner",
        source: sqlx::Error::Io(e),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(failed(e)),
        }
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            match std::fs::metadata(&file) {
                Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                        .map_err(failed)?;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(failed(e)),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, failed);
    Ok(())
}

fn prepare_sqlite_url(raw: &str) -> StoreResult<String> {
    let rest = raw.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let parent = std::path::Path::new(path).parent();
    if let Some(parent) = parent.filter(|p| path != ":memory:" && !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| StoreError::Database {
            context: "creating the SQLite folder",
            source: sqlx::Error::Io(e),
        })?;
    }
    if path != ":memory:" && !path.is_empty() {
        restrict_sqlite_files(std::path::Path::new(path))?;
    }
    let query = if query.contains("mode=") {
        query.to_string()
    } else if query.is_empty() {
        "mode=rwc".to_string()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

impl Store {
    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs a trivial query; for readiness probes.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db("pinging the database"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both backends run the same migrations: same versions, same descriptions, in the same
    /// order, so a change to one folder without the other fails here, not in production.
    #[test]
    fn the_sqlite_and_postgresql_migration_folders_hold_the_same_migrations() {
        let names = |m: &sqlx::migrate::Migrator| -> Vec<(i64, String)> {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect()
        };
        let sqlite = names(&SQLITE_MIGRATIONS);
        let postgres = names(&POSTGRES_MIGRATIONS);
        assert!(sqlite.len() >= 17, "{sqlite:?}");
        assert_eq!(sqlite, postgres);
        let versions: Vec<i64> = sqlite.iter().map(|(v, _)| *v).collect();
        let expected: Vec<i64> = (1..=versions.len() as i64).collect();
        assert_eq!(
            versions, expected,
            "versions are numbered 1, 2, 3… without gaps"
        );
    }
}
