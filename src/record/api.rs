//! `/api/services`: services, their push-webhook secret, and the commits pushes brought in.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::commits::{self, WithBranches};
use super::services::{self, IssuedSecret, NewService, ServiceChanges};
use crate::app::AppState;
use crate::clock::{self, rfc3339_ms};
use crate::http::error::{ApiResult, ErrorBody};
use crate::http::extract::{ApiJson, ApiQuery, optional_json};
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::Kind;
use crate::store::services::Service;
use crate::tenancy::Principal;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_services, create_service))
        .routes(routes!(get_service, update_service, delete_service))
        .routes(routes!(generate_secret))
        .routes(routes!(rotate_secret))
        .routes(routes!(list_commits))
        .routes(routes!(get_commit))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceOut {
    /// `svc_…`.
    pub id: String,
    pub name: String,
    /// `owner/name` of the linked repository.
    pub repository: String,
    /// Queue every newly ingested commit for analysis.
    pub auto_analyze: bool,
    /// Whether a GitHub token is stored (it is never returned).
    pub github_token_configured: bool,
    /// Whether a push secret was generated (it is shown only when generated or rotated).
    pub webhook_secret_configured: bool,
    pub webhook_secret_created_at: Option<String>,
    /// While set and in the future, the replaced secret still verifies.
    pub previous_secret_valid_until: Option<String>,
    /// Where GitHub should send this repository's push and pull request webhooks.
    pub webhook_url: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Service> for ServiceOut {
    fn from(service: Service) -> Self {
        let now = clock::now_ms();
        ServiceOut {
            github_token_configured: service.github_token.is_some(),
            webhook_secret_configured: service.webhook_secret.is_some(),
            webhook_secret_created_at: service.webhook_secret_created_at.map(rfc3339_ms),
            previous_secret_valid_until: service
                .previous_secret_until
                .filter(|until| *until > now && service.previous_webhook_secret.is_some())
                .map(rfc3339_ms),
            webhook_url: "/api/github/webhook".to_owned(),
            created_at: rfc3339_ms(service.created_at),
            updated_at: rfc3339_ms(service.updated_at),
            id: service.id,
            name: service.name,
            repository: service.repository,
            auto_analyze: service.auto_analyze,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServicePage {
    pub data: Vec<ServiceOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateService {
    /// 1 to 200 characters, not blank, no control characters other than tab and newline.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x08\x0B-\x1F\x7F-\x9F]*$"
    )]
    pub name: String,
    /// `owner/name` (GitLab: `group/project`, subgroups allowed).
    #[schema(
        min_length = 3,
        max_length = 255,
        pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}(?:/[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}){1,5}$"
    )]
    pub repository: String,
    /// A GitHub token for commit details; stored encrypted, never returned.
    #[schema(min_length = 1, max_length = 1000, pattern = r"^[!-~]+$")]
    pub github_token: Option<String>,
    /// Default false.
    #[serde(default)]
    pub auto_analyze: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateService {
    /// 1 to 200 characters, not blank, no control characters other than tab and newline.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x08\x0B-\x1F\x7F-\x9F]*$"
    )]
    pub name: Option<String>,
    /// `owner/name` (GitLab: `group/project`, subgroups allowed).
    #[schema(
        min_length = 3,
        max_length = 255,
        pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}(?:/[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}){1,5}$"
    )]
    pub repository: Option<String>,
    /// A new token, or `null` to remove the stored one.
    #[serde(default, deserialize_with = "crate::http::extract::present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 1000, pattern = r"^[!-~]+$")]
    pub github_token: Option<Option<String>>,
    pub auto_analyze: Option<bool>,
}

