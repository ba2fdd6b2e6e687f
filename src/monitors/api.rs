//! `/api/monitors`: HTTP monitors of a service and their recent checks.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::clock::{self, rfc3339_ms};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{ApiJson, ApiQuery, parse_id, required_text};
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::{self, Kind};
use crate::outbound::validate_endpoint_url;
use crate::store::monitors::{self, Monitor};
use crate::store::services;
use crate::tenancy::Principal;
use crate::tenancy::api::not_found_as;

/// A health check only reads: a monitor must not change what it watches.
const METHODS: [&str; 2] = ["GET", "HEAD"];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_monitors, create_monitor))
        .routes(routes!(get_monitor, update_monitor, delete_monitor))
        .routes(routes!(monitor_checks))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MonitorOut {
    /// `mon_…`.
    pub id: String,
    pub service_id: String,
    pub name: String,
    pub url: String,
    pub method: String,
    pub interval_seconds: i64,
    pub timeout_ms: i64,
    pub expected_status: i64,
    pub latency_threshold_ms: Option<i64>,
    pub active: bool,
    pub consecutive_failures: i64,
    pub consecutive_passes: i64,
    /// The incident this monitor opened and has not seen resolved yet.
    pub open_incident_id: Option<String>,
    pub next_check_at: String,
    pub created_at: String,
}

impl From<Monitor> for MonitorOut {
    fn from(monitor: Monitor) -> Self {
        MonitorOut {
            next_check_at: rfc3339_ms(monitor.next_check_at),
            created_at: rfc3339_ms(monitor.created_at),
            id: monitor.id,
            service_id: monitor.service_id,
            name: monitor.name,
            url: monitor.url,
            method: monitor.method,
            interval_seconds: monitor.interval_seconds,
            timeout_ms: monitor.timeout_ms,
            expected_status: monitor.expected_status,
            latency_threshold_ms: monitor.latency_threshold_ms,
            active: monitor.active,
            consecutive_failures: monitor.consecutive_failures,
            consecutive_passes: monitor.consecutive_passes,
            open_incident_id: monitor.open_incident_id,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMonitor {
    /// The service (`svc_…`).
    #[schema(pattern = r"^svc_[0-9a-f]{32}$")]
    pub service_id: String,
    /// 1 to 200 characters, not blank, no control characters other than tab and newline.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x08\x0B-\x1F\x7F-\x9F]*$"
    )]
    pub name: String,
    /// An absolute `https://` URL (at most 2048 characters, no credentials, no fragment) that
    /// the SSRF guard admits.
    #[schema(
        min_length = 1,
        max_length = 2048,
        format = "uri",
        pattern = r"^https://(?:[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\.)*[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(?:[/?][!$-~]*)?$"
    )]
    pub url: String,
    /// `GET` or `HEAD` (any case); default `GET`.
    #[schema(pattern = r"^(?:[Gg][Ee][Tt]|[Hh][Ee][Aa][Dd])$")]
    pub method: Option<String>,
    /// 10 (the server's `monitors.min_interval_seconds`) to 86400.
    #[schema(minimum = 10, maximum = 86400)]
    pub interval_seconds: i64,
    /// Default 5000; at least 1 and less than the interval (in milliseconds).
    #[schema(minimum = 1, maximum = 86399999)]
    pub timeout_ms: Option<i64>,
    /// An HTTP status, 100 to 599; default 200.
    #[schema(minimum = 100, maximum = 599)]
    pub expected_status: Option<i64>,
    /// A passing status slower than this is a latency failure; at least 1 and shorter than
    /// `timeout_ms`.
    #[schema(minimum = 1, maximum = 86399998)]
    pub latency_threshold_ms: Option<i64>,
    /// Default true.
    pub active: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMonitor {
    /// 1 to 200 characters, not blank, no control characters other than tab and newline.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x08\x0B-\x1F\x7F-\x9F]*$"
    )]
    pub name: Option<String>,
    /// An absolute `https://` URL (at most 2048 characters, no credentials, no fragment) that
    /// the SSRF guard admits.
    #[schema(
        min_length = 1,
        max_length = 2048,
        format = "uri",
        pattern = r"^https://(?:[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\.)*[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(?:[/?][!$-~]*)?$"
    )]
    pub url: Option<String>,
    /// `GET` or `HEAD` (any case).
    #[schema(pattern = r"^(?:[Gg][Ee][Tt]|[Hh][Ee][Aa][Dd])$")]
    pub method: Option<String>,
    /// 10 (the server's `monitors.min_interval_seconds`) to 86400.
    #[schema(minimum = 10, maximum = 86400)]
    pub interval_seconds: Option<i64>,
    /// At least 1 and less than the interval (in milliseconds).
    #[schema(minimum = 1, maximum = 86399999)]
    pub timeout_ms: Option<i64>,
    /// An HTTP status, 100 to 599.
    #[schema(minimum = 100, maximum = 599)]
    pub expected_status: Option<i64>,
    /// A threshold (at least 1 and shorter than `timeout_ms`), or `null` to remove it.
    #[serde(default, deserialize_with = "crate::http::extract::present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 86399998)]
    pub latency_threshold_ms: Option<Option<i64>>,
    pub active: Option<bool>,
}

