//! `/api/repos/{owner}/{repo}/hooks`: a repository's hooks, their test, their deliveries and
//! resending one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{HookChanges, NewHook};
use crate::app::AppState;
use crate::clock::rfc3339_ms;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::paging::PageQuery;
use crate::outbound::api::{AttemptOut, DeliveryOut};
use crate::outbound::endpoints::{self, DeliveryListing};
use crate::store::outbound::{self as queue, Endpoint};
use crate::tenancy::Principal;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_hooks, create_hook))
        .routes(routes!(get_hook, update_hook, delete_hook))
        .routes(routes!(test_hook))
        .routes(routes!(hook_deliveries))
        .routes(routes!(get_hook_delivery))
        .routes(routes!(resend))
}

/// A repository hook. Its secret token is never returned.
#[derive(Debug, Serialize, ToSchema)]
pub struct HookOut {
    /// `hook_…`
    pub id: String,
    /// `owner/name`, lowercased.
    pub repository: String,
    pub url: String,
    /// Among `push`, `merge_request`, `note`, `issue`, `pipeline`.
    pub events: Vec<String>,
    /// `gitlab` or `original`.
    pub payload_format: String,
    pub enabled: bool,
    /// `enabled`, `temporarily_disabled` (failing: not attempted before `disabled_until`, events
    /// still queued) or `disabled` (until enabled again, or a Test).
    pub state: &'static str,
    pub disabled_until: Option<String>,
    pub token_configured: bool,
    /// Why Hookline disabled the hook, if it did.
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<String>,
    /// Failed deliveries in a row.
    pub consecutive_failures: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl HookOut {
    fn of(state: &AppState, hook: &Endpoint) -> HookOut {
        HookOut {
            id: hook.id.clone(),
            repository: hook.repository_key.clone().unwrap_or_default(),
            url: hook.url.clone(),
            events: hook.event_type_filter().unwrap_or_default(),
            payload_format: hook.payload_format.clone().unwrap_or_default(),
            enabled: hook.active,
            state: super::state_of(hook, crate::clock::now_ms()),
            disabled_until: hook.disabled_until.map(rfc3339_ms),
            token_configured: super::token_of(&state.cipher, hook).is_ok_and(|t| t.is_some()),
            disabled_reason: hook.disabled_reason.clone(),
            disabled_at: hook.disabled_at.map(rfc3339_ms),
            consecutive_failures: hook.consecutive_failures,
            created_at: rfc3339_ms(hook.created_at),
            updated_at: rfc3339_ms(hook.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HookPage {
    pub data: Vec<HookOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateHook {
    /// `http://` or `https://`; the SSRF policy applies at save and at every attempt.
    #[schema(
        format = "uri",
        min_length = 1,
        max_length = 2048,
        pattern = r"^https?://[A-Za-z0-9._~:/?\[\]!$&'()*+,;=%-]+$"
    )]
    pub url: String,
    /// Sent as `X-Gitlab-Token` and used for `X-Hub-Signature-256`; stored encrypted. 1 to 255
    /// visible ASCII characters.
    #[schema(min_length = 1, max_length = 255, pattern = r"^[!-~]+$")]
    pub token: Option<String>,
    /// Default `["push"]`.
    #[schema(min_items = 1, pattern = r"^(push|merge_request|note|issue|pipeline)$")]
    pub events: Option<Vec<String>>,
    /// `gitlab` (default) or `original`.
    #[schema(pattern = r"^(gitlab|original)$")]
    pub payload_format: Option<String>,
}

/// Only the fields given change; `token: null` removes the token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateHook {
    /// `http://` or `https://`, as on creation.
    #[schema(
        format = "uri",
        min_length = 1,
        max_length = 2048,
        pattern = r"^https?://[A-Za-z0-9._~:/?\[\]!$&'()*+,;=%-]+$"
    )]
    pub url: Option<String>,
    /// 1 to 255 visible ASCII characters.
    #[serde(default, deserialize_with = "crate::http::extract::present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 255, pattern = r"^[!-~]+$")]
    pub token: Option<Option<String>>,
    /// At least one of `push`, `merge_request`, `note`, `issue`, `pipeline`.
    #[schema(min_items = 1, pattern = r"^(push|merge_request|note|issue|pipeline)$")]
    pub events: Option<Vec<String>>,
    /// `gitlab` or `original`.
    #[schema(pattern = r"^(gitlab|original)$")]
    pub payload_format: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HookTestSent {
    pub delivery_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HookDeliveryPage {
    pub data: Vec<DeliveryOut>,
    pub next_cursor: Option<String>,
}

/// A hook delivery: the payload sent and every attempt with its request and response.
#[derive(Debug, Serialize, ToSchema)]
pub struct HookDelivery {
    #[serde(flatten)]
    pub delivery: DeliveryOut,
    pub hook_id: String,
    pub payload: Value,
    pub attempts: Vec<AttemptOut>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HookDeliveryQuery {
    /// `pending`, `paused`, `succeeded` or `failed`.
    #[param(pattern = r"^(pending|paused|succeeded|failed)$")]
    status: Option<String>,
    /// Items per page, 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^dlv_[0-9a-f]{32}$")]
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/repos/{owner}/{repo}/hooks", tag = "repository hooks",
    params(("owner" = String, Path), ("repo" = String, Path), PageQuery),
    responses((status = 200, body = HookPage), (status = 404, description = "Unknown repository", body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_hooks(
    State(state): State<AppState>,
    principal: Principal,
    Path((owner, repo)): Path<(String, String)>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<HookPage>> {
    let key = super::repository_key(&owner, &repo)?;
    let (hooks, next_cursor) = super::list(&state, &principal.tenant_id, &key, &page).await?;
    Ok(Json(HookPage {
        data: hooks.iter().map(|hook| HookOut::of(&state, hook)).collect(),
        next_cursor,
    }))
}

#[utoipa::path(post, path = "/api/repos/{owner}/{repo}/hooks", tag = "repository hooks",
    params(("owner" = String, Path), ("repo" = String, Path)), request_body = CreateHook,
    responses((status = 201, body = HookOut), (status = 404, description = "Unknown repository", body = ErrorBody),
        (status = 422, description = "Bad URL (scheme, forbidden destination), token, events or format", body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_hook(
    State(state): State<AppState>,
    principal: Principal,
    Path((owner, repo)): Path<(String, String)>,
    ApiJson(input): ApiJson<CreateHook>,
) -> ApiResult<(StatusCode, Json<HookOut>)> {
    let key = super::repository_key(&owner, &repo)?;
    let hook = super::create(
        &state,
        &principal.tenant_id,
        &key,
        NewHook {
            url: input.url,
            token: input.token,
            events: input.events,
            format: input.payload_format,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(HookOut::of(&state, &hook))))
}

#[utoipa::path(get, path = "/api/repos/{owner}/{repo}/hooks/{id}", tag = "repository hooks",
    params(("owner" = String, Path), ("repo" = String, Path), ("id" = String, Path, description = "`hook_…`")),
    responses((status = 200, body = HookOut), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_hook(
    State(state): State<AppState>,
    principal: Principal,
    Path((owner, repo, id)): Path<(String, String, String)>,
) -> ApiResult<Json<HookOut>> {
    let key = super::repository_key(&owner, &repo)?;
    let hook = super::load(&state, &principal.tenant_id, &key, &id).await?;
    Ok(Json(HookOut::of(&state, &hook)))
}

#[utoipa::path(patch, path = "/api/repos/{owner}/{repo}/hooks/{id}", tag = "repository hooks",
    params(("owner" = String, Path), ("repo" = String, Path), ("id" = String, Path, description = "`hook_…`")),
    request_body = UpdateHook,
    responses((status = 200, body = HookOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn update_hook(
    State(state): State<AppState>,
    principal: Principal,
    Path((owner, repo, id)): Path<(String, String, String)>,
    ApiJson(input): ApiJson<UpdateHook>,
) -> ApiResult<Json<HookOut>> {
    let key = super::repository_key(&owner, &repo)?;
    let changes = HookChanges {
        url: input.url,
        token: input.token,
        events: input.events,
        format: input.payload_format,
        enabled: input.enabled,
    };
    let hook = super::update(&state, &principal.tenant_id, &key, &id, changes).await?;
    Ok(Json(HookOut::of(&state, &hook)))
}

#[utoipa::path(delete, path = "/api/repos/{owner}/{repo}/hooks/{id}", tag = "repository hooks",
    params(("owner" = String, Path), ("repo" = String, Path), ("id" = String, Path, description = "`hook_…`")),
    responses((status = 204, description = "Deleted with its deliveries"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn delete_hook(
    State(state): State<AppState>,
    principal: Principal,
    Path((owner, repo, id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let key = super::repository_key(&owner, &repo)?;
    super::delete(&state, &principal.tenant_id, &key, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/repos/{owner}/{repo}/hooks/{id}/test", tag = "repository hooks",
    params(("owner" = String, Path), ("repo" = String, Path), ("id" = String, Path, description = "`hook_…`")),
    responses((status = 202, description = "A sample push was queued for this hook only", body = HookTestSent),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn test_hook(
    State(state): State<AppState>,
    principal: Principal,
    Path((owner, repo, id)): Path<(String, String, String)>,
) -> ApiResult<(StatusCode, Json<HookTestSent>)> {
    let key = super::repository_key(&owner, &repo)?;
    let delivery_id = super::test(&state, &principal.tenant_id, &key, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(HookTestSent { delivery_id })))
}

#[utoipa::path(get, path = "/api/repos/{owner}/{repo}/hooks/{id}/deliveries", tag = "repository hooks",
    params(("owner" = String, Path), ("repo" = String, Path), ("id" = String, Path, description = "`hook_…`"), HookDeliveryQuery),
    responses((status = 200, description = "Newest first", body = HookDeliveryPage), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn hook_deliveries(
    State(state): State<AppState>,
    principal: Principal,
    Path((owner, repo, id)): Path<(String, String, String)>,
    ApiQuery(query): ApiQuery<HookDeliveryQuery>,
) -> ApiResult<Json<HookDeliveryPage>> {
    let key = super::repository_key(&owner, &repo)?;
    let hook = super::load(&state, &principal.tenant_id, &key, &id).await?;
    let listing = DeliveryListing {
        status: query.status,
        limit: query.limit,
        cursor: query.cursor,
        ..DeliveryListing::default()
    };
    let (rows, next_cursor) =
        endpoints::deliveries_of(&state, &principal.tenant_id, &hook, listing).await?;
    Ok(Json(HookDeliveryPage {
        data: rows.iter().map(DeliveryOut::from).collect(),
        next_cursor,
    }))
}

/// A delivery of one of the repository's hooks (another repository's is 404).
async fn load_delivery(
    state: &AppState,
    tenant_id: &str,
    key: &str,
    id: &str,
) -> ApiResult<(Endpoint, queue::Delivery)> {
    let delivery = endpoints::load_delivery(state, tenant_id, id).await?;
    let hook = super::load(state, tenant_id, key, &delivery.endpoint_id)
        .await
        .map_err(|_| ApiError::NotFound("hook delivery"))?;
    Ok((hook, delivery))
}

#[utoipa::path(get, path = "/api/repos/{owner}/{repo}/hook-deliveries/{id}", tag = "repository hooks",
    params(("owner" = String, Path), ("repo" = String, Path), ("id" = String, Path, description = "`dlv_…`")),
    responses((status = 200, body = HookDelivery), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_hook_delivery(
    State(state): State<AppState>,
    principal: Principal,
    Path((owner, repo, id)): Path<(String, String, String)>,
) -> ApiResult<Json<HookDelivery>> {
    let key = super::repository_key(&owner, &repo)?;
    let (hook, delivery) = load_delivery(&state, &principal.tenant_id, &key, &id).await?;
    let payload = queue::event_payload(&state.store, &delivery.event_id).await?;
    let attempts = queue::attempts_of(&state.store, &delivery.id).await?;
    Ok(Json(HookDelivery {
        delivery: DeliveryOut::from(&delivery),
        hook_id: hook.id,
        payload: serde_json::from_str(&payload).unwrap_or(Value::String(payload)),
        attempts: attempts.into_iter().map(AttemptOut::from).collect(),
    }))
}

#[utoipa::path(post, path = "/api/repos/{owner}/{repo}/hook-deliveries/{id}/resend", tag = "repository hooks",
    params(("owner" = String, Path), ("repo" = String, Path), ("id" = String, Path, description = "`dlv_…`")),
    responses((status = 202, description = "Queued again with a fresh retry budget", body = DeliveryOut),
        (status = 404, body = ErrorBody), (status = 409, description = "Still pending", body = ErrorBody)),
    security(("bearer" = [])))]
async fn resend(
    State(state): State<AppState>,
    principal: Principal,
    Path((owner, repo, id)): Path<(String, String, String)>,
) -> ApiResult<(StatusCode, Json<DeliveryOut>)> {
    let key = super::repository_key(&owner, &repo)?;
    let (_, delivery) = load_delivery(&state, &principal.tenant_id, &key, &id).await?;
    let delivery = endpoints::redeliver(&state, &principal.tenant_id, &delivery.id).await?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryOut::from(&delivery))))
}
