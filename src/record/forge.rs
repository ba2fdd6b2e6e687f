//! Pull requests and issues as the forges last described them, read per service (its repository)
//! or per integration (every repository it received deliveries for). The JSON API here and the
//! pages both list them through [`pull_requests`] and [`issues`].

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::clock::rfc3339_ms;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{ApiQuery, parse_id};
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::Kind;
use crate::store::integrations;
use crate::store::record::{self, ForgeIssue, ForgeScope, PullRequest};
use crate::store::services::Service;
use crate::tenancy::Principal;
use crate::tenancy::api::not_found_as;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(service_pull_requests))
        .routes(routes!(service_pull_request))
        .routes(routes!(service_issues))
        .routes(routes!(service_issue))
        .routes(routes!(integration_pull_requests))
        .routes(routes!(integration_pull_request))
        .routes(routes!(integration_issues))
        .routes(routes!(integration_issue))
}

/// The states a pull request listing filters by.
pub const PULL_REQUEST_STATES: [&str; 3] = ["open", "closed", "merged"];
/// The states an issue listing filters by.
pub const ISSUE_STATES: [&str; 2] = ["open", "closed"];

/// Whose pull requests and issues: a service's or an integration's, owned by the tenant.
#[derive(Debug, Clone)]
pub enum Owner {
    Service { repository_key: String },
    Integration { id: String },
}

impl Owner {
    fn scope(&self) -> ForgeScope<'_> {
        match self {
            Owner::Service { repository_key } => ForgeScope::Repository(repository_key),
            Owner::Integration { id } => ForgeScope::Integration(id),
        }
    }

    /// A service of the tenant (404 when it is not one).
    pub async fn service(state: &AppState, tenant_id: &str, id: &str) -> ApiResult<Owner> {
        let service = super::services::load(state, tenant_id, id).await?;
        Ok(Owner::of_service(&service))
    }

    pub fn of_service(service: &Service) -> Owner {
        Owner::Service {
            repository_key: service.repository_key.clone(),
        }
    }

    /// An integration of the tenant (404 when it is not one).
    pub async fn integration(state: &AppState, tenant_id: &str, id: &str) -> ApiResult<Owner> {
        let id = parse_id(Kind::Integration, id)?;
        let integration = integrations::get(&state.store, tenant_id, &id)
            .await
            .map_err(|error| not_found_as(error, "integration"))?;
        Ok(Owner::Integration { id: integration.id })
    }
}

fn check_state(state: Option<&str>, allowed: &[&str]) -> ApiResult<()> {
    match state {
        Some(state) if !allowed.contains(&state) => Err(ApiError::BadRequest(format!(
            "state must be {}, not `{}`",
            allowed.join(", "),
            state.chars().take(40).collect::<String>()
        ))),
        _ => Ok(()),
    }
}

/// A page of an owner's pull requests, newest first, and the cursor of the next.
pub async fn pull_requests(
    state: &AppState,
    tenant_id: &str,
    owner: &Owner,
    filter_state: Option<&str>,
    page: &PageQuery,
) -> ApiResult<(Vec<PullRequest>, Option<String>)> {
    check_state(filter_state, &PULL_REQUEST_STATES)?;
    let limit = page.limit()?;
    let cursor = page.cursor(Kind::PullRequest)?;
    let rows = record::list_pull_requests(
        &state.store,
        tenant_id,
        owner.scope(),
        filter_state,
        cursor.as_deref(),
        limit,
    )
    .await?;
    Ok(next_cursor(rows, limit, |row| row.id.clone()))
}

/// A page of an owner's issues, newest first, and the cursor of the next.
pub async fn issues(
    state: &AppState,
    tenant_id: &str,
    owner: &Owner,
    filter_state: Option<&str>,
    page: &PageQuery,
) -> ApiResult<(Vec<ForgeIssue>, Option<String>)> {
    check_state(filter_state, &ISSUE_STATES)?;
    let limit = page.limit()?;
    let cursor = page.cursor(Kind::ForgeIssue)?;
    let rows = record::list_issues(
        &state.store,
        tenant_id,
        owner.scope(),
        filter_state,
        cursor.as_deref(),
        limit,
    )
    .await?;
    Ok(next_cursor(rows, limit, |row| row.id.clone()))
}

