//! The pages of incidents: the lists by status, opening one by hand, and an incident's page with
//! its timeline, Acknowledge / Resolve, the ranked suspects with **Propose revert**, and its fix
//! proposals. Every action calls the feature's operation ([`super::open`], [`super::apply`],
//! [`crate::fixes::proposals::propose_revert`]) as the JSON API does; a change that no longer
//! applies comes back as a message on the incident's page, never an error page.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{MAX_TITLE, NewIncident, SEVERITIES, Status, TYPES, Transition};
use crate::analysis::pages::risk_class;
use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::{self, Kind};
use crate::people::SignedIn;
use crate::store::deploys::{self, Incident};
use crate::store::fixes::{self, FixProposal};
use crate::store::services::{self, Service};
use crate::store::{monitors, record};
use crate::web::{
    Chrome, CsrfForm, FormErrors, PageResult, Section, Viewer, redirect_with_flash, render,
    render_with, when,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/incidents", get(list_page).post(create))
        .route("/incidents/new", get(new_page))
        .route("/incidents/{id}", get(incident_page))
        .route("/incidents/{id}/acknowledge", post(acknowledge))
        .route("/incidents/{id}/resolve", post(resolve))
        .route("/incidents/{id}/revert", post(propose_revert))
}

crate::web::pages!(ListPage, NewPage, IncidentPage);

fn chrome(viewer: &SignedIn, headers: &HeaderMap, title: impl Into<String>) -> Chrome {
    Chrome::new(viewer, headers, title, Section::Incidents)
}

/// The badge class of a severity.
pub fn severity_class(severity: &str) -> &'static str {
    match severity {
        "critical" => "critical",
        "error" => "bad",
        "warning" => "warn",
        _ => "muted",
    }
}

/// The badge class of an incident's status.
pub fn status_class(status: &str) -> &'static str {
    match status {
        "open" => "bad",
        "acknowledged" => "warn",
        "resolved" => "ok",
        _ => "muted",
    }
}

/// A length of time for people: `2 h 5 min`, `40 s`.
pub fn duration(ms: i64) -> String {
    let seconds = ms.max(0) / 1_000;
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3_600 => format!("{} min {} s", seconds / 60, seconds % 60),
        3_600..86_400 => format!("{} h {} min", seconds / 3_600, seconds % 3_600 / 60),
        _ => format!("{} d {} h", seconds / 86_400, seconds % 86_400 / 3_600),
    }
}

pub struct IncidentRow {
    pub id: String,
    pub title: String,
    pub severity: String,
    pub severity_class: &'static str,
    pub incident_type: String,
    pub status: String,
    pub status_class: &'static str,
    pub service_id: String,
    pub service_name: String,
    pub started: String,
    pub lasted: String,
    pub by_monitor: bool,
}

