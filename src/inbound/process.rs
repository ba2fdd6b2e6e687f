//! Turning a verified forge event into records, inside the caller's transaction: commits once per
//! service with their branches (and an analysis job when the service asks for one), pull requests
//! and issues per tenant, and experiment links from pull request bodies.

use serde_json::{Value, json};

use super::forge::{ForgeEvent, IssueChange, PullRequestChange, Push};
use super::result;
use crate::clock;
use crate::ids::{self, Kind};
use crate::store::experiments::{self, activity_kind};
use crate::store::record::{
    self, AnalysisRow, BranchRow, CommitRow, ForgeIssue, PullRequest, PushRows,
};
use crate::store::services::Service;
use crate::store::{StoreResult, Tx};

/// What processing did: the result kept with the delivery and a summary of the changes.
#[derive(Debug, Clone)]
pub struct Applied {
    pub result: &'static str,
    pub summary: Value,
}

/// Applies `event` for one tenant, as delivery `delivery_id` (stored already) brought it.
/// `services` are that tenant's services the delivery is for (the ones it verified against, or
/// those of the integration's tenant linked to the repository).
pub async fn apply(
    tx: &mut Tx<'_>,
    delivery_id: &str,
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
        ForgeEvent::Push(push) => {
            let rows = push_rows(delivery_id, services, repository, push);
            record::insert_push_rows_in(tx, &[&rows]).await?;
            Ok(Applied {
                result: result::PROCESSED,
                summary: push_summary(push, services),
            })
        }
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

/// The rows a push records for the services it was delivered for: each commit once per service,
/// the branch of a branch push on each of them, and an analysis job for each commit it creates
/// for a service with auto-analyze. Built by the receiving task, so the shared writer only binds
/// them. `repository` is the one the payload names (each service's own when absent).
pub fn push_rows(
    delivery_id: &str,
    services: &[Service],
    repository: Option<&str>,
    push: &Push,
) -> PushRows {
    let json = |paths: &[String]| serde_json::to_string(paths).expect("paths serialize");
    let mut rows = PushRows {
        delivery_id: delivery_id.to_owned(),
        ..PushRows::default()
    };
    for service in services {
        let repository = repository.unwrap_or(&service.repository);
        for commit in &push.commits {
            let row = CommitRow {
                id: ids::new(Kind::Commit),
                tenant_id: service.tenant_id.clone(),
                service_id: service.id.clone(),
                sha: commit.sha.clone(),
                message: commit.message.clone(),
                author_name: commit.author_name.clone(),
                author_email: commit.author_email.clone(),
                committed_at: commit.timestamp,
                url: commit.url.clone(),
                repository: repository.to_owned(),
                added: json(&commit.added),
                removed: json(&commit.removed),
                modified: json(&commit.modified),
                forced: push.forced,
            };
            if let Some(branch) = &push.branch {
                rows.branches.push(BranchRow {
                    service_id: service.id.clone(),
                    sha: commit.sha.clone(),
                    branch: branch.clone(),
                });
            }
            if service.auto_analyze {
                rows.analyses.push(AnalysisRow {
                    id: ids::new(Kind::AnalysisJob),
                    tenant_id: service.tenant_id.clone(),
                    service_id: service.id.clone(),
                    commit_id: row.id.clone(),
                });
            }
            rows.commits.push(row);
        }
    }
    rows
}

/// What a push delivery records, known before it is written (so many can be written at once).
fn push_summary(push: &Push, services: &[Service]) -> Value {
    serde_json::to_value(PushSummary::of(push, services)).expect("a push summary serializes")
}

/// What a push did, as its delivery's summary records it. Serialized straight to text on the
/// receivers' hot path; the fields are in alphabetical order, as serde_json orders an object's
/// keys, so the text is the same as that of [`push_summary`]'s JSON value.
#[derive(serde::Serialize)]
pub struct PushSummary<'a> {
    branch: &'a Option<String>,
    commits: usize,
    deleted: bool,
    forced: bool,
    #[serde(rename = "ref")]
    git_ref: &'a str,
    services: Vec<&'a str>,
    tag: &'a Option<String>,
}

impl<'a> PushSummary<'a> {
    pub fn of(push: &'a Push, services: &'a [Service]) -> Self {
        PushSummary {
            branch: &push.branch,
            commits: push.commits.len(),
            deleted: push.deleted,
            forced: push.forced,
            git_ref: &push.git_ref,
            services: services.iter().map(|service| service.id.as_str()).collect(),
            tag: &push.tag,
        }
    }
}

async fn record_pull_request(
    tx: &mut Tx<'_>,
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
    tx: &mut Tx<'_>,
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
