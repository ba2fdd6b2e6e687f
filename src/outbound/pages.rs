//! The pages of outbound webhooks (Organization → Integrations → Webhooks): the endpoint list
//! with health, adding an endpoint, an endpoint's page with its actions and delivery history, a
//! delivery with every attempt, and the event type catalog. Every action calls
//! [`super::endpoints`], as the JSON API does.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::endpoints::{self, DeliveryListing, EndpointChanges, NewEndpoint};
use super::event_types::{self, CatalogEntry};
use crate::app::AppState;
use crate::clock;
use crate::http::error::ApiError;
use crate::http::paging::PageQuery;
use crate::people::SignedIn;
use crate::store::outbound::{self as queue, Attempt, Delivery, Endpoint, status};
use crate::web::sparkline::{self, Bucket};
use crate::web::{
    Chrome, CsrfForm, CursorQuery, FormData, FormErrors, PageError, PageResult, Section, Viewer,
    pretty_json, redirect_with_flash, render, render_with, when,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/org/webhooks", get(list_page).post(create))
        .route("/org/webhooks/new", get(new_page))
        .route("/org/webhooks/{id}", get(endpoint_page).post(update))
        .route("/org/webhooks/{id}/test", post(send_test))
        .route("/org/webhooks/{id}/activate", post(activate))
        .route("/org/webhooks/{id}/deactivate", post(deactivate))
        .route("/org/webhooks/{id}/rotate", post(rotate))
        .route("/org/webhooks/{id}/created", get(created_page))
        .route("/org/webhooks/{id}/rotated", get(rotated_page))
        .route("/org/webhooks/{id}/delete", get(delete_page).post(delete))
        .route("/org/webhooks/{id}/recover", post(recover))
        .route("/org/deliveries/{id}", get(delivery_page))
        .route("/org/deliveries/{id}/summary", get(delivery_summary))
        .route("/org/deliveries/{id}/redeliver", post(redeliver))
        .route("/org/event-types", get(event_types_page))
}

crate::web::pages!(
    ListPage,
    NewPage,
    CreatedPage,
    EndpointPage,
    RotatedPage,
    DeletePage,
    DeliveryPage,
    EventTypesPage
);

const FORM_FIELDS: &[&str] = &[
    "url",
    "name",
    "description",
    "event_types",
    "rate_limit_per_second",
];

fn chrome(viewer: &SignedIn, headers: &HeaderMap, title: impl Into<String>) -> Chrome {
    Chrome::new(viewer, headers, title, Section::Webhooks)
}

/// An endpoint's state as people read it.
fn state_of(endpoint: &Endpoint) -> (&'static str, &'static str) {
    match (endpoint.active, &endpoint.disabled_reason) {
        (true, _) => ("active", "ok"),
        (false, Some(_)) => ("disabled automatically", "bad"),
        (false, None) => ("inactive", "muted"),
    }
}

fn types_text(endpoint: &Endpoint) -> String {
    endpoint
        .event_type_filter()
        .map(|types| types.join(", "))
        .unwrap_or_else(|| "all event types".to_owned())
}

/// The badge class of a delivery status.
fn status_class(status: &str) -> &'static str {
    match status {
        status::SUCCEEDED => "ok",
        status::FAILED => "bad",
        status::PAUSED => "muted",
        _ => "warn",
    }
}

// ---- the list -----------------------------------------------------------------------------------

struct EndpointRow {
    id: String,
    name: String,
    url: String,
    types: String,
    state: &'static str,
    state_class: &'static str,
    disabled_reason: Option<String>,
    last_result: String,
    last_class: &'static str,
    sparkline: String,
}

#[derive(Template)]
#[template(path = "outbound/list.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<EndpointRow>,
    next_cursor: Option<String>,
}

const HOURS: i64 = 24;

