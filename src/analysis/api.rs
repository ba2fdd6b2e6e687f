//! Starting analyses by hand: one commit (queued as a durable job), or a range of commits
//! analysed at once as one change set.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Analysis, Analyzer, ChangeSet, ChangedFile, QueuedAnalysis};
use crate::app::AppState;
use crate::clock::{self, rfc3339_ms};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{ApiJson, parse_id};
use crate::ids::{self, Kind};
use crate::record::api::load as load_service;
use crate::record::commits::check_sha;
use crate::store::analysis::{self as jobs, RangeAnalysis};
use crate::store::record;
use crate::tenancy::Principal;
use crate::tenancy::api::not_found_as;

/// Commits one range analysis may span.
const MAX_RANGE_COMMITS: usize = 1_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(analyze_commit))
        .routes(routes!(analyze_range))
        .routes(routes!(get_range))
}

#[utoipa::path(post, path = "/api/services/{id}/commits/{sha}/analyze", tag = "services",
    params(("id" = String, Path, description = "Service id (`svc_…`)"),
        ("sha" = String, Path, description = "Full SHA or a unique prefix of 7+ hex digits")),
    responses(
        (status = 202, description = "Queued; the result appears on the commit", body = QueuedAnalysis),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn analyze_commit(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, sha)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<QueuedAnalysis>)> {
    let queued = super::request(&state, &principal.tenant_id, &id, &sha).await?;
    Ok((StatusCode::ACCEPTED, Json(queued)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeRequest {
    /// The commit the range starts after (not included): its SHA, or a prefix of 7+ hex digits.
    #[schema(min_length = 7, max_length = 64, pattern = r"^[0-9a-fA-F]{7,64}$")]
    pub base: String,
    /// The last commit of the range (included): its SHA, or a prefix of 7+ hex digits.
    #[schema(min_length = 7, max_length = 64, pattern = r"^[0-9a-fA-F]{7,64}$")]
    pub head: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RangeOut {
    /// `rng_…`.
    pub id: String,
    pub base: String,
    pub head: String,
    /// The commits analysed, oldest first.
    pub commits: Vec<String>,
    pub analysis: Analysis,
    pub created_at: String,
}

impl TryFrom<RangeAnalysis> for RangeOut {
    type Error = ApiError;

    fn try_from(range: RangeAnalysis) -> ApiResult<RangeOut> {
        Ok(RangeOut {
            commits: serde_json::from_str(&range.commit_shas).map_err(ApiError::internal)?,
            analysis: serde_json::from_str(&range.analysis).map_err(ApiError::internal)?,
            created_at: rfc3339_ms(range.created_at),
            id: range.id,
            base: range.base_sha,
            head: range.head_sha,
        })
    }
}

/// One change set from several commits: each path once, with its last status and summed line
/// counts (known only when every commit gave them).
fn merge(changes: Vec<ChangeSet>) -> ChangeSet {
    let mut files: BTreeMap<String, ChangedFile> = BTreeMap::new();
    let mut merged = ChangeSet::default();
    for change in changes {
        merged.messages.extend(change.messages);
        merged.forced |= change.forced;
        for file in change.files {
            files
                .entry(file.path.clone())
                .and_modify(|seen| {
                    seen.status = file.status.clone();
                    seen.additions = seen.additions.zip(file.additions).map(|(a, b)| a + b);
                    seen.deletions = seen.deletions.zip(file.deletions).map(|(a, b)| a + b);
                    seen.patch = None;
                })
                .or_insert(file);
        }
    }
    merged.files = files.into_values().collect();
    merged
}

#[utoipa::path(post, path = "/api/services/{id}/analyze-range", tag = "services",
    params(("id" = String, Path, description = "Service id (`svc_…`)")),
    request_body = RangeRequest,
    responses(
        (status = 201, description = "The commits after `base` up to `head` (in ingestion order), analysed as one change", body = RangeOut),
        (status = 404, description = "No such service, base or head", body = ErrorBody),
        (status = 422, description = "Head comes before base, or the range is too long", body = ErrorBody)),
    security(("bearer" = [])))]
async fn analyze_range(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<RangeRequest>,
) -> ApiResult<(StatusCode, Json<RangeOut>)> {
    let service = load_service(&state, &principal, &id).await?;
    for sha in [&input.base, &input.head] {
        check_sha(sha).map_err(|error| ApiError::Unprocessable(error.to_string()))?;
    }
    let (store, tenant_id) = (&state.store, &principal.tenant_id);
    let base = record::get_commit(store, tenant_id, &service.id, &input.base)
        .await
        .map_err(|error| not_found_as(error, "base commit"))?;
    let head = record::get_commit(store, tenant_id, &service.id, &input.head)
        .await
        .map_err(|error| not_found_as(error, "head commit"))?;
    if head.id <= base.id {
        return Err(ApiError::Unprocessable(
            "head must have been ingested after base".to_owned(),
        ));
    }
    let commits = jobs::commits_between(&state.store, &service.id, &base.id, &head.id).await?;
    if commits.len() > MAX_RANGE_COMMITS {
        return Err(ApiError::Unprocessable(format!(
            "the range holds more than {MAX_RANGE_COMMITS} commits"
        )));
    }
    let mut changes = Vec::with_capacity(commits.len());
    for commit in &commits {
        changes.push(super::worker::change_set_of(&state, commit).await);
    }
    let analysis = state.analyzer.analyse(&merge(changes)).await;
    let range = RangeAnalysis {
        id: ids::new(Kind::RangeAnalysis),
        tenant_id: principal.tenant_id.clone(),
        service_id: service.id.clone(),
        base_sha: base.sha,
        head_sha: head.sha,
        commit_shas: serde_json::to_string(
            &commits.iter().map(|commit| &commit.sha).collect::<Vec<_>>(),
        )
        .expect("shas serialize"),
        analysis: serde_json::to_string(&analysis).expect("an analysis serializes"),
        risk_score: i64::from(analysis.risk_score),
        risk_level: analysis.risk_level.clone(),
        created_at: clock::now_ms(),
    };
    jobs::insert_range(&state.store, &range).await?;
    Ok((StatusCode::CREATED, Json(range.try_into()?)))
}

#[utoipa::path(get, path = "/api/services/{id}/range-analyses/{range_id}", tag = "services",
    params(("id" = String, Path, description = "Service id (`svc_…`)"),
        ("range_id" = String, Path, description = "Range analysis id (`rng_…`)")),
    responses((status = 200, body = RangeOut), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_range(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, range_id)): Path<(String, String)>,
) -> ApiResult<Json<RangeOut>> {
    let service = load_service(&state, &principal, &id).await?;
    let range_id = parse_id(Kind::RangeAnalysis, &range_id)?;
    let range = jobs::get_range(&state.store, &principal.tenant_id, &service.id, &range_id)
        .await
        .map_err(|error| not_found_as(error, "range analysis"))?;
    Ok(Json(range.try_into()?))
}
