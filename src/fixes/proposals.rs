//! The operations on fix proposals that the API and the pages both call: [`propose`] (a revert
//! opens its pull request at once; an AI fix waits, `ready`), [`approve`] and [`reject`] (only a
//! ready AI fix, each emitting its event in the same transaction).

use serde_json::Value;

use super::{FixError, applied_data, generated_data, open_revert, patch, rejected_data};
use crate::app::AppState;
use crate::clock;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{check_text, parse_id, required_text};
use crate::ids::{self, Kind};
use crate::inbound::forge::is_sha;
use crate::outbound::{Audience, enqueue};
use crate::record::github_token_context;
use crate::store::fixes::{self, FixProposal};
use crate::store::{StoreError, record, services};
use crate::tenancy::api::not_found_as;

/// Every status a fix proposal can be in, in the order of its life.
pub const STATUSES: [&str; 7] = [
    "ready",
    "applied",
    "pr_created",
    "merged",
    "closed",
    "rejected",
    "failed",
];

/// A status to filter by, checked.
pub fn check_status(status: &str) -> ApiResult<&str> {
    STATUSES
        .iter()
        .find(|known| **known == status)
        .copied()
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "status must be one of {}, not `{}`",
                STATUSES.join(", "),
                status.chars().take(40).collect::<String>()
            ))
        })
}

/// A fix proposal as asked for, before it is checked.
#[derive(Debug, Clone, Default)]
pub struct NewFix {
    /// `revert` or `ai_fix`.
    pub fix_type: String,
    pub commit_sha: Option<String>,
    pub base_branch: Option<String>,
    pub summary: Option<String>,
    pub patch: Option<String>,
    pub confidence_score: Option<i64>,
    pub risk_assessment: Option<String>,
}

/// Proposes a revert of `commit_sha` for an incident: its pull request is opened at once.
pub async fn propose_revert(
    state: &AppState,
    tenant_id: &str,
    incident_id: &str,
    commit_sha: &str,
) -> ApiResult<FixProposal> {
    propose(
        state,
        tenant_id,
        incident_id,
        NewFix {
            fix_type: "revert".to_owned(),
            commit_sha: Some(commit_sha.to_owned()),
            ..NewFix::default()
        },
    )
    .await
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

/// Proposes a fix for an incident and emits `fix_proposal.generated`.
pub async fn propose(
    state: &AppState,
    tenant_id: &str,
    incident_id: &str,
    input: NewFix,
) -> ApiResult<FixProposal> {
    let incident = crate::incidents::load(state, tenant_id, incident_id).await?;
    let service = services::get(&state.store, tenant_id, &incident.service_id).await?;
    let base_branch = check_branch(input.base_branch.as_deref())?;
    let now = clock::now_ms();
    let mut fix = FixProposal {
        id: ids::new(Kind::FixProposal),
        tenant_id: tenant_id.to_owned(),
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
            let known = match record::get_commit(&state.store, tenant_id, &service.id, &sha).await {
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
        tenant_id,
        "fix_proposal.generated",
        &generated_data(&fix),
        Audience::Subscribers,
    )
    .await?;
    tx.commit().await?;
    state.outbound.wake();
    tracing::info!(fix_id = %fix.id, fix_type = %fix.fix_type, "fix proposal created");
    Ok(fix)
}

/// A fix proposal of the tenant (404 for a malformed or unknown id).
pub async fn load(state: &AppState, tenant_id: &str, id: &str) -> ApiResult<FixProposal> {
    let id = parse_id(Kind::FixProposal, id).map_err(|_| ApiError::NotFound("fix proposal"))?;
    fixes::get(&state.store, tenant_id, &id)
        .await
        .map_err(|error| not_found_as(error, "fix proposal"))
}

/// Moves a `ready` AI fix to `to` and emits its event, in one transaction.
async fn decide(
    state: &AppState,
    tenant_id: &str,
    id: &str,
    to: &str,
    reason: Option<&str>,
) -> ApiResult<FixProposal> {
    let current = load(state, tenant_id, id).await?;
    let mut tx = state.store.begin().await?;
    let Some(changed) = fixes::transition_in(
        &mut tx,
        tenant_id,
        &current.id,
        "ready",
        to,
        reason,
        clock::now_ms(),
    )
    .await?
    else {
        drop(tx);
        let now = fixes::get(&state.store, tenant_id, &current.id).await?;
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
    enqueue(&mut tx, tenant_id, event_type, &data, Audience::Subscribers).await?;
    tx.commit().await?;
    state.outbound.wake();
    tracing::info!(fix_id = %changed.id, status = to, "fix proposal decided");
    Ok(changed)
}

/// Approves a ready AI fix: `applied`, `fix_proposal.applied`, and a PR-creation job.
pub async fn approve(state: &AppState, tenant_id: &str, id: &str) -> ApiResult<FixProposal> {
    decide(state, tenant_id, id, "applied", None).await
}

/// Rejects a ready AI fix with an optional reason (at most 2000 characters).
pub async fn reject(
    state: &AppState,
    tenant_id: &str,
    id: &str,
    reason: Option<&str>,
) -> ApiResult<FixProposal> {
    let reason = reason
        .map(|reason| check_text("reason", reason, 2_000))
        .transpose()?
        .filter(|reason| !reason.is_empty());
    decide(state, tenant_id, id, "rejected", reason.as_deref()).await
}
