//! `/api/deploys`: recording a deploy (and `deploy.ingested` through the outbox in the same
//! transaction), with the ingested commits it shipped since the previous deploy of its service
//! and environment.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::clock::{self, rfc3339_ms};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{ApiJson, ApiQuery, check_text, parse_id};
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::{self, Kind};
use crate::inbound::forge::is_sha;
use crate::outbound::{Audience, enqueue};
use crate::store::deploys::{self, Deploy};
use crate::store::{StoreError, record, services};
use crate::tenancy::Principal;
use crate::tenancy::api::not_found_as;

/// Commits one deploy records as shipped at most (the newest are kept).
const MAX_SHIPPED: i64 = 1_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_deploy))
        .routes(routes!(get_deploy))
        .routes(routes!(list_deploys))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeploy {
    /// `svc_…`
    #[schema(pattern = r"^svc_[0-9a-f]{32}$")]
    pub service_id: String,
    /// The deployed commit: 7 to 64 hex digits.
    #[schema(min_length = 7, max_length = 64, pattern = r"^[0-9a-fA-F]{7,64}$")]
    pub commit_sha: String,
    /// At most 200 characters; empty means none.
    #[schema(
        max_length = 200,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub branch: Option<String>,
    /// At most 200 characters; empty means none.
    #[schema(
        max_length = 200,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub environment: Option<String>,
    /// At most 200 characters; empty means none.
    #[schema(
        max_length = 200,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub deployed_by: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeployOut {
    /// `dep_…`.
    pub id: String,
    pub service_id: String,
    pub commit_sha: String,
    pub branch: Option<String>,
    pub environment: Option<String>,
    pub deployed_by: Option<String>,
    pub deployed_at: String,
    /// The ingested commits this deploy shipped since the previous deploy of the service to the
    /// same environment, newest first.
    pub commits: Vec<String>,
}

async fn out(state: &AppState, deploy: Deploy) -> ApiResult<DeployOut> {
    let commits = deploys::commits_of(&state.store, &deploy.id)
        .await?
        .into_iter()
        .map(|commit| commit.sha)
        .collect();
    Ok(DeployOut {
        deployed_at: rfc3339_ms(deploy.deployed_at),
        id: deploy.id,
        service_id: deploy.service_id,
        commit_sha: deploy.commit_sha,
        branch: deploy.branch,
        environment: deploy.environment,
        deployed_by: deploy.deployed_by,
        commits,
    })
}

fn optional_text(field: &str, value: Option<&str>) -> ApiResult<Option<String>> {
    value
        .map(|text| check_text(field, text, 200))
        .transpose()
        .map(|text| text.filter(|text| !text.is_empty()))
}

#[utoipa::path(post, path = "/api/deploys", tag = "deploys", request_body = CreateDeploy,
    responses(
        (status = 201, description = "Recorded; `deploy.ingested` is sent", body = DeployOut),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 422, description = "Malformed SHA or fields", body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_deploy(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(input): ApiJson<CreateDeploy>,
) -> ApiResult<(StatusCode, Json<DeployOut>)> {
    let service_id = parse_id(Kind::Service, &input.service_id)
        .map_err(|error| ApiError::Unprocessable(format!("service_id: {error}")))?;
    let sha = input.commit_sha.trim().to_ascii_lowercase();
    if sha.len() < 7 || !is_sha(&sha) {
        return Err(ApiError::Unprocessable(
            "commit_sha must be a commit SHA of 7 to 64 hex digits".to_owned(),
        ));
    }
    let branch = optional_text("branch", input.branch.as_deref())?;
    let environment = optional_text("environment", input.environment.as_deref())?;
    let deployed_by = optional_text("deployed_by", input.deployed_by.as_deref())?;
    let service = services::get(&state.store, &principal.tenant_id, &service_id)
        .await
        .map_err(|error| not_found_as(error, "service"))?;
    let known = |sha: String| {
        let (store, tenant_id, service_id) = (&state.store, &principal.tenant_id, &service.id);
        async move {
            match record::get_commit(store, tenant_id, service_id, &sha).await {
                Ok(commit) => Ok(Some(commit.id)),
                Err(StoreError::NotFound | StoreError::Conflict(_)) => Ok(None),
                Err(other) => Err(other),
            }
        }
    };
    let head_id = known(sha.clone()).await?;

    let deploy = Deploy {
        id: ids::new(Kind::Deploy),
        tenant_id: principal.tenant_id.clone(),
        service_id: service.id.clone(),
        commit_sha: sha,
        branch,
        environment,
        deployed_by,
        deployed_at: clock::now_ms(),
    };
    let mut tx = state.store.begin().await?;
    let previous =
        deploys::previous_in(&mut tx, &service.id, deploy.environment.as_deref()).await?;
    if let Some(head_id) = &head_id {
        let after_id = match &previous {
            Some(previous) => known(previous.commit_sha.clone()).await?,
            None => None,
        };
        let shipped = deploys::shipped_commits_in(
            &mut tx,
            &service.id,
            after_id.as_deref(),
            head_id,
            deploy.branch.as_deref(),
            MAX_SHIPPED,
        )
        .await?;
        deploys::insert_in(&mut tx, &deploy).await?;
        deploys::add_commits_in(&mut tx, &deploy.id, &shipped).await?;
    } else {
        deploys::insert_in(&mut tx, &deploy).await?;
    }
    enqueue(
        &mut tx,
        &principal.tenant_id,
        "deploy.ingested",
        &json!({
            "deploy_id": deploy.id,
            "commit_sha": deploy.commit_sha,
            "branch": deploy.branch,
            "environment": deploy.environment,
            "deployed_by": deploy.deployed_by,
        }),
        Audience::Subscribers,
    )
    .await?;
    tx.commit().await?;
    state.outbound.wake();
    tracing::info!(deploy_id = %deploy.id, service_id = %service.id, "deploy recorded");
    Ok((StatusCode::CREATED, Json(out(&state, deploy).await?)))
}

#[utoipa::path(get, path = "/api/deploys/{id}", tag = "deploys",
    params(("id" = String, Path, description = "Deploy id (`dep_…`)")),
    responses((status = 200, body = DeployOut), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_deploy(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<DeployOut>> {
    let id = parse_id(Kind::Deploy, &id)?;
    let deploy = deploys::get(&state.store, &principal.tenant_id, &id)
        .await
        .map_err(|error| not_found_as(error, "deploy"))?;
    Ok(Json(out(&state, deploy).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeployPage {
    pub data: Vec<DeployOut>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/services/{id}/deploys", tag = "deploys",
    params(("id" = String, Path, description = "Service id (`svc_…`)"), PageQuery),
    responses((status = 200, body = DeployPage), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_deploys(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<DeployPage>> {
    let service = super::api::load(&state, &principal, &id).await?;
    let limit = page.limit()?;
    let cursor = page.cursor(Kind::Deploy)?;
    let rows = deploys::list(
        &state.store,
        &principal.tenant_id,
        &service.id,
        cursor.as_deref(),
        limit,
    )
    .await?;
    let (rows, next_cursor) = next_cursor(rows, limit, |row| row.id.clone());
    let mut data = Vec::with_capacity(rows.len());
    for deploy in rows {
        data.push(out(&state, deploy).await?);
    }
    Ok(Json(DeployPage { data, next_cursor }))
}
