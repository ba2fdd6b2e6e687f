//! The operations on webhook endpoints and their deliveries, shared by the JSON API and the web
//! pages: every rule (URL policy, event-type filter, state changes, test pings, redelivery) is
//! written here once.

use serde_json::json;

use super::event_types;
use super::{
    Audience, enqueue, previous_secret_context, secret_context, signing, validate_endpoint_url,
};
use crate::app::AppState;
use crate::clock::{self, parse_rfc3339_ms};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{check_text, parse_id, required_text};
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::{self, Kind};
use crate::store::outbound::{self as queue, Delivery, DeliveryFilter, Endpoint};
use crate::tenancy::api::not_found_as;

/// The answer to a rotation form sent twice.
pub const ALREADY_ROTATED: &str = "the secret was already rotated by this form (sent twice?); \
     the new secret was shown once. Rotate again if you need another one.";

/// What a person gives to create an endpoint.
#[derive(Debug, Default)]
pub struct NewEndpoint {
    pub url: String,
    pub name: String,
    pub description: String,
    /// `None`: every type.
    pub event_types: Option<Vec<String>>,
    /// `None`: no limit.
    pub rate_limit_per_second: Option<i64>,
}

/// The fields to change; `None` leaves one as it is. `event_types: Some(None)` subscribes to every
/// type.
#[derive(Debug, Default)]
pub struct EndpointChanges {
    pub url: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Option<Vec<String>>>,
    pub active: Option<bool>,
    /// `Some(None)` removes the limit.
    pub rate_limit_per_second: Option<Option<i64>>,
}

/// A rotated secret: the new one (shown once) and until when the old one still signs.
pub struct Rotated {
    pub secret: String,
    pub previous_until: i64,
}

/// A queued test ping.
pub struct TestPing {
    pub event_id: String,
    pub delivery_id: String,
}

/// Which deliveries of an endpoint to list, as given (text, checked here).
#[derive(Debug, Default, Clone)]
pub struct DeliveryListing {
    pub status: Option<String>,
    pub event_type: Option<String>,
    pub since: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// The highest per-endpoint rate limit accepted (attempts per second).
pub const MAX_RATE_LIMIT: i64 = 100_000;

/// A rate limit as given: 1 to [`MAX_RATE_LIMIT`] attempts per second, or none.
pub fn check_rate_limit(limit: Option<i64>) -> ApiResult<Option<i64>> {
    match limit {
        Some(limit) if !(1..=MAX_RATE_LIMIT).contains(&limit) => {
            Err(ApiError::Unprocessable(format!(
                "rate_limit_per_second must be between 1 and {MAX_RATE_LIMIT} (or null for no limit); got {limit}"
            )))
        }
        limit => Ok(limit),
    }
}

pub(crate) fn check_description(description: &str) -> ApiResult<String> {
    check_text("description", description, 1_000)
}

/// Checks a filter: every named type must exist (built-in or the tenant's own).
async fn check_filter(
    state: &AppState,
    tenant_id: &str,
    filter: Option<Vec<String>>,
) -> ApiResult<Option<String>> {
    let Some(mut types) = filter else {
        return Ok(None);
    };
    if types.is_empty() {
        return Err(ApiError::Unprocessable(
            "event_types must name at least one type; omit it (or send null) for every type"
                .to_owned(),
        ));
    }
    types.sort();
    types.dedup();
    let custom: Vec<String> = queue::list_event_types(&state.store, tenant_id)
        .await?
        .into_iter()
        .map(|kind| kind.name)
        .collect();
    let unknown: Vec<&str> = types
        .iter()
        .filter(|name| event_types::built_in(name).is_none() && !custom.contains(name))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "unknown event types: {}",
            unknown.join(", ")
        )));
    }
    Ok(Some(
        serde_json::to_string(&types).expect("strings serialise"),
    ))
}

