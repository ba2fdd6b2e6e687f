//! The pages of services: the list, creating one, and a service's settings: its repository, the
//! push secret (generated and rotated, shown once), auto-analyze, the exact values to enter in
//! GitHub, and the inbound deliveries it received with their processing and Replay. Every action
//! calls [`super::services`] or [`crate::inbound::kept`], as the JSON API does.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::Kind;
use crate::inbound::kept;
use crate::incidents::pages::IncidentRow;
use crate::people::SignedIn;
use crate::record::pages::deploys::{DeployRow, environment_name};
use crate::record::services::{self, IssuedSecret, NewService, ServiceChanges};
use crate::store::inbound::InboundDelivery;
use crate::store::services::Service;
use crate::store::{deploys, inbound, record};
use crate::web::chart::{self, Bar, BarChart, Series};
use crate::web::once;
use crate::web::{
    Chrome, CsrfForm, CursorQuery, FormErrors, PageResult, Section, Viewer, pretty_json,
    public_base, redirect_with_flash, render, render_with, when,
};
use axum::response::Response;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/services", get(list_page).post(create))
        .route("/services/new", get(new_page))
        .route("/services/{id}", get(service_page).post(update))
        .route("/services/{id}/secret", post(generate_secret))
        .route("/services/{id}/secret/rotate", post(rotate_secret))
        .route("/inbound/{id}", get(inbound_page))
        .route("/inbound/{id}/replay", post(replay))
}

crate::web::pages!(ListPage, NewPage, ServicePage, InboundPage);

fn chrome(viewer: &SignedIn, headers: &HeaderMap, title: impl Into<String>) -> Chrome {
    Chrome::new(viewer, headers, title, Section::Services)
}

struct ServiceRow {
    id: String,
    name: String,
    repository: String,
    secret: bool,
    auto_analyze: bool,
    created: String,
}

#[derive(Template)]
#[template(path = "record/list.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<ServiceRow>,
    next_cursor: Option<String>,
}

async fn list_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Query(query): Query<CursorQuery>,
) -> PageResult {
    let page = PageQuery::new(None, query.cursor);
    let limit = page.limit()?;
    let rows = crate::store::services::list(
        &state.store,
        &viewer.user.tenant_id,
        page.cursor(Kind::Service)?.as_deref(),
        limit,
    )
    .await?;
    let (rows, next_cursor) = next_cursor(rows, limit, |row| row.id.clone());
    Ok(render(&ListPage {
        chrome: chrome(&viewer, &headers, "Services"),
        rows: rows
            .into_iter()
            .map(|service| ServiceRow {
                secret: service.webhook_secret.is_some(),
                auto_analyze: service.auto_analyze,
                created: when(service.created_at),
                id: service.id,
                name: service.name,
                repository: service.repository,
            })
            .collect(),
        next_cursor,
    }))
}

#[derive(Template)]
#[template(path = "record/new.html")]
struct NewPage {
    chrome: Chrome,
    name: String,
    repository: String,
    auto_analyze: bool,
    errors: FormErrors,
}

async fn new_page(Viewer(viewer): Viewer, headers: HeaderMap) -> PageResult {
    Ok(render(&NewPage {
        chrome: chrome(&viewer, &headers, "New service"),
        name: String::new(),
        repository: String::new(),
        auto_analyze: false,
        errors: FormErrors::default(),
    }))
}

async fn create(State(state): State<AppState>, CsrfForm { viewer, form }: CsrfForm) -> PageResult {
    let input = NewService {
        name: form.get("name").to_owned(),
        repository: form.get("repository").to_owned(),
        github_token: Some(form.get("github_token").trim())
            .filter(|token| !token.is_empty())
            .map(str::to_owned),
        auto_analyze: form.checked("auto_analyze"),
    };
    match services::create(&state, &viewer.user.tenant_id, input).await {
        Ok(service) => Ok(redirect_with_flash(
            &format!("/services/{}", service.id),
            "Service created. Generate its webhook secret to connect GitHub.",
        )),
        Err(error) => Ok(render_with(
            StatusCode::UNPROCESSABLE_ENTITY,
            &NewPage {
                errors: FormErrors::from_api(error, &["name", "repository", "github_token"])?,
                chrome: chrome(&viewer, &HeaderMap::new(), "New service"),
                name: form.get("name").to_owned(),
                repository: form.get("repository").to_owned(),
                auto_analyze: form.checked("auto_analyze"),
            },
        )),
    }
}

