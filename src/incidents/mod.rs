//! Incidents: opened by hand (or by monitors), acknowledged, resolved — each change emitted
//! through the outbox in its own transaction — and the commits suspected of causing them.
//!
//! [`open`], [`acknowledge`] and [`resolve`] are the operations the API and the pages both call;
//! which status may become which is [`Transition`]'s alone.
//!
//! Suspects are the commits the latest deploys of the service shipped before the incident
//! started, ranked by risk (the stored analysis, or the rules on the spot), by how recent their
//! deploy was, and by size; every score comes with its reasons.

pub mod api;
pub mod pages;

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::analysis::{push_change_set, rules};
use crate::app::AppState;
use crate::clock::{self, parse_rfc3339_ms, rfc3339_ms};
use crate::http::error::{ApiError, ApiResult, FieldError};
use crate::http::extract::{parse_id, required_text};
use crate::ids::{self, Kind};
use crate::outbound::{Audience, enqueue};
use crate::store::deploys::{self, Incident};
use crate::store::services::{self, Service};
use crate::store::{Store, StoreResult, Tx};
use crate::tenancy::api::not_found_as;

pub const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];
pub const TYPES: [&str; 2] = ["availability", "latency"];
/// Longest incident title.
pub const MAX_TITLE: usize = 300;

/// Where an incident stands; stored and sent as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    Acknowledged,
    Resolved,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Open, Status::Acknowledged, Status::Resolved];

    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Acknowledged => "acknowledged",
            Status::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// A change of an incident's status a person (or a monitor) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Acknowledge,
    Resolve,
}

impl Transition {
    /// The statuses it applies to.
    pub const fn from(self) -> &'static [Status] {
        match self {
            Transition::Acknowledge => &[Status::Open],
            Transition::Resolve => &[Status::Open, Status::Acknowledged],
        }
    }

    pub const fn to(self) -> Status {
        match self {
            Transition::Acknowledge => Status::Acknowledged,
            Transition::Resolve => Status::Resolved,
        }
    }

    pub const fn event_type(self) -> &'static str {
        match self {
            Transition::Acknowledge => "incident.acknowledged",
            Transition::Resolve => "incident.resolved",
        }
    }

    pub fn applies_to(self, status: &str) -> bool {
        Status::parse(status).is_some_and(|status| self.from().contains(&status))
    }

    /// Why it does not apply to an incident that is `status`, for a person.
    pub fn refusal(self, status: &str) -> String {
        let verb = match self {
            Transition::Acknowledge => "acknowledge",
            Transition::Resolve => "resolve",
        };
        format!("cannot {verb} an incident that is {status}")
    }
}

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

/// Applies `transition` to an incident and emits its event, in the caller's transaction. `None`
/// when the incident's status is not one it applies to: nothing changed and nothing is emitted.
pub async fn change_in(
    tx: &mut Tx<'_>,
    tenant_id: &str,
    id: &str,
    transition: Transition,
    service_name: &str,
) -> StoreResult<Option<Incident>> {
    let from: Vec<&str> = transition
        .from()
        .iter()
        .map(|status| status.as_str())
        .collect();
    let Some(changed) = deploys::transition_in(
        tx,
        tenant_id,
        id,
        &from,
        transition.to().as_str(),
        clock::now_ms(),
    )
    .await?
    else {
        return Ok(None);
    };
    enqueue(
        tx,
        tenant_id,
        transition.event_type(),
        &event_data(&changed, service_name),
        Audience::Subscribers,
    )
    .await?;
    Ok(Some(changed))
}

/// What a person (or a program) gives to open an incident by hand, as typed.
#[derive(Debug, Clone, Default)]
pub struct NewIncident {
    pub title: String,
    pub severity: String,
    pub incident_type: String,
    pub service_id: String,
    /// RFC 3339; `None` (or blank) is now.
    pub started_at: Option<String>,
}

/// Checks every field of `input` at once.
fn check_new(input: &NewIncident, now: i64) -> Result<(String, String, i64), Vec<FieldError>> {
    let mut errors = Vec::new();
    let title = match required_text("title", &input.title, MAX_TITLE) {
        Ok(title) => title,
        Err(error) => {
            errors.push(FieldError::new("title", error.to_string()));
            String::new()
        }
    };
    if !SEVERITIES.contains(&input.severity.as_str()) {
        errors.push(FieldError::new(
            "severity",
            format!("severity must be one of {}", SEVERITIES.join(", ")),
        ));
    }
    if !TYPES.contains(&input.incident_type.as_str()) {
        errors.push(FieldError::new(
            "type",
            format!("type must be one of {}", TYPES.join(", ")),
        ));
    }
    let service_id = match parse_id(Kind::Service, input.service_id.trim()) {
        Ok(id) => id,
        Err(_) if input.service_id.trim().is_empty() => {
            errors.push(FieldError::new("service_id", "Choose a service"));
            String::new()
        }
        Err(error) => {
            errors.push(FieldError::new(
                "service_id",
                format!("service_id: {error}"),
            ));
            String::new()
        }
    };
    let started_at = match input.started_at.as_deref().map(str::trim) {
        None | Some("") => now,
        Some(text) => match parse_rfc3339_ms(text) {
            Some(at) if at > now + 60_000 => {
                errors.push(FieldError::new(
                    "started_at",
                    "started_at must not be in the future",
                ));
                now
            }
            Some(at) => at,
            None => {
                errors.push(FieldError::new(
                    "started_at",
                    "started_at must be an RFC 3339 time such as 2026-03-02T10:00:00Z",
                ));
                now
            }
        },
    };
    if errors.is_empty() {
        Ok((title, service_id, started_at))
    } else {
        Err(errors)
    }
}