/// The longest a delivery can take from its publish to its result: every retry step at its
/// longest jitter, with an hour to spare for attempts and a queue that ran behind.
fn longest_delivery_ms(delivery: &crate::config::DeliveryConfig) -> i64 {
    let steps: u64 = delivery.retry_schedule_ms.iter().sum();
    let jittered = steps.saturating_mul(100 + u64::from(delivery.jitter_percent)) / 100;
    i64::try_from(jittered).unwrap_or(i64::MAX / 4) + 3_600_000
}

async fn list_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Query(query): Query<CursorQuery>,
) -> PageResult {
    let tenant_id = &viewer.user.tenant_id;
    let (endpoints, next_cursor) =
        endpoints::list(&state, tenant_id, &PageQuery::new(None, query.cursor)).await?;
    let ids: Vec<String> = endpoints
        .iter()
        .map(|endpoint| endpoint.id.clone())
        .collect();
    let this_hour = clock::now_ms() / 3_600_000;
    let first_hour = this_hour - (HOURS - 1);
    let since = first_hour * 3_600_000;
    let (last, tallies) = queue::endpoint_health(
        &state.store,
        tenant_id,
        &ids,
        since,
        since - longest_delivery_ms(&state.config.delivery),
    )
    .await?;
    let rows = endpoints
        .iter()
        .map(|endpoint| {
            let (state_text, state_class) = state_of(endpoint);
            let mut buckets = vec![Bucket::default(); HOURS as usize];
            for tally in tallies.iter().filter(|t| t.endpoint_id == endpoint.id) {
                if let Some(bucket) = usize::try_from(tally.hour - first_hour)
                    .ok()
                    .and_then(|at| buckets.get_mut(at))
                {
                    *bucket = Bucket {
                        succeeded: tally.succeeded,
                        total: tally.total,
                    };
                }
            }
            let (last_result, last_class) = match last.iter().find(|l| l.endpoint_id == endpoint.id)
            {
                None => ("no deliveries yet".to_owned(), "muted"),
                Some(result) => (
                    format!(
                        "{}{} · {}",
                        result.status,
                        result
                            .last_status_code
                            .map(|code| format!(" ({code})"))
                            .or_else(|| result
                                .last_error_kind
                                .as_ref()
                                .map(|kind| format!(" ({kind})")))
                            .unwrap_or_default(),
                        when(result.updated_at)
                    ),
                    status_class(&result.status),
                ),
            };
            EndpointRow {
                id: endpoint.id.clone(),
                name: endpoint.name.clone(),
                url: endpoint.url.clone(),
                types: types_text(endpoint),
                state: state_text,
                state_class,
                disabled_reason: endpoint.disabled_reason.clone(),
                last_result,
                last_class,
                sparkline: sparkline::success_rate(&buckets),
            }
        })
        .collect();
    Ok(render(&ListPage {
        chrome: chrome(&viewer, &headers, "Webhooks"),
        rows,
        next_cursor,
    }))
}

// ---- adding an endpoint -------------------------------------------------------------------------

struct TypeChoice {
    name: String,
    description: String,
    checked: bool,
}

#[derive(Template)]
#[template(path = "outbound/new.html")]
struct NewPage {
    chrome: Chrome,
    url: String,
    name: String,
    description: String,
    rate_limit: String,
    types: Vec<TypeChoice>,
    errors: FormErrors,
}

async fn choices(
    state: &AppState,
    tenant_id: &str,
    chosen: &[String],
) -> PageResult<Vec<TypeChoice>> {
    Ok(event_types::catalog(&state.store, tenant_id)
        .await?
        .into_iter()
        .map(|entry| TypeChoice {
            checked: chosen.contains(&entry.name),
            name: entry.name,
            description: entry.description,
        })
        .collect())
}

async fn new_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
) -> PageResult {
    Ok(render(&NewPage {
        types: choices(&state, &viewer.user.tenant_id, &[]).await?,
        chrome: chrome(&viewer, &headers, "Add endpoint"),
        url: String::new(),
        name: String::new(),
        description: String::new(),
        rate_limit: String::new(),
        errors: FormErrors::default(),
    }))
}

