//! The store: every query Hookline makes, on embedded SQLite or on PostgreSQL, with one behaviour.
//!
//! SQL is written once where both engines accept it (`$1` placeholders, integer millisecond
//! timestamps, text IDs) and dispatched to the right pool by [`dispatch!`]; the few statements that
//! differ live beside each other in the feature's store module. Schema migrations are embedded per
//! backend under `migrations/<backend>/` with the same version numbers.

pub mod analysis;
pub mod deploys;
pub mod direct;
pub mod experiments;
pub mod fixes;
pub mod hooks;
pub mod inbound;
pub mod integrations;
pub mod monitors;
pub mod outbound;
pub mod people;
pub mod record;
pub mod services;
pub mod settings;
pub mod tenants;

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool};

use crate::config::{Backend, DatabaseConfig, DatabaseUrl};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Runs `$body` with `$pool` bound to the backend's pool for reads; the body is compiled once per
/// backend, so one SQL string and one row type serve both.
macro_rules! dispatch {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite(sqlite) => {
                let $pool = &sqlite.reader;
                $body
            }
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}

/// Like [`dispatch!`] for a statement that writes: on SQLite it runs on the single writer
/// connection, so writers of this process queue in order instead of spinning on SQLite's lock.
macro_rules! dispatch_write {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite(sqlite) => {
                let $pool = &sqlite.writer;
                $body
            }
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}

/// Like [`dispatch!`] for an open transaction: `$conn` is the transaction's connection.
macro_rules! dispatch_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::store::Tx::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::store::Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}

pub(crate) use {dispatch, dispatch_tx, dispatch_write};

/// `(…), (…)` placeholders for `rows` rows of `columns` values, for a multi-row statement.
/// SQLite gets anonymous `?` (it looks every named parameter up by a linear scan, which makes
/// binding hundreds of `$n` quadratic); PostgreSQL gets `$1, $2, …`.
pub fn values_placeholders(backend: Backend, rows: usize, columns: usize) -> String {
    use std::fmt::Write;
    // Written straight into one string: the inbound writer builds these for every batch.
    let mut sql = String::with_capacity(rows * columns * 6);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 1..=columns {
            if column > 1 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    let _ = write!(sql, "${}", row * columns + column);
                }
            }
        }
        sql.push(')');
    }
    sql
}

/// Write-ahead log frames past which the log is restarted: about 64 MiB with 4 KiB pages, 128 MiB
/// with the 8 KiB pages of a database Hookline created.
pub const WAL_RESTART_FRAMES: i64 = 16_384;

/// Tables whose rows belong to one tenant and are deleted by id (their children go by cascade).
#[derive(Debug, Clone, Copy)]
pub enum Owned {
    Services,
    Integrations,
    Experiments,
    Monitors,
}

/// Deletes a tenant's row by id; `NotFound` when the tenant has no such row.
pub async fn delete_owned(
    store: &Store,
    table: Owned,
    tenant_id: &str,
    id: &str,
) -> StoreResult<()> {
    let sql = match table {
        Owned::Services => "DELETE FROM services WHERE tenant_id = $1 AND id = $2",
        Owned::Integrations => "DELETE FROM integrations WHERE tenant_id = $1 AND id = $2",
        Owned::Experiments => "DELETE FROM experiments WHERE tenant_id = $1 AND id = $2",
        Owned::Monitors => "DELETE FROM monitors WHERE tenant_id = $1 AND id = $2",
    };
    let deleted = dispatch_write!(store, pool => {
        sqlx::query(sql)
            .bind(tenant_id)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
    });
    if deleted == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// What went wrong in the store, in terms the API layer can answer with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// From the inbound writer's own SQLite connection ([`direct`]).
    #[error("database error: {0}")]
    Direct(#[from] rusqlite::Error),
    #[error("schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored secret could not be opened: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    /// A stored value that cannot be read back (a damaged compressed body, an unknown encoding).
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    /// The database cannot be reached now (no connection within the acquire timeout, or the
    /// connection failed): worth retrying shortly.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict("already exists".to_owned())
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(error),
            _ => StoreError::Database(error),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A connection pool to one of the two backends.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgPool),
}