#[utoipa::path(post, path = "/api/services", tag = "services", request_body = CreateService,
    responses((status = 201, body = ServiceOut), (status = 409, description = "Name taken", body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_service(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(input): ApiJson<CreateService>,
) -> ApiResult<(StatusCode, Json<ServiceOut>)> {
    let service = services::create(
        &state,
        &principal.tenant_id,
        NewService {
            name: input.name,
            repository: input.repository,
            github_token: input.github_token,
            auto_analyze: input.auto_analyze,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(service.into())))
}

#[utoipa::path(get, path = "/api/services", tag = "services", params(PageQuery),
    responses((status = 200, body = ServicePage), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_services(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<ServicePage>> {
    let limit = page.limit()?;
    let cursor = page.cursor(Kind::Service)?;
    let rows =
        crate::store::services::list(&state.store, &principal.tenant_id, cursor.as_deref(), limit)
            .await?;
    let (rows, next_cursor) = next_cursor(rows, limit, |row| row.id.clone());
    Ok(Json(ServicePage {
        data: rows.into_iter().map(ServiceOut::from).collect(),
        next_cursor,
    }))
}

pub(crate) async fn load(state: &AppState, principal: &Principal, id: &str) -> ApiResult<Service> {
    services::load(state, &principal.tenant_id, id).await
}

#[utoipa::path(get, path = "/api/services/{id}", tag = "services",
    params(("id" = String, Path, description = "Service id (`svc_…`)")),
    responses((status = 200, body = ServiceOut), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_service(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<ServiceOut>> {
    Ok(Json(load(&state, &principal, &id).await?.into()))
}

#[utoipa::path(patch, path = "/api/services/{id}", tag = "services",
    params(("id" = String, Path, description = "Service id (`svc_…`)")),
    request_body = UpdateService,
    responses((status = 200, body = ServiceOut), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn update_service(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<UpdateService>,
) -> ApiResult<Json<ServiceOut>> {
    let changes = ServiceChanges {
        name: input.name,
        repository: input.repository,
        github_token: input.github_token,
        auto_analyze: input.auto_analyze,
    };
    let service = services::update(&state, &principal.tenant_id, &id, changes).await?;
    Ok(Json(service.into()))
}

#[utoipa::path(delete, path = "/api/services/{id}", tag = "services",
    params(("id" = String, Path, description = "Service id (`svc_…`)")),
    responses((status = 204, description = "Deleted with its commits"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn delete_service(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    services::delete(&state, &principal.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PushSecret {
    pub service_id: String,
    /// The push secret: shown only in this answer. Paste it into the GitHub webhook's Secret.
    pub secret: String,
    pub created_at: String,
    /// When the replaced secret stops verifying (`null`: it stopped at once).
    pub previous_secret_valid_until: Option<String>,
    pub webhook_url: String,
}

#[utoipa::path(post, path = "/api/services/{id}/webhook-secret", tag = "services",
    params(("id" = String, Path, description = "Service id (`svc_…`)")),
    responses((status = 201, description = "The new secret, shown only now", body = PushSecret),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The service already has a secret: rotate it", body = ErrorBody)),
    security(("bearer" = [])))]
async fn generate_secret(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<PushSecret>)> {
    let issued = services::generate_secret(&state, &principal.tenant_id, &id).await?;
    Ok((StatusCode::CREATED, Json(push_secret(&id, issued))))
}

fn push_secret(service_id: &str, issued: IssuedSecret) -> PushSecret {
    PushSecret {
        service_id: service_id.to_owned(),
        secret: issued.secret,
        created_at: rfc3339_ms(issued.created_at),
        previous_secret_valid_until: issued.previous_valid_until.map(rfc3339_ms),
        webhook_url: "/api/github/webhook".to_owned(),
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the replaced secret keeps verifying, in seconds (default 0: it stops at once;
    /// at most one week).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604800)]
    pub grace_seconds: u64,
}

#[utoipa::path(post, path = "/api/services/{id}/webhook-secret/rotate", tag = "services",
    params(("id" = String, Path, description = "Service id (`svc_…`)")),
    request_body(content = Option<RotateSecret>, description = "Optional"),
    responses((status = 200, description = "The new secret, shown only now", body = PushSecret),
        (status = 404, body = ErrorBody),
        (status = 409, description = "No secret to rotate yet, or a concurrent rotation", body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn rotate_secret(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<PushSecret>> {
    let input: RotateSecret = optional_json(&headers, &body)?;
    let issued =
        services::rotate_secret(&state, &principal.tenant_id, &id, input.grace_seconds, None)
            .await?;
    Ok(Json(push_secret(&id, issued)))
}

// ---- commits ----------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct CommitAuthor {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChangedFiles {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub modified: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommitOut {
    pub sha: String,
    pub message: String,
    pub author: CommitAuthor,
    /// The commit's own timestamp, as the push gave it.
    pub timestamp: Option<String>,
    pub url: String,
    pub repository: String,
    /// Every branch a push brought this commit on.
    pub branches: Vec<String>,
    pub files: ChangedFiles,
    /// `queued` while an analysis waits, then the analyser's status.
    pub analysis_status: Option<String>,
    pub risk_score: Option<i64>,
    pub risk_level: Option<String>,
    /// The stored analysis (classes, factors, diagnosis), once there is one.
    pub analysis: Option<Value>,
    pub ingested_at: String,
}

fn commit_out(WithBranches { commit, branches }: WithBranches) -> CommitOut {
    let paths = |json: &str| serde_json::from_str::<Vec<String>>(json).unwrap_or_default();
    CommitOut {
        files: ChangedFiles {
            added: paths(&commit.added),
            removed: paths(&commit.removed),
            modified: paths(&commit.modified),
        },
        author: CommitAuthor {
            name: commit.author_name,
            email: commit.author_email,
        },
        timestamp: commit.committed_at.map(rfc3339_ms),
        analysis: commit
            .analysis
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok()),
        ingested_at: rfc3339_ms(commit.created_at),
        sha: commit.sha,
        message: commit.message,
        url: commit.url,
        repository: commit.repository,
        branches,
        analysis_status: commit.analysis_status,
        risk_score: commit.risk_score,
        risk_level: commit.risk_level,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommitPage {
    pub data: Vec<CommitOut>,
    /// Opaque; pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CommitQuery {
    /// Only commits on this branch.
    branch: Option<String>,
    /// Author name or email (exact, case-insensitive).
    author: Option<String>,
    /// Commit time at or after (RFC 3339).
    #[param(format = DateTime, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9]")]
    since: Option<String>,
    /// Commit time at or before (RFC 3339).
    #[param(format = DateTime, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9]")]
    until: Option<String>,
    /// Risk level once analysed: `low`, `medium`, `high` or `critical`.
    #[param(pattern = r"^(?:low|medium|high|critical)$")]
    risk: Option<String>,
    /// Items per page, 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page (`cmt_…`).
    #[param(pattern = r"^cmt_[0-9a-f]{32}$")]
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/services/{id}/commits", tag = "services",
    params(("id" = String, Path, description = "Service id (`svc_…`)"), CommitQuery),
    responses((status = 200, body = CommitPage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_commits(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<CommitQuery>,
) -> ApiResult<Json<CommitPage>> {
    let service = load(&state, &principal, &id).await?;
    let filter = commits::Filter {
        branch: query.branch,
        author: query.author,
        since: query.since,
        until: query.until,
        risk: query.risk,
    };
    let page = PageQuery::new(query.limit, query.cursor);
    let (rows, next_cursor) = commits::list(&state, &service, &filter, &page).await?;
    Ok(Json(CommitPage {
        data: rows.into_iter().map(commit_out).collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/services/{id}/commits/{sha}", tag = "services",
    params(("id" = String, Path, description = "Service id (`svc_…`)"),
        ("sha" = String, Path, description = "Full SHA, or a unique prefix of at least 7 hex digits")),
    responses((status = 200, body = CommitOut), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Ambiguous prefix", body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_commit(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, sha)): Path<(String, String)>,
) -> ApiResult<Json<CommitOut>> {
    let service = load(&state, &principal, &id).await?;
    Ok(Json(commit_out(
        commits::get(&state, &service, &sha).await?,
    )))
}
