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
use crate::people::SignedIn;
use crate::record::services::{self, IssuedSecret, NewService, ServiceChanges};
use crate::store::inbound::InboundDelivery;
use crate::store::services::Service;
use crate::web::{
    Chrome, CsrfForm, CursorQuery, FormErrors, PageResult, Section, Viewer, pretty_json,
    public_base, redirect_with_flash, render, render_with, when,
};

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
    Ok(ServicePage {
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
    Ok(render(
        &service_view(&state, &viewer, &headers, service, query.cursor).await?,
    ))
}

async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    CsrfForm { viewer, form }: CsrfForm,
) -> PageResult {
    let tenant_id = &viewer.user.tenant_id;
    // The settings form sends every field; the toggle form sends only `auto_analyze`.
    let changes = if form.get("form") == "auto_analyze" {
        ServiceChanges {
            auto_analyze: Some(form.get("auto_analyze") == "on"),
            ..ServiceChanges::default()
        }
    } else {
        let token = form.get("github_token").trim();
        ServiceChanges {
            name: Some(form.get("name").to_owned()),
            repository: Some(form.get("repository").to_owned()),
            github_token: if form.checked("remove_github_token") {
                Some(None)
            } else if token.is_empty() {
                None
            } else {
                Some(Some(token.to_owned()))
            },
            auto_analyze: None,
        }
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

async fn show_secret(
    state: &AppState,
    viewer: &SignedIn,
    headers: &HeaderMap,
    id: &str,
    issued: IssuedSecret,
) -> PageResult {
    let service = services::load(state, &viewer.user.tenant_id, id).await?;
    let mut page = service_view(state, viewer, headers, service, None).await?;
    page.shown_secret = Some(issued.secret);
    Ok(render(&page))
}

async fn generate_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    CsrfForm { viewer, .. }: CsrfForm,
) -> PageResult {
    match services::generate_secret(&state, &viewer.user.tenant_id, &id).await {
        Ok(issued) => show_secret(&state, &viewer, &headers, &id, issued).await,
        Err(ApiError::Conflict(message)) => {
            Ok(redirect_with_flash(&format!("/services/{id}"), &message))
        }
        Err(error) => Err(error.into()),
    }
}

async fn rotate_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
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
        Ok(issued) => show_secret(&state, &viewer, &headers, &id, issued).await,
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