/// Of the rows numbered alike, the one in `repository` (any case), or the only one.
fn one_numbered<T>(
    rows: Vec<T>,
    repository: Option<&str>,
    key_of: impl Fn(&T) -> &str,
    noun: &'static str,
) -> ApiResult<T> {
    let mut rows = match repository {
        Some(wanted) => {
            let wanted = wanted.to_lowercase();
            rows.into_iter()
                .filter(|row| key_of(row) == wanted)
                .collect()
        }
        None => rows,
    };
    match rows.len() {
        0 => Err(ApiError::NotFound(noun)),
        1 => Ok(rows.remove(0)),
        _ => Err(ApiError::Conflict(format!(
            "several repositories have a {noun} with this number; \
             add ?repository=owner/name to choose one"
        ))),
    }
}

/// Numbers are positive and fit GitHub's and GitLab's (64-bit) ids.
fn check_number(number: &str) -> ApiResult<i64> {
    number
        .parse::<i64>()
        .ok()
        .filter(|number| *number > 0)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "`{}` is not a number such as 42",
                number.chars().take(40).collect::<String>()
            ))
        })
}

/// An owner's pull request numbered `number` (in `repository`, when an integration hears from
/// several).
pub async fn pull_request(
    state: &AppState,
    tenant_id: &str,
    owner: &Owner,
    number: &str,
    repository: Option<&str>,
) -> ApiResult<PullRequest> {
    let number = check_number(number)?;
    let rows =
        record::pull_requests_numbered(&state.store, tenant_id, owner.scope(), number, 100).await?;
    one_numbered(
        rows,
        repository,
        |row| row.repository_key.as_str(),
        "pull request",
    )
}

/// An owner's issue numbered `number` (see [`pull_request`]).
pub async fn issue(
    state: &AppState,
    tenant_id: &str,
    owner: &Owner,
    number: &str,
    repository: Option<&str>,
) -> ApiResult<ForgeIssue> {
    let number = check_number(number)?;
    let rows = record::issues_numbered(&state.store, tenant_id, owner.scope(), number, 100).await?;
    one_numbered(rows, repository, |row| row.repository_key.as_str(), "issue")
}

/// What people call a pull request's state: `merged` is a closed one that was merged.
pub fn pull_request_state(pr: &PullRequest) -> &'static str {
    if pr.merged {
        "merged"
    } else if pr.state == "open" {
        "open"
    } else {
        "closed"
    }
}

