//! Fix proposals, the PR-creation jobs of approved AI fixes, and the pull request state of both.

use sqlx::FromRow;

use super::{StoreError, StoreResult, Tx, dispatch, dispatch_tx, dispatch_write};
use crate::store::Store;

#[derive(Debug, Clone, FromRow)]
pub struct FixProposal {
    pub id: String,
    pub tenant_id: String,
    pub incident_id: String,
    pub service_id: String,
    /// `revert` or `ai_fix`.
    pub fix_type: String,
    /// `pr_created`, `ready`, `applied`, `rejected`, `merged`, `closed` or `failed`.
    pub status: String,
    pub commit_sha: Option<String>,
    pub summary: String,
    pub patch: Option<String>,
    pub confidence_score: Option<i64>,
    pub risk_assessment: Option<String>,
    pub repository: String,
    pub base_branch: String,
    pub head_branch: Option<String>,
    pub pr_number: Option<i64>,
    pub pr_url: Option<String>,
    pub rejection_reason: Option<String>,
    pub last_error: Option<String>,
    pub job_attempts: i64,
    pub job_run_after: Option<i64>,
    pub job_lease_owner: Option<String>,
    pub job_lease_until: Option<i64>,
    pub pr_checked_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

macro_rules! fix_columns {
    () => {
        "id, tenant_id, incident_id, service_id, fix_type, status, commit_sha, summary, patch, \
         confidence_score, risk_assessment, repository, base_branch, head_branch, pr_number, \
         pr_url, rejection_reason, last_error, job_attempts, job_run_after, job_lease_owner, \
         job_lease_until, pr_checked_at, created_at, updated_at"
    };
}

pub async fn insert_in(tx: &mut Tx<'_>, fix: &FixProposal) -> StoreResult<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query(concat!(
            "INSERT INTO fix_proposals (", fix_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, \
             $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)"
        ))
        .bind(&fix.id)
        .bind(&fix.tenant_id)
        .bind(&fix.incident_id)
        .bind(&fix.service_id)
        .bind(&fix.fix_type)
        .bind(&fix.status)
        .bind(&fix.commit_sha)
        .bind(&fix.summary)
        .bind(&fix.patch)
        .bind(fix.confidence_score)
        .bind(&fix.risk_assessment)
        .bind(&fix.repository)
        .bind(&fix.base_branch)
        .bind(&fix.head_branch)
        .bind(fix.pr_number)
        .bind(&fix.pr_url)
        .bind(&fix.rejection_reason)
        .bind(&fix.last_error)
        .bind(fix.job_attempts)
        .bind(fix.job_run_after)
        .bind(&fix.job_lease_owner)
        .bind(fix.job_lease_until)
        .bind(fix.pr_checked_at)
        .bind(fix.created_at)
        .bind(fix.updated_at)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    Ok(())
}

pub async fn get(store: &Store, tenant_id: &str, id: &str) -> StoreResult<FixProposal> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, FixProposal>(concat!(
            "SELECT ", fix_columns!(), " FROM fix_proposals WHERE tenant_id = $1 AND id = $2"
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
    incident_id: Option<&str>,
    status: Option<&str>,
    before_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<FixProposal>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, FixProposal>(concat!(
            "SELECT ", fix_columns!(), " FROM fix_proposals WHERE tenant_id = $1 \
             AND ($2 IS NULL OR incident_id = $2) AND ($3 IS NULL OR status = $3) \
             AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
        ))
        .bind(tenant_id)
        .bind(incident_id)
        .bind(status)
        .bind(before_id)
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?
    }))
}

/// Moves a proposal from `from` to `to` (with the rejection reason, and the PR job's first run
/// when it becomes `applied`); `None` when its status was not `from`.
pub async fn transition_in(
    tx: &mut Tx<'_>,
    tenant_id: &str,
    id: &str,
    from: &str,
    to: &str,
    reason: Option<&str>,
    now: i64,
) -> StoreResult<Option<FixProposal>> {
    let run_after = (to == "applied").then_some(now);
    Ok(dispatch_tx!(tx, conn => {
        sqlx::query_as::<_, FixProposal>(concat!(
            "UPDATE fix_proposals SET status = $4, rejection_reason = COALESCE($5, rejection_reason), \
             job_run_after = COALESCE($6, job_run_after), updated_at = $7 \
             WHERE tenant_id = $1 AND id = $2 AND status = $3 RETURNING ", fix_columns!()
        ))
        .bind(tenant_id)
        .bind(id)
        .bind(from)
        .bind(to)
        .bind(reason)
        .bind(run_after)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?
    }))
}

