//! Turning a verified forge event into records, inside the caller's transaction: commits once per
//! service with their branches (and an analysis job when the service asks for one), pull requests
//! and issues per tenant, and experiment links from pull request bodies.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::forge::{ForgeEvent, IssueChange, PullRequestChange, Push, PushedCommit};
use super::result;
use crate::clock;
use crate::ids::{self, Kind};
use crate::store::experiments::{self, activity_kind};
use crate::store::record::{self, ForgeIssue, NewCommit, PullRequest};
use crate::store::services::Service;
use crate::store::{StoreResult, Tx};

/// What processing did: the result kept with the delivery and a summary of the changes.
#[derive(Debug, Clone)]
pub struct Applied {
    pub result: &'static str,
    pub summary: Value,
}

/// Applies `event` for one tenant. `services` are that tenant's services the delivery is for (the
/// ones it verified against, or those of the integration's tenant linked to the repository).
pub async fn apply(
    tx: &mut Tx,
    tenant_id: &str,
    services: &[Service],
    repository: Option<&str>,
    event: &ForgeEvent,
) -> StoreResult<Applied> {
    match event {
        ForgeEvent::Ping => Ok(Applied {
            result: result::PROCESSED,
            summary: json!({"ping": true}),
        }),
        ForgeEvent::Push(push) => record_push(tx, services, repository, push).await,
        ForgeEvent::PullRequest(change) => {
            record_pull_request(tx, tenant_id, repository.unwrap_or(""), change).await
        }
        ForgeEvent::Issue(change) => {
            record_issue(tx, tenant_id, repository.unwrap_or(""), change).await
        }
        ForgeEvent::Other => Ok(Applied {
            result: result::IGNORED,
            summary: json!({}),
        }),
    }
}

async fn record_push(
    tx: &mut Tx,
    services: &[Service],
    repository: Option<&str>,
    push: &Push,
) -> StoreResult<Applied> {
    record_pushes_in(
        tx,
        &[PushFor {
            services,
            repository,
            push,
        }],
    )
    .await?;
    Ok(Applied {
        result: result::PROCESSED,
        summary: push_summary(push, services),
    })
}

/// A push to record for the services it was delivered for.
pub struct PushFor<'a> {
    pub services: &'a [Service],
    /// The repository as the payload names it (the service's own when absent).
    pub repository: Option<&'a str>,
    pub push: &'a Push,
}

/// Records pushes with a few multi-row statements: each commit once per service, every branch
/// push's branch on its commits (new or seen before), and one analysis job per new commit of a
/// service with auto-analyze.
pub async fn record_pushes_in(tx: &mut Tx, pushes: &[PushFor<'_>]) -> StoreResult<()> {
    let mut commits: Vec<NewCommit<'_>> = Vec::new();
    // (service, sha, branch) for every branch push.
    let mut branches: Vec<(&str, &str, &str)> = Vec::new();
    let mut auto_analyze: HashMap<&str, &str> = HashMap::new();
    for PushFor {
        services,
        repository,
        push,
    } in pushes
    {
        for service in services.iter() {
            if service.auto_analyze {
                auto_analyze.insert(&service.id, &service.tenant_id);
            }
            let repository = repository.unwrap_or(&service.repository);
            for commit in &push.commits {
                commits.push(new_commit(service, repository, commit, push.forced));
                if let Some(branch) = &push.branch {
                    branches.push((&service.id, &commit.sha, branch));
                }
            }
        }
    }
    if commits.is_empty() {
        return Ok(());
    }
    let created = record::insert_commits_in(tx, &commits).await?;
    let analyses: Vec<(String, String, String)> = created
        .iter()
        .filter_map(|(commit_id, service_id, _)| {
            auto_analyze.get(service_id.as_str()).map(|tenant_id| {
                (
                    (*tenant_id).to_owned(),
                    service_id.clone(),
                    commit_id.clone(),
                )
            })
        })
        .collect();
    if !analyses.is_empty() {
        record::enqueue_analyses_in(tx, &analyses).await?;
    }
    if branches.is_empty() {
        return Ok(());
    }
    let mut ids: HashMap<(String, String), String> = created
        .into_iter()
        .map(|(id, service_id, sha)| ((service_id, sha), id))
        .collect();
    let mut missing: Vec<(&str, &str)> = branches
        .iter()
        .filter(|(service_id, sha, _)| {
            !ids.contains_key(&((*service_id).to_owned(), (*sha).to_owned()))
        })
        .map(|(service_id, sha, _)| (*service_id, *sha))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        for (id, service_id, sha) in record::commit_ids_in(tx, &missing).await? {
            ids.insert((service_id, sha), id);
        }
    }
    let pairs: Vec<(String, String)> = branches
        .iter()
        .filter_map(|(service_id, sha, branch)| {
            ids.get(&((*service_id).to_owned(), (*sha).to_owned()))
                .map(|id| (id.clone(), (*branch).to_owned()))
        })
        .collect();
    record::add_branches_in(tx, &pairs).await
}