struct InboundRow {
    id: String,
    event: String,
    action: String,
    delivery_key: String,
    result: String,
    result_class: &'static str,
    received: String,
}

fn result_class(result: &str) -> &'static str {
    match result {
        "processed" => "ok",
        "failed" => "bad",
        _ => "muted",
    }
}

fn inbound_row(delivery: InboundDelivery) -> InboundRow {
    InboundRow {
        result_class: result_class(&delivery.result),
        received: when(delivery.received_at),
        id: delivery.id,
        event: delivery.event,
        action: delivery.action.unwrap_or_default(),
        delivery_key: delivery.delivery_key.unwrap_or_default(),
        result: delivery.result,
    }
}

#[derive(Template)]
#[template(path = "record/service.html")]
struct ServicePage {
    chrome: Chrome,
    service: Service,
    tab: &'static str,
    payload_url: String,
    secret_created: String,
    previous_until: Option<String>,
    shown_secret: Option<String>,
    errors: FormErrors,
    name: String,
    repository: String,
    inbound: Vec<InboundRow>,
    next_inbound: Option<String>,
    /// The fingerprint of the push secret the rotate form replaces.
    secret_fingerprint: String,
    /// The lowercased `owner/name`, as repository hook addresses use it.
    repository_key: String,
    /// Repository hooks exist for `owner/name` repositories (not GitLab subgroups yet).
    hooks_available: bool,
    overview: Overview,
}

/// The state of a service at a glance: where it is deployed, what is on fire, how risky its
/// recent commits are, and whether GitHub's deliveries get through.
struct Overview {
    deploys: Vec<(String, DeployRow)>,
    incidents: Vec<IncidentRow>,
    risk_chart: String,
    risk_legend: String,
    commits_this_week: i64,
    inbound_chart: String,
    inbound_legend: String,
    inbound_summary: String,
}

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

const RISK_SERIES: [Series; 5] = [
    Series {
        name: "low",
        colour: "#12b76a",
    },
    Series {
        name: "medium",
        colour: "#f79009",
    },
    Series {
        name: "high",
        colour: "#f04438",
    },
    Series {
        name: "critical",
        colour: "#7a271a",
    },
    Series {
        name: "not analysed",
        colour: "#d0d5dd",
    },
];

const INBOUND_SERIES: [Series; 3] = [
    Series {
        name: "processed",
        colour: "#12b76a",
    },
    Series {
        name: "ignored",
        colour: "#98a2b3",
    },
    Series {
        name: "failed",
        colour: "#f04438",
    },
];

/// `Mon 7` for a day counted from the epoch.
fn day_label(day: i64) -> String {
    let date = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(day);
    format!("{} {}", &date.weekday().to_string()[..3], date.day())
}

