//! Services (a repository Hookline keeps a record for) and their push-webhook secrets.

use sqlx::FromRow;

use super::{StoreError, StoreResult, dispatch, dispatch_write};
use crate::clock;
use crate::store::Store;

#[derive(Debug, Clone, FromRow)]
pub struct Service {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub repository: String,
    pub repository_key: String,
    /// Sealed GitHub token, if one was given.
    pub github_token: Option<Vec<u8>>,
    pub auto_analyze: bool,
    /// Sealed push secret; `None` until one is generated.
    pub webhook_secret: Option<Vec<u8>>,
    pub webhook_secret_created_at: Option<i64>,
    pub previous_webhook_secret: Option<Vec<u8>>,
    pub previous_secret_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

macro_rules! service_columns {
    () => {
        "id, tenant_id, name, repository, repository_key, github_token, auto_analyze, \
         webhook_secret, webhook_secret_created_at, previous_webhook_secret, previous_secret_until, \
         created_at, updated_at"
    };
}

pub async fn insert(store: &Store, service: &Service) -> StoreResult<()> {
    dispatch_write!(store, pool => {
        sqlx::query(concat!(
            "INSERT INTO services (", service_columns!(), ") \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(&service.id)
        .bind(&service.tenant_id)
        .bind(&service.name)
        .bind(&service.repository)
        .bind(&service.repository_key)
        .bind(&service.github_token)
        .bind(service.auto_analyze)
        .bind(&service.webhook_secret)
        .bind(service.webhook_secret_created_at)
        .bind(&service.previous_webhook_secret)
        .bind(service.previous_secret_until)
        .bind(service.created_at)
        .bind(service.updated_at)
        .execute(pool)
        .await
        .map_err(name_taken)?
        .rows_affected()
    });
    Ok(())
}

fn name_taken(error: sqlx::Error) -> StoreError {
    match StoreError::from(error) {
        StoreError::Conflict(_) => {
            StoreError::Conflict("a service with this name already exists".to_owned())
        }
        other => other,
    }
}

/// Writes the editable fields: name, repository, token and the auto-analyze flag. Secrets change
/// only through [`set_secret`], so an edit cannot undo a rotation.
pub async fn update(store: &Store, service: &Service) -> StoreResult<()> {
    let updated = dispatch_write!(store, pool => {
        sqlx::query(
            "UPDATE services SET name = $3, repository = $4, repository_key = $5, \
             github_token = $6, auto_analyze = $7, updated_at = $8 \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(&service.tenant_id)
        .bind(&service.id)
        .bind(&service.name)
        .bind(&service.repository)
        .bind(&service.repository_key)
        .bind(&service.github_token)
        .bind(service.auto_analyze)
        .bind(clock::now_ms())
        .execute(pool)
        .await
        .map_err(name_taken)?
        .rows_affected()
    });
    if updated == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Replaces the push secret with `sealed`, keeping `previous` (the replaced secret, sealed under
/// its own context) valid until `previous_until`. Applies only while the stored secret is still
/// the one `service` holds: a concurrent rotation is a conflict, not a lost update.
pub async fn set_secret(
    store: &Store,
    service: &Service,
    sealed: &[u8],
    previous: Option<&[u8]>,
    previous_until: Option<i64>,
) -> StoreResult<()> {
    let now = clock::now_ms();
    let updated = dispatch_write!(store, pool => {
        sqlx::query(
            "UPDATE services SET webhook_secret = $3, webhook_secret_created_at = $4, \
             previous_webhook_secret = $5, previous_secret_until = $6, updated_at = $4 \
             WHERE tenant_id = $1 AND id = $2 \
             AND (webhook_secret = $7 OR (webhook_secret IS NULL AND $7 IS NULL))",
        )
        .bind(&service.tenant_id)
        .bind(&service.id)
        .bind(sealed)
        .bind(now)
        .bind(previous)
        .bind(previous.and(previous_until))
        .bind(service.webhook_secret.as_deref())
        .execute(pool)
        .await?
        .rows_affected()
    });
    if updated == 0 {
        return Err(StoreError::Conflict(
            "the webhook secret changed concurrently; fetch the service and try again".to_owned(),
        ));
    }
    Ok(())
}

pub async fn get(store: &Store, tenant_id: &str, id: &str) -> StoreResult<Service> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, Service>(concat!(
            "SELECT ", service_columns!(), " FROM services WHERE tenant_id = $1 AND id = $2"
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
) -> StoreResult<Vec<Service>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Service>(concat!(
            "SELECT ", service_columns!(), " FROM services \
             WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(tenant_id)
        .bind(before_id)
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?
    }))
}

/// Every service of every tenant linked to `repository` (compared without case): the candidates a
/// webhook on the shared URL is verified against.
pub async fn by_repository(store: &Store, repository: &str) -> StoreResult<Vec<Service>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Service>(concat!(
            "SELECT ", service_columns!(), " FROM services WHERE repository_key = $1 ORDER BY id"
        ))
        .bind(repository.to_lowercase())
        .fetch_all(pool)
        .await?
    }))
}

/// The services of one tenant linked to `repository`.
pub async fn of_tenant_by_repository(
    store: &Store,
    tenant_id: &str,
    repository: &str,
) -> StoreResult<Vec<Service>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Service>(concat!(
            "SELECT ", service_columns!(), " FROM services \
             WHERE tenant_id = $1 AND repository_key = $2 ORDER BY id"
        ))
        .bind(tenant_id)
        .bind(repository.to_lowercase())
        .fetch_all(pool)
        .await?
    }))
}

pub async fn by_ids(store: &Store, tenant_id: &str, ids: &[String]) -> StoreResult<Vec<Service>> {
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        match get(store, tenant_id, id).await {
            Ok(service) => found.push(service),
            Err(StoreError::NotFound) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(found)
}

pub async fn delete(store: &Store, tenant_id: &str, id: &str) -> StoreResult<()> {
    super::delete_owned(store, super::Owned::Services, tenant_id, id).await
}
