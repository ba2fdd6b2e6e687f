//! Incidents: opened by hand (or by monitors), acknowledged, resolved — each change emitted
//! through the outbox in its own transaction — and the commits suspected of causing them.
//!
//! Suspects are the commits the latest deploys of the service shipped before the incident
//! started, ranked by risk (the stored analysis, or the rules on the spot), by how recent their
//! deploy was, and by size; every score comes with its reasons.

pub mod api;

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::analysis::{push_change_set, rules};
use crate::clock::{self, rfc3339_ms};
use crate::outbound::{Audience, enqueue};
use crate::store::deploys::{self, Incident};
use crate::store::{Store, StoreResult, Tx};

pub const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];
pub const TYPES: [&str; 2] = ["availability", "latency"];

/// Deploys before the start whose commits are suspects.
const SUSPECT_DEPLOYS: i64 = 3;
/// Suspects kept per incident.
const MAX_SUSPECTS: usize = 20;

/// The `data` of `incident.*` events, field for field as documented.
pub fn event_data(incident: &Incident, service_name: &str) -> Value {
    let monitor = incident
        .monitor
        .as_deref()
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .unwrap_or(Value::Null);
    let mut data = json!({
        "incident_id": incident.id,
        "title": incident.title,
        "severity": incident.severity,
        "type": incident.incident_type,
        "status": incident.status,
        "started_at": rfc3339_ms(incident.started_at),
        "service": {"id": incident.service_id, "name": service_name},
        "monitor": monitor,
    });
    if let Some(resolved_at) = incident.resolved_at {
        data["resolved_at"] = json!(rfc3339_ms(resolved_at));
        data["duration_seconds"] = json!((resolved_at - incident.started_at).max(0) / 1_000);
    }
    data
}

/// A commit suspected of an incident, with its score and why.
#[derive(Debug, Clone)]
pub struct Ranked {
    pub commit_id: String,
    pub deploy_id: String,
    pub score: i64,
    pub reasons: Vec<String>,
}

/// Ranks the commits of the service's latest deploys before `started_at`.
pub async fn rank_suspects(
    store: &Store,
    service_id: &str,
    started_at: i64,
) -> StoreResult<Vec<Ranked>> {
    let deploys = deploys::latest_before(store, service_id, started_at, SUSPECT_DEPLOYS).await?;
    let mut seen = HashSet::new();
    let mut ranked = Vec::new();
    for (position, deploy) in deploys.iter().enumerate() {
        let minutes = (started_at - deploy.deployed_at).max(0) / 60_000;
        let (recency, when) = match position {
            0 => (40, "the latest deploy"),
            1 => (20, "the deploy before the latest"),
            _ => (10, "an earlier deploy"),
        };
        for commit in deploys::commits_of(store, &deploy.id).await? {
            if !seen.insert(commit.id.clone()) {
                continue;
            }
            let mut reasons = Vec::new();
            let risk = match commit.risk_score {
                Some(score) => {
                    reasons.push(format!(
                        "risk {score} ({}) from its analysis",
                        commit.risk_level.as_deref().unwrap_or("unknown")
                    ));
                    score
                }
                None => {
                    let estimate = rules::analyse(&push_change_set(&commit));
                    reasons.push(format!(
                        "risk {} ({}) estimated by the rules: not analysed yet",
                        estimate.risk_score, estimate.risk_level
                    ));
                    i64::from(estimate.risk_score)
                }
            };
            reasons.push(format!(
                "shipped in {when} ({}), {minutes} min before the incident started",
                deploy.id
            ));
            let files = push_change_set(&commit).files.len() as i64;
            let size = (files * 2).min(20);
            if files > 0 {
                reasons.push(format!("changes {files} file(s)"));
            }
            ranked.push(Ranked {
                commit_id: commit.id,
                deploy_id: deploy.id.clone(),
                score: risk * 6 / 10 + recency + size,
                reasons,
            });
        }
    }
    ranked.sort_by_key(|suspect| std::cmp::Reverse(suspect.score));
    ranked.truncate(MAX_SUSPECTS);
    Ok(ranked)
}

/// Writes a new incident with its suspects and emits `incident.opened`, in the caller's
/// transaction.
pub async fn open_in(
    tx: &mut Tx<'_>,
    incident: &Incident,
    service_name: &str,
    suspects: &[Ranked],
) -> StoreResult<()> {
    deploys::insert_incident_in(tx, incident).await?;
    for (rank, suspect) in suspects.iter().enumerate() {
        deploys::add_suspect_in(
            tx,
            &incident.id,
            &suspect.commit_id,
            &suspect.deploy_id,
            rank as i64 + 1,
            suspect.score,
            &serde_json::to_string(&suspect.reasons).expect("reasons serialize"),
        )
        .await?;
    }
    enqueue(
        tx,
        &incident.tenant_id,
        "incident.opened",
        &event_data(incident, service_name),
        Audience::Subscribers,
    )
    .await?;
    Ok(())
}

/// Moves an incident from one of `from` to `to` and emits `event_type`, in the caller's
/// transaction. `None` when the incident's status is not one of `from`: nothing changed and
/// nothing is emitted.
pub async fn change_in(
    tx: &mut Tx<'_>,
    tenant_id: &str,
    id: &str,
    from: &[&str],
    to: &str,
    event_type: &str,
    service_name: &str,
) -> StoreResult<Option<Incident>> {
    let Some(changed) =
        deploys::transition_in(tx, tenant_id, id, from, to, clock::now_ms()).await?
    else {
        return Ok(None);
    };
    enqueue(
        tx,
        tenant_id,
        event_type,
        &event_data(&changed, service_name),
        Audience::Subscribers,
    )
    .await?;
    Ok(Some(changed))
}
