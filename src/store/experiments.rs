//! Experiments and their activity feed (pull requests linked and merged, issues created).

use sqlx::FromRow;

use super::{StoreError, StoreResult, Tx, dispatch, dispatch_tx, dispatch_write};
use crate::ids::{self, Kind};
use crate::store::Store;

#[derive(Debug, Clone, FromRow)]
pub struct Experiment {
    pub id: String,
    pub tenant_id: String,
    pub key: String,
    pub key_lower: String,
    pub name: String,
    pub description: String,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

macro_rules! experiment_columns {
    () => {
        "id, tenant_id, key, key_lower, name, description, status, created_at, updated_at"
    };
}

fn key_taken(error: sqlx::Error) -> StoreError {
    match StoreError::from(error) {
        StoreError::Conflict(_) => {
            StoreError::Conflict("an experiment with this key already exists".to_owned())
        }
        other => other,
    }
}

pub async fn insert(store: &Store, experiment: &Experiment) -> StoreResult<()> {
    dispatch_write!(store, pool => {
        sqlx::query(concat!(
            "INSERT INTO experiments (", experiment_columns!(), ") \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&experiment.id)
        .bind(&experiment.tenant_id)
        .bind(&experiment.key)
        .bind(&experiment.key_lower)
        .bind(&experiment.name)
        .bind(&experiment.description)
        .bind(&experiment.status)
        .bind(experiment.created_at)
        .bind(experiment.updated_at)
        .execute(pool)
        .await
        .map_err(key_taken)?
        .rows_affected()
    });
    Ok(())
}

pub async fn update(store: &Store, experiment: &Experiment) -> StoreResult<()> {
    let updated = dispatch_write!(store, pool => {
        sqlx::query(
            "UPDATE experiments SET key = $3, key_lower = $4, name = $5, description = $6, \
             status = $7, updated_at = $8 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(&experiment.tenant_id)
        .bind(&experiment.id)
        .bind(&experiment.key)
        .bind(&experiment.key_lower)
        .bind(&experiment.name)
        .bind(&experiment.description)
        .bind(&experiment.status)
        .bind(experiment.updated_at)
        .execute(pool)
        .await
        .map_err(key_taken)?
        .rows_affected()
    });
    if updated == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub async fn get(store: &Store, tenant_id: &str, id: &str) -> StoreResult<Experiment> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, Experiment>(concat!(
            "SELECT ", experiment_columns!(), " FROM experiments WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await?
    })
    .ok_or(StoreError::NotFound)
}

/// The experiment of a tenant with `key` (compared without case), inside a transaction.
pub async fn by_key_in(
    tx: &mut Tx<'_>,
    tenant_id: &str,
    key: &str,
) -> StoreResult<Option<Experiment>> {
    Ok(dispatch_tx!(tx, conn => {
        sqlx::query_as::<_, Experiment>(concat!(
            "SELECT ", experiment_columns!(), " FROM experiments WHERE tenant_id = $1 AND key_lower = $2"
        ))
        .bind(tenant_id)
        .bind(key.to_lowercase())
        .fetch_optional(&mut *conn)
        .await?
    }))
}

pub async fn list(
    store: &Store,
    tenant_id: &str,
    before_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<Experiment>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Experiment>(concat!(
            "SELECT ", experiment_columns!(), " FROM experiments \
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
    super::delete_owned(store, super::Owned::Experiments, tenant_id, id).await
}

/// What happened to an experiment.
pub mod activity_kind {
    pub const PR_LINKED: &str = "pull_request_linked";
    pub const PR_MERGED: &str = "pull_request_merged";
    pub const ISSUE_CREATED: &str = "issue_created";
}

#[derive(Debug, Clone, FromRow)]
pub struct Activity {
    pub id: String,
    pub experiment_id: String,
    pub kind: String,
    pub subject: String,
    pub repository: String,
    pub number: i64,
    pub title: String,
    pub url: String,
    pub occurred_at: i64,
}

/// Adds an entry unless the same kind of entry for the same subject exists (a redelivered or
/// edited pull request links once); returns whether it was added.
pub async fn add_activity(tx: &mut Tx<'_>, entry: &Activity) -> StoreResult<bool> {
    let added = dispatch_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO experiment_activity (id, experiment_id, kind, subject, repository, number, \
             title, url, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (experiment_id, kind, subject) DO NOTHING",
        )
        .bind(&entry.id)
        .bind(&entry.experiment_id)
        .bind(&entry.kind)
        .bind(&entry.subject)
        .bind(&entry.repository)
        .bind(entry.number)
        .bind(&entry.title)
        .bind(&entry.url)
        .bind(entry.occurred_at)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    Ok(added == 1)
}

/// A new activity entry (its id freshly made).
pub fn activity(
    experiment_id: &str,
    kind: &str,
    repository: &str,
    number: i64,
    title: &str,
    url: &str,
    occurred_at: i64,
) -> Activity {
    Activity {
        id: ids::new(Kind::Activity),
        experiment_id: experiment_id.to_owned(),
        kind: kind.to_owned(),
        subject: format!("{}#{number}", repository.to_lowercase()),
        repository: repository.to_owned(),
        number,
        title: title.to_owned(),
        url: url.to_owned(),
        occurred_at,
    }
}

/// The feed of an experiment, oldest first.
pub async fn activity_of(store: &Store, experiment_id: &str) -> StoreResult<Vec<Activity>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Activity>(
            "SELECT id, experiment_id, kind, subject, repository, number, title, url, occurred_at \
             FROM experiment_activity WHERE experiment_id = $1 ORDER BY occurred_at, id",
        )
        .bind(experiment_id)
        .fetch_all(pool)
        .await?
    }))
}