/// SQLite allows one writer at a time: writes go through a one-connection pool (queued fairly in
/// this process), reads through a pool of many (WAL lets them run beside the writer).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pub reader: SqlitePool,
    pub writer: SqlitePool,
    /// The database file, for [`Store::open_direct`]; `None` for a database in memory.
    file: Option<std::path::PathBuf>,
    busy_timeout: Duration,
}

/// A write transaction on either backend. Dropped without [`Tx::commit`], it rolls back.
pub enum Tx<'c> {
    Sqlite(sqlx::Transaction<'c, Sqlite>),
    Postgres(sqlx::Transaction<'c, Postgres>),
}

/// A writing connection kept between transactions by a task that writes in a steady stream (the
/// inbound writer). Lending a connection out and taking it back costs sqlx a round trip to the
/// database each way; keeping one saves both, at the price of the others waiting for it.
pub enum HeldConnection {
    Sqlite(sqlx::pool::PoolConnection<Sqlite>),
    Postgres(sqlx::pool::PoolConnection<Postgres>),
}

impl HeldConnection {
    /// Starts a write transaction on the held connection.
    pub async fn begin(&mut self) -> StoreResult<Tx<'_>> {
        use sqlx::Connection;
        Ok(match self {
            HeldConnection::Sqlite(conn) => Tx::Sqlite(conn.begin_with("BEGIN IMMEDIATE").await?),
            HeldConnection::Postgres(conn) => Tx::Postgres(conn.begin().await?),
        })
    }
}

impl Tx<'_> {
    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
        }
    }

    pub async fn commit(self) -> StoreResult<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

impl Store {
    /// Opens a pool for `url`, creating the SQLite file (WAL, foreign keys, busy timeout) if needed.
    pub async fn connect(url: &DatabaseUrl, settings: &DatabaseConfig) -> StoreResult<Store> {
        match url.backend() {
            Some(Backend::Sqlite) => {
                let options = SqliteConnectOptions::from_str(url.expose())?
                    .create_if_missing(true)
                    // For a new file: rows of a few KiB (webhook bodies) fit a page without
                    // overflow chains, and the log takes fewer, larger frames (measured in
                    // bench/README.md). An existing file keeps its page size.
                    .page_size(8192)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_millis(settings.sqlite_busy_timeout_ms));
                let in_memory =
                    url.expose().contains(":memory:") || url.expose().contains("mode=memory");
                let file = (!in_memory).then(|| options.get_filename().to_path_buf());
                // The writer connects first: it creates the file and switches it to WAL. It does
                // not checkpoint: `checkpoint` does that on a reader connection, so copying the
                // WAL back into the database does not hold up the one connection that writes.
                // An in-process SQLite connection cannot go stale, and the check sqlx makes
                // before lending one out is a round trip to its thread: the one writer paid it
                // on every transaction.
                let writer = SqlitePoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(
                        options
                            .clone()
                            .pragma("wal_autocheckpoint", "0")
                            // A restarted log is reused; one that grew past this is cut back.
                            .pragma("journal_size_limit", "134217728")
                            .pragma("cache_size", "-16384")
                            // Statement journals of the multi-row inserts stay in memory.
                            .pragma("temp_store", "memory"),
                    )
                    .await?;
                let reader = SqlitePoolOptions::new()
                    .max_connections(settings.max_connections)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await?;
                Ok(Store::Sqlite(SqliteStore {
                    reader,
                    writer,
                    // Only a file the writer opened (not one in memory) can take a second writer.
                    file: file.filter(|path| path.is_file()),
                    busy_timeout: Duration::from_millis(settings.sqlite_busy_timeout_ms),
                }))
            }
            Some(Backend::Postgres) => {
                let options = PgConnectOptions::from_str(url.expose())?;
                let pool = PgPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
                    .connect_with(options)
                    .await?;
                Ok(Store::Postgres(pool))
            }
            None => Err(StoreError::Database(sqlx::Error::Configuration(
                format!("unsupported database URL {url}").into(),
            ))),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(_) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies every pending migration of this backend; returns how many were applied.
    /// On PostgreSQL the migrator holds an advisory lock, so nodes starting together take turns.
    pub async fn migrate(&self) -> StoreResult<usize> {
        let before = self.applied_migrations().await?;
        match self {
            Store::Sqlite(sqlite) => SQLITE_MIGRATIONS.run(&sqlite.writer).await?,
            Store::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(self.applied_migrations().await?.saturating_sub(before))
    }

    async fn applied_migrations(&self) -> StoreResult<usize> {
        let table_exists = match self.backend() {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
            }
        };
        let exists: i64 =
            dispatch!(self, pool => sqlx::query_scalar(table_exists).fetch_one(pool).await?);
        if exists == 0 {
            return Ok(0);
        }
        let applied: i64 = dispatch!(self, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(pool)
                .await?
        });
        Ok(usize::try_from(applied).unwrap_or(0))
    }

