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

/// Queues an analysis of a commit (the analyser picks it up); returns the job id.
pub async fn enqueue_analysis(
    tx: &mut Tx<'_>,
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
pub async fn upsert_pull_request(tx: &mut Tx<'_>, pr: &PullRequest) -> StoreResult<PullRequest> {
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
pub async fn upsert_issue(tx: &mut Tx<'_>, issue: &ForgeIssue) -> StoreResult<ForgeIssue> {
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

/// Whose pull requests and issues a listing shows: one repository's (a service's), or those of
/// every repository an integration received forge deliveries for.
#[derive(Debug, Clone, Copy)]
pub enum ForgeScope<'a> {
    /// A repository key (`owner/name`, lowercased).
    Repository(&'a str),
    /// An integration id (`int_…`).
    Integration(&'a str),
}

impl ForgeScope<'_> {
    /// The two scope parameters the listing statements take: a repository key, or the pattern
    /// an integration's inbound deliveries name it by in their targets.
    fn binds(&self) -> (Option<String>, Option<String>) {
        match self {
            ForgeScope::Repository(key) => (Some(key.to_lowercase()), None),
            ForgeScope::Integration(id) => (None, Some(format!("%\"{id}\"%"))),
        }
    }
}

/// The scope clause over `$2` (a repository key) or `$3` (an integration's targets pattern).
macro_rules! forge_scope {
    () => {
        "(($2 IS NOT NULL AND repository_key = $2) OR ($3 IS NOT NULL AND repository_key IN \
         (SELECT lower(d.repository) FROM inbound_deliveries d WHERE d.tenant_id = $1 \
          AND d.targets LIKE $3 AND d.repository IS NOT NULL)))"
    };
}

macro_rules! pull_request_columns {
    () => {
        "id, tenant_id, repository, repository_key, number, title, url, state, merged, \
         merged_at, head_ref, head_sha, base_ref, base_sha, body, author, created_at, updated_at"
    };
}

/// A scope's pull requests, newest first: `state` is `open`, `closed` (closed without merging),
/// `merged`, or `None` for all.
pub async fn list_pull_requests(
    store: &Store,
    tenant_id: &str,
    scope: ForgeScope<'_>,
    state: Option<&str>,
    before_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<PullRequest>> {
    let (repository, targets) = scope.binds();
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, PullRequest>(concat!(
            "SELECT ", pull_request_columns!(), " FROM pull_requests \
             WHERE tenant_id = $1 AND ", forge_scope!(), " \
             AND ($4 IS NULL OR ($4 = 'merged' AND merged) OR ($4 = 'open' AND state = 'open') \
                  OR ($4 = 'closed' AND state = 'closed' AND NOT merged)) \
             AND ($5 IS NULL OR id < $5) ORDER BY id DESC LIMIT $6"
        ))
        .bind(tenant_id)
        .bind(repository.as_deref())
        .bind(targets.as_deref())
        .bind(state)
        .bind(before_id)
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?
    }))
}

/// A scope's pull requests numbered `number` (one per repository; several only for an
/// integration that hears from several repositories), at most `limit`.
pub async fn pull_requests_numbered(
    store: &Store,
    tenant_id: &str,
    scope: ForgeScope<'_>,
    number: i64,
    limit: u32,
) -> StoreResult<Vec<PullRequest>> {
    let (repository, targets) = scope.binds();
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, PullRequest>(concat!(
            "SELECT ", pull_request_columns!(), " FROM pull_requests \
             WHERE tenant_id = $1 AND ", forge_scope!(), " AND number = $4 \
             ORDER BY repository_key LIMIT $5"
        ))
        .bind(tenant_id)
        .bind(repository.as_deref())
        .bind(targets.as_deref())
        .bind(number)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?
    }))
}

macro_rules! issue_columns {
    () => {
        "id, tenant_id, repository, repository_key, number, title, url, state, labels, body, \
         created_at, updated_at"
    };
}

/// A scope's issues, newest first: `state` is `open`, `closed`, or `None` for all.
pub async fn list_issues(
    store: &Store,
    tenant_id: &str,
    scope: ForgeScope<'_>,
    state: Option<&str>,
    before_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<ForgeIssue>> {
    let (repository, targets) = scope.binds();
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, ForgeIssue>(concat!(
            "SELECT ", issue_columns!(), " FROM forge_issues \
             WHERE tenant_id = $1 AND ", forge_scope!(), " AND ($4 IS NULL OR state = $4) \
             AND ($5 IS NULL OR id < $5) ORDER BY id DESC LIMIT $6"
        ))
        .bind(tenant_id)
        .bind(repository.as_deref())
        .bind(targets.as_deref())
        .bind(state)
        .bind(before_id)
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?
    }))
}

