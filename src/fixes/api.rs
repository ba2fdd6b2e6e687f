//! `/api/incidents/{id}/fix-proposals` and `/api/fix-proposals`: proposing reverts and AI fixes,
//! approving and rejecting them (409 from any other state, and then no event).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{FixError, applied_data, generated_data, open_revert, patch, rejected_data};
use crate::app::AppState;
use crate::clock::{self, rfc3339_ms};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{ApiJson, ApiQuery, check_text, optional_json, parse_id, required_text};
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::{self, Kind};
use crate::inbound::forge::is_sha;
use crate::outbound::{Audience, enqueue};
use crate::record::github_token_context;
use crate::store::fixes::{self, FixProposal};
use crate::store::{StoreError, deploys, record, services};
use crate::tenancy::Principal;
use crate::tenancy::api::not_found_as;

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

fn check_branch(branch: Option<&str>) -> ApiResult<String> {
    let branch = branch.unwrap_or("main").trim();
    let valid = !branch.is_empty()
        && branch.len() <= 200
        && !branch.contains("..")
        && branch
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'));
    if valid {
        Ok(branch.to_owned())
    } else {
        Err(ApiError::Unprocessable(format!(
            "base_branch `{}` is not a branch name",
            branch.chars().take(80).collect::<String>()
        )))
    }
}

