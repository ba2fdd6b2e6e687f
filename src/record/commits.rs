//! A service's commits: listed with filters, and read one at a time with the branches pushes
//! brought it on. The JSON API and the pages both go through [`list`] and [`get`].

use std::collections::BTreeMap;

use crate::app::AppState;
use crate::clock::parse_rfc3339_ms;
use crate::http::error::{ApiError, ApiResult};
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::Kind;
use crate::inbound::forge::is_sha;
use crate::store::record::{self, Commit, CommitFilter};
use crate::store::services::Service;
use crate::tenancy::api::not_found_as;

/// The risk levels a listing filters by, lowest first.
pub const RISK_LEVELS: [&str; 4] = ["low", "medium", "high", "critical"];

/// What a commit listing is narrowed to, as asked (blank means any).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub branch: Option<String>,
    pub author: Option<String>,
    /// RFC 3339.
    pub since: Option<String>,
    pub until: Option<String>,
    pub risk: Option<String>,
}

fn time_param(name: &str, value: Option<&str>) -> ApiResult<Option<i64>> {
    value
        .map(|text| {
            parse_rfc3339_ms(text).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{name} must be an RFC 3339 time such as 2026-03-02T10:00:00Z"
                ))
            })
        })
        .transpose()
}

fn present(value: &Option<String>) -> Option<&str> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

/// A commit with every branch it was pushed on.
#[derive(Debug, Clone)]
pub struct WithBranches {
    pub commit: Commit,
    pub branches: Vec<String>,
}

async fn with_branches(state: &AppState, commits: Vec<Commit>) -> ApiResult<Vec<WithBranches>> {
    let ids: Vec<String> = commits.iter().map(|commit| commit.id.clone()).collect();
    let mut branches: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (commit_id, branch) in record::branches_of(&state.store, &ids).await? {
        branches.entry(commit_id).or_default().push(branch);
    }
    Ok(commits
        .into_iter()
        .map(|commit| WithBranches {
            branches: branches.remove(&commit.id).unwrap_or_default(),
            commit,
        })
        .collect())
}

/// A page of a service's commits, newest first, with their branches, and the next cursor.
pub async fn list(
    state: &AppState,
    service: &Service,
    filter: &Filter,
    page: &PageQuery,
) -> ApiResult<(Vec<WithBranches>, Option<String>)> {
    let since = time_param("since", present(&filter.since))?;
    let until = time_param("until", present(&filter.until))?;
    let risk = present(&filter.risk);
    if let Some(risk) = risk
        && !RISK_LEVELS.contains(&risk)
    {
        return Err(ApiError::BadRequest(
            "risk must be low, medium, high or critical".to_owned(),
        ));
    }
    let limit = page.limit()?;
    let cursor = page.cursor(Kind::Commit)?;
    let rows = record::list_commits(
        &state.store,
        &service.tenant_id,
        &service.id,
        &CommitFilter {
            branch: present(&filter.branch),
            author: present(&filter.author),
            since,
            until,
            risk_level: risk,
        },
        cursor.as_deref(),
        limit,
    )
    .await?;
    let (rows, next_cursor) = next_cursor(rows, limit, |row| row.id.clone());
    Ok((with_branches(state, rows).await?, next_cursor))
}

/// Checks a SHA or a prefix of one (7 to 64 hex digits).
pub fn check_sha(sha: &str) -> ApiResult<()> {
    if sha.len() >= 7 && is_sha(sha) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "`{}` is not a commit SHA (7 to 64 hex digits)",
            sha.chars().take(80).collect::<String>()
        )))
    }
}

/// One commit of a service by full SHA or a unique prefix, with its branches.
pub async fn get(state: &AppState, service: &Service, sha: &str) -> ApiResult<WithBranches> {
    check_sha(sha)?;
    let commit = record::get_commit(&state.store, &service.tenant_id, &service.id, sha)
        .await
        .map_err(|error| not_found_as(error, "commit"))?;
    let mut found = with_branches(state, vec![commit]).await?;
    Ok(found.remove(0))
}