/// Checks the settings together; returns the normalised URL.
async fn check_settings(state: &AppState, monitor: &mut Monitor) -> ApiResult<()> {
    let invalid = |message: String| Err(ApiError::Unprocessable(message));
    monitor.name = required_text("name", &monitor.name, 200)?;
    monitor.method = monitor.method.trim().to_ascii_uppercase();
    if !METHODS.contains(&monitor.method.as_str()) {
        return invalid(format!("method must be one of {}", METHODS.join(", ")));
    }
    let min_interval = i64::try_from(state.config.monitors.min_interval_seconds).unwrap_or(10);
    if !(min_interval..=86_400).contains(&monitor.interval_seconds) {
        return invalid(format!(
            "interval_seconds must be between {min_interval} and 86400"
        ));
    }
    if monitor.timeout_ms < 1 || monitor.timeout_ms >= monitor.interval_seconds * 1_000 {
        return invalid("timeout_ms must be at least 1 and shorter than the interval".to_owned());
    }
    if !(100..=599).contains(&monitor.expected_status) {
        return invalid("expected_status must be an HTTP status (100 to 599)".to_owned());
    }
    // A check is cut off at its timeout, so a threshold at or past it could never be crossed.
    if monitor
        .latency_threshold_ms
        .is_some_and(|threshold| threshold < 1 || threshold >= monitor.timeout_ms)
    {
        return invalid(format!(
            "latency_threshold_ms must be at least 1 and shorter than timeout_ms ({})",
            monitor.timeout_ms
        ));
    }
    let url = validate_endpoint_url(
        &monitor.url,
        state.config.delivery.allow_http,
        &state.outbound.policy,
    )
    .await
    .map_err(ApiError::Unprocessable)?;
    monitor.url = url.to_string();
    Ok(())
}

