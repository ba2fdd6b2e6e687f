//! Repository hooks as stored: rows of `endpoints` of kind `repository_hook`, one repository each.
//! Their deliveries are ordinary deliveries (see `store::outbound`).

use super::outbound::{Endpoint, KIND_REPOSITORY_HOOK, endpoint_columns};
use super::{Store, StoreError, StoreResult, Tx, dispatch, dispatch_tx};

/// One page of a repository's hooks, newest first.
pub async fn list(
    store: &Store,
    tenant_id: &str,
    repository_key: &str,
    before_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<Endpoint>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Endpoint>(concat!(
            "SELECT ", endpoint_columns!(), " FROM endpoints WHERE tenant_id = $1 \
             AND kind = 'repository_hook' AND repository_key = $2 AND ($3 IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT $4"
        ))
        .bind(tenant_id)
        .bind(repository_key)
        .bind(before_id)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?
    }))
}

/// A hook of the repository; another repository's or tenant's is not found.
pub async fn get(
    store: &Store,
    tenant_id: &str,
    repository_key: &str,
    id: &str,
) -> StoreResult<Endpoint> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, Endpoint>(concat!(
            "SELECT ", endpoint_columns!(), " FROM endpoints WHERE tenant_id = $1 \
             AND kind = 'repository_hook' AND repository_key = $2 AND id = $3"
        ))
        .bind(tenant_id)
        .bind(repository_key)
        .bind(id)
        .fetch_optional(pool)
        .await?
    })
    .ok_or(StoreError::NotFound)
}

/// Whether the repository has an enabled hook: the receivers ask before reading a payload for
/// relaying, so repositories without hooks cost one indexed read.
pub async fn any_enabled(
    store: &Store,
    tenant_id: &str,
    repository_key: &str,
) -> StoreResult<bool> {
    Ok(dispatch!(store, pool => {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM (SELECT 1 FROM endpoints WHERE tenant_id = $1 \
             AND kind = 'repository_hook' AND repository_key = $2 AND active LIMIT 1) AS found",
        )
        .bind(tenant_id)
        .bind(repository_key)
        .fetch_one(pool)
        .await?
    }) > 0)
}

/// The repository's enabled hooks, inside the transaction that queues an event for them.
pub async fn enabled_in(
    tx: &mut Tx<'_>,
    tenant_id: &str,
    repository_key: &str,
) -> StoreResult<Vec<Endpoint>> {
    Ok(dispatch_tx!(tx, conn => {
        sqlx::query_as::<_, Endpoint>(concat!(
            "SELECT ", endpoint_columns!(), " FROM endpoints WHERE tenant_id = $1 \
             AND kind = 'repository_hook' AND repository_key = $2 AND active"
        ))
        .bind(tenant_id)
        .bind(repository_key)
        .fetch_all(conn)
        .await?
    }))
}

/// Whether a tenant's service is linked to the repository.
pub async fn service_repository(
    store: &Store,
    tenant_id: &str,
    repository_key: &str,
) -> StoreResult<bool> {
    Ok(dispatch!(store, pool => {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM services WHERE tenant_id = $1 AND repository_key = $2",
        )
        .bind(tenant_id)
        .bind(repository_key)
        .fetch_one(pool)
        .await?
    }) > 0)
}

/// Replaces a hook's secret token (sealed; empty means none).
pub async fn set_token(store: &Store, hook: &Endpoint, sealed: &[u8]) -> StoreResult<()> {
    debug_assert_eq!(hook.kind, KIND_REPOSITORY_HOOK);
    super::dispatch_write!(store, pool => {
        sqlx::query("UPDATE endpoints SET secret = $3 WHERE tenant_id = $1 AND id = $2")
            .bind(&hook.tenant_id)
            .bind(&hook.id)
            .bind(sealed)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// Makes a hook's queued deliveries due now (after it was brought back from a temporary
/// disable, which held them until its end).
pub async fn resume_held(store: &Store, hook_id: &str, now: i64) -> StoreResult<u64> {
    let sql = match store {
        Store::Sqlite(_) => {
            "UPDATE deliveries SET next_attempt_at = $2, updated_at = $2 WHERE endpoint_id = $1 \
             AND status = 'pending' AND lease_owner IS NULL AND next_attempt_at > $2"
        }
        Store::Postgres(_) => {
            "UPDATE delivery_queue SET next_attempt_at = $2 WHERE endpoint_id = $1 \
             AND lease_owner IS NULL AND next_attempt_at > $2"
        }
    };
    Ok(super::dispatch_write!(store, pool => {
        sqlx::query(sql)
        .bind(hook_id)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected()
    }))
}
