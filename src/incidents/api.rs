//! `/api/incidents`: open by hand, acknowledge, resolve (409 for a transition that does not
//! apply, and then no event), list, read, and the ranked suspects.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{NewIncident, Status};
use crate::app::AppState;
use crate::clock::rfc3339_ms;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{ApiJson, ApiQuery, parse_id};
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::Kind;
use crate::store::deploys::{self, Incident};
use crate::store::services;
use crate::tenancy::Principal;
use crate::tenancy::api::not_found_as;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_incidents, create_incident))
        .routes(routes!(get_incident))
        .routes(routes!(acknowledge_incident))
        .routes(routes!(resolve_incident))
        .routes(routes!(incident_suspects))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentOut {
    /// `inc_…`.
    pub id: String,
    pub title: String,
    /// `critical`, `error`, `warning` or `info`.
    pub severity: String,
    /// `availability` or `latency`.
    #[serde(rename = "type")]
    pub incident_type: String,
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    pub service: ServiceRef,
    /// `{id, name, url}` of the monitor that opened it; `null` when opened by hand.
    #[schema(value_type = Option<Object>)]
    pub monitor: Value,
    pub started_at: String,
    pub acknowledged_at: Option<String>,
    pub resolved_at: Option<String>,
    pub duration_seconds: Option<i64>,
}

fn out(incident: Incident, service_name: &str) -> IncidentOut {
    IncidentOut {
        monitor: incident
            .monitor
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or(Value::Null),
        service: ServiceRef {
            id: incident.service_id.clone(),
            name: service_name.to_owned(),
        },
        started_at: rfc3339_ms(incident.started_at),
        acknowledged_at: incident.acknowledged_at.map(rfc3339_ms),
        resolved_at: incident.resolved_at.map(rfc3339_ms),
        duration_seconds: incident
            .resolved_at
            .map(|at| (at - incident.started_at).max(0) / 1_000),
        id: incident.id,
        title: incident.title,
        severity: incident.severity,
        incident_type: incident.incident_type,
        status: incident.status,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIncident {
    /// 1 to 300 characters, not blank, no control characters other than tab and newline.
    #[schema(
        min_length = 1,
        max_length = 300,
        pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x08\x0B-\x1F\x7F-\x9F]*$"
    )]
    pub title: String,
    /// `critical`, `error`, `warning` or `info`.
    #[schema(pattern = r"^(?:critical|error|warning|info)$")]
    pub severity: String,
    /// `availability` or `latency`.
    #[serde(rename = "type")]
    #[schema(pattern = r"^(?:availability|latency)$")]
    pub incident_type: String,
    /// The service (`svc_…`).
    #[schema(pattern = r"^svc_[0-9a-f]{32}$")]
    pub service_id: String,
    /// When the trouble began (RFC 3339; default now); not in the future. The document only
    /// admits years up to 2024, so a generated time is always in the past.
    #[schema(format = DateTime, pattern = r"^(?:[01][0-9]{3}|20[01][0-9]|202[0-4])-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9]")]
    pub started_at: Option<String>,
}

