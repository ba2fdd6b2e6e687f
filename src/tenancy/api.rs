//! `/api/tenant` and `/api/tokens`: who am I, and the tenant's API tokens.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Principal;
use crate::app::AppState;
use crate::clock::rfc3339_ms;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{ApiJson, ApiQuery, parse_id};
use crate::http::paging::PageQuery;
use crate::ids::Kind;
use crate::store::tenants::{self, Token};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(current_tenant))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(get_token, revoke_token))
}

/// The tenant the calling token belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantOut {
    #[schema(example = "tn_0192f0c1a2b37c4d8e9f0a1b2c3d4e5f")]
    pub id: String,
    pub name: String,
    /// RFC 3339, milliseconds, UTC.
    pub created_at: String,
}

/// An API token as listed: never the secret itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenOut {
    pub id: String,
    pub name: String,
    /// The first characters of the token, to recognise it.
    #[schema(example = "hkl_Ab3dEf9h")]
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    /// `active` or `revoked`.
    pub status: &'static str,
}

impl From<Token> for TokenOut {
    fn from(token: Token) -> Self {
        TokenOut {
            status: if token.revoked_at.is_some() {
                "revoked"
            } else {
                "active"
            },
            id: token.id,
            name: token.name,
            prefix: token.prefix,
            created_at: rfc3339_ms(token.created_at),
            last_used_at: token.last_used_at.map(rfc3339_ms),
            revoked_at: token.revoked_at.map(rfc3339_ms),
        }
    }
}

/// A page of tokens, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPage {
    pub data: Vec<TokenOut>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What the token is for, e.g. `ci-deploys`: 1 to 100 characters once trimmed, no control
    /// characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
}

/// A new token. `token` is shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: TokenOut,
    /// The secret: send it as `Authorization: Bearer <token>`. Not retrievable later.
    pub token_secret: String,
}

#[utoipa::path(
    get, path = "/api/tenant", tag = "tenancy",
    responses(
        (status = 200, description = "The caller's tenant", body = TenantOut),
        (status = 401, description = "Missing, unknown or revoked token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn current_tenant(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<TenantOut>> {
    let tenant = tenants::get_tenant(&state.store, &principal.tenant_id).await?;
    Ok(Json(TenantOut {
        id: tenant.id,
        name: tenant.name,
        created_at: rfc3339_ms(tenant.created_at),
    }))
}

#[utoipa::path(
    get, path = "/api/tokens", tag = "tenancy",
    params(PageQuery),
    responses(
        (status = 200, description = "The tenant's tokens, newest first", body = TokenPage),
        (status = 400, description = "Bad paging parameters", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_tokens(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<TokenPage>> {
    let (rows, next_cursor) = super::list_tokens(&state.store, &principal.tenant_id, &page).await?;
    Ok(Json(TokenPage {
        data: rows.into_iter().map(TokenOut::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(
    post, path = "/api/tokens", tag = "tenancy",
    request_body = CreateToken,
    responses(
        (status = 201, description = "Token created; the secret is shown only now", body = CreatedToken),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn create_token(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(input): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let issued = super::create_token(&state.store, &principal.tenant_id, &input.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: issued.token.into(),
            token_secret: issued.secret,
        }),
    ))
}

#[utoipa::path(
    get, path = "/api/tokens/{id}", tag = "tenancy",
    params(("id" = String, Path, description = "Token id (`tok_…`)")),
    responses(
        (status = 200, description = "The token", body = TokenOut),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked token", body = ErrorBody),
        (status = 404, description = "No such token in this tenant", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn get_token(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenOut>> {
    let id = parse_id(Kind::Token, &id)?;
    let token = tenants::get_token(&state.store, &principal.tenant_id, &id)
        .await
        .map_err(|error| not_found_as(error, "API token"))?;
    Ok(Json(token.into()))
}

#[utoipa::path(
    delete, path = "/api/tokens/{id}", tag = "tenancy",
    params(("id" = String, Path, description = "Token id (`tok_…`)")),
    responses(
        (status = 200, description = "Revoked (revoking again changes nothing)", body = TokenOut),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked token", body = ErrorBody),
        (status = 404, description = "No such token in this tenant", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn revoke_token(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenOut>> {
    let token =
        super::revoke_token(&state.store, &state.token_cache, &principal.tenant_id, &id).await?;
    Ok(Json(token.into()))
}

/// Names the missing object in a store's not-found.
pub fn not_found_as(error: crate::store::StoreError, noun: &'static str) -> ApiError {
    match error {
        crate::store::StoreError::NotFound => ApiError::NotFound(noun),
        other => other.into(),
    }
}
