//! Tenants and their API tokens.

use sqlx::FromRow;

use super::{Store, StoreError, StoreResult, Tx, dispatch, dispatch_tx, dispatch_write};
use crate::clock;
use crate::ids::{self, Kind};

/// The tenant created on the first start of an empty database.
pub const DEFAULT_TENANT_NAME: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

/// An API token as stored: never the token itself, only its hash and display prefix.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Token {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A new token's row, ready to insert.
pub struct NewToken<'a> {
    pub tenant_id: &'a str,
    pub name: &'a str,
    pub prefix: &'a str,
    pub token_hash: &'a str,
}

/// Creates a tenant; a taken name is a conflict.
pub async fn create_tenant(tx: &mut Tx<'_>, name: &str) -> StoreResult<Tenant> {
    let tenant = Tenant {
        id: ids::new(Kind::Tenant),
        name: name.to_owned(),
        created_at: clock::now_ms(),
    };
    let inserted = dispatch_tx!(tx, conn => {
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&tenant.id)
            .bind(&tenant.name)
            .bind(tenant.created_at)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
    });
    match inserted.map_err(StoreError::from) {
        Ok(_) => Ok(tenant),
        Err(StoreError::Conflict(_)) => Err(StoreError::Conflict(format!(
            "a tenant named `{name}` already exists"
        ))),
        Err(other) => Err(other),
    }
}

/// Creates the default tenant if the database has no tenant at all. Returns it only when this
/// call created it, so of several nodes starting at once exactly one reports a fresh install.
pub async fn create_default_tenant_if_none(tx: &mut Tx<'_>) -> StoreResult<Option<Tenant>> {
    let tenant = Tenant {
        id: ids::new(Kind::Tenant),
        name: DEFAULT_TENANT_NAME.to_owned(),
        created_at: clock::now_ms(),
    };
    let inserted = dispatch_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO tenants (id, name, created_at) \
             SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM tenants) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&tenant.id)
        .bind(&tenant.name)
        .bind(tenant.created_at)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok((inserted == 1).then_some(tenant))
}

pub async fn list_tenants(store: &Store) -> StoreResult<Vec<Tenant>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Tenant>("SELECT id, name, created_at FROM tenants ORDER BY id")
            .fetch_all(pool)
            .await?
    }))
}

/// A tenant by its ID only (what an API token carries).
pub async fn get_tenant(store: &Store, id: &str) -> StoreResult<Tenant> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, Tenant>("SELECT id, name, created_at FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?
    })
    .ok_or(StoreError::NotFound)
}

/// Finds a tenant by ID or by name (for the operator's command line).
pub async fn find_tenant(store: &Store, id_or_name: &str) -> StoreResult<Tenant> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, Tenant>(
            "SELECT id, name, created_at FROM tenants WHERE id = $1 OR name = $1",
        )
        .bind(id_or_name)
        .fetch_optional(pool)
        .await?
    })
    .ok_or(StoreError::NotFound)
}

pub async fn insert_token(tx: &mut Tx<'_>, new: NewToken<'_>) -> StoreResult<Token> {
    let token = Token {
        id: ids::new(Kind::Token),
        tenant_id: new.tenant_id.to_owned(),
        name: new.name.to_owned(),
        prefix: new.prefix.to_owned(),
        created_at: clock::now_ms(),
        last_used_at: None,
        revoked_at: None,
    };
    dispatch_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO api_tokens (id, tenant_id, name, prefix, token_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&token.id)
        .bind(&token.tenant_id)
        .bind(&token.name)
        .bind(&token.prefix)
        .bind(new.token_hash)
        .bind(token.created_at)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(token)
}

/// One page of a tenant's tokens, newest first, starting after `before_id` when given.
pub async fn list_tokens(
    store: &Store,
    tenant_id: &str,
    before_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<Token>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Token>(
            "SELECT id, tenant_id, name, prefix, created_at, last_used_at, revoked_at \
             FROM api_tokens WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3",
        )
            .bind(tenant_id)
            .bind(before_id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
    }))
}

/// A token of `tenant_id`; another tenant's token is not found.
pub async fn get_token(store: &Store, tenant_id: &str, token_id: &str) -> StoreResult<Token> {
    find_token(store, token_id)
        .await?
        .filter(|token| token.tenant_id == tenant_id)
        .ok_or(StoreError::NotFound)
}

/// Revokes a token (revoking twice keeps the first time) and returns it.
pub async fn revoke_token(store: &Store, tenant_id: &str, token_id: &str) -> StoreResult<Token> {
    dispatch_write!(store, pool => {
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = $3 \
             WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(tenant_id)
        .bind(token_id)
        .bind(clock::now_ms())
        .execute(pool)
        .await?
        .rows_affected()
    });
    get_token(store, tenant_id, token_id).await
}

/// The token whose hash is `token_hash`, revoked or not.
pub async fn find_token_by_hash(store: &Store, token_hash: &str) -> StoreResult<Option<Token>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Token>(
            "SELECT id, tenant_id, name, prefix, created_at, last_used_at, revoked_at \
             FROM api_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(pool)
        .await?
    }))
}

/// Records that a token was used at `at`.
pub async fn touch_token(store: &Store, token_id: &str, at: i64) -> StoreResult<()> {
    dispatch_write!(store, pool => {
        sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
            .bind(token_id)
            .bind(at)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// A token by id, in any tenant (for the operator's command line).
pub async fn find_token(store: &Store, token_id: &str) -> StoreResult<Option<Token>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Token>(
            "SELECT id, tenant_id, name, prefix, created_at, last_used_at, revoked_at \
             FROM api_tokens WHERE id = $1",
        )
        .bind(token_id)
        .fetch_optional(pool)
        .await?
    }))
}
