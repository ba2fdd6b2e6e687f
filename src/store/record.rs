//! The record inbound webhooks feed: commits (with their branches and files), pull requests,
//! forge issues, and the queue of commit analysis jobs.

use sqlx::FromRow;

use super::{StoreError, StoreResult, Tx, dispatch, dispatch_tx, values_placeholders};
use crate::clock;
use crate::ids::{self, Kind};
use crate::store::Store;

/// Status of an analysis job.
pub mod job_status {
    pub const QUEUED: &str = "queued";
    pub const RUNNING: &str = "running";
    pub const DONE: &str = "done";
    pub const FAILED: &str = "failed";
}

#[derive(Debug, Clone, FromRow)]
pub struct Commit {
    pub id: String,
    pub tenant_id: String,
    pub service_id: String,
    pub sha: String,
    pub message: String,
    pub author_name: String,
    pub author_email: String,
    pub committed_at: Option<i64>,
    pub url: String,
    pub repository: String,
    /// JSON arrays of paths.
    pub added: String,
    pub removed: String,
    pub modified: String,
    pub analysis: Option<String>,
    pub risk_score: Option<i64>,
    pub risk_level: Option<String>,
    pub analyzed_at: Option<i64>,
    pub created_at: i64,
    /// It first arrived in a force push.
    pub forced: bool,
    /// Status of the newest analysis job for this commit, if any.
    pub analysis_status: Option<String>,
}

macro_rules! commit_columns {
    () => {
        "c.id, c.tenant_id, c.service_id, c.sha, c.message, c.author_name, c.author_email, \
         c.committed_at, c.url, c.repository, c.added, c.removed, c.modified, c.analysis, \
         c.risk_score, c.risk_level, c.analyzed_at, c.created_at, c.forced, \
         (SELECT j.status FROM analysis_jobs j WHERE j.commit_id = c.id ORDER BY j.id DESC LIMIT 1) \
         AS analysis_status"
    };
}
pub(crate) use commit_columns;

/// A commit as a push describes it.
#[derive(Debug, Clone)]
pub struct NewCommit<'a> {
    pub tenant_id: &'a str,
    pub service_id: &'a str,
    pub sha: &'a str,
    pub message: &'a str,
    pub author_name: &'a str,
    pub author_email: &'a str,
    pub committed_at: Option<i64>,
    pub url: &'a str,
    pub repository: &'a str,
    pub added: &'a [String],
    pub removed: &'a [String],
    pub modified: &'a [String],
    pub forced: bool,
}

/// Queues an analysis of a commit (the analyser picks it up); returns the job id.
pub async fn enqueue_analysis(
    tx: &mut Tx,
    tenant_id: &str,
    service_id: &str,
    commit_id: &str,
) -> StoreResult<String> {
    let id = ids::new(Kind::AnalysisJob);
    let now = clock::now_ms();
    dispatch_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO analysis_jobs (id, tenant_id, service_id, commit_id, status, attempts, \
             run_after, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $6, $6)",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(service_id)
        .bind(commit_id)
        .bind(job_status::QUEUED)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    Ok(id)
}

/// Filters of a commit listing; `None` means any.
#[derive(Debug, Default)]
pub struct CommitFilter<'a> {
    pub branch: Option<&'a str>,
    /// Author name or email, compared without case.
    pub author: Option<&'a str>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub risk_level: Option<&'a str>,
}

pub async fn list_commits(
    store: &Store,
    tenant_id: &str,
    service_id: &str,
    filter: &CommitFilter<'_>,
    before_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<Commit>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, Commit>(concat!(
            "SELECT ", commit_columns!(), " FROM commits c \
             WHERE c.tenant_id = $1 AND c.service_id = $2 AND ($3 IS NULL OR c.id < $3) \
             AND ($4 IS NULL OR EXISTS (SELECT 1 FROM commit_branches b \
                  WHERE b.commit_id = c.id AND b.branch = $4)) \
             AND ($5 IS NULL OR lower(c.author_email) = lower($5) OR lower(c.author_name) = lower($5)) \
             AND ($6 IS NULL OR c.committed_at >= $6) AND ($7 IS NULL OR c.committed_at <= $7) \
             AND ($8 IS NULL OR c.risk_level = $8) \
             ORDER BY c.id DESC LIMIT $9"
        ))
        .bind(tenant_id)
        .bind(service_id)
        .bind(before_id)
        .bind(filter.branch)
        .bind(filter.author)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.risk_level)
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?
    }))
}