/// A scope's issues numbered `number`, at most `limit` (see [`pull_requests_numbered`]).
pub async fn issues_numbered(
    store: &Store,
    tenant_id: &str,
    scope: ForgeScope<'_>,
    number: i64,
    limit: u32,
) -> StoreResult<Vec<ForgeIssue>> {
    let (repository, targets) = scope.binds();
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, ForgeIssue>(concat!(
            "SELECT ", issue_columns!(), " FROM forge_issues \
             WHERE tenant_id = $1 AND ", forge_scope!(), " AND number = $4 \
             ORDER BY repository_key LIMIT $5"
        ))
        .bind(tenant_id)
        .bind(repository.as_deref())
        .bind(targets.as_deref())
        .bind(number)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?
    }))
}

/// Commits of a service received since `since` (ms), counted by the day (UTC, as days since
/// the epoch) of their own timestamp and by risk level (`""` while not analysed).
pub async fn risk_by_day(
    store: &Store,
    tenant_id: &str,
    service_id: &str,
    since: i64,
) -> StoreResult<Vec<(i64, String, i64)>> {
    Ok(dispatch!(store, pool => {
        sqlx::query_as::<_, (i64, String, i64)>(
            "SELECT COALESCE(committed_at, created_at) / 86400000 AS day, \
             COALESCE(risk_level, '') AS level, COUNT(*) AS commits FROM commits \
             WHERE tenant_id = $1 AND service_id = $2 AND id >= $3 \
             GROUP BY 1, 2",
        )
        .bind(tenant_id)
        .bind(service_id)
        .bind(ids::first_at(Kind::Commit, since))
        .fetch_all(pool)
        .await?
    }))
}

/// How many analysis jobs were ever queued for a commit, whatever became of them since: the
/// analysis worker may have claimed or finished one by the time this is asked.
pub async fn analysis_jobs_of(store: &Store, commit_id: &str) -> StoreResult<i64> {
    Ok(dispatch!(store, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM analysis_jobs WHERE commit_id = $1")
        .bind(commit_id)
        .fetch_one(pool)
        .await?
    }))
}

// ---- batched writes (the inbound writer records many deliveries per transaction) -------------
//
// What a push records is prepared as rows on the receiving task (ids drawn, file lists encoded)
// and written with a few multi-row statements; on SQLite those go to the database in one round
// trip together with the deliveries that carry them (`store::inbound::insert_many_in`), and on
// the inbound writer's own SQLite connection row by row (`write_push_rows_direct`). Each
// row names its delivery, and a row whose delivery was not written (a repeat) writes nothing:
// the batch need not wait for the deliveries' answer before writing their pushes.

/// Rows per multi-row statement: far below both engines' bound-parameter limits.
const ROWS_PER_STATEMENT: usize = 500;

/// A pushed commit, for one service. Stored unless the service has that SHA already.
#[derive(Debug, Clone)]
pub struct CommitRow {
    /// Drawn in advance; the commit keeps it only if this row creates it.
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
    pub forced: bool,
}

/// A branch a push put a service's commit on (new or stored before).
#[derive(Debug, Clone)]
pub struct BranchRow {
    pub service_id: String,
    pub sha: String,
    pub branch: String,
}

/// An analysis job for a commit the push creates (a commit stored before gets none).
#[derive(Debug, Clone)]
pub struct AnalysisRow {
    pub id: String,
    pub tenant_id: String,
    pub service_id: String,
    /// The [`CommitRow::id`] drawn for the commit.
    pub commit_id: String,
}

/// Everything one delivery's push records.
#[derive(Debug, Clone, Default)]
pub struct PushRows {
    /// The delivery the rows come with: they are written only if it is.
    pub delivery_id: String,
    pub commits: Vec<CommitRow>,
    pub branches: Vec<BranchRow>,
    pub analyses: Vec<AnalysisRow>,
}

/// A commit row's columns, in the order [`bind_commit_row`] binds them.
macro_rules! commit_columns {
    () => {
        "id, tenant_id, service_id, sha, message, author_name, author_email, committed_at, url, \
         repository, added, removed, modified, created_at, forced"
    };
}