async fn check_url(state: &AppState, url: &str) -> ApiResult<String> {
    validate_endpoint_url(
        url,
        state.config.delivery.allow_http,
        &state.outbound.policy,
    )
    .await
    .map(String::from)
    .map_err(ApiError::Unprocessable)
}

/// Creates an endpoint; returns it with its signing secret, which exists in clear only now.
pub async fn create(
    state: &AppState,
    tenant_id: &str,
    input: NewEndpoint,
) -> ApiResult<(Endpoint, String)> {
    let name = required_text("name", &input.name, 200)?;
    let description = check_description(&input.description)?;
    let event_types = check_filter(state, tenant_id, input.event_types).await?;
    let rate_limit_per_second = check_rate_limit(input.rate_limit_per_second)?;
    let url = check_url(state, &input.url).await?;
    let id = ids::new(Kind::Endpoint);
    let secret = signing::generate_secret();
    let now = clock::now_ms();
    let endpoint = Endpoint {
        secret: state.cipher.seal_str(&secret_context(&id), &secret),
        id,
        tenant_id: tenant_id.to_owned(),
        url,
        name,
        description,
        event_types,
        active: true,
        previous_secret: None,
        previous_secret_until: None,
        consecutive_failures: 0,
        disabled_reason: None,
        disabled_at: None,
        created_at: now,
        updated_at: now,
        kind: queue::KIND_WEBHOOK.to_owned(),
        repository_key: None,
        payload_format: None,
        disabled_until: None,
        rate_limit_per_second,
    };
    queue::insert_endpoint(&state.store, &endpoint).await?;
    tracing::info!(endpoint_id = %endpoint.id, "webhook endpoint created");
    Ok((endpoint, secret))
}

/// One page of the tenant's endpoints, newest first.
pub async fn list(
    state: &AppState,
    tenant_id: &str,
    page: &PageQuery,
) -> ApiResult<(Vec<Endpoint>, Option<String>)> {
    let limit = page.limit()?;
    let cursor = page.cursor(Kind::Endpoint)?;
    let rows = queue::list_endpoints(&state.store, tenant_id, cursor.as_deref(), limit + 1).await?;
    Ok(next_cursor(rows, limit, |endpoint| endpoint.id.clone()))
}

/// An endpoint of the tenant by its id as given (malformed: 400; another tenant's, or a
/// repository hook: 404).
pub async fn load(state: &AppState, tenant_id: &str, id: &str) -> ApiResult<Endpoint> {
    let id = parse_id(Kind::Endpoint, id)?;
    match queue::get_endpoint(&state.store, tenant_id, &id).await {
        Ok(endpoint) if !endpoint.is_repository_hook() => Ok(endpoint),
        Ok(_) => Err(ApiError::NotFound("webhook endpoint")),
        Err(error) => Err(not_found_as(error, "webhook endpoint")),
    }
}

pub async fn update(
    state: &AppState,
    tenant_id: &str,
    id: &str,
    changes: EndpointChanges,
) -> ApiResult<Endpoint> {
    let mut endpoint = load(state, tenant_id, id).await?;
    if let Some(name) = &changes.name {
        endpoint.name = required_text("name", name, 200)?;
    }
    if let Some(description) = &changes.description {
        endpoint.description = check_description(description)?;
    }
    if let Some(filter) = changes.event_types {
        endpoint.event_types = check_filter(state, tenant_id, filter).await?;
    }
    if let Some(limit) = changes.rate_limit_per_second {
        endpoint.rate_limit_per_second = check_rate_limit(limit)?;
    }
    if let Some(url) = &changes.url {
        endpoint.url = check_url(state, url).await?;
    }
    queue::update_endpoint(&state.store, &endpoint).await?;
    match changes.active {
        Some(active) if active != endpoint.active => {
            set_active(state, tenant_id, &endpoint.id, active).await
        }
        _ => Ok(queue::get_endpoint(&state.store, tenant_id, &endpoint.id).await?),
    }
}