/// A commit of a service by full SHA or by a prefix of at least 7 hex digits; a prefix that
/// several commits share is a conflict.
pub async fn get_commit(
    store: &Store,
    tenant_id: &str,
    service_id: &str,
    sha: &str,
) -> StoreResult<Commit> {
    let pattern = format!("{}%", sha.to_ascii_lowercase());
    let found = dispatch!(store, pool => {
        sqlx::query_as::<_, Commit>(concat!(
            "SELECT ", commit_columns!(), " FROM commits c \
             WHERE c.tenant_id = $1 AND c.service_id = $2 AND c.sha LIKE $3 ORDER BY c.id LIMIT 2"
        ))
        .bind(tenant_id)
        .bind(service_id)
        .bind(&pattern)
        .fetch_all(pool)
        .await?
    });
    match found.len() {
        0 => Err(StoreError::NotFound),
        1 => Ok(found.into_iter().next().expect("one row")),
        _ => Err(StoreError::Conflict(format!(
            "`{sha}` matches several commits; give more of the SHA"
        ))),
    }
}

/// The branches of each commit in `commit_ids`, as `(commit_id, branch)` in branch order.
pub async fn branches_of(
    store: &Store,
    commit_ids: &[String],
) -> StoreResult<Vec<(String, String)>> {
    if commit_ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = (1..=commit_ids.len())
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT commit_id, branch FROM commit_branches WHERE commit_id IN ({placeholders}) \
         ORDER BY commit_id, branch"
    );
    Ok(dispatch!(store, pool => {
        // Only generated placeholders are interpolated; the ids are bound.
        let mut query = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql.as_str()));
        for id in commit_ids {
            query = query.bind(id);
        }
        query.fetch_all(pool).await?
    }))
}

// ---- pull requests and issues -----------------------------------------------------------------

#[derive(Debug, Clone, FromRow)]
pub struct PullRequest {
    pub id: String,
    pub tenant_id: String,
    pub repository: String,
    pub repository_key: String,
    pub number: i64,
    pub title: String,
    pub url: String,
    /// `open` or `closed`.
    pub state: String,
    pub merged: bool,
    pub merged_at: Option<i64>,
    pub head_ref: String,
    pub head_sha: String,
    pub base_ref: String,
    pub base_sha: String,
    pub body: String,
    pub author: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Stores a pull request, or updates the one with the same repository and number; returns the
/// stored row.
pub async fn upsert_pull_request(tx: &mut Tx, pr: &PullRequest) -> StoreResult<PullRequest> {
    Ok(dispatch_tx!(tx, conn => {
        sqlx::query_as::<_, PullRequest>(
            "INSERT INTO pull_requests (id, tenant_id, repository, repository_key, number, title, \
             url, state, merged, merged_at, head_ref, head_sha, base_ref, base_sha, body, author, \
             created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
             ON CONFLICT (tenant_id, repository_key, number) DO UPDATE SET \
             repository = excluded.repository, title = excluded.title, url = excluded.url, \
             state = excluded.state, merged = excluded.merged, merged_at = excluded.merged_at, \
             head_ref = excluded.head_ref, head_sha = excluded.head_sha, \
             base_ref = excluded.base_ref, base_sha = excluded.base_sha, body = excluded.body, \
             author = excluded.author, updated_at = excluded.updated_at \
             RETURNING id, tenant_id, repository, repository_key, number, title, url, state, \
             merged, merged_at, head_ref, head_sha, base_ref, base_sha, body, author, created_at, \
             updated_at",
        )
        .bind(&pr.id)
        .bind(&pr.tenant_id)
        .bind(&pr.repository)
        .bind(&pr.repository_key)
        .bind(pr.number)
        .bind(&pr.title)
        .bind(&pr.url)
        .bind(&pr.state)
        .bind(pr.merged)
        .bind(pr.merged_at)
        .bind(&pr.head_ref)
        .bind(&pr.head_sha)
        .bind(&pr.base_ref)
        .bind(&pr.base_sha)
        .bind(&pr.body)
        .bind(&pr.author)
        .bind(pr.created_at)
        .bind(pr.updated_at)
        .fetch_one(&mut *conn)
        .await?
    }))
}

pub async fn get_pull_request(
    store: &Store,
    tenant_id: &str,
    repository: &str,
    number: i64,
) -> StoreResult<PullRequest> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, PullRequest>(
            "SELECT id, tenant_id, repository, repository_key, number, title, url, state, merged, \
             merged_at, head_ref, head_sha, base_ref, base_sha, body, author, created_at, updated_at \
             FROM pull_requests WHERE tenant_id = $1 AND repository_key = $2 AND number = $3",
        )
        .bind(tenant_id)
        .bind(repository.to_lowercase())
        .bind(number)
        .fetch_optional(pool)
        .await?
    })
    .ok_or(StoreError::NotFound)
}