/// The rate limit typed in a form: empty means none.
fn typed_rate_limit(form: &FormData) -> Result<Option<i64>, ApiError> {
    let typed = form.get("rate_limit_per_second").trim();
    if typed.is_empty() {
        return Ok(None);
    }
    typed.parse::<i64>().map(Some).map_err(|_| {
        ApiError::Unprocessable(format!(
            "rate_limit_per_second must be a whole number of attempts per second (1–{}), or empty for no limit",
            endpoints::MAX_RATE_LIMIT
        ))
    })
}

/// The event types ticked in a form: none ticked means every type.
fn chosen_types(form: &FormData) -> Option<Vec<String>> {
    let types = form.all("event_types");
    (!types.is_empty()).then_some(types)
}

#[derive(Template)]
#[template(path = "outbound/created.html")]
struct CreatedPage {
    chrome: Chrome,
    id: String,
    name: String,
    /// Shown on the first visit after the form only.
    secret: Option<String>,
}

/// What a new or rotated endpoint's page shows once, carried across the redirect.
#[derive(serde::Serialize, serde::Deserialize)]
struct IssuedSecret {
    secret: String,
    /// When the replaced secret stops signing (after a rotation).
    previous_until: Option<i64>,
}

fn carry_secret(
    state: &AppState,
    viewer: &SignedIn,
    to: &str,
    flash: &str,
    purpose: &str,
    issued: &IssuedSecret,
) -> Response {
    let value = serde_json::to_string(issued).unwrap_or_default();
    crate::web::once::redirect(state, viewer, to, flash, purpose, &value)
}

fn carried_secret(
    state: &AppState,
    viewer: &SignedIn,
    headers: &HeaderMap,
    purpose: &str,
) -> Option<IssuedSecret> {
    crate::web::once::take(state, viewer, headers, purpose)
        .and_then(|value| serde_json::from_str(&value).ok())
}

async fn created_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    let endpoint = endpoints::load(&state, &viewer.user.tenant_id, &id).await?;
    let issued = carried_secret(&state, &viewer, &headers, &format!("endpoint-secret:{id}"));
    let mut chrome = chrome(&viewer, &headers, "Endpoint added");
    chrome.clear_once = issued.is_some();
    Ok(render(&CreatedPage {
        chrome,
        id: endpoint.id,
        name: endpoint.name,
        secret: issued.map(|issued| issued.secret),
    }))
}

async fn create(State(state): State<AppState>, CsrfForm { viewer, form }: CsrfForm) -> PageResult {
    let created = match typed_rate_limit(&form) {
        Ok(rate_limit_per_second) => {
            let input = NewEndpoint {
                url: form.get("url").to_owned(),
                name: form.get("name").to_owned(),
                description: form.get("description").to_owned(),
                event_types: chosen_types(&form),
                rate_limit_per_second,
            };
            endpoints::create(&state, &viewer.user.tenant_id, input).await
        }
        Err(error) => Err(error),
    };
    match created {
        Ok((endpoint, secret)) => Ok(carry_secret(
            &state,
            &viewer,
            &format!("/org/webhooks/{}/created", endpoint.id),
            "Endpoint added.",
            &format!("endpoint-secret:{}", endpoint.id),
            &IssuedSecret {
                secret,
                previous_until: None,
            },
        )),
        Err(error) => {
            let errors = FormErrors::from_api(error, FORM_FIELDS)?;
            Ok(render_with(
                StatusCode::UNPROCESSABLE_ENTITY,
                &NewPage {
                    types: choices(&state, &viewer.user.tenant_id, &form.all("event_types"))
                        .await?,
                    chrome: chrome(&viewer, &HeaderMap::new(), "Add endpoint"),
                    url: form.get("url").to_owned(),
                    name: form.get("name").to_owned(),
                    description: form.get("description").to_owned(),
                    rate_limit: form.get("rate_limit_per_second").to_owned(),
                    errors,
                },
            ))
        }
    }
}

