//! The analysis worker (nodes that run workers): leases queued analysis jobs, builds each
//! commit's change set (file details from the GitHub API when the service has a token, the
//! push's file lists otherwise), runs the configured analyser and stores the result. A job whose
//! work fails is retried with backoff and given up after `analysis.max_attempts`; a crashed
//! node's jobs come back when their lease expires.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Analyzer, ChangeSet, ChangedFile, Configured};
use crate::app::AppState;
use crate::clock;
use crate::ids;
use crate::record::github_token_context;
use crate::store::analysis::{self as jobs, Job};
use crate::store::record::Commit;
use crate::store::services;

/// How long a claimed job stays this node's: longer than a model call may take.
const LEASE_MS: i64 = 5 * 60_000;
const CLAIM_BATCH: u32 = 16;

pub fn spawn(
    state: &AppState,
    analyzer: Arc<Configured>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let state = state.clone();
    let stop = shutdown.clone();
    tracker.spawn(async move {
        let owner = format!("analysis-{}", ids::new(ids::Kind::AnalysisJob));
        let poll = Duration::from_millis(state.config.analysis.poll_interval_ms);
        loop {
            let now = clock::now_ms();
            let claimed =
                match jobs::claim(&state.store, &owner, now, now + LEASE_MS, CLAIM_BATCH).await {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        tracing::warn!(%error, "claiming analysis jobs failed");
                        Vec::new()
                    }
                };
            let idle = claimed.is_empty();
            for job in claimed {
                if stop.is_cancelled() {
                    break;
                }
                run(&state, analyzer.as_ref(), &owner, &job).await;
            }
            if idle {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(poll) => {}
                }
            } else if stop.is_cancelled() {
                break;
            }
        }
    });
}

/// The change set of a commit: GitHub's file details when the service has a token and GitHub
/// answers, the push's file lists otherwise.
pub async fn change_set_of(state: &AppState, commit: &Commit) -> ChangeSet {
    let mut change = super::push_change_set(commit);
    let token = match services::get(&state.store, &commit.tenant_id, &commit.service_id).await {
        Ok(service) => service.github_token.and_then(|sealed| {
            state
                .cipher
                .open_str(&github_token_context(&service.id), &sealed)
                .ok()
        }),
        Err(_) => None,
    };
    if let Some(token) = token {
        match state
            .github
            .commit(&token, &commit.repository, &commit.sha)
            .await
        {
            Ok(detail) => {
                change.files = detail
                    .files
                    .into_iter()
                    .map(|file| ChangedFile {
                        path: file.filename,
                        status: file.status,
                        additions: file.additions,
                        deletions: file.deletions,
                        patch: file.patch,
                    })
                    .collect();
                return change;
            }
            Err(error) => {
                tracing::warn!(commit = %commit.sha, %error, "GitHub commit details unavailable; using the push's file lists");
            }
        }
    }
    change
}

async fn run(state: &AppState, analyzer: &Configured, owner: &str, job: &Job) {
    let outcome = async {
        let commit = jobs::commit_by_id(&state.store, &job.commit_id).await?;
        let change = change_set_of(state, &commit).await;
        let analysis = analyzer.analyse(&change).await;
        let text = serde_json::to_string(&analysis).expect("an analysis serializes");
        jobs::complete(
            &state.store,
            job,
            owner,
            &text,
            i64::from(analysis.risk_score),
            &analysis.risk_level,
        )
        .await
    }
    .await;
    match outcome {
        Ok(true) => {
            metrics::counter!("hookline_analyses_total", "outcome" => "done").increment(1);
        }
        Ok(false) => tracing::warn!(job_id = %job.id, "an analysis job's lease was lost"),
        Err(error) => {
            let give_up = job.attempts >= i64::from(state.config.analysis.max_attempts);
            let backoff = 1_000_i64.saturating_mul(1 << job.attempts.clamp(0, 16));
            tracing::warn!(job_id = %job.id, %error, give_up, "an analysis job failed");
            metrics::counter!("hookline_analyses_total", "outcome" => if give_up { "failed" } else { "retrying" })
                .increment(1);
            if let Err(error) = jobs::retry(
                &state.store,
                job,
                owner,
                &error.to_string(),
                clock::now_ms() + backoff,
                give_up,
            )
            .await
            {
                tracing::warn!(%error, "an analysis job could not be put back");
            }
        }
    }
}