/// The row a pushed commit becomes for one service.
fn new_commit<'a>(
    service: &'a Service,
    repository: &'a str,
    commit: &'a PushedCommit,
    forced: bool,
) -> NewCommit<'a> {
    NewCommit {
        tenant_id: &service.tenant_id,
        service_id: &service.id,
        sha: &commit.sha,
        message: &commit.message,
        author_name: &commit.author_name,
        author_email: &commit.author_email,
        committed_at: commit.timestamp,
        url: &commit.url,
        repository,
        added: &commit.added,
        removed: &commit.removed,
        modified: &commit.modified,
        forced,
    }
}

/// What a push delivery records, known before it is written (so many can be written at once).
pub fn push_summary(push: &Push, services: &[Service]) -> Value {
    json!({
        "ref": push.git_ref,
        "branch": push.branch,
        "tag": push.tag,
        "deleted": push.deleted,
        "forced": push.forced,
        "services": services.iter().map(|service| service.id.as_str()).collect::<Vec<_>>(),
        "commits": push.commits.len(),
    })
}

async fn record_pull_request(
    tx: &mut Tx,
    tenant_id: &str,
    repository: &str,
    change: &PullRequestChange,
) -> StoreResult<Applied> {
    let now = clock::now_ms();
    let stored = record::upsert_pull_request(
        tx,
        &PullRequest {
            id: ids::new(Kind::PullRequest),
            tenant_id: tenant_id.to_owned(),
            repository: repository.to_owned(),
            repository_key: repository.to_lowercase(),
            number: change.number,
            title: change.title.clone(),
            url: change.url.clone(),
            state: change.state.clone(),
            merged: change.merged,
            merged_at: change.merged_at,
            head_ref: change.head_ref.clone(),
            head_sha: change.head_sha.clone(),
            base_ref: change.base_ref.clone(),
            base_sha: change.base_sha.clone(),
            body: change.body.clone(),
            author: change.author.clone(),
            created_at: now,
            updated_at: now,
        },
    )
    .await?;
    let fix_status = match (change.state.as_str(), change.merged) {
        (_, true) => Some("merged"),
        ("closed", false) => Some("closed"),
        _ => None,
    };
    let fixes_followed = match fix_status {
        Some(status) => {
            crate::store::fixes::follow_pull_request_in(
                tx,
                tenant_id,
                repository,
                change.number,
                status,
                now,
            )
            .await?
        }
        None => 0,
    };
    let mut linked = Vec::new();
    let mut unknown_keys = Vec::new();
    for key in super::forge::experiment_keys(&change.body) {
        let Some(experiment) = experiments::by_key_in(tx, tenant_id, &key).await? else {
            unknown_keys.push(key);
            continue;
        };
        let linked_at = change.created_at.unwrap_or(now);
        let entry = |kind: &str, at: i64| {
            experiments::activity(
                &experiment.id,
                kind,
                repository,
                change.number,
                &change.title,
                &change.url,
                at,
            )
        };
        experiments::add_activity(tx, &entry(activity_kind::PR_LINKED, linked_at)).await?;
        if change.merged {
            let merged_at = change.merged_at.unwrap_or(now).max(linked_at);
            experiments::add_activity(tx, &entry(activity_kind::PR_MERGED, merged_at)).await?;
        }
        linked.push(experiment.id);
    }
    Ok(Applied {
        result: result::PROCESSED,
        summary: json!({
            "pull_request": stored.id,
            "number": stored.number,
            "action": change.action,
            "state": stored.state,
            "merged": stored.merged,
            "experiments": linked,
            "unknown_experiment_keys": unknown_keys,
            "fix_proposals_updated": fixes_followed,
        }),
    })
}

async fn record_issue(
    tx: &mut Tx,
    tenant_id: &str,
    repository: &str,
    change: &IssueChange,
) -> StoreResult<Applied> {
    let now = clock::now_ms();
    let stored = record::upsert_issue(
        tx,
        &ForgeIssue {
            id: ids::new(Kind::ForgeIssue),
            tenant_id: tenant_id.to_owned(),
            repository: repository.to_owned(),
            repository_key: repository.to_lowercase(),
            number: change.number,
            title: change.title.clone(),
            url: change.url.clone(),
            state: change.state.clone(),
            labels: serde_json::to_string(&change.labels).expect("labels serialize"),
            body: change.body.clone(),
            created_at: now,
            updated_at: now,
        },
    )
    .await?;
    Ok(Applied {
        result: result::PROCESSED,
        summary: json!({
            "issue": stored.id,
            "number": stored.number,
            "action": change.action,
            "state": stored.state,
            "labels": change.labels,
        }),
    })
}