// ---- an endpoint --------------------------------------------------------------------------------

/// A delivery as the delivery tables show it (webhooks and repository hooks alike).
pub(crate) struct DeliveryRow {
    pub(crate) id: String,
    pub(crate) event_type: String,
    pub(crate) status: String,
    pub(crate) status_class: &'static str,
    pub(crate) attempts: i64,
    pub(crate) last: String,
    pub(crate) created: String,
}

pub(crate) fn delivery_row(delivery: &Delivery) -> DeliveryRow {
    DeliveryRow {
        id: delivery.id.clone(),
        event_type: delivery.event_type.clone(),
        status: delivery.status.clone(),
        status_class: status_class(&delivery.status),
        attempts: delivery.attempt_count,
        last: delivery
            .last_status_code
            .map(|code| format!("HTTP {code}"))
            .or_else(|| delivery.last_error_kind.clone())
            .unwrap_or_else(|| "—".to_owned()),
        created: when(delivery.created_at),
    }
}

#[derive(Deserialize, Default)]
struct DeliveryFilterQuery {
    status: Option<String>,
    event_type: Option<String>,
    since: Option<String>,
    cursor: Option<String>,
}

/// A `datetime-local` value (`2026-03-21T14:30`, read as UTC) or an RFC 3339 time, as RFC 3339.
fn as_rfc3339(text: &str) -> String {
    let text = text.trim();
    if clock::parse_rfc3339_ms(text).is_some() {
        return text.to_owned();
    }
    match text.len() {
        16 => format!("{text}:00Z"),
        19 | 23 => format!("{text}Z"),
        _ => text.to_owned(),
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

#[derive(Template)]
#[template(path = "outbound/endpoint.html")]
struct EndpointPage {
    chrome: Chrome,
    endpoint: Endpoint,
    /// The edit form's values (what was typed, after a refused save).
    url: String,
    name: String,
    description: String,
    rate_limit: String,
    state: &'static str,
    state_class: &'static str,
    created: String,
    disabled_at: String,
    previous_until: Option<String>,
    types: Vec<TypeChoice>,
    errors: FormErrors,
    deliveries: Vec<DeliveryRow>,
    filter_status: String,
    filter_type: String,
    filter_since: String,
    filter_error: Option<String>,
    next_page: Option<String>,
    statuses: [&'static str; 4],
    /// The fingerprint of the secret the rotate form replaces.
    secret_fingerprint: String,
    /// Deliveries held while the endpoint is inactive.
    held: i64,
}

async fn endpoint_view(
    state: &AppState,
    viewer: &SignedIn,
    headers: &HeaderMap,
    endpoint: Endpoint,
    query: DeliveryFilterQuery,
    errors: FormErrors,
) -> PageResult<EndpointPage> {
    let tenant_id = &viewer.user.tenant_id;
    let filter_status = non_empty(query.status).unwrap_or_default();
    let filter_type = non_empty(query.event_type).unwrap_or_default();
    let filter_since = non_empty(query.since).unwrap_or_default();
    let listing = DeliveryListing {
        status: (!filter_status.is_empty()).then(|| filter_status.clone()),
        event_type: (!filter_type.is_empty()).then(|| filter_type.clone()),
        since: (!filter_since.is_empty()).then(|| as_rfc3339(&filter_since)),
        limit: None,
        cursor: non_empty(query.cursor),
    };
    let (deliveries, next_cursor, filter_error) =
        match endpoints::deliveries(state, tenant_id, &endpoint.id, listing).await {
            Ok((_, rows, next)) => (rows, next, None),
            Err(ApiError::BadRequest(message)) => (Vec::new(), None, Some(message)),
            Err(other) => return Err(other.into()),
        };
    let next_page = next_cursor.map(|cursor| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("status", &filter_status);
        query.append_pair("event_type", &filter_type);
        query.append_pair("since", &filter_since);
        query.append_pair("cursor", &cursor);
        format!("/org/webhooks/{}?{}", endpoint.id, query.finish())
    });
    let chosen = endpoint.event_type_filter();
    let (state_text, state_class) = state_of(&endpoint);
    let now = clock::now_ms();
    Ok(EndpointPage {
        chrome: chrome(viewer, headers, endpoint.name.clone()),
        state: state_text,
        state_class,
        created: when(endpoint.created_at),
        disabled_at: endpoint.disabled_at.map(when).unwrap_or_default(),
        previous_until: endpoint
            .previous_secret_until
            .filter(|until| *until > now)
            .map(when),
        types: choices(state, tenant_id, &chosen.unwrap_or_default()).await?,
        errors,
        deliveries: deliveries.iter().map(delivery_row).collect(),
        filter_status,
        filter_type,
        filter_since,
        filter_error,
        next_page,
        statuses: status::ALL,
        secret_fingerprint: crate::crypto::fingerprint(&endpoint.secret),
        held: if endpoint.active {
            0
        } else {
            queue::count_paused(&state.store, &endpoint.id).await?
        },
        url: endpoint.url.clone(),
        name: endpoint.name.clone(),
        description: endpoint.description.clone(),
        rate_limit: endpoint
            .rate_limit_per_second
            .map(|limit| limit.to_string())
            .unwrap_or_default(),
        endpoint,
    })
}

async fn endpoint_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<DeliveryFilterQuery>,
) -> PageResult {
    let endpoint = endpoints::load(&state, &viewer.user.tenant_id, &id).await?;
    let page = endpoint_view(
        &state,
        &viewer,
        &headers,
        endpoint,
        query,
        FormErrors::default(),
    )
    .await?;
    Ok(render(&page))
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, form }: CsrfForm,
) -> PageResult {
    let tenant_id = &viewer.user.tenant_id;
    let updated = match typed_rate_limit(&form) {
        Ok(rate_limit) => {
            let changes = EndpointChanges {
                url: Some(form.get("url").to_owned()),
                name: Some(form.get("name").to_owned()),
                description: Some(form.get("description").to_owned()),
                event_types: Some(chosen_types(&form)),
                active: None,
                rate_limit_per_second: Some(rate_limit),
            };
            endpoints::update(&state, tenant_id, &id, changes).await
        }
        Err(error) => Err(error),
    };
    match updated {
        Ok(endpoint) => Ok(redirect_with_flash(
            &format!("/org/webhooks/{}", endpoint.id),
            "Endpoint saved.",
        )),
        Err(error) => {
            let errors = FormErrors::from_api(error, FORM_FIELDS)?;
            let endpoint = endpoints::load(&state, tenant_id, &id).await?;
            let mut page = endpoint_view(
                &state,
                &viewer,
                &HeaderMap::new(),
                endpoint,
                DeliveryFilterQuery::default(),
                errors,
            )
            .await?;
            page.url = form.get("url").to_owned();
            page.name = form.get("name").to_owned();
            page.description = form.get("description").to_owned();
            page.rate_limit = form.get("rate_limit_per_second").to_owned();
            let ticked = form.all("event_types");
            for choice in &mut page.types {
                choice.checked = ticked.contains(&choice.name);
            }
            Ok(render_with(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
    }
}

fn endpoint_url(id: &str) -> String {
    format!("/org/webhooks/{id}")
}

async fn send_test(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    CsrfForm { viewer, .. }: CsrfForm,
) -> PageResult {
    let outcome = endpoints::send_test(&state, &viewer.user.tenant_id, &id).await;
    if headers.contains_key("hx-request") {
        // htmx swaps this fragment in and it follows the attempt until it finishes.
        return Ok(match outcome {
            Ok(ping) => summary_fragment(&state, &viewer, &ping.delivery_id, 0).await?,
            Err(error) if !matches!(error, ApiError::Internal(_)) => fragment(&TestFragment {
                delivery: None,
                error: Some(error.to_string()),
            }),
            Err(error) => return Err(error.into()),
        });
    }
    match outcome {
        Ok(ping) => Ok(redirect_with_flash(
            &endpoint_url(&id),
            &format!("Test ping queued as delivery {}.", ping.delivery_id),
        )),
        Err(ApiError::Conflict(message)) => Ok(redirect_with_flash(&endpoint_url(&id), &message)),
        Err(error) => Err(error.into()),
    }
}

struct AttemptSummary {
    id: String,
    /// How many times the fragment has asked so far.
    polls: u32,
    status: String,
    status_class: &'static str,
    finished: bool,
    outcome: String,
}

#[derive(Template)]
#[template(path = "outbound/test_result.html")]
struct TestFragment {
    delivery: Option<AttemptSummary>,
    error: Option<String>,
}

fn fragment(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => axum::response::Html(html).into_response(),
        Err(error) => PageError::Api(ApiError::internal(error)).into_response(),
    }
}

/// The fragment asks again every half second while the attempt is under way, for at most this
/// many times (then the delivery page tells the rest).
const MAX_POLLS: u32 = 60;

async fn summary_fragment(
    state: &AppState,
    viewer: &SignedIn,
    delivery_id: &str,
    polls: u32,
) -> PageResult {
    let delivery = endpoints::load_delivery(state, &viewer.user.tenant_id, delivery_id).await?;
    let attempts = queue::attempts_of(&state.store, &delivery.id).await?;
    let outcome = match attempts.last() {
        None => "waiting for the first attempt…".to_owned(),
        Some(attempt) => format!(
            "attempt {}: {} in {} ms",
            attempt.attempt_number,
            attempt
                .response_status
                .map(|code| format!("HTTP {code}"))
                .or_else(|| attempt.error_kind.clone())
                .unwrap_or_else(|| "no answer".to_owned()),
            attempt.duration_ms
        ),
    };
    Ok(fragment(&TestFragment {
        delivery: Some(AttemptSummary {
            finished: delivery.status != status::PENDING
                || !attempts.is_empty()
                || polls >= MAX_POLLS,
            polls: polls + 1,
            status_class: status_class(&delivery.status),
            status: delivery.status,
            id: delivery.id,
            outcome,
        }),
        error: None,
    }))
}

#[derive(Deserialize)]
struct PollQuery {
    #[serde(default)]
    polls: u32,
}

async fn delivery_summary(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Path(id): Path<String>,
    Query(query): Query<PollQuery>,
) -> PageResult {
    summary_fragment(&state, &viewer, &id, query.polls).await
}

async fn activate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, form }: CsrfForm,
) -> PageResult {
    let tenant_id = &viewer.user.tenant_id;
    let discarded = if form.checked("discard_held") {
        Some(endpoints::discard_held(&state, tenant_id, &id).await?)
    } else {
        None
    };
    endpoints::set_active(&state, tenant_id, &id, true).await?;
    Ok(redirect_with_flash(
        &endpoint_url(&id),
        &match discarded {
            Some(count) => format!("Endpoint activated; {count} held deliveries discarded."),
            None => "Endpoint activated: held deliveries are sent, in order.".to_owned(),
        },
    ))
}