#[utoipa::path(post, path = "/api/monitors", tag = "monitors", request_body = CreateMonitor,
    responses((status = 201, body = MonitorOut), (status = 404, description = "No such service", body = ErrorBody),
        (status = 422, description = "Invalid settings, or a URL the SSRF guard refuses", body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_monitor(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(input): ApiJson<CreateMonitor>,
) -> ApiResult<(StatusCode, Json<MonitorOut>)> {
    let service_id = parse_id(Kind::Service, &input.service_id)
        .map_err(|error| ApiError::Unprocessable(format!("service_id: {error}")))?;
    let now = clock::now_ms();
    let mut monitor = Monitor {
        id: ids::new(Kind::Monitor),
        tenant_id: principal.tenant_id.clone(),
        service_id,
        name: input.name,
        url: input.url,
        method: input.method.unwrap_or_else(|| "GET".to_owned()),
        interval_seconds: input.interval_seconds,
        timeout_ms: input.timeout_ms.unwrap_or(5_000),
        expected_status: input.expected_status.unwrap_or(200),
        latency_threshold_ms: input.latency_threshold_ms,
        active: input.active.unwrap_or(true),
        consecutive_failures: 0,
        consecutive_passes: 0,
        failing_since: None,
        open_incident_id: None,
        next_check_at: now,
        created_at: now,
        updated_at: now,
    };
    check_settings(&state, &mut monitor).await?;
    services::get(&state.store, &principal.tenant_id, &monitor.service_id)
        .await
        .map_err(|error| not_found_as(error, "service"))?;
    monitors::insert(&state.store, &monitor).await?;
    Ok((StatusCode::CREATED, Json(monitor.into())))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MonitorPage {
    pub data: Vec<MonitorOut>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/monitors", tag = "monitors", params(PageQuery),
    responses((status = 200, body = MonitorPage)),
    security(("bearer" = [])))]
async fn list_monitors(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<MonitorPage>> {
    let limit = page.limit()?;
    let cursor = page.cursor(Kind::Monitor)?;
    let rows = monitors::list(&state.store, &principal.tenant_id, cursor.as_deref(), limit).await?;
    let (rows, next_cursor) = next_cursor(rows, limit, |row| row.id.clone());
    Ok(Json(MonitorPage {
        data: rows.into_iter().map(MonitorOut::from).collect(),
        next_cursor,
    }))
}

async fn load(state: &AppState, principal: &Principal, id: &str) -> ApiResult<Monitor> {
    let id = parse_id(Kind::Monitor, id)?;
    monitors::get(&state.store, &principal.tenant_id, &id)
        .await
        .map_err(|error| not_found_as(error, "monitor"))
}

#[utoipa::path(get, path = "/api/monitors/{id}", tag = "monitors",
    params(("id" = String, Path, description = "Monitor id (`mon_…`)")),
    responses((status = 200, body = MonitorOut), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_monitor(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<MonitorOut>> {
    Ok(Json(load(&state, &principal, &id).await?.into()))
}

#[utoipa::path(patch, path = "/api/monitors/{id}", tag = "monitors",
    params(("id" = String, Path, description = "Monitor id (`mon_…`)")),
    request_body = UpdateMonitor,
    responses((status = 200, body = MonitorOut), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn update_monitor(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<UpdateMonitor>,
) -> ApiResult<Json<MonitorOut>> {
    let mut monitor = load(&state, &principal, &id).await?;
    if let Some(name) = input.name {
        monitor.name = name;
    }
    if let Some(url) = input.url {
        monitor.url = url;
    }
    if let Some(method) = input.method {
        monitor.method = method;
    }
    if let Some(interval) = input.interval_seconds {
        monitor.interval_seconds = interval;
    }
    if let Some(timeout) = input.timeout_ms {
        monitor.timeout_ms = timeout;
    }
    if let Some(expected) = input.expected_status {
        monitor.expected_status = expected;
    }
    if let Some(threshold) = input.latency_threshold_ms {
        monitor.latency_threshold_ms = threshold;
    }
    if let Some(active) = input.active {
        monitor.active = active;
    }
    check_settings(&state, &mut monitor).await?;
    monitor.updated_at = clock::now_ms();
    monitor.next_check_at = monitor
        .next_check_at
        .min(monitor.updated_at + monitor.interval_seconds * 1_000);
    monitors::update_settings(&state.store, &monitor).await?;
    Ok(Json(monitor.into()))
}

#[utoipa::path(delete, path = "/api/monitors/{id}", tag = "monitors",
    params(("id" = String, Path, description = "Monitor id (`mon_…`)")),
    responses((status = 204, description = "Deleted with its checks"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn delete_monitor(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let monitor = load(&state, &principal, &id).await?;
    monitors::delete(&state.store, &principal.tenant_id, &monitor.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckOut {
    pub checked_at: String,
    pub passed: bool,
    /// `availability` or `latency` when the check failed.
    pub failure: Option<String>,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckList {
    /// The last 100 checks, newest first.
    pub data: Vec<CheckOut>,
}

#[utoipa::path(get, path = "/api/monitors/{id}/checks", tag = "monitors",
    params(("id" = String, Path, description = "Monitor id (`mon_…`)")),
    responses((status = 200, body = CheckList), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn monitor_checks(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<CheckList>> {
    let monitor = load(&state, &principal, &id).await?;
    let data = monitors::checks_of(&state.store, &monitor.id)
        .await?
        .into_iter()
        .map(|check| CheckOut {
            checked_at: rfc3339_ms(check.checked_at),
            passed: check.passed,
            failure: check.failure,
            status_code: check.status_code,
            latency_ms: check.latency_ms,
            error: check.error,
        })
        .collect();
    Ok(Json(CheckList { data }))
}
