//! `/api/experiments`: CRUD, the activity feed, and creating GitHub issues for an experiment.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{DEFAULT_STATUS, validate_key, validate_status};
use crate::app::AppState;
use crate::clock::{self, rfc3339_ms};
use crate::github::NewIssue;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{ApiJson, ApiQuery, check_text, parse_id, required_text};
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::{self, Kind};
use crate::integrations::token_of;
use crate::record::validate_repository;
use crate::store::StoreError;
use crate::store::experiments::{self, Activity, Experiment, activity_kind};
use crate::store::integrations;
use crate::store::record::{self, ForgeIssue};
use crate::tenancy::Principal;
use crate::tenancy::api::not_found_as;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_experiments, create_experiment))
        .routes(routes!(
            get_experiment,
            update_experiment,
            delete_experiment
        ))
        .routes(routes!(experiment_activity))
        .routes(routes!(create_github_issue))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExperimentOut {
    /// `exp_…`.
    pub id: String,
    /// What a pull request body names in an `experiment_key: <key>` line.
    pub key: String,
    pub name: String,
    pub description: String,
    /// `draft`, `active`, `paused`, `completed` or `archived`.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Experiment> for ExperimentOut {
    fn from(experiment: Experiment) -> Self {
        ExperimentOut {
            created_at: rfc3339_ms(experiment.created_at),
            updated_at: rfc3339_ms(experiment.updated_at),
            id: experiment.id,
            key: experiment.key,
            name: experiment.name,
            description: experiment.description,
            status: experiment.status,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExperimentPage {
    pub data: Vec<ExperimentOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateExperiment {
    /// 1 to 100 letters, digits, `.`, `-` and `_`.
    #[schema(min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9._-]{1,100}$")]
    pub key: String,
    /// 1 to 200 characters, not blank, no control characters other than tab and newline.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x08\x0B-\x1F\x7F-\x9F]*$"
    )]
    pub name: String,
    /// At most 5000 characters, no control characters other than tab and newline.
    #[serde(default)]
    #[schema(max_length = 5000, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub description: String,
    /// `draft`, `active`, `paused`, `completed` or `archived`; default `active`.
    #[schema(pattern = r"^(?:draft|active|paused|completed|archived)$")]
    pub status: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateExperiment {
    /// 1 to 100 letters, digits, `.`, `-` and `_`.
    #[schema(min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9._-]{1,100}$")]
    pub key: Option<String>,
    /// 1 to 200 characters, not blank, no control characters other than tab and newline.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x08\x0B-\x1F\x7F-\x9F]*$"
    )]
    pub name: Option<String>,
    /// At most 5000 characters, no control characters other than tab and newline.
    #[schema(max_length = 5000, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub description: Option<String>,
    /// `draft`, `active`, `paused`, `completed` or `archived`.
    #[schema(pattern = r"^(?:draft|active|paused|completed|archived)$")]
    pub status: Option<String>,
}

#[utoipa::path(post, path = "/api/experiments", tag = "experiments", request_body = CreateExperiment,
    responses((status = 201, body = ExperimentOut),
        (status = 409, description = "Key taken in this tenant", body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_experiment(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(input): ApiJson<CreateExperiment>,
) -> ApiResult<(StatusCode, Json<ExperimentOut>)> {
    let key = validate_key(&input.key).map_err(ApiError::Unprocessable)?;
    let status = validate_status(input.status.as_deref().unwrap_or(DEFAULT_STATUS))
        .map_err(ApiError::Unprocessable)?;
    let now = clock::now_ms();
    let experiment = Experiment {
        id: ids::new(Kind::Experiment),
        tenant_id: principal.tenant_id,
        key: key.to_owned(),
        key_lower: key.to_lowercase(),
        name: required_text("name", &input.name, 200)?,
        description: check_text("description", &input.description, 5_000)?,
        status: status.to_owned(),
        created_at: now,
        updated_at: now,
    };
    experiments::insert(&state.store, &experiment).await?;
    Ok((StatusCode::CREATED, Json(experiment.into())))
}

#[utoipa::path(get, path = "/api/experiments", tag = "experiments", params(PageQuery),
    responses((status = 200, body = ExperimentPage), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_experiments(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<ExperimentPage>> {
    let limit = page.limit()?;
    let cursor = page.cursor(Kind::Experiment)?;
    let rows =
        experiments::list(&state.store, &principal.tenant_id, cursor.as_deref(), limit).await?;
    let (rows, next_cursor) = next_cursor(rows, limit, |row| row.id.clone());
    Ok(Json(ExperimentPage {
        data: rows.into_iter().map(ExperimentOut::from).collect(),
        next_cursor,
    }))
}

async fn load(state: &AppState, principal: &Principal, id: &str) -> ApiResult<Experiment> {
    let id = parse_id(Kind::Experiment, id)?;
    experiments::get(&state.store, &principal.tenant_id, &id)
        .await
        .map_err(|error| not_found_as(error, "experiment"))
}

#[utoipa::path(get, path = "/api/experiments/{id}", tag = "experiments",
    params(("id" = String, Path, description = "Experiment id (`exp_…`)")),
    responses((status = 200, body = ExperimentOut), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_experiment(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<ExperimentOut>> {
    Ok(Json(load(&state, &principal, &id).await?.into()))
}

#[utoipa::path(patch, path = "/api/experiments/{id}", tag = "experiments",
    params(("id" = String, Path, description = "Experiment id (`exp_…`)")),
    request_body = UpdateExperiment,
    responses((status = 200, body = ExperimentOut), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn update_experiment(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<UpdateExperiment>,
) -> ApiResult<Json<ExperimentOut>> {
    let mut experiment = load(&state, &principal, &id).await?;
    if let Some(key) = &input.key {
        let key = validate_key(key).map_err(ApiError::Unprocessable)?;
        experiment.key = key.to_owned();
        experiment.key_lower = key.to_lowercase();
    }
    if let Some(name) = &input.name {
        experiment.name = required_text("name", name, 200)?;
    }
    if let Some(description) = &input.description {
        experiment.description = check_text("description", description, 5_000)?;
    }
    if let Some(status) = &input.status {
        experiment.status = validate_status(status)
            .map_err(ApiError::Unprocessable)?
            .to_owned();
    }
    experiment.updated_at = clock::now_ms();
    experiments::update(&state.store, &experiment).await?;
    Ok(Json(experiment.into()))
}

#[utoipa::path(delete, path = "/api/experiments/{id}", tag = "experiments",
    params(("id" = String, Path, description = "Experiment id (`exp_…`)")),
    responses((status = 204, description = "Deleted with its activity"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn delete_experiment(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let experiment = load(&state, &principal, &id).await?;
    experiments::delete(&state.store, &principal.tenant_id, &experiment.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityOut {
    /// `pull_request_linked`, `pull_request_merged` or `issue_created`.
    pub kind: String,
    pub repository: String,
    /// The pull request or issue number.
    pub number: i64,
    pub title: String,
    pub url: String,
    pub occurred_at: String,
}

impl From<Activity> for ActivityOut {
    fn from(entry: Activity) -> Self {
        ActivityOut {
            occurred_at: rfc3339_ms(entry.occurred_at),
            kind: entry.kind,
            repository: entry.repository,
            number: entry.number,
            title: entry.title,
            url: entry.url,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityList {
    /// Oldest first.
    pub data: Vec<ActivityOut>,
}

#[utoipa::path(get, path = "/api/experiments/{id}/activity", tag = "experiments",
    params(("id" = String, Path, description = "Experiment id (`exp_…`)")),
    responses((status = 200, body = ActivityList), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn experiment_activity(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<ActivityList>> {
    let experiment = load(&state, &principal, &id).await?;
    let entries = experiments::activity_of(&state.store, &experiment.id).await?;
    Ok(Json(ActivityList {
        data: entries.into_iter().map(ActivityOut::from).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGithubIssue {
    /// The integration whose token creates the issue (`int_…`).
    #[schema(pattern = r"^int_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub integration_id: String,
    /// `owner/name` of a GitHub repository.
    #[schema(
        min_length = 3,
        max_length = 140,
        pattern = r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}/[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$"
    )]
    pub repository: String,
    /// 1 to 256 characters, not blank, no control characters other than tab and newline.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x08\x0B-\x1F\x7F-\x9F]*$"
    )]
    pub title: String,
    /// At most 65536 characters, no control characters other than tab and newline.
    #[serde(default)]
    #[schema(max_length = 65536, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub body: String,
    /// Each label 1 to 50 characters, not blank, no control characters other than tab and
    /// newline.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x08\x0B-\x1F\x7F-\x9F]*$"
    )]
    pub labels: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedGithubIssue {
    pub repository: String,
    pub number: i64,
    pub title: String,
    pub url: String,
    pub state: String,
    pub created_at: String,
}

#[utoipa::path(post, path = "/api/experiments/{id}/github-issues", tag = "experiments",
    params(("id" = String, Path, description = "Experiment id (`exp_…`)")),
    request_body = CreateGithubIssue,
    responses(
        (status = 201, description = "Created on GitHub and recorded", body = CreatedGithubIssue),
        (status = 404, description = "No such experiment, or GitHub has no such repository", body = ErrorBody),
        (status = 409, description = "The integration is inactive", body = ErrorBody),
        (status = 422, description = "Invalid request, or GitHub refused its content", body = ErrorBody),
        (status = 429, description = "GitHub's rate limit is exhausted", body = ErrorBody),
        (status = 502, description = "GitHub refused the token or failed", body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_github_issue(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<CreateGithubIssue>,
) -> ApiResult<(StatusCode, Json<CreatedGithubIssue>)> {
    let experiment = load(&state, &principal, &id).await?;
    let repository = validate_repository(&input.repository).map_err(ApiError::Unprocessable)?;
    crate::github::check_repository(&repository).map_err(ApiError::Unprocessable)?;
    let title = required_text("title", &input.title, 256)?;
    let body = check_text("body", &input.body, 65_536)?;
    let mut labels = Vec::with_capacity(input.labels.len());
    for label in &input.labels {
        labels.push(required_text("labels", label, 50)?);
    }
    let integration_id = parse_id(Kind::Integration, &input.integration_id)
        .map_err(|error| ApiError::Unprocessable(format!("integration_id: {error}")))?;
    let integration =
        match integrations::get(&state.store, &principal.tenant_id, &integration_id).await {
            Ok(integration) => integration,
            Err(StoreError::NotFound) => {
                return Err(ApiError::Unprocessable(
                    "integration_id names no integration of this tenant".to_owned(),
                ));
            }
            Err(other) => return Err(other.into()),
        };
    if !integration.is_active {
        return Err(ApiError::Conflict("the integration is inactive".to_owned()));
    }
    let token = token_of(&state.cipher, &integration).map_err(ApiError::internal)?;
    let created = state
        .github
        .create_issue(
            &token,
            &repository,
            &NewIssue {
                title: &title,
                body: &body,
                labels: &labels,
            },
        )
        .await
        .inspect_err(|error| {
            tracing::warn!(experiment_id = %experiment.id, %error, "creating a GitHub issue failed");
        })?;
    let now = clock::now_ms();
    let mut tx = state.store.begin().await?;
    record::upsert_issue(
        &mut tx,
        &ForgeIssue {
            id: ids::new(Kind::ForgeIssue),
            tenant_id: principal.tenant_id.clone(),
            repository: repository.clone(),
            repository_key: repository.to_lowercase(),
            number: created.number,
            title: created.title.clone(),
            url: created.html_url.clone(),
            state: if created.state.is_empty() {
                "open".to_owned()
            } else {
                created.state.clone()
            },
            labels: serde_json::to_string(&labels).expect("labels serialize"),
            body,
            created_at: now,
            updated_at: now,
        },
    )
    .await?;
    experiments::add_activity(
        &mut tx,
        &experiments::activity(
            &experiment.id,
            activity_kind::ISSUE_CREATED,
            &repository,
            created.number,
            &created.title,
            &created.html_url,
            now,
        ),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(experiment_id = %experiment.id, number = created.number, "GitHub issue created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedGithubIssue {
            repository,
            number: created.number,
            title: created.title,
            url: created.html_url,
            state: if created.state.is_empty() {
                "open".to_owned()
            } else {
                created.state
            },
            created_at: rfc3339_ms(now),
        }),
    ))
}
