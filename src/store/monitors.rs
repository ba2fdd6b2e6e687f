//! HTTP monitors, the claim that makes each check run once per interval across nodes, and the
//! recent check results.

use sqlx::FromRow;

use super::{StoreError, StoreResult, Tx, dispatch, dispatch_tx, dispatch_write};
use crate::store::Store;

/// Check results kept per monitor.
pub const KEPT_CHECKS: i64 = 100;

#[derive(Debug, Clone, FromRow)]
pub struct Monitor {
    pub id: String,
    pub tenant_id: String,
    pub service_id: String,
    pub name: String,
    pub url: String,
    pub method: String,
    pub interval_seconds: i64,
    pub timeout_ms: i64,
    pub expected_status: i64,
    pub latency_threshold_ms: Option<i64>,
    pub active: bool,
    pub consecutive_failures: i64,
    pub consecutive_passes: i64,
    pub failing_since: Option<i64>,
    pub open_incident_id: Option<String>,
    pub next_check_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

macro_rules! monitor_columns {
    () => {
        "id, tenant_id, service_id, name, url, method, interval_seconds, timeout_ms, \
         expected_status, latency_threshold_ms, active, consecutive_failures, consecutive_passes, \
         failing_since, open_incident_id, next_check_at, created_at, updated_at"
    };
}

pub async fn insert(store: &Store, monitor: &Monitor) -> StoreResult<()> {
    dispatch_write!(store, pool => {
        sqlx::query(concat!(
            "INSERT INTO monitors (", monitor_columns!(), ") VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        ))
        .bind(&monitor.id)
        .bind(&monitor.tenant_id)
        .bind(&monitor.service_id)
        .bind(&monitor.name)
        .bind(&monitor.url)
        .bind(&monitor.method)
        .bind(monitor.interval_seconds)
        .bind(monitor.timeout_ms)
        .bind(monitor.expected_status)
        .bind(monitor.latency_threshold_ms)
        .bind(monitor.active)
        .bind(monitor.consecutive_failures)
        .bind(monitor.consecutive_passes)
        .bind(monitor.failing_since)
        .bind(&monitor.open_incident_id)
        .bind(monitor.next_check_at)
        .bind(monitor.created_at)
        .bind(monitor.updated_at)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Writes the settings a user can change (not the check state).
pub async fn update_settings(store: &Store, monitor: &Monitor) -> StoreResult<()> {
    let updated = dispatch_write!(store, pool => {
        sqlx::query(
            "UPDATE monitors SET name = $3, url = $4, method = $5, interval_seconds = $6, \
             timeout_ms = $7, expected_status = $8, latency_threshold_ms = $9, active = $10, \
             next_check_at = $11, updated_at = $12 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(&monitor.tenant_id)
        .bind(&monitor.id)
        .bind(&monitor.name)
        .bind(&monitor.url)
        .bind(&monitor.method)
        .bind(monitor.interval_seconds)
        .bind(monitor.timeout_ms)
        .bind(monitor.expected_status)
        .bind(monitor.latency_threshold_ms)
        .bind(monitor.active)
        .bind(monitor.next_check_at)
        .bind(monitor.updated_at)
        .execute(pool)
        .await?
        .rows_affected()
    });
    if updated == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub async fn get(store: &Store, tenant_id: &str, id: &str) -> StoreResult<Monitor> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, Monitor>(concat!(
            "SELECT ", monitor_columns!(), " FROM monitors WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await?
    })
    .ok_or(StoreError::NotFound)
}

pub async fn list(
    store: &Store,
    tenant_id: &str,
    before_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<Monitor>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Monitor>(concat!(
            "SELECT ", monitor_columns!(), " FROM monitors WHERE tenant_id = $1 \
             AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(tenant_id)
        .bind(before_id)
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?
    }))
}

pub async fn delete(store: &Store, tenant_id: &str, id: &str) -> StoreResult<()> {
    super::delete_owned(store, super::Owned::Monitors, tenant_id, id).await
}

/// Takes up to `limit` active monitors that are due and moves their next check one interval on,
/// in one statement: a node that claims a monitor is the only one to check it this interval.
pub async fn claim_due(store: &Store, now: i64, limit: u32) -> StoreResult<Vec<Monitor>> {
    let due = "SELECT id FROM monitors WHERE active AND next_check_at <= $1 \
               ORDER BY next_check_at LIMIT $2";
    let claim = |due: &str| {
        format!(
            concat!(
                "UPDATE monitors SET next_check_at = $1 + interval_seconds * 1000 \
                 WHERE id IN ({due}) RETURNING ",
                monitor_columns!()
            ),
            due = due
        )
    };
    let sql = match store {
        Store::Sqlite(_) => claim(due),
        Store::Postgres(_) => claim(&format!("{due} FOR UPDATE SKIP LOCKED")),
    };
    Ok(dispatch_write!(store, pool => {
        // Only the fixed fragments above are interpolated.
        sqlx::query_as::<_, Monitor>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
    }))
}

/// The monitor's current check state, locked for the rest of the transaction on PostgreSQL.
pub async fn lock_in(tx: &mut Tx<'_>, id: &str) -> StoreResult<Option<Monitor>> {
    let sql = match tx {
        Tx::Sqlite(_) => concat!(
            "SELECT ",
            monitor_columns!(),
            " FROM monitors WHERE id = $1"
        ),
        Tx::Postgres(_) => concat!(
            "SELECT ",
            monitor_columns!(),
            " FROM monitors WHERE id = $1 FOR UPDATE"
        ),
    };
    Ok(dispatch_tx!(tx, conn => {
        sqlx::query_as::<_, Monitor>(sql)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
    }))
}

/// Writes a monitor's check state.
pub async fn set_state_in(tx: &mut Tx<'_>, monitor: &Monitor) -> StoreResult<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query(
            "UPDATE monitors SET consecutive_failures = $2, consecutive_passes = $3, \
             failing_since = $4, open_incident_id = $5 WHERE id = $1",
        )
        .bind(&monitor.id)
        .bind(monitor.consecutive_failures)
        .bind(monitor.consecutive_passes)
        .bind(monitor.failing_since)
        .bind(&monitor.open_incident_id)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct Check {
    pub id: String,
    pub monitor_id: String,
    pub checked_at: i64,
    pub passed: bool,
    pub failure: Option<String>,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// Keeps a check result, dropping the monitor's results beyond the newest [`KEPT_CHECKS`].
pub async fn add_check_in(tx: &mut Tx<'_>, check: &Check) -> StoreResult<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO monitor_checks (id, monitor_id, checked_at, passed, failure, status_code, \
             latency_ms, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&check.id)
        .bind(&check.monitor_id)
        .bind(check.checked_at)
        .bind(check.passed)
        .bind(&check.failure)
        .bind(check.status_code)
        .bind(check.latency_ms)
        .bind(&check.error)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    dispatch_tx!(tx, conn => {
        sqlx::query(
            "DELETE FROM monitor_checks WHERE monitor_id = $1 AND id NOT IN \
             (SELECT id FROM monitor_checks WHERE monitor_id = $1 ORDER BY id DESC LIMIT $2)",
        )
        .bind(&check.monitor_id)
        .bind(KEPT_CHECKS)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    Ok(())
}

pub async fn checks_of(store: &Store, monitor_id: &str) -> StoreResult<Vec<Check>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Check>(
            "SELECT id, monitor_id, checked_at, passed, failure, status_code, latency_ms, error \
             FROM monitor_checks WHERE monitor_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(monitor_id)
        .bind(KEPT_CHECKS)
        .fetch_all(pool)
        .await?
    }))
}