async fn overview(state: &AppState, service: &Service) -> PageResult<Overview> {
    let tenant_id = &service.tenant_id;
    let now = crate::clock::now_ms();
    let deploys = deploys::latest_per_environment(&state.store, tenant_id, &service.id)
        .await?
        .iter()
        .map(|deploy| (environment_name(deploy), DeployRow::of(deploy)))
        .collect();
    let incidents = deploys::unresolved_incidents(&state.store, tenant_id, &service.id, 5)
        .await?
        .iter()
        .map(|incident| IncidentRow::of(incident, &service.name))
        .collect();

    let today = now / DAY_MS;
    let days: Vec<i64> = (today - 6..=today).collect();
    let counted =
        record::risk_by_day(&state.store, tenant_id, &service.id, (today - 6) * DAY_MS).await?;
    let mut risk_bars: Vec<Bar> = days
        .iter()
        .map(|day| Bar {
            label: day_label(*day),
            values: vec![0.0; RISK_SERIES.len()],
            marked: false,
        })
        .collect();
    let mut commits_this_week = 0;
    for (day, level, commits) in counted {
        let Some(bar) = days.iter().position(|d| *d == day) else {
            continue; // committed before the week, received within it
        };
        let series = match level.as_str() {
            "low" => 0,
            "medium" => 1,
            "high" => 2,
            "critical" => 3,
            _ => 4,
        };
        risk_bars[bar].values[series] += commits as f64;
        commits_this_week += commits;
    }
    let risky: f64 = risk_bars
        .iter()
        .map(|bar| bar.values[2] + bar.values[3])
        .sum();
    let risk_chart = chart::stacked_bars(&BarChart {
        id: "risk-by-day",
        title: "Commits of the last 7 days by risk",
        y_label: "commits",
        series: &RISK_SERIES,
        bars: &risk_bars,
        summary: format!(
            "{commits_this_week} commit(s) in the last 7 days, {risky} of them high or critical risk"
        ),
    });

    let hour_now = now / HOUR_MS;
    let hours: Vec<i64> = (hour_now - 23..=hour_now).collect();
    let counted = inbound::hourly_results(
        &state.store,
        tenant_id,
        &service.id,
        (hour_now - 23) * HOUR_MS,
    )
    .await?;
    let mut inbound_bars: Vec<Bar> = hours
        .iter()
        .map(|hour| Bar {
            label: format!("{:02}h", hour % 24),
            values: vec![0.0; INBOUND_SERIES.len()],
            marked: false,
        })
        .collect();
    let mut totals = [0i64; 3];
    for (hour, result, deliveries) in counted {
        let Some(bar) = hours.iter().position(|h| *h == hour) else {
            continue;
        };
        let series = match result.as_str() {
            "processed" => 0,
            "ignored" => 1,
            _ => 2,
        };
        inbound_bars[bar].values[series] += deliveries as f64;
        inbound_bars[bar].marked |= series == 2;
        totals[series] += deliveries;
    }
    let inbound_summary = format!(
        "{} received in the last 24 hours: {} processed, {} ignored, {} failed",
        totals.iter().sum::<i64>(),
        totals[0],
        totals[1],
        totals[2]
    );
    let inbound_chart = chart::stacked_bars(&BarChart {
        id: "inbound-by-hour",
        title: "Inbound deliveries per hour (UTC), last 24 hours",
        y_label: "deliveries",
        series: &INBOUND_SERIES,
        bars: &inbound_bars,
        summary: inbound_summary.clone(),
    });
    Ok(Overview {
        deploys,
        incidents,
        risk_chart,
        risk_legend: chart::legend(&RISK_SERIES),
        commits_this_week,
        inbound_chart,
        inbound_legend: chart::legend(&INBOUND_SERIES),
        inbound_summary,
    })
}

#[derive(Deserialize)]
struct InboundQuery {
    cursor: Option<String>,
}

async fn service_view(
    state: &AppState,
    viewer: &SignedIn,
    headers: &HeaderMap,
    service: Service,
    cursor: Option<String>,
) -> PageResult<ServicePage> {
    let (inbound, next_inbound) = kept::of_target(
        state,
        &viewer.user.tenant_id,
        &service.id,
        &PageQuery::new(None, cursor),
    )
    .await?;
    let now = crate::clock::now_ms();
    let overview = overview(state, &service).await?;
    Ok(ServicePage {
        overview,
        chrome: chrome(viewer, headers, service.name.clone()),
        payload_url: format!("{}/api/github/webhook", public_base(state, headers)),
        secret_created: service
            .webhook_secret_created_at
            .map(when)
            .unwrap_or_default(),
        previous_until: service
            .previous_secret_until
            .filter(|until| *until > now && service.previous_webhook_secret.is_some())
            .map(when),
        shown_secret: None,
        errors: FormErrors::default(),
        name: service.name.clone(),
        repository: service.repository.clone(),
        inbound: inbound.into_iter().map(inbound_row).collect(),
        next_inbound,
        repository_key: service.repository_key.clone(),
        hooks_available: service.repository_key.matches('/').count() == 1,
        secret_fingerprint: service
            .webhook_secret
            .as_deref()
            .map(crate::crypto::fingerprint)
            .unwrap_or_default(),
        service,
        tab: "overview",
    })
}

async fn service_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<InboundQuery>,
) -> PageResult {
    let service = services::load(&state, &viewer.user.tenant_id, &id).await?;
    let mut page = service_view(&state, &viewer, &headers, service, query.cursor).await?;
    if let Some(secret) = once::take(&state, &viewer, &headers, &format!("push-secret:{id}")) {
        page.shown_secret = Some(secret);
        page.chrome.clear_once = true;
    }
    Ok(render(&page))
}