async fn deactivate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, .. }: CsrfForm,
) -> PageResult {
    endpoints::set_active(&state, &viewer.user.tenant_id, &id, false).await?;
    Ok(redirect_with_flash(
        &endpoint_url(&id),
        "Endpoint deactivated: deliveries wait until it is active again.",
    ))
}

#[derive(Template)]
#[template(path = "outbound/rotated.html")]
struct RotatedPage {
    chrome: Chrome,
    id: String,
    name: String,
    /// Shown on the first visit after the form only.
    secret: Option<String>,
    previous_until: String,
}

async fn rotated_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    let endpoint = endpoints::load(&state, &viewer.user.tenant_id, &id).await?;
    let issued = carried_secret(&state, &viewer, &headers, &format!("rotated-secret:{id}"));
    let mut chrome = chrome(&viewer, &headers, "Secret rotated");
    chrome.clear_once = issued.is_some();
    Ok(render(&RotatedPage {
        chrome,
        id: endpoint.id,
        name: endpoint.name,
        previous_until: issued
            .as_ref()
            .and_then(|issued| issued.previous_until)
            .map(when)
            .unwrap_or_default(),
        secret: issued.map(|issued| issued.secret),
    }))
}

async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, form }: CsrfForm,
) -> PageResult {
    let endpoint = endpoints::load(&state, &viewer.user.tenant_id, &id).await?;
    let rotated = match endpoints::rotate_secret(
        &state,
        &viewer.user.tenant_id,
        &endpoint.id,
        Some(form.get("replacing")),
    )
    .await
    {
        Ok(rotated) => rotated,
        Err(ApiError::Conflict(message)) => {
            return Ok(redirect_with_flash(&endpoint_url(&endpoint.id), &message));
        }
        Err(error) => return Err(error.into()),
    };
    Ok(carry_secret(
        &state,
        &viewer,
        &format!("/org/webhooks/{}/rotated", endpoint.id),
        "Signing secret rotated.",
        &format!("rotated-secret:{}", endpoint.id),
        &IssuedSecret {
            secret: rotated.secret,
            previous_until: Some(rotated.previous_until),
        },
    ))
}