impl IncidentRow {
    pub fn of(incident: &Incident, service_name: &str) -> IncidentRow {
        let end = incident.resolved_at.unwrap_or_else(crate::clock::now_ms);
        IncidentRow {
            id: incident.id.clone(),
            title: incident.title.clone(),
            severity_class: severity_class(&incident.severity),
            severity: incident.severity.clone(),
            incident_type: incident.incident_type.clone(),
            status_class: status_class(&incident.status),
            status: incident.status.clone(),
            service_id: incident.service_id.clone(),
            service_name: service_name.to_owned(),
            started: when(incident.started_at),
            lasted: duration(end - incident.started_at),
            by_monitor: incident.monitor_id.is_some(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    status: Option<String>,
    service_id: Option<String>,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "incidents/list.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<IncidentRow>,
    next_cursor: Option<String>,
    /// `open`, `acknowledged`, `resolved` or `all`.
    status: String,
    statuses: [&'static str; 3],
    /// Narrowed to one service.
    service: Option<Service>,
    /// `&service_id=…` for the links of the tabs and the next page.
    service_param: String,
}

/// The names of the services of `incidents`, each read once.
async fn service_names(
    state: &AppState,
    tenant_id: &str,
    incidents: &[Incident],
) -> PageResult<std::collections::HashMap<String, String>> {
    let mut ids: Vec<String> = incidents.iter().map(|i| i.service_id.clone()).collect();
    ids.sort();
    ids.dedup();
    Ok(services::by_ids(&state.store, tenant_id, &ids)
        .await?
        .into_iter()
        .map(|service| (service.id, service.name))
        .collect())
}

async fn list_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> PageResult {
    let tenant_id = &viewer.user.tenant_id;
    let status = match query.status.as_deref() {
        None | Some("") => "open".to_owned(),
        Some("all") => "all".to_owned(),
        Some(other) => match Status::parse(other) {
            Some(status) => status.as_str().to_owned(),
            None => return Err(ApiError::NotFound("page").into()),
        },
    };
    let service = match query.service_id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => Some(crate::record::services::load(&state, tenant_id, id).await?),
        None => None,
    };
    let page = PageQuery::new(None, query.cursor);
    let limit = page.limit()?;
    let rows = deploys::list_incidents(
        &state.store,
        tenant_id,
        (status != "all").then_some(status.as_str()),
        service.as_ref().map(|service| service.id.as_str()),
        page.cursor(Kind::Incident)?.as_deref(),
        limit,
    )
    .await?;
    let (rows, next_cursor) = next_cursor(rows, limit, |row| row.id.clone());
    let names = service_names(&state, tenant_id, &rows).await?;
    Ok(render(&ListPage {
        chrome: chrome(&viewer, &headers, "Incidents"),
        rows: rows
            .iter()
            .map(|incident| {
                IncidentRow::of(
                    incident,
                    names
                        .get(&incident.service_id)
                        .map(String::as_str)
                        .unwrap_or(""),
                )
            })
            .collect(),
        next_cursor,
        status,
        statuses: Status::ALL.map(Status::as_str),
        service_param: service
            .as_ref()
            .map(|service| format!("&service_id={}", service.id))
            .unwrap_or_default(),
        service,
    }))
}

#[derive(Template)]
#[template(path = "incidents/new.html")]
struct NewPage {
    chrome: Chrome,
    services: Vec<Service>,
    input: NewIncident,
    severities: [&'static str; 4],
    types: [&'static str; 2],
    max_title: usize,
    errors: FormErrors,
}

#[derive(Debug, Default, Deserialize)]
struct NewQuery {
    service_id: Option<String>,
}

async fn new_form(
    state: &AppState,
    viewer: &SignedIn,
    headers: &HeaderMap,
    input: NewIncident,
    errors: FormErrors,
) -> PageResult<NewPage> {
    let services = services::list(
        &state.store,
        &viewer.user.tenant_id,
        None,
        crate::http::paging::MAX_LIMIT,
    )
    .await?;
    Ok(NewPage {
        chrome: chrome(viewer, headers, "Open an incident"),
        services,
        input,
        severities: SEVERITIES,
        types: TYPES,
        max_title: MAX_TITLE,
        errors,
    })
}

async fn new_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Query(query): Query<NewQuery>,
) -> PageResult {
    let input = NewIncident {
        severity: "error".to_owned(),
        incident_type: "availability".to_owned(),
        service_id: query.service_id.unwrap_or_default(),
        ..NewIncident::default()
    };
    Ok(render(
        &new_form(&state, &viewer, &headers, input, FormErrors::default()).await?,
    ))
}

/// `datetime-local` gives `YYYY-MM-DDTHH:MM` in the person's zone; the form says it is UTC.
fn started_at_of(field: &str) -> Option<String> {
    let field = field.trim();
    if field.is_empty() {
        return None;
    }
    Some(match field.len() {
        16 => format!("{field}:00Z"),
        19 => format!("{field}Z"),
        _ => field.to_owned(),
    })
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    CsrfForm { viewer, form }: CsrfForm,
) -> PageResult {
    let input = NewIncident {
        title: form.get("title").to_owned(),
        severity: form.get("severity").to_owned(),
        incident_type: form.get("type").to_owned(),
        service_id: form.get("service_id").to_owned(),
        started_at: started_at_of(form.get("started_at")),
    };
    match super::open(&state, &viewer.user.tenant_id, input.clone()).await {
        Ok((incident, _)) => Ok(redirect_with_flash(
            &format!("/incidents/{}", incident.id),
            "Incident opened. Subscribed webhooks get incident.opened.",
        )),
        Err(error) => {
            let errors = match error {
                ApiError::NotFound(_) => FormErrors::from_api(
                    ApiError::Invalid(vec![crate::http::error::FieldError::new(
                        "service_id",
                        "Choose one of your services",
                    )]),
                    &["service_id"],
                )?,
                other => FormErrors::from_api(
                    other,
                    &["title", "severity", "type", "service_id", "started_at"],
                )?,
            };
            let mut input = input;
            input.started_at = Some(form.get("started_at").to_owned());
            Ok(render_with(
                StatusCode::UNPROCESSABLE_ENTITY,
                &new_form(&state, &viewer, &headers, input, errors).await?,
            ))
        }
    }
}

/// One line of an incident's timeline.
pub struct Moment {
    pub at: String,
    pub what: String,
    /// A page to follow, if any.
    pub link: Option<String>,
    pub class: &'static str,
}

struct Entry {
    at: i64,
    moment: Moment,
}

fn entry(at: i64, what: String, link: Option<String>, class: &'static str) -> Entry {
    Entry {
        at,
        moment: Moment {
            at: when(at),
            what,
            link,
            class,
        },
    }
}

/// Consecutive checks with the same outcome, as one line: a failing run, then a passing run.
fn check_runs(checks: &[monitors::Check], from: i64, until: i64) -> Vec<Entry> {
    let mut checks: Vec<&monitors::Check> = checks
        .iter()
        .filter(|check| check.checked_at >= from && check.checked_at <= until)
        .collect();
    checks.sort_by_key(|check| check.checked_at);
    let mut entries = Vec::new();
    let mut index = 0;
    while index < checks.len() {
        let first = checks[index];
        let run = checks[index..]
            .iter()
            .take_while(|check| check.passed == first.passed)
            .count();
        let what = if first.passed {
            format!("{run} monitor check(s) passed")
        } else {
            let why = first
                .error
                .clone()
                .or_else(|| first.status_code.map(|code| format!("status {code}")))
                .unwrap_or_else(|| first.failure.clone().unwrap_or_default());
            format!("{run} monitor check(s) failed: {why}")
        };
        entries.push(entry(
            first.checked_at,
            what,
            None,
            if first.passed { "ok" } else { "bad" },
        ));
        index += run;
    }
    entries
}

pub struct SuspectRow {
    pub rank: i64,
    pub score: i64,
    pub sha: String,
    pub short_sha: String,
    pub subject: String,
    pub author: String,
    pub risk_level: String,
    pub risk_class: &'static str,
    pub deploy_id: String,
    pub reasons: Vec<String>,
    /// A revert of it was proposed already.
    pub reverted: Option<String>,
}

pub struct FixRow {
    pub id: String,
    pub fix_type: String,
    pub status: String,
    pub status_class: &'static str,
    pub summary: String,
    pub pr_url: String,
    pub pr_number: String,
    pub created: String,
}

impl FixRow {
    pub fn of(fix: &FixProposal) -> FixRow {
        FixRow {
            id: fix.id.clone(),
            fix_type: fix.fix_type.clone(),
            status_class: crate::fixes::pages::status_class(&fix.status),
            status: fix.status.clone(),
            summary: fix.summary.clone(),
            pr_url: fix.pr_url.clone().unwrap_or_default(),
            pr_number: fix
                .pr_number
                .map(|number| format!("#{number}"))
                .unwrap_or_default(),
            created: when(fix.created_at),
        }
    }
}

#[derive(Template)]
#[template(path = "incidents/incident.html")]
struct IncidentPage {
    chrome: Chrome,
    row: IncidentRow,
    service: Service,
    monitor_id: String,
    monitor_name: String,
    can_acknowledge: bool,
    can_resolve: bool,
    timeline: Vec<Moment>,
    suspects: Vec<SuspectRow>,
    fixes: Vec<FixRow>,
    revert_possible: bool,
}

async fn incident_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    let tenant_id = &viewer.user.tenant_id;
    let incident = super::load(&state, tenant_id, &id).await?;
    let service = services::get(&state.store, tenant_id, &incident.service_id).await?;
    let fixes = fixes::list(
        &state.store,
        tenant_id,
        Some(&incident.id),
        None,
        None,
        crate::http::paging::MAX_LIMIT,
    )
    .await?;
    let suspects = deploys::suspects_of(&state.store, &incident.id).await?;
    let monitor: serde_json::Value = incident
        .monitor
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();

    let mut entries = vec![entry(
        incident.started_at,
        match incident.monitor_id {
            Some(_) => format!(
                "Opened by monitor {}",
                monitor["name"].as_str().unwrap_or("")
            ),
            None => "Opened".to_owned(),
        },
        None,
        "bad",
    )];
    if let Some(at) = incident.acknowledged_at {
        entries.push(entry(at, "Acknowledged".to_owned(), None, "warn"));
    }
    if let Some(monitor_id) = &incident.monitor_id {
        let checks = monitors::checks_of(&state.store, monitor_id).await?;
        let until = incident.resolved_at.unwrap_or(i64::MAX);
        entries.extend(check_runs(&checks, incident.started_at, until));
    }
    for fix in &fixes {
        let kind = if fix.fix_type == "revert" {
            "Revert"
        } else {
            "AI fix"
        };
        entries.push(entry(
            fix.created_at,
            format!("{kind} proposed: {}", fix.summary),
            Some(format!("/fix-proposals/{}", fix.id)),
            "muted",
        ));
        if let Some(number) = fix.pr_number
            && let Ok(pr) =
                record::get_pull_request(&state.store, tenant_id, &fix.repository, number).await
            && let Some(merged_at) = pr.merged_at
        {
            entries.push(entry(
                merged_at,
                format!("Pull request #{number} merged"),
                Some(pr.url.clone()).filter(|url| !url.is_empty()),
                "ok",
            ));
        }
    }
    if let Some(at) = incident.resolved_at {
        entries.push(entry(
            at,
            format!("Resolved after {}", duration(at - incident.started_at)),
            None,
            "ok",
        ));
    }
    entries.sort_by_key(|entry| entry.at);

    let reverted = |sha: &str| {
        fixes
            .iter()
            .find(|fix| fix.fix_type == "revert" && fix.commit_sha.as_deref() == Some(sha))
            .map(|fix| fix.id.clone())
    };
    let suspects = suspects
        .into_iter()
        .map(|suspect| {
            let level = suspect.risk_level.clone().unwrap_or_default();
            SuspectRow {
                rank: suspect.rank,
                score: suspect.score,
                short_sha: suspect.sha.chars().take(7).collect(),
                subject: crate::analysis::pages::subject(&suspect.message),
                author: suspect.author_name,
                risk_class: risk_class(&level),
                risk_level: level,
                deploy_id: suspect.deploy_id,
                reasons: serde_json::from_str(&suspect.reasons).unwrap_or_default(),
                reverted: reverted(&suspect.sha),
                sha: suspect.sha,
            }
        })
        .collect();
    Ok(render(&IncidentPage {
        chrome: chrome(&viewer, &headers, incident.title.clone()),
        can_acknowledge: Transition::Acknowledge.applies_to(&incident.status),
        can_resolve: Transition::Resolve.applies_to(&incident.status),
        monitor_id: incident.monitor_id.clone().unwrap_or_default(),
        monitor_name: monitor["name"].as_str().unwrap_or("").to_owned(),
        row: IncidentRow::of(&incident, &service.name),
        timeline: entries.into_iter().map(|entry| entry.moment).collect(),
        suspects,
        fixes: fixes.iter().map(FixRow::of).collect(),
        revert_possible: service.github_token.is_some(),
        service,
    }))
}

/// A status change from its button: whatever happens, back to the incident's page with what did.
async fn change(
    state: &AppState,
    viewer: &SignedIn,
    id: &str,
    transition: Transition,
) -> PageResult {
    if !ids::is_valid(Kind::Incident, id) {
        return Err(ApiError::NotFound("incident").into());
    }
    let page = format!("/incidents/{id}");
    match super::apply(state, &viewer.user.tenant_id, id, transition).await {
        Ok((incident, _)) => Ok(redirect_with_flash(
            &page,
            &format!(
                "Incident {}. Subscribed webhooks get {}.",
                incident.status,
                transition.event_type()
            ),
        )),
        Err(ApiError::Conflict(why)) => Ok(redirect_with_flash(
            &page,
            &format!("Nothing changed: {why}."),
        )),
        Err(error) => Err(error.into()),
    }
}

async fn acknowledge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, .. }: CsrfForm,
) -> PageResult {
    change(&state, &viewer, &id, Transition::Acknowledge).await
}

async fn resolve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, .. }: CsrfForm,
) -> PageResult {
    change(&state, &viewer, &id, Transition::Resolve).await
}

