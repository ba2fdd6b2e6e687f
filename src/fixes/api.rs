//! `/api/incidents/{id}/fix-proposals` and `/api/fix-proposals`: proposing reverts and AI fixes,
//! approving and rejecting them (409 from any other state, and then no event).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::proposals::{self, NewFix};
use crate::app::AppState;
use crate::clock::rfc3339_ms;
use crate::http::error::{ApiResult, ErrorBody};
use crate::http::extract::{ApiJson, ApiQuery, optional_json, parse_id};
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::Kind;
use crate::store::fixes::{self, FixProposal};
use crate::tenancy::Principal;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_fix))
        .routes(routes!(list_fixes))
        .routes(routes!(get_fix))
        .routes(routes!(approve_fix))
        .routes(routes!(reject_fix))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FixOut {
    /// `fp_…`.
    pub id: String,
    pub incident_id: String,
    /// `revert` or `ai_fix`.
    pub fix_type: String,
    /// `pr_created`, `ready`, `applied`, `rejected`, `merged`, `closed` or `failed`.
    pub status: String,
    pub commit_sha: Option<String>,
    pub summary: String,
    pub patch: Option<String>,
    pub confidence_score: Option<i64>,
    pub risk_assessment: Option<String>,
    pub repository: String,
    pub base_branch: String,
    pub head_branch: Option<String>,
    pub pr_number: Option<i64>,
    pub pr_url: Option<String>,
    pub rejection_reason: Option<String>,
    /// Why opening the pull request failed, when it did.
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<FixProposal> for FixOut {
    fn from(fix: FixProposal) -> Self {
        FixOut {
            created_at: rfc3339_ms(fix.created_at),
            updated_at: rfc3339_ms(fix.updated_at),
            id: fix.id,
            incident_id: fix.incident_id,
            fix_type: fix.fix_type,
            status: fix.status,
            commit_sha: fix.commit_sha,
            summary: fix.summary,
            patch: fix.patch,
            confidence_score: fix.confidence_score,
            risk_assessment: fix.risk_assessment,
            repository: fix.repository,
            base_branch: fix.base_branch,
            head_branch: fix.head_branch,
            pr_number: fix.pr_number,
            pr_url: fix.pr_url,
            rejection_reason: fix.rejection_reason,
            last_error: fix.last_error,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFix {
    /// `revert` or `ai_fix`.
    #[schema(pattern = r"^(?:revert|ai_fix)$")]
    pub fix_type: String,
    /// revert (required): the commit to revert, 7 to 64 hex digits.
    #[schema(min_length = 7, max_length = 64, pattern = r"^[0-9a-fA-F]{7,64}$")]
    pub commit_sha: Option<String>,
    /// The branch the pull request targets (default `main`): letters, digits, `/`, `-`, `_`
    /// and `.`, never `..`.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[A-Za-z0-9/_-]*(?:\.[A-Za-z0-9/_-]+)*\.?$"
    )]
    pub base_branch: Option<String>,
    /// ai_fix (required): what the fix does; 1 to 2000 characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x08\x0B-\x1F\x7F-\x9F]*$"
    )]
    pub summary: Option<String>,
    /// ai_fix (required): a unified diff of at most 1 MiB (documented here as one file patch
    /// with one hunk).
    #[schema(
        min_length = 1,
        max_length = 262144,
        pattern = r"^--- a/[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*\n\+\+\+ b/[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*\n@@ -[0-9]{1,9}(?:,[0-9]{1,9})? \+[0-9]{1,9}(?:,[0-9]{1,9})? @@[^\n\x00]*\n(?:[ +][^\n\x00]*\n)*$"
    )]
    pub patch: Option<String>,
    /// ai_fix (required): 0 to 100.
    #[schema(minimum = 0, maximum = 100)]
    pub confidence_score: Option<i64>,
    /// ai_fix (required): `low`, `medium` or `high`.
    #[schema(pattern = r"^(?:low|medium|high)$")]
    pub risk_assessment: Option<String>,
}