/// A pull request of the tenant's repository changed: its fix proposal (if any) follows.
/// Returns how many proposals changed.
pub async fn follow_pull_request_in(
    tx: &mut Tx<'_>,
    tenant_id: &str,
    repository: &str,
    number: i64,
    status: &str,
    now: i64,
) -> StoreResult<u64> {
    Ok(dispatch_tx!(tx, conn => {
        sqlx::query(
            "UPDATE fix_proposals SET status = $4, pr_checked_at = $5, updated_at = $5 \
             WHERE tenant_id = $1 AND lower(repository) = lower($2) AND pr_number = $3 \
             AND status = 'pr_created'",
        )
        .bind(tenant_id)
        .bind(repository)
        .bind(number)
        .bind(status)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    }))
}

/// Leases approved AI fixes whose PR-creation job is due.
pub async fn claim_pr_jobs(
    store: &Store,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: u32,
) -> StoreResult<Vec<FixProposal>> {
    let due = "SELECT id FROM fix_proposals WHERE status = 'applied' AND job_run_after <= $3 \
               AND (job_lease_until IS NULL OR job_lease_until < $3) ORDER BY job_run_after LIMIT $4";
    let claim = |due: &str| {
        format!(
            concat!(
                "UPDATE fix_proposals SET job_lease_owner = $1, job_lease_until = $2, \
                 job_attempts = job_attempts + 1 WHERE id IN ({due}) RETURNING ",
                fix_columns!()
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
        sqlx::query_as::<_, FixProposal>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
    }))
}

/// Records the outcome of a PR-creation job held by `owner`: the pull request opened
/// (`pr_created`), a retry at `retry_at`, or `failed` when neither is given.
pub async fn finish_pr_job(
    store: &Store,
    fix: &FixProposal,
    owner: &str,
    opened: Option<(i64, &str, &str)>,
    error: Option<&str>,
    retry_at: Option<i64>,
    now: i64,
) -> StoreResult<()> {
    let (status, number, url, branch) = match opened {
        Some((number, url, branch)) => ("pr_created", Some(number), Some(url), Some(branch)),
        None if retry_at.is_some() => ("applied", None, None, None),
        None => ("failed", None, None, None),
    };
    dispatch_write!(store, pool => {
        sqlx::query(
            "UPDATE fix_proposals SET status = $3, pr_number = COALESCE($4, pr_number), \
             pr_url = COALESCE($5, pr_url), head_branch = COALESCE($6, head_branch), \
             last_error = $7, job_run_after = $8, job_lease_owner = NULL, job_lease_until = NULL, \
             updated_at = $9 WHERE id = $1 AND job_lease_owner = $2",
        )
        .bind(&fix.id)
        .bind(owner)
        .bind(status)
        .bind(number)
        .bind(url)
        .bind(branch)
        .bind(error)
        .bind(retry_at)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Open fix pull requests not checked since `checked_before`, for the poller.
pub async fn unchecked_open_prs(
    store: &Store,
    checked_before: i64,
    limit: u32,
) -> StoreResult<Vec<FixProposal>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, FixProposal>(concat!(
            "SELECT ", fix_columns!(), " FROM fix_proposals WHERE status = 'pr_created' \
             AND (pr_checked_at IS NULL OR pr_checked_at < $1) ORDER BY id LIMIT $2"
        ))
        .bind(checked_before)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?
    }))
}

/// Notes a poll of a fix pull request, and its new status when it changed.
pub async fn checked(store: &Store, id: &str, status: Option<&str>, now: i64) -> StoreResult<()> {
    dispatch_write!(store, pool => {
        sqlx::query(
            "UPDATE fix_proposals SET pr_checked_at = $2, status = COALESCE($3, status), \
             updated_at = $2 WHERE id = $1 AND status = 'pr_created'",
        )
        .bind(id)
        .bind(now)
        .bind(status)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(())
}
