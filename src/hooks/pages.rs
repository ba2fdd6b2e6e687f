//! A repository's webhook settings (`/<owner>/<repo>/-/settings/hooks`), as GitLab lays them
//! out: the hooks with their state, Add webhook, and a hook's page with Test, enable/disable,
//! delete, edit and its recent deliveries. Every action calls the operations in [`super`], as the
//! API does.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

use super::{EVENTS, FORMAT_GITLAB, HookChanges, NewHook};
use crate::app::AppState;
use crate::http::paging::PageQuery;
use crate::outbound::endpoints::{self, DeliveryListing};
use crate::outbound::pages::{DeliveryRow, delivery_row};
use crate::people::SignedIn;
use crate::store::outbound::Endpoint;
use crate::web::{
    Chrome, CsrfForm, CursorQuery, FormData, FormErrors, PageResult, Section, Viewer,
    redirect_with_flash, render, render_with,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/{owner}/{repo}/-/settings/hooks",
            get(settings_page).post(create),
        )
        .route(
            "/{owner}/{repo}/-/settings/hooks/{id}",
            get(hook_page).post(update),
        )
        .route("/{owner}/{repo}/-/settings/hooks/{id}/test", post(test))
        .route("/{owner}/{repo}/-/settings/hooks/{id}/enable", post(enable))
        .route(
            "/{owner}/{repo}/-/settings/hooks/{id}/disable",
            post(disable),
        )
        .route("/{owner}/{repo}/-/settings/hooks/{id}/delete", post(delete))
}

crate::web::pages!(SettingsPage, HookPage);

const FIELDS: &[&str] = &["url", "token", "events", "payload_format"];

fn description(event: &str) -> &'static str {
    match event {
        "push" => "commits pushed, branches and tags created or deleted",
        "merge_request" => "pull requests opened, updated, merged or closed",
        "note" => "comments on pull requests and issues",
        "issue" => "issues opened, updated or closed",
        _ => "CI runs and check suites changing status",
    }
}

struct EventChoice {
    name: &'static str,
    description: &'static str,
    checked: bool,
}

fn event_choices(chosen: &[String]) -> Vec<EventChoice> {
    EVENTS
        .iter()
        .map(|name| EventChoice {
            name,
            description: description(name),
            checked: chosen.iter().any(|event| event == name),
        })
        .collect()
}

fn state_of(hook: &Endpoint) -> (String, &'static str) {
    match (
        super::state_of(hook, crate::clock::now_ms()),
        &hook.disabled_reason,
    ) {
        ("temporarily_disabled", _) => (
            format!(
                "temporarily disabled until {}",
                crate::web::when(hook.disabled_until.unwrap_or_default())
            ),
            "warn",
        ),
        ("enabled", _) => ("enabled".to_owned(), "ok"),
        (_, Some(_)) => ("disabled automatically".to_owned(), "bad"),
        _ => ("disabled".to_owned(), "muted"),
    }
}

struct HookRow {
    id: String,
    url: String,
    events: String,
    format: String,
    state: String,
    state_class: &'static str,
    reason: Option<String>,
}

#[derive(Template)]
#[template(path = "hooks/settings.html")]
struct SettingsPage {
    chrome: Chrome,
    repository: String,
    hooks: Vec<HookRow>,
    next_cursor: Option<String>,
    url: String,
    token_configured: bool,
    events: Vec<EventChoice>,
    format: String,
    errors: FormErrors,
}

fn chrome(viewer: &SignedIn, headers: &HeaderMap, title: impl Into<String>) -> Chrome {
    Chrome::new(viewer, headers, title, Section::Services)
}