#[utoipa::path(post, path = "/api/incidents/{id}/fix-proposals", tag = "fix proposals",
    params(("id" = String, Path, description = "Incident id (`inc_…`)")),
    request_body = CreateFix,
    responses(
        (status = 201, description = "A revert with its pull request open, or a `ready` AI fix; `fix_proposal.generated` is sent", body = FixOut),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The revert conflicts with later changes", body = ErrorBody),
        (status = 422, description = "Invalid fields, no GitHub token, or GitHub refused", body = ErrorBody),
        (status = 502, description = "GitHub failed", body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_fix(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<CreateFix>,
) -> ApiResult<(StatusCode, Json<FixOut>)> {
    let fix = proposals::propose(
        &state,
        &principal.tenant_id,
        &id,
        NewFix {
            fix_type: input.fix_type,
            commit_sha: input.commit_sha,
            base_branch: input.base_branch,
            summary: input.summary,
            patch: input.patch,
            confidence_score: input.confidence_score,
            risk_assessment: input.risk_assessment,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(fix.into())))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FixPage {
    pub data: Vec<FixOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FixQuery {
    /// Only this incident's proposals (`inc_…`).
    #[param(pattern = r"^inc_[0-9a-f]{32}$")]
    incident_id: Option<String>,
    /// Only proposals in this status: `pr_created`, `ready`, `applied`, `rejected`, `merged`,
    /// `closed` or `failed`.
    #[param(pattern = r"^(?:pr_created|ready|applied|rejected|merged|closed|failed)$")]
    status: Option<String>,
    /// Items per page, 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page (`fp_…`).
    #[param(pattern = r"^fp_[0-9a-f]{32}$")]
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/fix-proposals", tag = "fix proposals", params(FixQuery),
    responses((status = 200, body = FixPage), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_fixes(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<FixQuery>,
) -> ApiResult<Json<FixPage>> {
    let incident_id = query
        .incident_id
        .as_deref()
        .map(|id| parse_id(Kind::Incident, id))
        .transpose()?;
    let status = query
        .status
        .as_deref()
        .map(super::proposals::check_status)
        .transpose()?;
    let page = PageQuery::new(query.limit, query.cursor.clone());
    let limit = page.limit()?;
    let cursor = page.cursor(Kind::FixProposal)?;
    let rows = fixes::list(
        &state.store,
        &principal.tenant_id,
        incident_id.as_deref(),
        status,
        cursor.as_deref(),
        limit,
    )
    .await?;
    let (rows, next_cursor) = next_cursor(rows, limit, |row| row.id.clone());
    Ok(Json(FixPage {
        data: rows.into_iter().map(FixOut::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/fix-proposals/{id}", tag = "fix proposals",
    params(("id" = String, Path, description = "Fix proposal id (`fp_…`)")),
    responses((status = 200, body = FixOut), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_fix(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<FixOut>> {
    Ok(Json(
        proposals::load(&state, &principal.tenant_id, &id)
            .await?
            .into(),
    ))
}

#[utoipa::path(post, path = "/api/fix-proposals/{id}/approve", tag = "fix proposals",
    params(("id" = String, Path, description = "Fix proposal id (`fp_…`)")),
    responses((status = 200, description = "`applied`: `fix_proposal.applied` is sent and the pull request is opened by a job", body = FixOut),
        (status = 404, body = ErrorBody), (status = 409, description = "Not a ready AI fix", body = ErrorBody)),
    security(("bearer" = [])))]
async fn approve_fix(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<FixOut>> {
    let fix = proposals::approve(&state, &principal.tenant_id, &id).await?;
    Ok(Json(fix.into()))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectFix {
    /// At most 2000 characters, no control characters other than tab and newline.
    #[schema(max_length = 2000, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub reason: Option<String>,
}

#[utoipa::path(post, path = "/api/fix-proposals/{id}/reject", tag = "fix proposals",
    params(("id" = String, Path, description = "Fix proposal id (`fp_…`)")),
    request_body(content = Option<RejectFix>, description = "Optional"),
    responses((status = 200, description = "`rejected`: `fix_proposal.rejected` is sent", body = FixOut),
        (status = 404, body = ErrorBody), (status = 409, description = "Not a ready AI fix", body = ErrorBody)),
    security(("bearer" = [])))]
async fn reject_fix(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<FixOut>> {
    let input: RejectFix = optional_json(&headers, &body)?;
    let fix = proposals::reject(&state, &principal.tenant_id, &id, input.reason.as_deref()).await?;
    Ok(Json(fix.into()))
}