    /// The embedded migrations of a backend, as `(version, description)`.
    pub fn migrations(backend: Backend) -> Vec<(i64, String)> {
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .iter()
            .map(|m| (m.version, m.description.to_string()))
            .collect()
    }

    /// Starts a write transaction. SQLite takes its write lock up front (`BEGIN IMMEDIATE`) so a
    /// writer in another process waits on the busy timeout instead of failing on a lock upgrade.
    /// Nothing else may wait for the writer while a transaction holds it.
    pub async fn begin(&self) -> StoreResult<Tx<'static>> {
        Ok(match self {
            Store::Sqlite(sqlite) => Tx::Sqlite(sqlite.writer.begin_with("BEGIN IMMEDIATE").await?),
            Store::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Takes a writing connection to keep for several transactions (see [`HeldConnection`]);
    /// on SQLite it is the one writer connection, so keep it briefly.
    pub async fn hold_writer(&self) -> StoreResult<HeldConnection> {
        Ok(match self {
            Store::Sqlite(sqlite) => HeldConnection::Sqlite(sqlite.writer.acquire().await?),
            Store::Postgres(pool) => HeldConnection::Postgres(pool.acquire().await?),
        })
    }

    /// A second connection to this SQLite file for the inbound writer ([`direct`]); `None` on
    /// PostgreSQL and for a SQLite database in memory.
    pub fn open_direct(&self) -> StoreResult<Option<direct::DirectSqlite>> {
        match self {
            Store::Sqlite(SqliteStore {
                file: Some(file),
                busy_timeout,
                ..
            }) => Ok(Some(direct::DirectSqlite::open(file, *busy_timeout)?)),
            _ => Ok(None),
        }
    }

    /// Copies the SQLite write-ahead log back into the database file as far as readers allow
    /// (the writer connection never does, see [`Store::connect`]); nothing on PostgreSQL.
    ///
    /// A passive checkpoint cannot restart a log that is written to without pause, so once the
    /// log passes [`WAL_RESTART_FRAMES`] the writer restarts it (between two of its
    /// transactions): the log is written again from its start, which bounds the file without
    /// paying for truncating and growing it again.
    pub async fn checkpoint(&self) -> StoreResult<()> {
        if let Store::Sqlite(sqlite) = self {
            let (_busy, log_frames, _copied): (i64, i64, i64) =
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&sqlite.reader)
                    .await?;
            if log_frames > WAL_RESTART_FRAMES {
                sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                    .execute(&sqlite.writer)
                    .await?;
            }
        }
        Ok(())
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> StoreResult<()> {
        dispatch!(self, pool => sqlx::query("SELECT 1").execute(pool).await?.rows_affected());
        Ok(())
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite(sqlite) => {
                sqlite.reader.close().await;
                sqlite.writer.close().await;
            }
            Store::Postgres(pool) => pool.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_positional_on_sqlite_and_numbered_on_postgres() {
        assert_eq!(values_placeholders(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(
            values_placeholders(Backend::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
    }
}
