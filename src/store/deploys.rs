//! Deploys, the commits each shipped, and incidents with their suspect commits.

use sqlx::FromRow;

use super::record::{Commit, commit_columns};
use super::{StoreError, StoreResult, Tx, dispatch, dispatch_tx};
use crate::store::Store;

#[derive(Debug, Clone, FromRow)]
pub struct Deploy {
    pub id: String,
    pub tenant_id: String,
    pub service_id: String,
    pub commit_sha: String,
    pub branch: Option<String>,
    pub environment: Option<String>,
    pub deployed_by: Option<String>,
    pub deployed_at: i64,
}

macro_rules! deploy_columns {
    () => {
        "id, tenant_id, service_id, commit_sha, branch, environment, deployed_by, deployed_at"
    };
}

pub async fn insert_in(tx: &mut Tx<'_>, deploy: &Deploy) -> StoreResult<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query(concat!(
            "INSERT INTO deploys (", deploy_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&deploy.id)
        .bind(&deploy.tenant_id)
        .bind(&deploy.service_id)
        .bind(&deploy.commit_sha)
        .bind(&deploy.branch)
        .bind(&deploy.environment)
        .bind(&deploy.deployed_by)
        .bind(deploy.deployed_at)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// The newest deploy of a service to an environment (`None` matches deploys without one).
pub async fn previous_in(
    tx: &mut Tx<'_>,
    service_id: &str,
    environment: Option<&str>,
) -> StoreResult<Option<Deploy>> {
    Ok(dispatch_tx!(tx, conn => {
        sqlx::query_as::<_, Deploy>(concat!(
            "SELECT ", deploy_columns!(), " FROM deploys WHERE service_id = $1 \
             AND (environment = $2 OR (environment IS NULL AND $2 IS NULL)) \
             ORDER BY id DESC LIMIT 1"
        ))
        .bind(service_id)
        .bind(environment)
        .fetch_optional(&mut *conn)
        .await?
    }))
}

/// The ids of a service's commits ingested after `after_id` (all when `None`) up to and
/// including `head_id`, on `branch` when one is given; at most `limit`, newest kept.
pub async fn shipped_commits_in(
    tx: &mut Tx<'_>,
    service_id: &str,
    after_id: Option<&str>,
    head_id: &str,
    branch: Option<&str>,
    limit: i64,
) -> StoreResult<Vec<String>> {
    Ok(dispatch_tx!(tx, conn => {
        sqlx::query_scalar(
            "SELECT c.id FROM commits c WHERE c.service_id = $1 \
             AND ($2 IS NULL OR c.id > $2) AND c.id <= $3 \
             AND (c.id = $3 OR $4 IS NULL OR EXISTS (SELECT 1 FROM commit_branches b \
                  WHERE b.commit_id = c.id AND b.branch = $4)) \
             ORDER BY c.id DESC LIMIT $5",
        )
        .bind(service_id)
        .bind(after_id)
        .bind(head_id)
        .bind(branch)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?
    }))
}

pub async fn add_commits_in(
    tx: &mut Tx<'_>,
    deploy_id: &str,
    commit_ids: &[String],
) -> StoreResult<()> {
    for commit_id in commit_ids {
        dispatch_tx!(tx, conn => {
            sqlx::query("INSERT INTO deploy_commits (deploy_id, commit_id) VALUES ($1, $2)")
                .bind(deploy_id)
                .bind(commit_id)
                .execute(&mut *conn)
                .await?
                .rows_affected()
        });
    }
    Ok(())
}

pub async fn get(store: &Store, tenant_id: &str, id: &str) -> StoreResult<Deploy> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, Deploy>(concat!(
            "SELECT ", deploy_columns!(), " FROM deploys WHERE tenant_id = $1 AND id = $2"
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
    service_id: &str,
    before_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<Deploy>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Deploy>(concat!(
            "SELECT ", deploy_columns!(), " FROM deploys WHERE tenant_id = $1 AND service_id = $2 \
             AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        ))
        .bind(tenant_id)
        .bind(service_id)
        .bind(before_id)
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?
    }))
}

/// The newest deploy of a service to each environment (deploys without one count as one
/// environment), by environment name.
pub async fn latest_per_environment(
    store: &Store,
    tenant_id: &str,
    service_id: &str,
) -> StoreResult<Vec<Deploy>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Deploy>(concat!(
            "SELECT ", deploy_columns!(), " FROM deploys WHERE id IN \
             (SELECT max(id) FROM deploys WHERE tenant_id = $1 AND service_id = $2 \
              GROUP BY environment) \
             ORDER BY environment"
        ))
        .bind(tenant_id)
        .bind(service_id)
        .fetch_all(pool)
        .await?
    }))
}

/// The latest `limit` deploys of a service at or before `at`, newest first.
pub async fn latest_before(
    store: &Store,
    service_id: &str,
    at: i64,
    limit: i64,
) -> StoreResult<Vec<Deploy>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Deploy>(concat!(
            "SELECT ", deploy_columns!(), " FROM deploys WHERE service_id = $1 AND deployed_at <= $2 \
             ORDER BY deployed_at DESC, id DESC LIMIT $3"
        ))
        .bind(service_id)
        .bind(at)
        .bind(limit)
        .fetch_all(pool)
        .await?
    }))
}

/// The commits a deploy shipped, newest first.
pub async fn commits_of(store: &Store, deploy_id: &str) -> StoreResult<Vec<Commit>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Commit>(
            concat!(
            "SELECT ",
            commit_columns!(),
            " FROM deploy_commits d JOIN commits c ON c.id = d.commit_id \
             WHERE d.deploy_id = $1 ORDER BY c.id DESC"
        ),
        )
        .bind(deploy_id)
        .fetch_all(pool)
        .await?
    }))
}

