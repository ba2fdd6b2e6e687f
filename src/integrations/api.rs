//! `/api/v1/integrations`: create, list, read, replace (the way to rotate the webhook secret) and
//! delete GitHub integrations.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{GITHUB, mask, token_context, webhook_secret_context, webhook_secret_of};
use crate::app::AppState;
use crate::clock::{self, rfc3339_ms};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{ApiJson, ApiQuery, check_text, parse_id, required_text};
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::{self, Kind};
use crate::store::integrations::{self, Integration};
use crate::tenancy::Principal;
use crate::tenancy::api::not_found_as;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_integrations, create_integration))
        .routes(routes!(
            get_integration,
            replace_integration,
            delete_integration
        ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationConfig {
    /// GitHub personal access token or app installation token; sent as `Authorization: Bearer`.
    /// 1 to 1000 characters without whitespace.
    #[schema(min_length = 1, max_length = 1000, pattern = r"^[!-~]+$")]
    pub token: String,
    /// The secret GitHub signs this integration's webhooks with: 8 to 1024 printable characters,
    /// not starting or ending with whitespace.
    #[schema(
        min_length = 8,
        max_length = 1024,
        pattern = r"^[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]$"
    )]
    pub webhook_secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIntegration {
    /// 1 to 200 characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
    /// `GITHUB` (any case).
    #[schema(pattern = r"^[Gg][Ii][Tt][Hh][Uu][Bb]$")]
    pub integration_type: String,
    /// At most 2000 characters.
    #[serde(default)]
    #[schema(
        max_length = 2000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub description: String,
    #[serde(deserialize_with = "crate::http::extract::object")]
    pub config: IntegrationConfig,
    /// Default true.
    pub is_active: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigChange {
    /// 1 to 1000 characters without whitespace.
    #[schema(min_length = 1, max_length = 1000, pattern = r"^[!-~]+$")]
    pub token: Option<String>,
    /// 8 to 1024 printable characters, not starting or ending with whitespace.
    #[schema(
        min_length = 8,
        max_length = 1024,
        pattern = r"^[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]$"
    )]
    pub webhook_secret: Option<String>,
}

/// Fields to change; those left out keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceIntegration {
    /// 1 to 200 characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub name: Option<String>,
    /// `GITHUB` (any case).
    #[schema(pattern = r"^[Gg][Ii][Tt][Hh][Uu][Bb]$")]
    pub integration_type: Option<String>,
    /// At most 2000 characters.
    #[schema(
        max_length = 2000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub description: Option<String>,
    pub is_active: Option<bool>,
    /// A new token and/or webhook secret (the old secret stops verifying at once).
    #[serde(default, deserialize_with = "crate::http::extract::optional_object")]
    pub config: Option<ConfigChange>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MaskedConfig {
    /// The webhook secret, masked.
    pub webhook_secret: String,
    /// Whether a token is stored (it is never returned).
    pub token_configured: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationOut {
    /// `int_<uuid>`.
    pub id: String,
    pub name: String,
    pub integration_type: String,
    pub description: String,
    pub is_active: bool,
    pub config: MaskedConfig,
    /// Where GitHub should send this integration's webhooks.
    pub webhook_url: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationPage {
    pub data: Vec<IntegrationOut>,
    pub next_cursor: Option<String>,
}

fn view(integration: Integration) -> IntegrationOut {
    IntegrationOut {
        webhook_url: format!("/api/v1/integrations/{}/webhook/github", integration.id),
        config: MaskedConfig {
            webhook_secret: integration.secret_hint,
            token_configured: !integration.token.is_empty(),
        },
        created_at: rfc3339_ms(integration.created_at),
        updated_at: rfc3339_ms(integration.updated_at),
        id: integration.id,
        name: integration.name,
        integration_type: integration.integration_type,
        description: integration.description,
        is_active: integration.is_active,
    }
}

fn check_type(integration_type: &str) -> ApiResult<String> {
    if integration_type.trim().eq_ignore_ascii_case(GITHUB) {
        Ok(GITHUB.to_owned())
    } else {
        Err(ApiError::Unprocessable(format!(
            "integration_type `{}` is not supported (supported: GITHUB)",
            integration_type.chars().take(40).collect::<String>()
        )))
    }
}

fn check_token(token: &str) -> ApiResult<&str> {
    crate::github::check_token("config.token", token).map_err(ApiError::Unprocessable)?;
    Ok(token)
}

fn check_secret(secret: &str) -> ApiResult<&str> {
    if secret.trim() != secret {
        return Err(ApiError::Unprocessable(
            "config.webhook_secret must not start or end with whitespace".to_owned(),
        ));
    }
    if !(8..=1_024).contains(&secret.chars().count()) || secret.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(
            "config.webhook_secret must be 8 to 1024 printable characters".to_owned(),
        ));
    }
    Ok(secret)
}