/// Binds a [`CommitRow`]'s columns, in [`commit_columns`] order, `now` as its creation time.
macro_rules! bind_commit_row {
    ($query:expr, $row:expr, $now:expr) => {{
        let row = $row;
        $query
            .bind(&row.id)
            .bind(&row.tenant_id)
            .bind(&row.service_id)
            .bind(&row.sha)
            .bind(&row.message)
            .bind(&row.author_name)
            .bind(&row.author_email)
            .bind(row.committed_at)
            .bind(&row.url)
            .bind(&row.repository)
            .bind(&row.added)
            .bind(&row.removed)
            .bind(&row.modified)
            .bind($now)
            .bind(row.forced)
    }};
}
pub(crate) use bind_commit_row;

/// The statements that write a set of [`PushRows`], each with the rows it binds, in order.
pub(crate) enum PushStatement<'a> {
    Commits(String, Vec<(&'a str, &'a CommitRow)>),
    Branches(String, Vec<(&'a str, &'a BranchRow)>),
    Analyses(String, Vec<&'a AnalysisRow>),
}

/// The guarded multi-row statements for `pushes`. Commits come in (service, SHA) order, so
/// concurrent batches on PostgreSQL take their locks in the same order.
pub(crate) fn push_statements<'a>(
    backend: super::Backend,
    pushes: &[&'a PushRows],
) -> Vec<PushStatement<'a>> {
    let mut commits: Vec<(&str, &CommitRow)> = pushes
        .iter()
        .flat_map(|push| {
            push.commits
                .iter()
                .map(|row| (push.delivery_id.as_str(), row))
        })
        .collect();
    commits.sort_by(|(_, a), (_, b)| (&a.service_id, &a.sha).cmp(&(&b.service_id, &b.sha)));
    let branches: Vec<(&str, &BranchRow)> = pushes
        .iter()
        .flat_map(|push| {
            push.branches
                .iter()
                .map(|row| (push.delivery_id.as_str(), row))
        })
        .collect();
    let analyses: Vec<&AnalysisRow> = pushes.iter().flat_map(|push| &push.analyses).collect();
    let mut statements = Vec::new();
    for chunk in commits.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            concat!(
                "WITH v (delivery_id, ",
                commit_columns!(),
                ") AS (VALUES {}) INSERT INTO commits (",
                commit_columns!(),
                ") SELECT ",
                commit_columns!(),
                " FROM v WHERE EXISTS (SELECT 1 FROM inbound_deliveries d WHERE d.id = v.delivery_id) \
                 ON CONFLICT (service_id, sha) DO NOTHING"
            ),
            values_placeholders(backend, chunk.len(), 16)
        );
        statements.push(PushStatement::Commits(sql, chunk.to_vec()));
    }
    for chunk in branches.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "WITH v (delivery_id, service_id, sha, branch, created_at) AS (VALUES {}) \
             INSERT INTO commit_branches (commit_id, branch, created_at) \
             SELECT c.id, v.branch, v.created_at FROM v \
             JOIN commits c ON c.service_id = v.service_id AND c.sha = v.sha \
             WHERE EXISTS (SELECT 1 FROM inbound_deliveries d WHERE d.id = v.delivery_id) \
             ON CONFLICT (commit_id, branch) DO NOTHING",
            values_placeholders(backend, chunk.len(), 5)
        );
        statements.push(PushStatement::Branches(sql, chunk.to_vec()));
    }
    for chunk in analyses.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "WITH v (id, tenant_id, service_id, commit_id, status, created_at) AS (VALUES {}) \
             INSERT INTO analysis_jobs (id, tenant_id, service_id, commit_id, status, attempts, \
             run_after, created_at, updated_at) \
             SELECT v.id, v.tenant_id, v.service_id, v.commit_id, v.status, 0, v.created_at, \
             v.created_at, v.created_at FROM v \
             WHERE EXISTS (SELECT 1 FROM commits c WHERE c.id = v.commit_id)",
            values_placeholders(backend, chunk.len(), 6)
        );
        statements.push(PushStatement::Analyses(sql, chunk.to_vec()));
    }
    statements
}

/// Binds one [`PushStatement`]'s rows onto a query of either backend, `now` as their time.
macro_rules! bind_push_statement {
    ($query:expr, $statement:expr, $now:expr) => {{
        let mut query = $query;
        match $statement {
            $crate::store::record::PushStatement::Commits(_, rows) => {
                for (delivery_id, row) in rows {
                    query = $crate::store::record::bind_commit_row!(
                        query.bind(*delivery_id),
                        row,
                        $now
                    );
                }
            }
            $crate::store::record::PushStatement::Branches(_, rows) => {
                for (delivery_id, row) in rows {
                    query = query
                        .bind(*delivery_id)
                        .bind(&row.service_id)
                        .bind(&row.sha)
                        .bind(&row.branch)
                        .bind($now);
                }
            }
            $crate::store::record::PushStatement::Analyses(_, rows) => {
                for row in rows {
                    query = query
                        .bind(&row.id)
                        .bind(&row.tenant_id)
                        .bind(&row.service_id)
                        .bind(&row.commit_id)
                        .bind($crate::store::record::job_status::QUEUED)
                        .bind($now);
                }
            }
        }
        query
    }};
}
pub(crate) use bind_push_statement;