// ---- incidents --------------------------------------------------------------------------------

#[derive(Debug, Clone, FromRow)]
pub struct Incident {
    pub id: String,
    pub tenant_id: String,
    pub service_id: String,
    pub title: String,
    pub severity: String,
    pub incident_type: String,
    pub status: String,
    pub monitor: Option<String>,
    pub monitor_id: Option<String>,
    pub started_at: i64,
    pub acknowledged_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

macro_rules! incident_columns {
    () => {
        "id, tenant_id, service_id, title, severity, incident_type, status, monitor, monitor_id, \
         started_at, acknowledged_at, resolved_at, created_at, updated_at"
    };
}

pub async fn insert_incident_in(tx: &mut Tx<'_>, incident: &Incident) -> StoreResult<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query(concat!(
            "INSERT INTO incidents (", incident_columns!(), ") \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(&incident.id)
        .bind(&incident.tenant_id)
        .bind(&incident.service_id)
        .bind(&incident.title)
        .bind(&incident.severity)
        .bind(&incident.incident_type)
        .bind(&incident.status)
        .bind(&incident.monitor)
        .bind(&incident.monitor_id)
        .bind(incident.started_at)
        .bind(incident.acknowledged_at)
        .bind(incident.resolved_at)
        .bind(incident.created_at)
        .bind(incident.updated_at)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    Ok(())
}

pub async fn get_incident(store: &Store, tenant_id: &str, id: &str) -> StoreResult<Incident> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, Incident>(concat!(
            "SELECT ", incident_columns!(), " FROM incidents WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await?
    })
    .ok_or(StoreError::NotFound)
}

pub async fn list_incidents(
    store: &Store,
    tenant_id: &str,
    status: Option<&str>,
    service_id: Option<&str>,
    before_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<Incident>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Incident>(concat!(
            "SELECT ", incident_columns!(), " FROM incidents WHERE tenant_id = $1 \
             AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR service_id = $3) \
             AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
        ))
        .bind(tenant_id)
        .bind(status)
        .bind(service_id)
        .bind(before_id)
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?
    }))
}

/// A service's incidents not resolved yet, newest first, at most `limit`.
pub async fn unresolved_incidents(
    store: &Store,
    tenant_id: &str,
    service_id: &str,
    limit: u32,
) -> StoreResult<Vec<Incident>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Incident>(concat!(
            "SELECT ", incident_columns!(), " FROM incidents WHERE tenant_id = $1 \
             AND service_id = $2 AND status <> 'resolved' ORDER BY id DESC LIMIT $3"
        ))
        .bind(tenant_id)
        .bind(service_id)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?
    }))
}

/// Moves an incident from one of `from` to `to`, stamping `at` into `stamp_column`, inside the
/// transaction; returns the updated incident, or `None` when its status was not one of `from`
/// (the transition is invalid, or another request made it first).
pub async fn transition_in(
    tx: &mut Tx<'_>,
    tenant_id: &str,
    id: &str,
    from: &[&str],
    to: &str,
    at: i64,
) -> StoreResult<Option<Incident>> {
    let stamp = match to {
        "acknowledged" => "acknowledged_at",
        _ => "resolved_at",
    };
    let sql = format!(
        concat!(
            "UPDATE incidents SET status = $3, {stamp} = $4, updated_at = $4 \
             WHERE tenant_id = $1 AND id = $2 AND status IN ($5, $6) RETURNING ",
            incident_columns!()
        ),
        stamp = stamp
    );
    let first = from.first().copied().unwrap_or("");
    let second = from.get(1).copied().unwrap_or(first);
    Ok(dispatch_tx!(tx, conn => {
        // Only a fixed column name is interpolated.
        sqlx::query_as::<_, Incident>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(tenant_id)
            .bind(id)
            .bind(to)
            .bind(at)
            .bind(first)
            .bind(second)
            .fetch_optional(&mut *conn)
            .await?
    }))
}

#[derive(Debug, Clone, FromRow)]
pub struct Suspect {
    pub commit_id: String,
    pub deploy_id: String,
    pub rank: i64,
    pub score: i64,
    /// JSON array of reasons.
    pub reasons: String,
    pub sha: String,
    pub message: String,
    pub author_name: String,
    pub url: String,
    pub risk_level: Option<String>,
}

pub async fn add_suspect_in(
    tx: &mut Tx<'_>,
    incident_id: &str,
    commit_id: &str,
    deploy_id: &str,
    rank: i64,
    score: i64,
    reasons: &str,
) -> StoreResult<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO incident_suspects (incident_id, commit_id, deploy_id, rank, score, reasons) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (incident_id, commit_id) DO NOTHING",
        )
        .bind(incident_id)
        .bind(commit_id)
        .bind(deploy_id)
        .bind(rank)
        .bind(score)
        .bind(reasons)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    Ok(())
}

pub async fn suspects_of(store: &Store, incident_id: &str) -> StoreResult<Vec<Suspect>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Suspect>(
            "SELECT s.commit_id, s.deploy_id, s.rank, s.score, s.reasons, c.sha, c.message, \
             c.author_name, c.url, c.risk_level FROM incident_suspects s \
             JOIN commits c ON c.id = s.commit_id WHERE s.incident_id = $1 ORDER BY s.rank",
        )
        .bind(incident_id)
        .fetch_all(pool)
        .await?
    }))
}