#[derive(Template)]
#[template(path = "outbound/delete.html")]
struct DeletePage {
    chrome: Chrome,
    endpoint: Endpoint,
}

async fn delete_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    let endpoint = endpoints::load(&state, &viewer.user.tenant_id, &id).await?;
    Ok(render(&DeletePage {
        chrome: chrome(&viewer, &headers, format!("Delete {}", endpoint.name)),
        endpoint,
    }))
}

async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, form }: CsrfForm,
) -> PageResult {
    if form.get("confirm") != "delete" {
        return Ok(Redirect::to(&format!("/org/webhooks/{id}/delete")).into_response());
    }
    let endpoint = endpoints::delete(&state, &viewer.user.tenant_id, &id).await?;
    Ok(redirect_with_flash(
        "/org/webhooks",
        &format!("Endpoint {} deleted with its deliveries.", endpoint.name),
    ))
}

async fn recover(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, form }: CsrfForm,
) -> PageResult {
    let since = as_rfc3339(form.get("since"));
    match endpoints::recover(&state, &viewer.user.tenant_id, &id, &since).await {
        Ok(requeued) => Ok(redirect_with_flash(
            &endpoint_url(&id),
            &format!("{requeued} failed deliveries queued again."),
        )),
        Err(ApiError::BadRequest(message)) => Ok(redirect_with_flash(&endpoint_url(&id), &message)),
        Err(error) => Err(error.into()),
    }
}

