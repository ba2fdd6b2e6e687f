//! GitHub integrations: a token for calls to GitHub and a secret for its webhooks, both sealed.

use sqlx::FromRow;

use super::{StoreError, StoreResult, dispatch, dispatch_write};
use crate::store::Store;

#[derive(Debug, Clone, FromRow)]
pub struct Integration {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub integration_type: String,
    pub description: String,
    pub is_active: bool,
    pub token: Vec<u8>,
    pub webhook_secret: Vec<u8>,
    pub secret_hint: String,
    pub created_at: i64,
    pub updated_at: i64,
}

macro_rules! integration_columns {
    () => {
        "id, tenant_id, name, integration_type, description, is_active, token, webhook_secret, \
         secret_hint, created_at, updated_at"
    };
}

pub async fn insert(store: &Store, integration: &Integration) -> StoreResult<()> {
    dispatch_write!(store, pool => {
        sqlx::query(concat!(
            "INSERT INTO integrations (", integration_columns!(), ") \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&integration.id)
        .bind(&integration.tenant_id)
        .bind(&integration.name)
        .bind(&integration.integration_type)
        .bind(&integration.description)
        .bind(integration.is_active)
        .bind(&integration.token)
        .bind(&integration.webhook_secret)
        .bind(&integration.secret_hint)
        .bind(integration.created_at)
        .bind(integration.updated_at)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Writes every field but the id, tenant and creation time.
pub async fn update(store: &Store, integration: &Integration) -> StoreResult<()> {
    let updated = dispatch_write!(store, pool => {
        sqlx::query(
            "UPDATE integrations SET name = $3, description = $4, is_active = $5, token = $6, \
             webhook_secret = $7, secret_hint = $8, updated_at = $9 \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(&integration.tenant_id)
        .bind(&integration.id)
        .bind(&integration.name)
        .bind(&integration.description)
        .bind(integration.is_active)
        .bind(&integration.token)
        .bind(&integration.webhook_secret)
        .bind(&integration.secret_hint)
        .bind(integration.updated_at)
        .execute(pool)
        .await?
        .rows_affected()
    });
    if updated == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub async fn get(store: &Store, tenant_id: &str, id: &str) -> StoreResult<Integration> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, Integration>(concat!(
            "SELECT ", integration_columns!(), " FROM integrations WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await?
    })
    .ok_or(StoreError::NotFound)
}

/// An integration by id alone: its webhook URL carries the id and no tenant.
pub async fn by_id(store: &Store, id: &str) -> StoreResult<Integration> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, Integration>(concat!(
            "SELECT ", integration_columns!(), " FROM integrations WHERE id = $1"
        ))
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
) -> StoreResult<Vec<Integration>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Integration>(concat!(
            "SELECT ", integration_columns!(), " FROM integrations \
             WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(tenant_id)
        .bind(before_id)
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?
    }))
}

pub async fn delete(store: &Store, tenant_id: &str, id: &str) -> StoreResult<()> {
    super::delete_owned(store, super::Owned::Integrations, tenant_id, id).await
}