async fn propose_revert(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, form }: CsrfForm,
) -> PageResult {
    if !ids::is_valid(Kind::Incident, &id) {
        return Err(ApiError::NotFound("incident").into());
    }
    let page = format!("/incidents/{id}");
    match crate::fixes::proposals::propose_revert(
        &state,
        &viewer.user.tenant_id,
        &id,
        form.get("commit_sha"),
    )
    .await
    {
        Ok(fix) => Ok(redirect_with_flash(
            &format!("/fix-proposals/{}", fix.id),
            &format!(
                "Revert proposed: pull request {} is open.",
                fix.pr_number
                    .map(|number| format!("#{number}"))
                    .unwrap_or_default()
            ),
        )),
        Err(ApiError::Internal(cause)) => Err(ApiError::Internal(cause).into()),
        Err(ApiError::NotFound("incident")) => Err(ApiError::NotFound("incident").into()),
        Err(error) => Ok(redirect_with_flash(
            &page,
            &format!("The revert could not be proposed: {error}."),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(40_000), "40 s");
        assert_eq!(duration(125_000), "2 min 5 s");
        assert_eq!(duration(7_500_000), "2 h 5 min");
        assert_eq!(duration(90_000_000), "1 d 1 h");
        assert_eq!(duration(-5), "0 s");
    }

    #[test]
    fn checks_become_runs_of_one_outcome() {
        let check = |at: i64, passed: bool| monitors::Check {
            id: format!("chk_{at}"),
            monitor_id: "mon".into(),
            checked_at: at,
            passed,
            failure: (!passed).then(|| "availability".to_owned()),
            status_code: Some(if passed { 200 } else { 503 }),
            latency_ms: 5,
            error: None,
        };
        let checks = [
            check(1, false),
            check(2, false),
            check(3, true),
            check(4, true),
            check(5, true),
            check(9, false),
        ];
        let runs: Vec<String> = check_runs(&checks, 0, 8)
            .into_iter()
            .map(|entry| entry.moment.what)
            .collect();
        assert_eq!(
            runs,
            [
                "2 monitor check(s) failed: status 503",
                "3 monitor check(s) passed"
            ]
        );
    }
}