fn fix_error(error: FixError) -> ApiError {
    match error {
        FixError::Github(github) => github.into(),
        FixError::Conflict(message) => ApiError::Conflict(message),
        FixError::Patch(message) => ApiError::Unprocessable(message),
    }
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
    let incident_id = parse_id(Kind::Incident, &id)?;
    let incident = deploys::get_incident(&state.store, &principal.tenant_id, &incident_id)
        .await
        .map_err(|error| not_found_as(error, "incident"))?;
    let service = services::get(&state.store, &principal.tenant_id, &incident.service_id).await?;
    let base_branch = check_branch(input.base_branch.as_deref())?;
    let now = clock::now_ms();
    let mut fix = FixProposal {
        id: ids::new(Kind::FixProposal),
        tenant_id: principal.tenant_id.clone(),
        incident_id: incident.id.clone(),
        service_id: service.id.clone(),
        fix_type: input.fix_type.clone(),
        status: String::new(),
        commit_sha: None,
        summary: String::new(),
        patch: None,
        confidence_score: None,
        risk_assessment: None,
        repository: service.repository.clone(),
        base_branch,
        head_branch: None,
        pr_number: None,
        pr_url: None,
        rejection_reason: None,
        last_error: None,
        job_attempts: 0,
        job_run_after: None,
        job_lease_owner: None,
        job_lease_until: None,
        pr_checked_at: None,
        created_at: now,
        updated_at: now,
    };
    match input.fix_type.as_str() {
        "revert" => {
            let sha = input
                .commit_sha
                .as_deref()
                .map(|sha| sha.trim().to_ascii_lowercase())
                .filter(|sha| sha.len() >= 7 && is_sha(sha))
                .ok_or_else(|| {
                    ApiError::Unprocessable(
                        "a revert needs commit_sha: 7 to 64 hex digits".to_owned(),
                    )
                })?;
            let known =
                match record::get_commit(&state.store, &principal.tenant_id, &service.id, &sha)
                    .await
                {
                    Ok(commit) => Some(commit),
                    Err(StoreError::NotFound) => None,
                    Err(other) => return Err(other.into()),
                };
            let sha = known.as_ref().map_or(sha, |commit| commit.sha.clone());
            let token = service
                .github_token
                .as_ref()
                .map(|sealed| {
                    state
                        .cipher
                        .open_str(&github_token_context(&service.id), sealed)
                        .map_err(ApiError::internal)
                })
                .transpose()?
                .ok_or_else(|| {
                    ApiError::Unprocessable(
                        "the service has no GitHub token to open the revert pull request with"
                            .to_owned(),
                    )
                })?;
            let opened = open_revert(
                &state.github,
                &token,
                &service.repository,
                &fix.base_branch,
                &sha,
                &fix.id,
            )
            .await
            .map_err(fix_error)?;
            let subject = known
                .as_ref()
                .and_then(|commit| commit.message.lines().next().map(str::to_owned))
                .unwrap_or_default();
            fix.summary = format!("Revert {}: {subject}", &sha[..7])
                .trim_end_matches(": ")
                .to_owned();
            fix.commit_sha = Some(sha);
            fix.status = "pr_created".to_owned();
            fix.pr_number = Some(opened.number);
            fix.pr_url = Some(opened.url);
            fix.head_branch = Some(opened.branch);
        }
        "ai_fix" => {
            let summary = required_text("summary", input.summary.as_deref().unwrap_or(""), 2_000)?;
            let diff = input
                .patch
                .ok_or_else(|| ApiError::Unprocessable("an AI fix needs a patch".to_owned()))?;
            if diff.len() > 1024 * 1024 {
                return Err(ApiError::Unprocessable(
                    "the patch must be at most 1 MiB".to_owned(),
                ));
            }
            patch::parse(&diff).map_err(|why| ApiError::Unprocessable(format!("patch: {why}")))?;
            let confidence = input
                .confidence_score
                .filter(|score| (0..=100).contains(score))
                .ok_or_else(|| {
                    ApiError::Unprocessable("confidence_score must be 0 to 100".to_owned())
                })?;
            let risk = input
                .risk_assessment
                .filter(|risk| ["low", "medium", "high"].contains(&risk.as_str()))
                .ok_or_else(|| {
                    ApiError::Unprocessable(
                        "risk_assessment must be low, medium or high".to_owned(),
                    )
                })?;
            fix.summary = summary;
            fix.patch = Some(diff);
            fix.confidence_score = Some(confidence);
            fix.risk_assessment = Some(risk);
            fix.status = "ready".to_owned();
        }
        other => {
            return Err(ApiError::Unprocessable(format!(
                "fix_type must be revert or ai_fix, not `{}`",
                other.chars().take(40).collect::<String>()
            )));
        }
    }
    let mut tx = state.store.begin().await?;
    fixes::insert_in(&mut tx, &fix).await?;
    enqueue(
        &mut tx,
        &principal.tenant_id,
        "fix_proposal.generated",
        &generated_data(&fix),
        Audience::Subscribers,
    )
    .await?;
    tx.commit().await?;
    state.outbound.wake();
    tracing::info!(fix_id = %fix.id, fix_type = %fix.fix_type, "fix proposal created");
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
    let page = PageQuery::new(query.limit, query.cursor.clone());
    let limit = page.limit()?;
    let cursor = page.cursor(Kind::FixProposal)?;
    let rows = fixes::list(
        &state.store,
        &principal.tenant_id,
        incident_id.as_deref(),
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

async fn load(state: &AppState, principal: &Principal, id: &str) -> ApiResult<FixProposal> {
    let id = parse_id(Kind::FixProposal, id)?;
    fixes::get(&state.store, &principal.tenant_id, &id)
        .await
        .map_err(|error| not_found_as(error, "fix proposal"))
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
    Ok(Json(load(&state, &principal, &id).await?.into()))
}

/// Moves a `ready` AI fix to `to` and emits its event, in one transaction.
async fn decide(
    state: &AppState,
    principal: &Principal,
    id: &str,
    to: &str,
    reason: Option<&str>,
) -> ApiResult<FixOut> {
    let current = load(state, principal, id).await?;
    let mut tx = state.store.begin().await?;
    let Some(changed) = fixes::transition_in(
        &mut tx,
        &principal.tenant_id,
        &current.id,
        "ready",
        to,
        reason,
        clock::now_ms(),
    )
    .await?
    else {
        drop(tx);
        let now = fixes::get(&state.store, &principal.tenant_id, &current.id).await?;
        let verb = if to == "applied" { "approve" } else { "reject" };
        return Err(ApiError::Conflict(format!(
            "cannot {verb} a fix proposal that is {} (only a ready AI fix can be)",
            now.status
        )));
    };
    let (event_type, data): (&str, Value) = if to == "applied" {
        ("fix_proposal.applied", applied_data(&changed))
    } else {
        ("fix_proposal.rejected", rejected_data(&changed))
    };
    enqueue(
        &mut tx,
        &principal.tenant_id,
        event_type,
        &data,
        Audience::Subscribers,
    )
    .await?;
    tx.commit().await?;
    state.outbound.wake();
    tracing::info!(fix_id = %changed.id, status = to, "fix proposal decided");
    Ok(changed.into())
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
    decide(&state, &principal, &id, "applied", None)
        .await
        .map(Json)
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
    let reason = input
        .reason
        .as_deref()
        .map(|reason| check_text("reason", reason, 2_000))
        .transpose()?
        .filter(|reason| !reason.is_empty());
    decide(&state, &principal, &id, "rejected", reason.as_deref())
        .await
        .map(Json)
}