/// Opens an incident by hand: checks every field, ranks its suspects, writes it and emits
/// `incident.opened` in one transaction. Returns it with its service.
pub async fn open(
    state: &AppState,
    tenant_id: &str,
    input: NewIncident,
) -> ApiResult<(Incident, Service)> {
    let now = clock::now_ms();
    let (title, service_id, started_at) = check_new(&input, now).map_err(ApiError::Invalid)?;
    let service = services::get(&state.store, tenant_id, &service_id)
        .await
        .map_err(|error| not_found_as(error, "service"))?;
    let incident = Incident {
        id: ids::new(Kind::Incident),
        tenant_id: tenant_id.to_owned(),
        service_id: service.id.clone(),
        title,
        severity: input.severity,
        incident_type: input.incident_type,
        status: Status::Open.as_str().to_owned(),
        monitor: None,
        monitor_id: None,
        started_at,
        acknowledged_at: None,
        resolved_at: None,
        created_at: now,
        updated_at: now,
    };
    let suspects = rank_suspects(&state.store, &service.id, started_at).await?;
    let mut tx = state.store.begin().await?;
    open_in(&mut tx, &incident, &service.name, &suspects).await?;
    tx.commit().await?;
    state.outbound.wake();
    tracing::info!(incident_id = %incident.id, suspects = suspects.len(), "incident opened");
    Ok((incident, service))
}

/// An incident of the tenant by id (404 for a malformed or unknown one).
pub async fn load(state: &AppState, tenant_id: &str, id: &str) -> ApiResult<Incident> {
    let id = parse_id(Kind::Incident, id).map_err(|_| ApiError::NotFound("incident"))?;
    deploys::get_incident(&state.store, tenant_id, &id)
        .await
        .map_err(|error| not_found_as(error, "incident"))
}

/// Applies a status change and emits its event in one transaction; one that does not apply to
/// the incident's status is a conflict that says why, and emits nothing.
pub async fn apply(
    state: &AppState,
    tenant_id: &str,
    id: &str,
    transition: Transition,
) -> ApiResult<(Incident, Service)> {
    let current = load(state, tenant_id, id).await?;
    let service = services::get(&state.store, tenant_id, &current.service_id).await?;
    let mut tx = state.store.begin().await?;
    let Some(changed) =
        change_in(&mut tx, tenant_id, &current.id, transition, &service.name).await?
    else {
        drop(tx);
        let now = deploys::get_incident(&state.store, tenant_id, &current.id).await?;
        return Err(ApiError::Conflict(transition.refusal(&now.status)));
    };
    tx.commit().await?;
    state.outbound.wake();
    tracing::info!(incident_id = %changed.id, status = changed.status, "incident changed");
    Ok((changed, service))
}

pub async fn acknowledge(
    state: &AppState,
    tenant_id: &str,
    id: &str,
) -> ApiResult<(Incident, Service)> {
    apply(state, tenant_id, id, Transition::Acknowledge).await
}

pub async fn resolve(
    state: &AppState,
    tenant_id: &str,
    id: &str,
) -> ApiResult<(Incident, Service)> {
    apply(state, tenant_id, id, Transition::Resolve).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_apply_only_where_they_may() {
        assert!(Transition::Acknowledge.applies_to("open"));
        assert!(!Transition::Acknowledge.applies_to("acknowledged"));
        assert!(!Transition::Acknowledge.applies_to("resolved"));
        assert!(Transition::Resolve.applies_to("open"));
        assert!(Transition::Resolve.applies_to("acknowledged"));
        assert!(!Transition::Resolve.applies_to("resolved"));
        assert_eq!(
            Transition::Resolve.refusal("resolved"),
            "cannot resolve an incident that is resolved"
        );
    }

    #[test]
    fn a_new_incident_reports_every_bad_field_at_once() {
        let errors = check_new(
            &NewIncident {
                title: "  ".into(),
                severity: "meh".into(),
                incident_type: "x".into(),
                service_id: String::new(),
                started_at: Some("yesterday".into()),
            },
            1_000,
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|error| error.field).collect();
        assert_eq!(
            fields,
            ["title", "severity", "type", "service_id", "started_at"]
        );
    }
}