#[derive(Debug, Clone, FromRow)]
pub struct ForgeIssue {
    pub id: String,
    pub tenant_id: String,
    pub repository: String,
    pub repository_key: String,
    pub number: i64,
    pub title: String,
    pub url: String,
    pub state: String,
    /// JSON array of label names.
    pub labels: String,
    pub body: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Stores an issue, or updates the one with the same repository and number.
pub async fn upsert_issue(tx: &mut Tx, issue: &ForgeIssue) -> StoreResult<ForgeIssue> {
    Ok(dispatch_tx!(tx, conn => {
        sqlx::query_as::<_, ForgeIssue>(
            "INSERT INTO forge_issues (id, tenant_id, repository, repository_key, number, title, \
             url, state, labels, body, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (tenant_id, repository_key, number) DO UPDATE SET \
             repository = excluded.repository, title = excluded.title, url = excluded.url, \
             state = excluded.state, labels = excluded.labels, body = excluded.body, \
             updated_at = excluded.updated_at \
             RETURNING id, tenant_id, repository, repository_key, number, title, url, state, \
             labels, body, created_at, updated_at",
        )
        .bind(&issue.id)
        .bind(&issue.tenant_id)
        .bind(&issue.repository)
        .bind(&issue.repository_key)
        .bind(issue.number)
        .bind(&issue.title)
        .bind(&issue.url)
        .bind(&issue.state)
        .bind(&issue.labels)
        .bind(&issue.body)
        .bind(issue.created_at)
        .bind(issue.updated_at)
        .fetch_one(&mut *conn)
        .await?
    }))
}

pub async fn get_issue(
    store: &Store,
    tenant_id: &str,
    repository: &str,
    number: i64,
) -> StoreResult<ForgeIssue> {
    dispatch!(store, pool => {
        sqlx::query_as::<_, ForgeIssue>(
            "SELECT id, tenant_id, repository, repository_key, number, title, url, state, labels, \
             body, created_at, updated_at \
             FROM forge_issues WHERE tenant_id = $1 AND repository_key = $2 AND number = $3",
        )
        .bind(tenant_id)
        .bind(repository.to_lowercase())
        .bind(number)
        .fetch_optional(pool)
        .await?
    })
    .ok_or(StoreError::NotFound)
}

/// How many analysis jobs are queued for a commit (tests and the commit view use it).
pub async fn queued_jobs_of(store: &Store, commit_id: &str) -> StoreResult<i64> {
    Ok(dispatch!(store, pool => {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM analysis_jobs WHERE commit_id = $1 AND status = $2",
        )
        .bind(commit_id)
        .bind(job_status::QUEUED)
        .fetch_one(pool)
        .await?
    }))
}

// ---- batched writes (the inbound writer records many deliveries per transaction) -------------

/// Rows per multi-row statement: far below both engines' bound-parameter limits.
const ROWS_PER_STATEMENT: usize = 500;