/// An issue's labels, as stored (a JSON array of names).
pub fn labels_of(issue: &ForgeIssue) -> Vec<String> {
    serde_json::from_str(&issue.labels).unwrap_or_default()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PullRequestOut {
    /// `pr_…`.
    pub id: String,
    /// `owner/name` as the forge spelled it.
    pub repository: String,
    pub number: i64,
    pub title: String,
    pub url: String,
    /// `open`, `closed` (without merging) or `merged`.
    pub state: String,
    pub merged: bool,
    pub merged_at: Option<String>,
    pub head_ref: String,
    pub head_sha: String,
    pub base_ref: String,
    pub base_sha: String,
    /// The forge login of who opened it.
    pub author: String,
    pub body: String,
    /// When Hookline first heard of it, and last.
    pub created_at: String,
    pub updated_at: String,
}

impl From<PullRequest> for PullRequestOut {
    fn from(pr: PullRequest) -> Self {
        PullRequestOut {
            state: pull_request_state(&pr).to_owned(),
            merged_at: pr.merged_at.map(rfc3339_ms),
            created_at: rfc3339_ms(pr.created_at),
            updated_at: rfc3339_ms(pr.updated_at),
            id: pr.id,
            repository: pr.repository,
            number: pr.number,
            title: pr.title,
            url: pr.url,
            merged: pr.merged,
            head_ref: pr.head_ref,
            head_sha: pr.head_sha,
            base_ref: pr.base_ref,
            base_sha: pr.base_sha,
            author: pr.author,
            body: pr.body,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IssueOut {
    /// `iss_…`.
    pub id: String,
    pub repository: String,
    pub number: i64,
    pub title: String,
    pub url: String,
    /// `open` or `closed`.
    pub state: String,
    pub labels: Vec<String>,
    pub body: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<ForgeIssue> for IssueOut {
    fn from(issue: ForgeIssue) -> Self {
        IssueOut {
            labels: labels_of(&issue),
            created_at: rfc3339_ms(issue.created_at),
            updated_at: rfc3339_ms(issue.updated_at),
            id: issue.id,
            repository: issue.repository,
            number: issue.number,
            title: issue.title,
            url: issue.url,
            state: issue.state,
            body: issue.body,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PullRequestPage {
    pub data: Vec<PullRequestOut>,
    /// Opaque; pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IssuePage {
    pub data: Vec<IssueOut>,
    /// Opaque; pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PullRequestQuery {
    /// `open`, `closed` (closed without merging) or `merged`.
    #[param(pattern = r"^(?:open|closed|merged)$")]
    state: Option<String>,
    /// Items per page, 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page (`pr_…`).
    #[param(pattern = r"^pr_[0-9a-f]{32}$")]
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct IssueQuery {
    /// `open` or `closed`.
    #[param(pattern = r"^(?:open|closed)$")]
    state: Option<String>,
    /// Items per page, 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page (`iss_…`).
    #[param(pattern = r"^iss_[0-9a-f]{32}$")]
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RepositoryQuery {
    /// `owner/name`: needed only when the integration's repositories share the number.
    #[param(max_length = 255)]
    repository: Option<String>,
}

async fn pull_request_page(
    state: &AppState,
    principal: &Principal,
    owner: Owner,
    query: PullRequestQuery,
) -> ApiResult<Json<PullRequestPage>> {
    let page = PageQuery::new(query.limit, query.cursor);
    let (rows, next_cursor) = pull_requests(
        state,
        &principal.tenant_id,
        &owner,
        query.state.as_deref(),
        &page,
    )
    .await?;
    Ok(Json(PullRequestPage {
        data: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

async fn issue_page(
    state: &AppState,
    principal: &Principal,
    owner: Owner,
    query: IssueQuery,
) -> ApiResult<Json<IssuePage>> {
    let page = PageQuery::new(query.limit, query.cursor);
    let (rows, next_cursor) = issues(
        state,
        &principal.tenant_id,
        &owner,
        query.state.as_deref(),
        &page,
    )
    .await?;
    Ok(Json(IssuePage {
        data: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/services/{id}/pull-requests", tag = "services",
    params(("id" = String, Path, description = "Service id (`svc_…`)"), PullRequestQuery),
    responses((status = 200, body = PullRequestPage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn service_pull_requests(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<PullRequestQuery>,
) -> ApiResult<Json<PullRequestPage>> {
    let owner = Owner::service(&state, &principal.tenant_id, &id).await?;
    pull_request_page(&state, &principal, owner, query).await
}

#[utoipa::path(get, path = "/api/services/{id}/pull-requests/{number}", tag = "services",
    params(("id" = String, Path, description = "Service id (`svc_…`)"),
        ("number" = String, Path, description = "The pull request's number in its repository")),
    responses((status = 200, body = PullRequestOut), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn service_pull_request(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, number)): Path<(String, String)>,
) -> ApiResult<Json<PullRequestOut>> {
    let owner = Owner::service(&state, &principal.tenant_id, &id).await?;
    let pr = pull_request(&state, &principal.tenant_id, &owner, &number, None).await?;
    Ok(Json(pr.into()))
}

#[utoipa::path(get, path = "/api/services/{id}/issues", tag = "services",
    params(("id" = String, Path, description = "Service id (`svc_…`)"), IssueQuery),
    responses((status = 200, body = IssuePage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn service_issues(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<IssueQuery>,
) -> ApiResult<Json<IssuePage>> {
    let owner = Owner::service(&state, &principal.tenant_id, &id).await?;
    issue_page(&state, &principal, owner, query).await
}

#[utoipa::path(get, path = "/api/services/{id}/issues/{number}", tag = "services",
    params(("id" = String, Path, description = "Service id (`svc_…`)"),
        ("number" = String, Path, description = "The issue's number in its repository")),
    responses((status = 200, body = IssueOut), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn service_issue(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, number)): Path<(String, String)>,
) -> ApiResult<Json<IssueOut>> {
    let owner = Owner::service(&state, &principal.tenant_id, &id).await?;
    let found = issue(&state, &principal.tenant_id, &owner, &number, None).await?;
    Ok(Json(found.into()))
}

#[utoipa::path(get, path = "/api/v1/integrations/{id}/pull-requests", tag = "integrations",
    params(("id" = String, Path, description = "Integration id (`int_…`)"), PullRequestQuery),
    responses((status = 200, body = PullRequestPage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn integration_pull_requests(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<PullRequestQuery>,
) -> ApiResult<Json<PullRequestPage>> {
    let owner = Owner::integration(&state, &principal.tenant_id, &id).await?;
    pull_request_page(&state, &principal, owner, query).await
}

#[utoipa::path(get, path = "/api/v1/integrations/{id}/pull-requests/{number}", tag = "integrations",
    params(("id" = String, Path, description = "Integration id (`int_…`)"),
        ("number" = String, Path, description = "The pull request's number in its repository"),
        RepositoryQuery),
    responses((status = 200, body = PullRequestOut), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Several repositories have this number: pass `repository`", body = ErrorBody)),
    security(("bearer" = [])))]
async fn integration_pull_request(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, number)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<RepositoryQuery>,
) -> ApiResult<Json<PullRequestOut>> {
    let owner = Owner::integration(&state, &principal.tenant_id, &id).await?;
    let pr = pull_request(
        &state,
        &principal.tenant_id,
        &owner,
        &number,
        query.repository.as_deref(),
    )
    .await?;
    Ok(Json(pr.into()))
}

#[utoipa::path(get, path = "/api/v1/integrations/{id}/issues", tag = "integrations",
    params(("id" = String, Path, description = "Integration id (`int_…`)"), IssueQuery),
    responses((status = 200, body = IssuePage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn integration_issues(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<IssueQuery>,
) -> ApiResult<Json<IssuePage>> {
    let owner = Owner::integration(&state, &principal.tenant_id, &id).await?;
    issue_page(&state, &principal, owner, query).await
}

#[utoipa::path(get, path = "/api/v1/integrations/{id}/issues/{number}", tag = "integrations",
    params(("id" = String, Path, description = "Integration id (`int_…`)"),
        ("number" = String, Path, description = "The issue's number in its repository"),
        RepositoryQuery),
    responses((status = 200, body = IssueOut), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Several repositories have this number: pass `repository`", body = ErrorBody)),
    security(("bearer" = [])))]
async fn integration_issue(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, number)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<RepositoryQuery>,
) -> ApiResult<Json<IssueOut>> {
    let owner = Owner::integration(&state, &principal.tenant_id, &id).await?;
    let found = issue(
        &state,
        &principal.tenant_id,
        &owner,
        &number,
        query.repository.as_deref(),
    )
    .await?;
    Ok(Json(found.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_positive_integers() {
        assert_eq!(check_number("42").unwrap(), 42);
        for bad in ["0", "-1", "4x", "", "99999999999999999999"] {
            assert!(check_number(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_number_several_repositories_share_needs_the_repository() {
        let rows = vec!["acme/api", "acme/web"];
        fn key<'a>(row: &'a &str) -> &'a str {
            row
        }
        assert!(matches!(
            one_numbered(rows.clone(), None, key, "issue"),
            Err(ApiError::Conflict(_))
        ));
        assert_eq!(
            one_numbered(rows.clone(), Some("ACME/Web"), key, "issue").unwrap(),
            "acme/web"
        );
        assert!(matches!(
            one_numbered(rows, Some("acme/other"), key, "issue"),
            Err(ApiError::NotFound("issue"))
        ));
    }
}