async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    CsrfForm { viewer, form }: CsrfForm,
) -> PageResult {
    let tenant_id = &viewer.user.tenant_id;
    // One settings form sends every field, the auto-analyze box included.
    let token = form.get("github_token").trim();
    let changes = ServiceChanges {
        name: Some(form.get("name").to_owned()),
        repository: Some(form.get("repository").to_owned()),
        github_token: if form.checked("remove_github_token") {
            Some(None)
        } else if token.is_empty() {
            None
        } else {
            Some(Some(token.to_owned()))
        },
        auto_analyze: Some(form.checked("auto_analyze")),
    };
    match services::update(&state, tenant_id, &id, changes).await {
        Ok(service) => Ok(redirect_with_flash(
            &format!("/services/{}", service.id),
            "Service saved.",
        )),
        Err(error) => {
            let errors = FormErrors::from_api(error, &["name", "repository", "github_token"])?;
            let service = services::load(&state, tenant_id, &id).await?;
            let mut page = service_view(&state, &viewer, &headers, service, None).await?;
            page.errors = errors;
            page.name = form.get("name").to_owned();
            page.repository = form.get("repository").to_owned();
            Ok(render_with(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
    }
}

/// Where a new push secret goes: the service's page shows it once.
fn show_secret(state: &AppState, viewer: &SignedIn, id: &str, issued: IssuedSecret) -> Response {
    once::redirect(
        state,
        viewer,
        &format!("/services/{id}"),
        "New webhook secret: copy it now into GitHub's webhook settings.",
        &format!("push-secret:{id}"),
        &issued.secret,
    )
}

async fn generate_secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, .. }: CsrfForm,
) -> PageResult {
    match services::generate_secret(&state, &viewer.user.tenant_id, &id).await {
        Ok(issued) => Ok(show_secret(&state, &viewer, &id, issued)),
        Err(ApiError::Conflict(message)) => {
            Ok(redirect_with_flash(&format!("/services/{id}"), &message))
        }
        Err(error) => Err(error.into()),
    }
}

async fn rotate_secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, form }: CsrfForm,
) -> PageResult {
    let hours = form.get("grace_hours").trim();
    let Some(grace_seconds) = (if hours.is_empty() {
        Some(0)
    } else {
        hours.parse::<u64>().ok()
    })
    .and_then(|hours| hours.checked_mul(3_600)) else {
        return Ok(redirect_with_flash(
            &format!("/services/{id}"),
            "The grace window must be a whole number of hours (0 to 168).",
        ));
    };
    match services::rotate_secret(
        &state,
        &viewer.user.tenant_id,
        &id,
        grace_seconds,
        Some(form.get("replacing")),
    )
    .await
    {
        Ok(issued) => Ok(show_secret(&state, &viewer, &id, issued)),
        Err(ApiError::Conflict(message) | ApiError::Unprocessable(message)) => {
            Ok(redirect_with_flash(&format!("/services/{id}"), &message))
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Template)]
#[template(path = "record/inbound.html")]
struct InboundPage {
    chrome: Chrome,
    delivery: InboundDelivery,
    result_class: &'static str,
    received: String,
    targets: Vec<String>,
    headers_json: String,
    body: String,
    summary: String,
    replayable: bool,
}

async fn inbound_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    let delivery = kept::load(&state, &viewer.user.tenant_id, &id).await?;
    let body = delivery.raw_body()?;
    let body = String::from_utf8_lossy(&body);
    let body = if delivery.content_type.contains("json") {
        pretty_json(&body)
    } else {
        body.into_owned()
    };
    Ok(render(&InboundPage {
        chrome: chrome(
            &viewer,
            &headers,
            format!("Inbound delivery {}", delivery.id),
        ),
        result_class: result_class(&delivery.result),
        received: when(delivery.received_at),
        targets: serde_json::from_str(&delivery.targets).unwrap_or_default(),
        headers_json: pretty_json(&delivery.headers),
        body,
        summary: pretty_json(&delivery.summary),
        replayable: delivery.verification == crate::inbound::verification::VERIFIED,
        delivery,
    }))
}

async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, form }: CsrfForm,
) -> PageResult {
    let page = format!("/inbound/{id}");
    match kept::replay(&state, &viewer.user.tenant_id, &id, form.checked("relay")).await {
        Ok(delivery) => Ok(redirect_with_flash(
            &page,
            &format!("Processing ran again: {}.", delivery.result),
        )),
        Err(ApiError::Conflict(message) | ApiError::Unprocessable(message)) => {
            Ok(redirect_with_flash(&page, &message))
        }
        Err(error) => Err(error.into()),
    }
}