/// Inserts commits not stored yet (one row per service and SHA) and returns the id, service and
/// SHA of each one it created. Rows are written in (service, SHA) order, so concurrent batches on
/// PostgreSQL take their locks in the same order.
pub async fn insert_commits_in(
    tx: &mut Tx,
    commits: &[NewCommit<'_>],
) -> StoreResult<Vec<(String, String, String)>> {
    let mut rows: Vec<&NewCommit<'_>> = commits.iter().collect();
    rows.sort_by(|a, b| (a.service_id, a.sha).cmp(&(b.service_id, b.sha)));
    rows.dedup_by(|a, b| a.service_id == b.service_id && a.sha == b.sha);
    let now = clock::now_ms();
    let json = |paths: &[String]| serde_json::to_string(paths).expect("paths serialize");
    let mut created = Vec::new();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO commits (id, tenant_id, service_id, sha, message, author_name, \
             author_email, committed_at, url, repository, added, removed, modified, created_at, \
             forced) VALUES {} ON CONFLICT (service_id, sha) DO NOTHING RETURNING id, service_id, sha",
            values_placeholders(tx.backend(), chunk.len(), 15)
        );
        let inserted: Vec<(String, String, String)> = dispatch_tx!(tx, conn => {
            // Only generated placeholders are interpolated; every value is bound.
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()));
            for commit in chunk {
                query = query
                    .bind(ids::new(Kind::Commit))
                    .bind(commit.tenant_id)
                    .bind(commit.service_id)
                    .bind(commit.sha)
                    .bind(commit.message)
                    .bind(commit.author_name)
                    .bind(commit.author_email)
                    .bind(commit.committed_at)
                    .bind(commit.url)
                    .bind(commit.repository)
                    .bind(json(commit.added))
                    .bind(json(commit.removed))
                    .bind(json(commit.modified))
                    .bind(now)
                    .bind(commit.forced);
            }
            query.fetch_all(&mut *conn).await?
        });
        created.extend(inserted);
    }
    Ok(created)
}

/// The ids of stored commits, by (service, SHA).
pub async fn commit_ids_in(
    tx: &mut Tx,
    keys: &[(&str, &str)],
) -> StoreResult<Vec<(String, String, String)>> {
    let mut found = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT c.id, c.service_id, c.sha FROM commits c JOIN (VALUES {}) AS k \
             ON c.service_id = k.column1 AND c.sha = k.column2",
            values_placeholders(tx.backend(), chunk.len(), 2)
        );
        let rows: Vec<(String, String, String)> = dispatch_tx!(tx, conn => {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()));
            for (service_id, sha) in chunk {
                query = query.bind(*service_id).bind(*sha);
            }
            query.fetch_all(&mut *conn).await?
        });
        found.extend(rows);
    }
    Ok(found)
}

/// Adds branches to commits, `(commit_id, branch)`; pairs already there are left alone.
pub async fn add_branches_in(tx: &mut Tx, pairs: &[(String, String)]) -> StoreResult<()> {
    let mut pairs: Vec<&(String, String)> = pairs.iter().collect();
    pairs.sort();
    pairs.dedup();
    let now = clock::now_ms();
    for chunk in pairs.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO commit_branches (commit_id, branch, created_at) VALUES {} \
             ON CONFLICT (commit_id, branch) DO NOTHING",
            values_placeholders(tx.backend(), chunk.len(), 3)
        );
        dispatch_tx!(tx, conn => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for (commit_id, branch) in chunk {
                query = query.bind(commit_id).bind(branch).bind(now);
            }
            query.execute(&mut *conn).await?.rows_affected()
        });
    }
    Ok(())
}

/// Queues an analysis for each `(tenant_id, service_id, commit_id)`.
pub async fn enqueue_analyses_in(
    tx: &mut Tx,
    commits: &[(String, String, String)],
) -> StoreResult<()> {
    let now = clock::now_ms();
    for chunk in commits.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO analysis_jobs (id, tenant_id, service_id, commit_id, status, attempts, \
             run_after, created_at, updated_at) VALUES {}",
            values_placeholders(tx.backend(), chunk.len(), 9)
        );
        dispatch_tx!(tx, conn => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for (tenant_id, service_id, commit_id) in chunk {
                query = query
                    .bind(ids::new(Kind::AnalysisJob))
                    .bind(tenant_id)
                    .bind(service_id)
                    .bind(commit_id)
                    .bind(job_status::QUEUED)
                    .bind(0_i64)
                    .bind(now)
                    .bind(now)
                    .bind(now);
            }
            query.execute(&mut *conn).await?.rows_affected()
        });
    }
    Ok(())
}