async fn settings_view(
    state: &AppState,
    viewer: &SignedIn,
    headers: &HeaderMap,
    repository: String,
    cursor: Option<String>,
) -> PageResult<SettingsPage> {
    let (hooks, next_cursor) = super::list(
        state,
        &viewer.user.tenant_id,
        &repository,
        &PageQuery::new(None, cursor),
    )
    .await?;
    Ok(SettingsPage {
        chrome: chrome(viewer, headers, format!("Webhooks of {repository}")),
        hooks: hooks
            .iter()
            .map(|hook| {
                let (state, state_class) = state_of(hook);
                HookRow {
                    id: hook.id.clone(),
                    url: hook.url.clone(),
                    events: hook.event_type_filter().unwrap_or_default().join(", "),
                    format: hook.payload_format.clone().unwrap_or_default(),
                    state,
                    state_class,
                    reason: hook.disabled_reason.clone(),
                }
            })
            .collect(),
        next_cursor,
        repository,
        url: String::new(),
        token_configured: false,
        events: event_choices(&["push".to_owned()]),
        format: FORMAT_GITLAB.to_owned(),
        errors: FormErrors::default(),
    })
}

async fn settings_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
    Query(query): Query<CursorQuery>,
) -> PageResult {
    let repository = super::repository_key(&owner, &repo)?;
    let page = settings_view(&state, &viewer, &headers, repository, query.cursor).await?;
    Ok(render(&page))
}

fn hook_url(repository: &str, id: &str) -> String {
    format!("/{repository}/-/settings/hooks/{id}")
}

