//! Server-wide settings that live in the database, shared by every node.

use super::{Store, StoreResult, dispatch, dispatch_write};
use crate::clock;

/// A setting's stored bytes, if it was ever written.
pub async fn get(store: &Store, name: &str) -> StoreResult<Option<Vec<u8>>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_scalar::<_, Vec<u8>>("SELECT value FROM server_settings WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?
    }))
}

/// Writes a setting unless it already exists; returns the value now stored (the first writer wins,
/// so nodes racing on a fresh database agree).
pub async fn insert_if_absent(store: &Store, name: &str, value: &[u8]) -> StoreResult<Vec<u8>> {
    dispatch_write!(store, pool => {
        sqlx::query(
            "INSERT INTO server_settings (name, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .bind(clock::now_ms())
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(get(store, name).await?.unwrap_or_default())
}