#[utoipa::path(post, path = "/api/v1/integrations", tag = "integrations",
    request_body = CreateIntegration,
    responses((status = 201, body = IntegrationOut),
        (status = 422, description = "Unknown type or missing config fields", body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_integration(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(input): ApiJson<CreateIntegration>,
) -> ApiResult<(StatusCode, Json<IntegrationOut>)> {
    let integration_type = check_type(&input.integration_type)?;
    let name = required_text("name", &input.name, 200)?;
    let description = check_text("description", &input.description, 2_000)?;
    let token = check_token(&input.config.token)?;
    let secret = check_secret(&input.config.webhook_secret)?;
    let id = ids::new(Kind::Integration);
    let now = clock::now_ms();
    let integration = Integration {
        token: state.cipher.seal_str(&token_context(&id), token),
        webhook_secret: state.cipher.seal_str(&webhook_secret_context(&id), secret),
        secret_hint: mask(secret),
        id,
        tenant_id: principal.tenant_id,
        name,
        integration_type,
        description,
        is_active: input.is_active.unwrap_or(true),
        created_at: now,
        updated_at: now,
    };
    integrations::insert(&state.store, &integration).await?;
    tracing::info!(integration_id = %integration.id, "integration created");
    Ok((StatusCode::CREATED, Json(view(integration))))
}

#[utoipa::path(get, path = "/api/v1/integrations", tag = "integrations",
    params(PageQuery),
    responses((status = 200, body = IntegrationPage), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_integrations(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<IntegrationPage>> {
    let limit = page.limit()?;
    let cursor = page.cursor(Kind::Integration)?;
    let rows =
        integrations::list(&state.store, &principal.tenant_id, cursor.as_deref(), limit).await?;
    let (rows, next_cursor) = next_cursor(rows, limit, |row| row.id.clone());
    Ok(Json(IntegrationPage {
        data: rows.into_iter().map(view).collect(),
        next_cursor,
    }))
}

async fn load(state: &AppState, principal: &Principal, id: &str) -> ApiResult<Integration> {
    let id = parse_id(Kind::Integration, id)?;
    integrations::get(&state.store, &principal.tenant_id, &id)
        .await
        .map_err(|error| not_found_as(error, "integration"))
}

#[utoipa::path(get, path = "/api/v1/integrations/{id}", tag = "integrations",
    params(("id" = String, Path, description = "Integration id (`int_…`)")),
    responses((status = 200, body = IntegrationOut), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_integration(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<IntegrationOut>> {
    Ok(Json(view(load(&state, &principal, &id).await?)))
}

#[utoipa::path(put, path = "/api/v1/integrations/{id}", tag = "integrations",
    params(("id" = String, Path, description = "Integration id (`int_…`)")),
    request_body = ReplaceIntegration,
    responses((status = 200, body = IntegrationOut), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn replace_integration(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ReplaceIntegration>,
) -> ApiResult<Json<IntegrationOut>> {
    let mut integration = load(&state, &principal, &id).await?;
    if let Some(integration_type) = &input.integration_type {
        check_type(integration_type)?;
    }
    if let Some(name) = &input.name {
        integration.name = required_text("name", name, 200)?;
    }
    if let Some(description) = &input.description {
        integration.description = check_text("description", description, 2_000)?;
    }
    if let Some(active) = input.is_active {
        integration.is_active = active;
    }
    let mut rotated = false;
    if let Some(config) = &input.config {
        if let Some(token) = &config.token {
            let token = check_token(token)?;
            integration.token = state
                .cipher
                .seal_str(&token_context(&integration.id), token);
        }
        if let Some(secret) = &config.webhook_secret {
            let secret = check_secret(secret)?;
            let current = webhook_secret_of(&state.cipher, &integration).ok();
            rotated = current.as_deref() != Some(secret);
            integration.webhook_secret = state
                .cipher
                .seal_str(&webhook_secret_context(&integration.id), secret);
            integration.secret_hint = mask(secret);
        }
    }
    integration.updated_at = clock::now_ms();
    integrations::update(&state.store, &integration).await?;
    if rotated {
        tracing::info!(integration_id = %integration.id, "integration webhook secret replaced");
    }
    Ok(Json(view(integration)))
}

#[utoipa::path(delete, path = "/api/v1/integrations/{id}", tag = "integrations",
    params(("id" = String, Path, description = "Integration id (`int_…`)")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn delete_integration(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let integration = load(&state, &principal, &id).await?;
    integrations::delete(&state.store, &principal.tenant_id, &integration.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