/// Deletes an endpoint with its pending deliveries and history.
pub async fn delete(state: &AppState, tenant_id: &str, id: &str) -> ApiResult<Endpoint> {
    let endpoint = load(state, tenant_id, id).await?;
    queue::delete_endpoint(&state.store, tenant_id, &endpoint.id).await?;
    tracing::info!(endpoint_id = %endpoint.id, "webhook endpoint deleted");
    Ok(endpoint)
}

/// Activates (resetting the failure count; held deliveries resume) or deactivates an endpoint.
pub async fn set_active(
    state: &AppState,
    tenant_id: &str,
    id: &str,
    active: bool,
) -> ApiResult<Endpoint> {
    let endpoint = load(state, tenant_id, id).await?;
    let endpoint =
        queue::set_endpoint_active(&state.store, tenant_id, &endpoint.id, active).await?;
    if active {
        state.outbound.wake();
    }
    tracing::info!(endpoint_id = %endpoint.id, active, "webhook endpoint state changed");
    Ok(endpoint)
}

/// Drops the deliveries an inactive endpoint holds (before activating it, when asked to).
pub async fn discard_held(state: &AppState, tenant_id: &str, id: &str) -> ApiResult<u64> {
    let endpoint = load(state, tenant_id, id).await?;
    let discarded = queue::discard_paused(&state.store, tenant_id, &endpoint.id).await?;
    tracing::info!(endpoint_id = %endpoint.id, discarded, "held deliveries discarded");
    Ok(discarded)
}

/// Issues a new signing secret; the previous one keeps signing beside it for the configured
/// overlap.
///
/// `expected` is the [`crate::crypto::fingerprint`] of the secret the caller means to replace
/// (a page's form); when the secret has changed since, nothing is rotated again.
pub async fn rotate_secret(
    state: &AppState,
    tenant_id: &str,
    id: &str,
    expected: Option<&str>,
) -> ApiResult<Rotated> {
    let endpoint = load(state, tenant_id, id).await?;
    if let Some(expected) = expected
        && crate::crypto::fingerprint(&endpoint.secret) != expected
    {
        return Err(ApiError::Conflict(ALREADY_ROTATED.to_owned()));
    }
    let current = state
        .cipher
        .open_str(&secret_context(&endpoint.id), &endpoint.secret)
        .map_err(ApiError::internal)?;
    let secret = signing::generate_secret();
    let until = clock::now_ms()
        + i64::try_from(state.config.delivery.rotation_overlap_seconds * 1000)
            .unwrap_or(i64::MAX / 2);
    queue::rotate_endpoint_secret(
        &state.store,
        &endpoint,
        &state
            .cipher
            .seal_str(&secret_context(&endpoint.id), &secret),
        &state
            .cipher
            .seal_str(&previous_secret_context(&endpoint.id), &current),
        until,
    )
    .await?;
    tracing::info!(endpoint_id = %endpoint.id, "webhook endpoint secret rotated");
    Ok(Rotated {
        secret,
        previous_until: until,
    })
}

/// Queues a `test.ping` for this endpoint only.
pub async fn send_test(state: &AppState, tenant_id: &str, id: &str) -> ApiResult<TestPing> {
    let endpoint = load(state, tenant_id, id).await?;
    if !endpoint.active {
        return Err(ApiError::Conflict(
            "the endpoint is inactive: activate it before testing".to_owned(),
        ));
    }
    let data = json!({"message": "Webhook endpoint test", "endpoint_id": endpoint.id});
    let mut tx = state.store.begin().await?;
    let published = enqueue(
        &mut tx,
        tenant_id,
        "test.ping",
        &data,
        Audience::Endpoint(&endpoint.id),
    )
    .await?;
    tx.commit().await?;
    state.outbound.wake();
    Ok(TestPing {
        event_id: published.event_id,
        delivery_id: published
            .delivery_ids
            .into_iter()
            .next()
            .unwrap_or_default(),
    })
}