impl PushStatement<'_> {
    pub(crate) fn sql(&self) -> &str {
        match self {
            PushStatement::Commits(sql, _)
            | PushStatement::Branches(sql, _)
            | PushStatement::Analyses(sql, _) => sql,
        }
    }
}

/// Writes one push whose delivery was just written, row by row, on the inbound writer's own
/// SQLite connection ([`super::direct`]). The writer knows which deliveries it wrote, so the rows
/// need no guard, and single-row statements need no statement journal: on SQLite that is
/// cheaper than the guarded multi-row statements (bench/README.md). Same outcome: a commit the
/// service has already is left as it is, its branch still added; only a commit created here
/// gets an analysis job.
pub(crate) fn write_push_rows_direct(
    conn: &rusqlite::Connection,
    push: &PushRows,
    now: i64,
) -> rusqlite::Result<()> {
    use super::direct::Binder;
    let mut insert_commit = conn.prepare_cached(concat!(
        "INSERT INTO commits (",
        commit_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (service_id, sha) DO NOTHING"
    ))?;
    let mut created: Vec<&str> = Vec::with_capacity(push.commits.len());
    for row in &push.commits {
        bind_commit_row!(Binder::new(&mut insert_commit), row, now).finish()?;
        if insert_commit.raw_execute()? == 1 {
            created.push(&row.id);
        }
    }
    if !push.branches.is_empty() {
        let mut find_commit =
            conn.prepare_cached("SELECT id FROM commits WHERE service_id = ? AND sha = ?")?;
        let mut insert_branch = conn.prepare_cached(
            "INSERT INTO commit_branches (commit_id, branch, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (commit_id, branch) DO NOTHING",
        )?;
        for row in &push.branches {
            let made_here = push.commits.iter().find(|commit| {
                commit.service_id == row.service_id
                    && commit.sha == row.sha
                    && created.contains(&commit.id.as_str())
            });
            let found: String;
            let commit_id = match made_here {
                Some(commit) => commit.id.as_str(),
                None => {
                    Binder::new(&mut find_commit)
                        .bind(&row.service_id)
                        .bind(&row.sha)
                        .finish()?;
                    let mut rows = find_commit.raw_query();
                    match rows.next()? {
                        Some(commit) => found = commit.get(0)?,
                        // No such commit: the push did not carry it, nor did an earlier one.
                        None => continue,
                    }
                    found.as_str()
                }
            };
            Binder::new(&mut insert_branch)
                .bind(commit_id)
                .bind(&row.branch)
                .bind(now)
                .finish()?;
            insert_branch.raw_execute()?;
        }
    }
    let analyses = push
        .analyses
        .iter()
        .filter(|row| created.contains(&row.commit_id.as_str()));
    for row in analyses {
        let mut insert_job = conn.prepare_cached(
            "INSERT INTO analysis_jobs (id, tenant_id, service_id, commit_id, status, attempts, \
             run_after, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)",
        )?;
        Binder::new(&mut insert_job)
            .bind(&row.id)
            .bind(&row.tenant_id)
            .bind(&row.service_id)
            .bind(&row.commit_id)
            .bind(job_status::QUEUED)
            .bind(now)
            .bind(now)
            .bind(now)
            .finish()?;
        insert_job.raw_execute()?;
    }
    Ok(())
}

/// Writes pushes whose deliveries are stored already (a replay), one statement at a time.
pub async fn insert_push_rows_in(tx: &mut Tx<'_>, pushes: &[&PushRows]) -> StoreResult<()> {
    let now = clock::now_ms();
    for statement in push_statements(tx.backend(), pushes) {
        dispatch_tx!(tx, conn => {
            // Only generated placeholders are interpolated; every value is bound.
            let query = sqlx::query(sqlx::AssertSqlSafe(statement.sql()));
            bind_push_statement!(query, &statement, now)
                .execute(&mut *conn)
                .await?
                .rows_affected()
        });
    }
    Ok(())
}