// ---- a delivery ---------------------------------------------------------------------------------

struct AttemptView {
    number: i64,
    started: String,
    duration_ms: i64,
    succeeded: bool,
    url: String,
    error_kind: String,
    error_message: String,
    request_headers: String,
    response_status: String,
    response_headers: String,
    response_body: String,
}

fn attempt_view(attempt: Attempt) -> AttemptView {
    AttemptView {
        number: attempt.attempt_number,
        started: when(attempt.started_at),
        duration_ms: attempt.duration_ms,
        succeeded: attempt.succeeded,
        url: attempt.url,
        error_kind: attempt.error_kind.unwrap_or_default(),
        error_message: attempt.error_message.unwrap_or_default(),
        request_headers: pretty_json(&attempt.request_headers),
        response_status: attempt
            .response_status
            .map(|code| code.to_string())
            .unwrap_or_else(|| "no response".to_owned()),
        response_headers: attempt
            .response_headers
            .as_deref()
            .map(pretty_json)
            .unwrap_or_default(),
        response_body: attempt.response_body.unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "outbound/delivery.html")]
struct DeliveryPage {
    chrome: Chrome,
    delivery: Delivery,
    /// A repository hook's delivery (its page sits under the repository, not the webhooks).
    hook: bool,
    parent_url: String,
    parent_name: String,
    status_class: &'static str,
    created: String,
    next_attempt: String,
    payload: String,
    attempts: Vec<AttemptView>,
}