fn parse_time(field: &str, text: &str) -> ApiResult<i64> {
    parse_rfc3339_ms(text).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "{field} must be an RFC 3339 time such as 2026-03-21T14:30:00Z"
        ))
    })
}

/// One page of an endpoint's deliveries, newest first, filtered.
pub async fn deliveries(
    state: &AppState,
    tenant_id: &str,
    endpoint_id: &str,
    listing: DeliveryListing,
) -> ApiResult<(Endpoint, Vec<Delivery>, Option<String>)> {
    let endpoint = load(state, tenant_id, endpoint_id).await?;
    let (rows, next) = deliveries_of(state, tenant_id, &endpoint, listing).await?;
    Ok((endpoint, rows, next))
}

/// One page of the deliveries of an endpoint (or repository hook) already loaded.
pub async fn deliveries_of(
    state: &AppState,
    tenant_id: &str,
    endpoint: &Endpoint,
    listing: DeliveryListing,
) -> ApiResult<(Vec<Delivery>, Option<String>)> {
    let page = PageQuery::new(listing.limit, listing.cursor);
    let limit = page.limit()?;
    if let Some(status) = &listing.status
        && !queue::status::ALL.contains(&status.as_str())
    {
        return Err(ApiError::BadRequest(format!(
            "status must be one of {}",
            queue::status::ALL.join(", ")
        )));
    }
    if let Some(event_type) = &listing.event_type {
        event_types::validate_custom_name(event_type).map_err(ApiError::BadRequest)?;
    }
    let filter = DeliveryFilter {
        status: listing.status,
        event_type: listing.event_type,
        since: listing
            .since
            .as_deref()
            .map(|since| parse_time("since", since))
            .transpose()?,
        before_id: page.cursor(Kind::Delivery)?,
    };
    let rows =
        queue::list_deliveries(&state.store, tenant_id, &endpoint.id, &filter, limit + 1).await?;
    Ok(next_cursor(rows, limit, |delivery| delivery.id.clone()))
}

/// Queues again every failed delivery of the endpoint created at or after `since`.
pub async fn recover(state: &AppState, tenant_id: &str, id: &str, since: &str) -> ApiResult<u64> {
    let endpoint = load(state, tenant_id, id).await?;
    let since = parse_time("since", since)?;
    let requeued = queue::recover(&state.store, tenant_id, &endpoint.id, since).await?;
    state.outbound.wake();
    tracing::info!(endpoint_id = %endpoint.id, requeued, "failed deliveries recovered");
    Ok(requeued)
}

pub async fn load_delivery(state: &AppState, tenant_id: &str, id: &str) -> ApiResult<Delivery> {
    let id = parse_id(Kind::Delivery, id)?;
    queue::get_delivery(&state.store, tenant_id, &id)
        .await
        .map_err(|error| not_found_as(error, "delivery"))
}

/// A delivery to one of the tenant's webhook endpoints (a repository hook's is not found: the
/// hooks API serves those).
pub async fn load_webhook_delivery(
    state: &AppState,
    tenant_id: &str,
    id: &str,
) -> ApiResult<Delivery> {
    let delivery = load_delivery(state, tenant_id, id).await?;
    let endpoint = queue::get_endpoint(&state.store, tenant_id, &delivery.endpoint_id)
        .await
        .map_err(|error| not_found_as(error, "delivery"))?;
    if endpoint.is_repository_hook() {
        return Err(ApiError::NotFound("delivery"));
    }
    Ok(delivery)
}

/// Queues one delivery again with a fresh retry budget.
pub async fn redeliver(state: &AppState, tenant_id: &str, id: &str) -> ApiResult<Delivery> {
    let delivery = load_delivery(state, tenant_id, id).await?;
    let delivery = queue::redeliver(&state.store, tenant_id, &delivery.id).await?;
    state.outbound.wake();
    Ok(delivery)
}
