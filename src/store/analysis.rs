//! The analysis job queue (leased like deliveries), stored analyses of commits, and analyses of
//! commit ranges.

use sqlx::FromRow;

use super::record::{Commit, commit_columns, job_status};
use super::{StoreError, StoreResult, dispatch, dispatch_write};
use crate::clock;
use crate::store::Store;

#[derive(Debug, Clone, FromRow)]
pub struct Job {
    pub id: String,
    pub tenant_id: String,
    pub service_id: String,
    pub commit_id: String,
    /// Including the one just claimed.
    pub attempts: i64,
}

/// Leases up to `limit` due jobs (queued and due, or running with an expired lease) to `owner`.
pub async fn claim(
    store: &Store,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: u32,
) -> StoreResult<Vec<Job>> {
    let due = "SELECT id FROM analysis_jobs \
               WHERE (status = $4 AND run_after <= $3) OR (status = $5 AND lease_until < $3) \
               ORDER BY run_after LIMIT $6";
    let claim = |due: &str| {
        format!(
            "UPDATE analysis_jobs SET status = $5, lease_owner = $1, lease_until = $2, \
             attempts = attempts + 1, updated_at = $3 WHERE id IN ({due}) \
             RETURNING id, tenant_id, service_id, commit_id, attempts"
        )
    };
    let sql = match store {
        Store::Sqlite(_) => claim(due),
        Store::Postgres(_) => claim(&format!("{due} FOR UPDATE SKIP LOCKED")),
    };
    Ok(dispatch_write!(store, pool => {
        // Only the fixed fragments above are interpolated.
        sqlx::query_as::<_, Job>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .bind(job_status::QUEUED)
            .bind(job_status::RUNNING)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
    }))
}

/// Stores a commit's analysis and closes its job, if `owner` still holds the job's lease.
/// Returns whether it did.
pub async fn complete(
    store: &Store,
    job: &Job,
    owner: &str,
    analysis: &str,
    risk_score: i64,
    risk_level: &str,
) -> StoreResult<bool> {
    let now = clock::now_ms();
    let mut tx = store.begin().await?;
    let closed = super::dispatch_tx!(&mut tx, conn => {
        sqlx::query(
            "UPDATE analysis_jobs SET status = $3, lease_owner = NULL, lease_until = NULL, \
             last_error = NULL, updated_at = $4 WHERE id = $1 AND lease_owner = $2",
        )
        .bind(&job.id)
        .bind(owner)
        .bind(job_status::DONE)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    if closed == 0 {
        return Ok(false);
    }
    super::dispatch_tx!(&mut tx, conn => {
        sqlx::query(
            "UPDATE commits SET analysis = $2, risk_score = $3, risk_level = $4, analyzed_at = $5 \
             WHERE id = $1",
        )
        .bind(&job.commit_id)
        .bind(analysis)
        .bind(risk_score)
        .bind(risk_level)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    tx.commit().await?;
    Ok(true)
}

/// Puts a failed job back in the queue for `run_after`, or gives it up when `give_up`.
pub async fn retry(
    store: &Store,
    job: &Job,
    owner: &str,
    error: &str,
    run_after: i64,
    give_up: bool,
) -> StoreResult<()> {
    let status = if give_up {
        job_status::FAILED
    } else {
        job_status::QUEUED
    };
    dispatch_write!(store, pool => {
        sqlx::query(
            "UPDATE analysis_jobs SET status = $3, lease_owner = NULL, lease_until = NULL, \
             last_error = $4, run_after = $5, updated_at = $6 WHERE id = $1 AND lease_owner = $2",
        )
        .bind(&job.id)
        .bind(owner)
        .bind(status)
        .bind(error)
        .bind(run_after)
        .bind(clock::now_ms())
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// The newest job of a commit that is still queued or running, if any.
pub async fn open_job_of(store: &Store, commit_id: &str) -> StoreResult<Option<String>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_scalar(
            "SELECT id FROM analysis_jobs WHERE commit_id = $1 AND status IN ($2, $3) \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(commit_id)
        .bind(job_status::QUEUED)
        .bind(job_status::RUNNING)
        .fetch_optional(pool)
        .await?
    }))
}

/// A commit by id (the worker knows ids, not SHAs).
pub async fn commit_by_id(store: &Store, commit_id: &str) -> StoreResult<Commit> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, Commit>(
            concat!(
            "SELECT ",
            commit_columns!(),
            " FROM commits c WHERE c.id = $1"
        ),
        )
        .bind(commit_id)
        .fetch_optional(pool)
        .await?
    })
    .ok_or(StoreError::NotFound)
}

/// The commits of a service ingested after `base` up to and including `head`, oldest first.
pub async fn commits_between(
    store: &Store,
    service_id: &str,
    base_id: &str,
    head_id: &str,
) -> StoreResult<Vec<Commit>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Commit>(
            concat!(
            "SELECT ",
            commit_columns!(),
            " FROM commits c \
             WHERE c.service_id = $1 AND c.id > $2 AND c.id <= $3 ORDER BY c.id LIMIT 1001"
        ),
        )
        .bind(service_id)
        .bind(base_id)
        .bind(head_id)
        .fetch_all(pool)
        .await?
    }))
}

#[derive(Debug, Clone, FromRow)]
pub struct RangeAnalysis {
    pub id: String,
    pub tenant_id: String,
    pub service_id: String,
    pub base_sha: String,
    pub head_sha: String,
    /// JSON array, oldest first.
    pub commit_shas: String,
    pub analysis: String,
    pub risk_score: i64,
    pub risk_level: String,
    pub created_at: i64,
}

pub async fn insert_range(store: &Store, range: &RangeAnalysis) -> StoreResult<()> {
    dispatch_write!(store, pool => {
        sqlx::query(
            "INSERT INTO range_analyses (id, tenant_id, service_id, base_sha, head_sha, \
             commit_shas, analysis, risk_score, risk_level, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&range.id)
        .bind(&range.tenant_id)
        .bind(&range.service_id)
        .bind(&range.base_sha)
        .bind(&range.head_sha)
        .bind(&range.commit_shas)
        .bind(&range.analysis)
        .bind(range.risk_score)
        .bind(&range.risk_level)
        .bind(range.created_at)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(())
}

pub async fn get_range(
    store: &Store,
    tenant_id: &str,
    service_id: &str,
    id: &str,
) -> StoreResult<RangeAnalysis> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, RangeAnalysis>(
            "SELECT id, tenant_id, service_id, base_sha, head_sha, commit_shas, analysis, \
             risk_score, risk_level, created_at FROM range_analyses \
             WHERE tenant_id = $1 AND service_id = $2 AND id = $3",
        )
        .bind(tenant_id)
        .bind(service_id)
        .bind(id)
        .fetch_optional(pool)
        .await?
    })
    .ok_or(StoreError::NotFound)
}