/// The token field: empty keeps the stored token (or none), `remove_token` removes it.
fn token_change(form: &FormData) -> Option<Option<String>> {
    let token = form.get("token");
    if form.checked("remove_token") {
        Some(None)
    } else if token.is_empty() {
        None
    } else {
        Some(Some(token.to_owned()))
    }
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
    CsrfForm { viewer, form }: CsrfForm,
) -> PageResult {
    let repository = super::repository_key(&owner, &repo)?;
    let input = NewHook {
        url: form.get("url").to_owned(),
        token: Some(form.get("token").to_owned()).filter(|token| !token.is_empty()),
        events: Some(form.all("events")),
        format: Some(form.get("payload_format").to_owned()).filter(|f| !f.is_empty()),
    };
    match super::create(&state, &viewer.user.tenant_id, &repository, input).await {
        Ok(hook) => Ok(redirect_with_flash(
            &hook_url(&repository, &hook.id),
            "Webhook added. Test sends it a sample push.",
        )),
        Err(error) => {
            let errors = FormErrors::from_api(error, FIELDS)?;
            let mut page = settings_view(&state, &viewer, &headers, repository, None).await?;
            page.errors = errors;
            page.url = form.get("url").to_owned();
            page.events = event_choices(&form.all("events"));
            page.format = form.get("payload_format").to_owned();
            Ok(render_with(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
    }
}

#[derive(Template)]
#[template(path = "hooks/hook.html")]
struct HookPage {
    chrome: Chrome,
    repository: String,
    hook: Endpoint,
    state: String,
    state_class: &'static str,
    deliveries: Vec<DeliveryRow>,
    next_cursor: Option<String>,
    url: String,
    token_configured: bool,
    events: Vec<EventChoice>,
    format: String,
    errors: FormErrors,
}

async fn hook_view(
    state: &AppState,
    viewer: &SignedIn,
    headers: &HeaderMap,
    repository: String,
    hook: Endpoint,
    cursor: Option<String>,
) -> PageResult<HookPage> {
    let listing = DeliveryListing {
        cursor,
        ..DeliveryListing::default()
    };
    let (deliveries, next_cursor) =
        endpoints::deliveries_of(state, &viewer.user.tenant_id, &hook, listing).await?;
    let (state_text, state_class) = state_of(&hook);
    Ok(HookPage {
        chrome: chrome(viewer, headers, format!("Hook {}", hook.url)),
        state: state_text,
        state_class,
        deliveries: deliveries.iter().map(delivery_row).collect(),
        next_cursor,
        url: hook.url.clone(),
        token_configured: super::token_of(&state.cipher, &hook).is_ok_and(|t| t.is_some()),
        events: event_choices(&hook.event_type_filter().unwrap_or_default()),
        format: hook.payload_format.clone().unwrap_or_default(),
        errors: FormErrors::default(),
        repository,
        hook,
    })
}

async fn hook_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Path((owner, repo, id)): Path<(String, String, String)>,
    Query(query): Query<CursorQuery>,
) -> PageResult {
    let repository = super::repository_key(&owner, &repo)?;
    let hook = super::load(&state, &viewer.user.tenant_id, &repository, &id).await?;
    let page = hook_view(&state, &viewer, &headers, repository, hook, query.cursor).await?;
    Ok(render(&page))
}

async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((owner, repo, id)): Path<(String, String, String)>,
    CsrfForm { viewer, form }: CsrfForm,
) -> PageResult {
    let repository = super::repository_key(&owner, &repo)?;
    let tenant_id = &viewer.user.tenant_id;
    let changes = HookChanges {
        url: Some(form.get("url").to_owned()),
        token: token_change(&form),
        events: Some(form.all("events")),
        format: Some(form.get("payload_format").to_owned()).filter(|f| !f.is_empty()),
        enabled: None,
    };
    match super::update(&state, tenant_id, &repository, &id, changes).await {
        Ok(hook) => Ok(redirect_with_flash(
            &hook_url(&repository, &hook.id),
            "Webhook saved.",
        )),
        Err(error) => {
            let errors = FormErrors::from_api(error, FIELDS)?;
            let hook = super::load(&state, tenant_id, &repository, &id).await?;
            let mut page = hook_view(&state, &viewer, &headers, repository, hook, None).await?;
            page.errors = errors;
            page.url = form.get("url").to_owned();
            page.events = event_choices(&form.all("events"));
            page.format = form.get("payload_format").to_owned();
            Ok(render_with(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
    }
}

async fn test(
    State(state): State<AppState>,
    Path((owner, repo, id)): Path<(String, String, String)>,
    CsrfForm { viewer, .. }: CsrfForm,
) -> PageResult {
    let repository = super::repository_key(&owner, &repo)?;
    let delivery = super::test(&state, &viewer.user.tenant_id, &repository, &id).await?;
    Ok(redirect_with_flash(
        &hook_url(&repository, &id),
        &format!("A sample push was queued as delivery {delivery}."),
    ))
}

async fn set_enabled(
    state: &AppState,
    viewer: &SignedIn,
    owner: &str,
    repo: &str,
    id: &str,
    enabled: bool,
) -> PageResult {
    let repository = super::repository_key(owner, repo)?;
    let changes = HookChanges {
        enabled: Some(enabled),
        ..HookChanges::default()
    };
    super::update(state, &viewer.user.tenant_id, &repository, id, changes).await?;
    Ok(redirect_with_flash(
        &hook_url(&repository, id),
        if enabled {
            "Webhook enabled."
        } else {
            "Webhook disabled: events for it wait until it is enabled again."
        },
    ))
}

async fn enable(
    State(state): State<AppState>,
    Path((owner, repo, id)): Path<(String, String, String)>,
    CsrfForm { viewer, .. }: CsrfForm,
) -> PageResult {
    set_enabled(&state, &viewer, &owner, &repo, &id, true).await
}

async fn disable(
    State(state): State<AppState>,
    Path((owner, repo, id)): Path<(String, String, String)>,
    CsrfForm { viewer, .. }: CsrfForm,
) -> PageResult {
    set_enabled(&state, &viewer, &owner, &repo, &id, false).await
}

async fn delete(
    State(state): State<AppState>,
    Path((owner, repo, id)): Path<(String, String, String)>,
    CsrfForm { viewer, .. }: CsrfForm,
) -> PageResult {
    let repository = super::repository_key(&owner, &repo)?;
    let hook = super::delete(&state, &viewer.user.tenant_id, &repository, &id).await?;
    Ok(redirect_with_flash(
        &format!("/{repository}/-/settings/hooks"),
        &format!("Webhook {} deleted.", hook.url),
    ))
}
