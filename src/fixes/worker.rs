//! Worker-node loops for fix proposals: the durable PR-creation jobs of approved AI fixes
//! (leased, retried with backoff, failed for good when the patch cannot apply), and the poll of
//! open fix pull requests that catches what webhooks missed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{FixError, open_patch};
use crate::app::AppState;
use crate::clock;
use crate::ids;
use crate::record::github_token_context;
use crate::store::fixes::{self, FixProposal};
use crate::store::services;

const LEASE_MS: i64 = 5 * 60_000;
const MAX_ATTEMPTS: i64 = 5;

pub fn spawn(state: &AppState, tracker: &TaskTracker, shutdown: &CancellationToken) {
    let (state, stop) = (state.clone(), shutdown.clone());
    tracker.spawn(async move {
        let owner = format!("fixes-{}", ids::new(ids::Kind::FixProposal));
        let config = &state.config.fix_proposals;
        let mut tick = tokio::time::interval(Duration::from_millis(config.tick_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let poll_every =
            i64::try_from(config.poll_seconds.saturating_mul(1_000)).unwrap_or(i64::MAX);
        let mut last_poll = i64::MIN;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = clock::now_ms();
            match fixes::claim_pr_jobs(&state.store, &owner, now, now + LEASE_MS, 8).await {
                Ok(jobs) => {
                    for fix in jobs {
                        open_pull_request(&state, &owner, &fix).await;
                    }
                }
                Err(error) => tracing::warn!(%error, "claiming fix PR jobs failed"),
            }
            if now.saturating_sub(last_poll) >= poll_every {
                last_poll = now;
                poll(&state, now - poll_every).await;
            }
        }
    });
}

fn token_of(state: &AppState, service: &services::Service) -> Option<String> {
    let sealed = service.github_token.as_ref()?;
    state
        .cipher
        .open_str(&github_token_context(&service.id), sealed)
        .ok()
}

async fn open_pull_request(state: &AppState, owner: &str, fix: &FixProposal) {
    let now = clock::now_ms();
    let outcome = match services::get(&state.store, &fix.tenant_id, &fix.service_id).await {
        Ok(service) => match token_of(state, &service) {
            Some(token) => {
                open_patch(
                    &state.github,
                    &token,
                    &fix.repository,
                    &fix.base_branch,
                    fix,
                )
                .await
            }
            None => Err(FixError::Conflict(
                "the service has no GitHub token to open the pull request with".to_owned(),
            )),
        },
        Err(error) => Err(FixError::Conflict(format!("the service is gone: {error}"))),
    };
    let recorded = match &outcome {
        Ok(opened) => {
            tracing::info!(fix_id = %fix.id, number = opened.number, "fix pull request opened");
            fixes::finish_pr_job(
                &state.store,
                fix,
                owner,
                Some((opened.number, &opened.url, &opened.branch)),
                None,
                None,
                now,
            )
            .await
        }
        Err(error) => {
            // GitHub may come back; a patch that does not apply or a conflict will not.
            let retry = matches!(error, FixError::Github(_)) && fix.job_attempts < MAX_ATTEMPTS;
            let retry_at = retry.then(|| now + 1_000 * (1 << fix.job_attempts.clamp(0, 10)));
            tracing::warn!(fix_id = %fix.id, %error, retry, "opening a fix pull request failed");
            fixes::finish_pr_job(
                &state.store,
                fix,
                owner,
                None,
                Some(&error.to_string()),
                retry_at,
                now,
            )
            .await
        }
    };
    if let Err(error) = recorded {
        tracing::warn!(fix_id = %fix.id, %error, "recording a fix PR job failed");
    }
}

/// Asks GitHub about open fix pull requests not checked since `checked_before`.
async fn poll(state: &AppState, checked_before: i64) {
    let open = match fixes::unchecked_open_prs(&state.store, checked_before, 50).await {
        Ok(open) => open,
        Err(error) => {
            tracing::warn!(%error, "listing open fix pull requests failed");
            return;
        }
    };
    for fix in open {
        let Some(number) = fix.pr_number else {
            continue;
        };
        let Ok(service) = services::get(&state.store, &fix.tenant_id, &fix.service_id).await else {
            continue;
        };
        let Some(token) = token_of(state, &service) else {
            continue;
        };
        let status = match state.github.pull(&token, &fix.repository, number).await {
            Ok(pull) if pull.merged => Some("merged"),
            Ok(pull) if pull.state == "closed" => Some("closed"),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(fix_id = %fix.id, %error, "polling a fix pull request failed");
                continue;
            }
        };
        if let Err(error) = fixes::checked(&state.store, &fix.id, status, clock::now_ms()).await {
            tracing::warn!(fix_id = %fix.id, %error, "recording a fix pull request poll failed");
        }
    }
}