async fn delivery_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    let tenant_id = &viewer.user.tenant_id;
    let delivery = endpoints::load_delivery(&state, tenant_id, &id).await?;
    // A repository hook's deliveries are shown here too, under their repository.
    let endpoint = queue::get_endpoint(&state.store, tenant_id, &delivery.endpoint_id).await?;
    let (parent_url, parent_name) = match &endpoint.repository_key {
        Some(repository) if endpoint.is_repository_hook() => (
            format!("/{repository}/-/settings/hooks/{}", endpoint.id),
            format!("{repository} › Webhooks › {}", endpoint.url),
        ),
        _ => (endpoint_url(&endpoint.id), endpoint.name.clone()),
    };
    let payload = queue::event_payload(&state.store, &delivery.event_id).await?;
    let attempts = queue::attempts_of(&state.store, &delivery.id).await?;
    Ok(render(&DeliveryPage {
        chrome: chrome(&viewer, &headers, format!("Delivery {}", delivery.id)),
        hook: endpoint.is_repository_hook(),
        parent_url,
        parent_name,
        status_class: status_class(&delivery.status),
        created: when(delivery.created_at),
        next_attempt: match (delivery.status.as_str(), delivery.next_attempt_at) {
            (status::PENDING, Some(at)) => when(at),
            _ => String::new(),
        },
        payload: pretty_json(&payload),
        attempts: attempts.into_iter().map(attempt_view).collect(),
        delivery,
    }))
}

async fn redeliver(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, .. }: CsrfForm,
) -> PageResult {
    let page = format!("/org/deliveries/{id}");
    match endpoints::redeliver(&state, &viewer.user.tenant_id, &id).await {
        Ok(_) => Ok(redirect_with_flash(&page, "Queued for delivery again.")),
        Err(ApiError::Conflict(message)) => Ok(redirect_with_flash(&page, &message)),
        Err(error) => Err(error.into()),
    }
}

// ---- event types --------------------------------------------------------------------------------

struct EventTypeView {
    name: String,
    description: String,
    built_in: bool,
    schema: String,
    example: String,
}

#[derive(Template)]
#[template(path = "outbound/event_types.html")]
struct EventTypesPage {
    chrome: Chrome,
    types: Vec<EventTypeView>,
}

fn event_type_view(tenant_id: &str, entry: CatalogEntry) -> EventTypeView {
    let example = event_types::example_envelope(tenant_id, &entry.name, &entry.schema);
    EventTypeView {
        schema: serde_json::to_string_pretty(&entry.schema).unwrap_or_default(),
        example: serde_json::to_string_pretty(&example).unwrap_or_default(),
        name: entry.name,
        description: entry.description,
        built_in: entry.built_in,
    }
}

async fn event_types_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
) -> PageResult {
    let tenant_id = &viewer.user.tenant_id;
    let types = event_types::catalog(&state.store, tenant_id)
        .await?
        .into_iter()
        .map(|entry| event_type_view(tenant_id, entry))
        .collect();
    Ok(render(&EventTypesPage {
        chrome: Chrome::new(&viewer, &headers, "Event types", Section::EventTypes),
        types,
    }))
}