#[utoipa::path(post, path = "/api/incidents", tag = "incidents", request_body = CreateIncident,
    responses(
        (status = 201, description = "Opened; `incident.opened` is sent and suspects are ranked", body = IncidentOut),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_incident(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(input): ApiJson<CreateIncident>,
) -> ApiResult<(StatusCode, Json<IncidentOut>)> {
    let (incident, service) = super::open(
        &state,
        &principal.tenant_id,
        NewIncident {
            title: input.title,
            severity: input.severity,
            incident_type: input.incident_type,
            service_id: input.service_id,
            started_at: input.started_at,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(out(incident, &service.name))))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentPage {
    pub data: Vec<IncidentOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct IncidentQuery {
    /// `open`, `acknowledged` or `resolved`.
    #[param(pattern = r"^(?:open|acknowledged|resolved)$")]
    status: Option<String>,
    /// Only this service's incidents (`svc_…`).
    #[param(pattern = r"^svc_[0-9a-f]{32}$")]
    service_id: Option<String>,
    /// Items per page, 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page (`inc_…`).
    #[param(pattern = r"^inc_[0-9a-f]{32}$")]
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/incidents", tag = "incidents", params(IncidentQuery),
    responses((status = 200, body = IncidentPage), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_incidents(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<IncidentQuery>,
) -> ApiResult<Json<IncidentPage>> {
    if let Some(status) = &query.status
        && Status::parse(status).is_none()
    {
        return Err(ApiError::BadRequest(
            "status must be open, acknowledged or resolved".to_owned(),
        ));
    }
    let service_id = query
        .service_id
        .as_deref()
        .map(|id| parse_id(Kind::Service, id))
        .transpose()?;
    let page = PageQuery::new(query.limit, query.cursor.clone());
    let limit = page.limit()?;
    let cursor = page.cursor(Kind::Incident)?;
    let rows = deploys::list_incidents(
        &state.store,
        &principal.tenant_id,
        query.status.as_deref(),
        service_id.as_deref(),
        cursor.as_deref(),
        limit,
    )
    .await?;
    let (rows, next_cursor) = next_cursor(rows, limit, |row| row.id.clone());
    // Incidents of one service share its name: read each service once.
    let mut names: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut data = Vec::with_capacity(rows.len());
    for incident in rows {
        if !names.contains_key(&incident.service_id) {
            let service =
                services::get(&state.store, &principal.tenant_id, &incident.service_id).await?;
            names.insert(service.id, service.name);
        }
        let name = names[&incident.service_id].clone();
        data.push(out(incident, &name));
    }
    Ok(Json(IncidentPage { data, next_cursor }))
}

async fn load(state: &AppState, principal: &Principal, id: &str) -> ApiResult<Incident> {
    let id = parse_id(Kind::Incident, id)?;
    deploys::get_incident(&state.store, &principal.tenant_id, &id)
        .await
        .map_err(|error| not_found_as(error, "incident"))
}

#[utoipa::path(get, path = "/api/incidents/{id}", tag = "incidents",
    params(("id" = String, Path, description = "Incident id (`inc_…`)")),
    responses((status = 200, body = IncidentOut), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_incident(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<IncidentOut>> {
    let incident = load(&state, &principal, &id).await?;
    let service = services::get(&state.store, &principal.tenant_id, &incident.service_id).await?;
    Ok(Json(out(incident, &service.name)))
}

#[utoipa::path(post, path = "/api/incidents/{id}/acknowledge", tag = "incidents",
    params(("id" = String, Path, description = "Incident id (`inc_…`)")),
    responses((status = 200, description = "Acknowledged; `incident.acknowledged` is sent", body = IncidentOut),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not open (already acknowledged, or resolved)", body = ErrorBody)),
    security(("bearer" = [])))]
async fn acknowledge_incident(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<IncidentOut>> {
    let (incident, service) = super::acknowledge(&state, &principal.tenant_id, &id).await?;
    Ok(Json(out(incident, &service.name)))
}

#[utoipa::path(post, path = "/api/incidents/{id}/resolve", tag = "incidents",
    params(("id" = String, Path, description = "Incident id (`inc_…`)")),
    responses((status = 200, description = "Resolved; `incident.resolved` is sent", body = IncidentOut),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Already resolved", body = ErrorBody)),
    security(("bearer" = [])))]
async fn resolve_incident(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<IncidentOut>> {
    let (incident, service) = super::resolve(&state, &principal.tenant_id, &id).await?;
    Ok(Json(out(incident, &service.name)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SuspectOut {
    pub rank: i64,
    pub score: i64,
    pub commit_sha: String,
    pub message: String,
    pub author: String,
    pub url: String,
    pub risk_level: Option<String>,
    pub deploy_id: String,
    /// Why the commit is suspected, strongest first.
    pub reasons: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SuspectList {
    pub data: Vec<SuspectOut>,
}

#[utoipa::path(get, path = "/api/incidents/{id}/suspects", tag = "incidents",
    params(("id" = String, Path, description = "Incident id (`inc_…`)")),
    responses((status = 200, description = "Ranked when the incident opened", body = SuspectList),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn incident_suspects(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<SuspectList>> {
    let incident = load(&state, &principal, &id).await?;
    let data = deploys::suspects_of(&state.store, &incident.id)
        .await?
        .into_iter()
        .map(|suspect| SuspectOut {
            reasons: serde_json::from_str(&suspect.reasons).unwrap_or_default(),
            rank: suspect.rank,
            score: suspect.score,
            commit_sha: suspect.sha,
            message: suspect.message,
            author: suspect.author_name,
            url: suspect.url,
            risk_level: suspect.risk_level,
            deploy_id: suspect.deploy_id,
        })
        .collect();
    Ok(Json(SuspectList { data }))
}
