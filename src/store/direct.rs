//! A second, synchronous connection to the SQLite file, for the inbound writer's steady stream of
//! pushes. sqlx runs each SQLite connection on a thread of its own and crosses to it and back for
//! every statement, binding and row; for the one writer every receiver waits on, those crossings
//! and the wake-ups behind them cost more than SQLite's own work (bench/README.md). This
//! connection runs on the writer's thread, with cached statements and values bound in place.
//!
//! It writes only while its user holds sqlx's writer connection ([`super::Store::hold_writer`]):
//! that keeps this process's writers in one queue, so neither waits on SQLite's file lock.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::ToSql;
use rusqlite::{CachedStatement, Connection, OpenFlags};

/// Statements kept prepared: the single-row inserts of a delivery and of its push's rows.
const CACHED_STATEMENTS: usize = 16;

/// The connection, opened with the writer's settings.
pub struct DirectSqlite {
    connection: Connection,
}

impl std::fmt::Debug for DirectSqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectSqlite").finish_non_exhaustive()
    }
}

impl DirectSqlite {
    /// Opens the existing database file `path` (created, migrated and in WAL mode already) with
    /// the settings of the sqlx writer connection.
    pub fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<DirectSqlite> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(busy_timeout)?;
        // As the sqlx writer (`Store::connect`): no checkpoints on commit (the maintenance loop
        // does them), statement journals in memory.
        for (name, value) in [
            ("foreign_keys", "ON"),
            ("synchronous", "NORMAL"),
            ("wal_autocheckpoint", "0"),
            ("journal_size_limit", "134217728"),
            ("temp_store", "MEMORY"),
            ("cache_size", "-8192"),
        ] {
            connection.pragma_update(None, name, value)?;
        }
        connection.set_prepared_statement_cache_capacity(CACHED_STATEMENTS);
        Ok(DirectSqlite { connection })
    }

    /// Runs `write` in one `BEGIN IMMEDIATE` transaction, committed if it succeeds and rolled
    /// back otherwise.
    pub fn transaction<T>(
        &mut self,
        write: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let tx = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let value = write(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Whether the connection is outside any transaction, as it must be between batches. A
    /// rollback that failed can leave one open; such a connection is not used again.
    pub fn is_idle(&self) -> bool {
        self.connection.is_autocommit()
    }
}

/// Binds values one after another onto a prepared statement, in the `query.bind(value)` chain
/// the sqlx queries use, so one binding list (e.g. `bind_deliveries!`) serves both drivers.
pub struct Binder<'s, 'c> {
    statement: &'s mut CachedStatement<'c>,
    bound: usize,
    error: Option<rusqlite::Error>,
}

impl<'s, 'c> Binder<'s, 'c> {
    pub fn new(statement: &'s mut CachedStatement<'c>) -> Self {
        Binder {
            statement,
            bound: 0,
            error: None,
        }
    }

    /// Binds the next parameter; the first failure is kept for [`Binder::finish`].
    pub fn bind<T: ToSql>(mut self, value: T) -> Self {
        self.bound += 1;
        if self.error.is_none()
            && let Err(error) = self.statement.raw_bind_parameter(self.bound, value)
        {
            self.error = Some(error);
        }
        self
    }

    /// Checks that every parameter was bound.
    pub fn finish(self) -> rusqlite::Result<()> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let expected = self.statement.parameter_count();
        if self.bound != expected {
            return Err(rusqlite::Error::InvalidParameterCount(self.bound, expected));
        }
        Ok(())
    }
}
