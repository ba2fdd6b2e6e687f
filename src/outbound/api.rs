//! The outbound webhooks API: event types, publishing events, endpoints, deliveries and their
//! history.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::endpoints::{self, DeliveryListing, EndpointChanges, NewEndpoint};
use super::event_types::{self, CatalogEntry};
use super::{Audience, enqueue};
use crate::app::AppState;
use crate::clock::{self, rfc3339_ms};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::paging::PageQuery;
use crate::store::StoreError;
use crate::store::outbound::{self as queue, Attempt, Delivery, Endpoint, IdempotentAnswer};
use crate::tenancy::Principal;

/// How long a publish answer is replayed for a repeated `Idempotency-Key`.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3_600_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_event_types, create_event_type))
        .routes(routes!(get_event_type, delete_event_type))
        .routes(routes!(publish_event))
        .routes(routes!(list_endpoints, create_endpoint))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(activate_endpoint))
        .routes(routes!(deactivate_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(send_test))
        .routes(routes!(list_deliveries))
        .routes(routes!(recover_endpoint))
        .routes(routes!(get_delivery))
        .routes(routes!(redeliver))
}

// ---- event types ----------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeOut {
    pub name: String,
    pub description: String,
    /// JSON Schema of the event's `data`.
    pub schema: Value,
    /// Built-in types are emitted by Hookline itself and cannot be deleted.
    pub built_in: bool,
    pub created_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeList {
    pub data: Vec<EventTypeOut>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEventType {
    /// Dot-separated lowercase segments, e.g. `invoice.paid`.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$"
    )]
    pub name: String,
    /// At most 1000 characters, no control characters other than tab and newline.
    #[serde(default)]
    #[schema(
        max_length = 1000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub description: String,
    /// JSON Schema for `data` (default: any object).
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
}

impl From<CatalogEntry> for EventTypeOut {
    fn from(entry: CatalogEntry) -> Self {
        EventTypeOut {
            name: entry.name,
            description: entry.description,
            schema: entry.schema,
            built_in: entry.built_in,
            created_at: entry.created_at.map(rfc3339_ms),
        }
    }
}

#[utoipa::path(get, path = "/api/event-types", tag = "events",
    responses((status = 200, body = EventTypeList), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_event_types(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<EventTypeList>> {
    let data = event_types::catalog(&state.store, &principal.tenant_id)
        .await?
        .into_iter()
        .map(EventTypeOut::from)
        .collect();
    Ok(Json(EventTypeList { data }))
}

#[utoipa::path(post, path = "/api/event-types", tag = "events", request_body = CreateEventType,
    responses((status = 201, body = EventTypeOut), (status = 409, description = "Name taken", body = ErrorBody),
        (status = 422, description = "Bad name or schema", body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_event_type(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(input): ApiJson<CreateEventType>,
) -> ApiResult<(StatusCode, Json<EventTypeOut>)> {
    event_types::validate_custom_name(&input.name).map_err(ApiError::Unprocessable)?;
    if event_types::built_in(&input.name).is_some() {
        return Err(ApiError::Conflict(format!(
            "`{}` is a built-in event type",
            input.name
        )));
    }
    let description = endpoints::check_description(&input.description)?;
    let schema = input
        .schema
        .unwrap_or_else(event_types::default_custom_schema);
    event_types::check_schema(&schema)
        .map_err(|why| ApiError::Unprocessable(format!("schema: {why}")))?;
    let created = queue::insert_event_type(
        &state.store,
        &principal.tenant_id,
        &input.name,
        &description,
        &schema.to_string(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CatalogEntry::from(created).into()),
    ))
}

#[utoipa::path(get, path = "/api/event-types/{name}", tag = "events",
    params(("name" = String, Path)),
    responses((status = 200, body = EventTypeOut), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_event_type(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<EventTypeOut>> {
    if let Some(kind) = event_types::built_in(&name) {
        return Ok(Json(CatalogEntry::from(kind).into()));
    }
    queue::get_event_type(&state.store, &principal.tenant_id, &name)
        .await?
        .map(|kind| Json(CatalogEntry::from(kind).into()))
        .ok_or(ApiError::NotFound("event type"))
}

#[utoipa::path(delete, path = "/api/event-types/{name}", tag = "events",
    params(("name" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody),
        (status = 409, description = "Built-in types cannot be deleted", body = ErrorBody)),
    security(("bearer" = [])))]
async fn delete_event_type(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if event_types::built_in(&name).is_some() {
        return Err(ApiError::Conflict(format!(
            "`{name}` is built in and cannot be deleted"
        )));
    }
    if queue::delete_event_type(&state.store, &principal.tenant_id, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("event type"))
    }
}

/// Checks `data` against the schema of `event_type` (built-in or the tenant's own).
async fn validate_event(
    state: &AppState,
    tenant_id: &str,
    event_type: &str,
    data: &Value,
) -> ApiResult<()> {
    let registered = match event_types::built_in(event_type) {
        Some(_) => None,
        None => queue::get_event_type(&state.store, tenant_id, event_type).await?,
    };
    check_event(state, event_type, registered.as_ref(), data)
}

/// Checks `data` against a built-in `event_type`, or against the tenant's `registered` type.
fn check_event(
    state: &AppState,
    event_type: &str,
    registered: Option<&queue::EventType>,
    data: &Value,
) -> ApiResult<()> {
    let verdict = match (event_types::validate_built_in(event_type, data), registered) {
        (Some(verdict), _) => verdict,
        (None, Some(custom)) => {
            event_types::validate_custom(&state.outbound.schemas, &custom.schema, data)
        }
        (None, None) => {
            return Err(ApiError::Unprocessable(format!(
                "unknown event type `{event_type}`: register it with POST /api/event-types"
            )));
        }
    };
    verdict.map_err(|error| ApiError::Unprocessable(error.to_string()))
}

// ---- publishing -----------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishEvent {
    /// A built-in event type or one registered with `POST /api/event-types`.
    #[serde(rename = "type")]
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$"
    )]
    pub event_type: String,
    pub data: Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PublishedOut {
    /// `evt_<uuid>`
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// How many endpoints the event was queued for.
    pub deliveries: usize,
}

#[utoipa::path(post, path = "/api/events", tag = "events", request_body = PublishEvent,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeats within 24 h return the first answer")),
    responses((status = 202, description = "Committed and queued", body = PublishedOut),
        (status = 409, description = "Idempotency-Key reused for a different request", body = ErrorBody),
        (status = 422, description = "Unknown type, or data failing the type's schema", body = ErrorBody)),
    security(("bearer" = [])))]
async fn publish_event(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    ApiJson(input): ApiJson<PublishEvent>,
) -> ApiResult<Response> {
    let tenant_id = &principal.tenant_id;
    let key = idempotency_key(&headers);
    if let Ok(None) = key {
        // Nothing else to write with it: the event goes in on its own, in fewer round trips
        // (planned from what this node keeps, then one write).
        let published = super::publish(
            &state.store,
            &state.outbound,
            &state.publisher,
            tenant_id,
            &input.event_type,
            &input.data,
            |registered| check_event(&state, &input.event_type, registered, &input.data),
        )
        .await?;
        let out = PublishedOut {
            id: published.event_id,
            event_type: input.event_type,
            deliveries: published.delivery_ids.len(),
        };
        return Ok((StatusCode::ACCEPTED, Json(out)).into_response());
    }
    validate_event(&state, tenant_id, &input.event_type, &input.data).await?;
    let Some(key) = key? else {
        unreachable!("a request without Idempotency-Key was published above")
    };
    let request_hash =
        crate::crypto::sha256_hex(&json!([input.event_type, input.data]).to_string());
    let not_before = clock::now_ms() - IDEMPOTENCY_WINDOW_MS;
    if let Some(answer) =
        queue::idempotent_answer(&state.store, tenant_id, &key, not_before).await?
    {
        return replay(answer, &request_hash);
    }

    let mut tx = state.store.begin().await?;
    let published = enqueue(
        &mut tx,
        tenant_id,
        &input.event_type,
        &input.data,
        Audience::Subscribers,
    )
    .await?;
    let out = PublishedOut {
        id: published.event_id,
        event_type: input.event_type,
        deliveries: published.delivery_ids.len(),
    };
    let answer = IdempotentAnswer {
        request_hash: request_hash.clone(),
        response_status: 202,
        response_body: serde_json::to_string(&out).expect("serialises"),
    };
    match queue::save_idempotent_answer(&mut tx, tenant_id, &key, &answer, not_before).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            // A concurrent request with the same key won; answer as it did.
            drop(tx);
            let stored = queue::idempotent_answer(&state.store, tenant_id, &key, not_before)
                .await?
                .ok_or_else(|| ApiError::Conflict("Idempotency-Key is in use".to_owned()))?;
            return replay(stored, &request_hash);
        }
        Err(other) => return Err(other.into()),
    }
    tx.commit().await?;
    state.outbound.wake();
    Ok((StatusCode::ACCEPTED, Json(out)).into_response())
}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| !key.is_empty() && key.len() <= 255)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "Idempotency-Key must be 1 to 255 visible ASCII characters".to_owned(),
            )
        })?;
    Ok(Some(key.to_owned()))
}

fn replay(answer: IdempotentAnswer, request_hash: &str) -> ApiResult<Response> {
    if answer.request_hash != request_hash {
        return Err(ApiError::Conflict(
            "Idempotency-Key was already used with a different request".to_owned(),
        ));
    }
    let status = StatusCode::from_u16(u16::try_from(answer.response_status).unwrap_or(202))
        .unwrap_or(StatusCode::ACCEPTED);
    let body: Value = serde_json::from_str(&answer.response_body).unwrap_or(Value::Null);
    Ok((status, [("idempotent-replayed", "true")], Json(body)).into_response())
}

// ---- endpoints ------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointOut {
    #[schema(example = "wh_0192f0c1a2b37c4d8e9f0a1b2c3d4e5f")]
    pub id: String,
    pub url: String,
    pub name: String,
    pub description: String,
    /// Subscribed event types; `null` means every type.
    pub event_types: Option<Vec<String>>,
    pub active: bool,
    /// Why Hookline disabled the endpoint (failures, 410 Gone), if it did.
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<String>,
    /// Failed deliveries in a row; at the configured limit the endpoint is disabled.
    pub consecutive_failures: i64,
    /// At most this many attempts per second, across every node; `null`: no limit.
    pub rate_limit_per_second: Option<i64>,
    /// Deliveries held while the endpoint is inactive (on reads of one endpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_deliveries: Option<i64>,
    /// Until when the previous secret still signs beside the current one, after a rotation.
    pub previous_secret_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Endpoint> for EndpointOut {
    fn from(endpoint: &Endpoint) -> Self {
        let now = clock::now_ms();
        EndpointOut {
            id: endpoint.id.clone(),
            url: endpoint.url.clone(),
            name: endpoint.name.clone(),
            description: endpoint.description.clone(),
            event_types: endpoint.event_type_filter(),
            active: endpoint.active,
            disabled_reason: endpoint.disabled_reason.clone(),
            disabled_at: endpoint.disabled_at.map(rfc3339_ms),
            consecutive_failures: endpoint.consecutive_failures,
            rate_limit_per_second: endpoint.rate_limit_per_second,
            held_deliveries: None,
            previous_secret_expires_at: endpoint
                .previous_secret_until
                .filter(|until| *until > now)
                .map(rfc3339_ms),
            created_at: rfc3339_ms(endpoint.created_at),
            updated_at: rfc3339_ms(endpoint.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointPage {
    pub data: Vec<EndpointOut>,
    pub next_cursor: Option<String>,
}

/// A new endpoint; `secret` is shown only in this answer (and after a rotation).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: EndpointOut,
    /// `whsec_…`: verify deliveries with it.
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// An absolute `https://` URL (at most 2048 characters, no credentials, no `#fragment`) whose
    /// host resolves to an address the SSRF policy allows.
    #[schema(
        format = "uri",
        min_length = 1,
        max_length = 2048,
        pattern = r"^https://[A-Za-z0-9._~:/?\[\]!$&'()*+,;=%-]+$"
    )]
    pub url: String,
    /// 1 to 200 characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
    /// At most 1000 characters.
    #[serde(default)]
    #[schema(
        max_length = 1000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub description: String,
    /// Event types to receive (at least one, each built in or registered); omitted or `null`
    /// means every type.
    #[schema(
        min_items = 1,
        min_length = 1,
        max_length = 128,
        pattern = r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$"
    )]
    pub event_types: Option<Vec<String>>,
    /// At most this many attempts per second (1–100000), across every node; deliveries above
    /// it wait. Omitted or `null`: no limit.
    #[schema(minimum = 1, maximum = 100_000)]
    pub rate_limit_per_second: Option<i64>,
}

/// Only the fields given change. `event_types: null` subscribes to every type.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    /// An absolute `https://` URL, as on creation.
    #[schema(
        format = "uri",
        min_length = 1,
        max_length = 2048,
        pattern = r"^https://[A-Za-z0-9._~:/?\[\]!$&'()*+,;=%-]+$"
    )]
    pub url: Option<String>,
    /// 1 to 200 characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub name: Option<String>,
    /// At most 1000 characters.
    #[schema(
        max_length = 1000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub description: Option<String>,
    /// At least one type, each built in or registered.
    #[serde(default, deserialize_with = "crate::http::extract::present")]
    #[schema(value_type = Option<Vec<String>>, min_items = 1, min_length = 1, max_length = 128, pattern = r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")]
    pub event_types: Option<Option<Vec<String>>>,
    pub active: Option<bool>,
    /// 1–100000 attempts per second; `null` removes the limit.
    #[serde(default, deserialize_with = "crate::http::extract::present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100_000)]
    pub rate_limit_per_second: Option<Option<i64>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecret {
    /// The new `whsec_…` secret, shown only now.
    pub secret: String,
    /// Until then the previous secret signs too.
    pub previous_secret_expires_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestSent {
    pub event_id: String,
    pub delivery_id: String,
}

#[utoipa::path(post, path = "/api/webhooks/endpoints", tag = "webhooks", request_body = CreateEndpoint,
    responses((status = 201, description = "Created; the secret is shown only now", body = CreatedEndpoint),
        (status = 422, description = "Bad URL (scheme, credentials, forbidden destination), name or event types", body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(input): ApiJson<CreateEndpoint>,
) -> ApiResult<(StatusCode, Json<CreatedEndpoint>)> {
    let (endpoint, secret) = endpoints::create(
        &state,
        &principal.tenant_id,
        NewEndpoint {
            url: input.url,
            name: input.name,
            description: input.description,
            event_types: input.event_types,
            rate_limit_per_second: input.rate_limit_per_second,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedEndpoint {
            endpoint: EndpointOut::from(&endpoint),
            secret,
        }),
    ))
}

#[utoipa::path(get, path = "/api/webhooks/endpoints", tag = "webhooks", params(PageQuery),
    responses((status = 200, body = EndpointPage), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_endpoints(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<EndpointPage>> {
    let (rows, next_cursor) = endpoints::list(&state, &principal.tenant_id, &page).await?;
    Ok(Json(EndpointPage {
        data: rows.iter().map(EndpointOut::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/webhooks/endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "`wh_…`")),
    responses((status = 200, body = EndpointOut), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<EndpointOut>> {
    let endpoint = endpoints::load(&state, &principal.tenant_id, &id).await?;
    let mut out = EndpointOut::from(&endpoint);
    out.held_deliveries = Some(queue::count_paused(&state.store, &endpoint.id).await?);
    Ok(Json(out))
}

#[utoipa::path(patch, path = "/api/webhooks/endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "`wh_…`")), request_body = UpdateEndpoint,
    responses((status = 200, body = EndpointOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn update_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<UpdateEndpoint>,
) -> ApiResult<Json<EndpointOut>> {
    let changes = EndpointChanges {
        url: input.url,
        name: input.name,
        description: input.description,
        event_types: input.event_types,
        active: input.active,
        rate_limit_per_second: input.rate_limit_per_second,
    };
    let endpoint = endpoints::update(&state, &principal.tenant_id, &id, changes).await?;
    Ok(Json(EndpointOut::from(&endpoint)))
}

#[utoipa::path(delete, path = "/api/webhooks/endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "`wh_…`")),
    responses((status = 204, description = "Deleted with its pending deliveries and history"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn delete_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    endpoints::delete(&state, &principal.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_active(
    state: &AppState,
    principal: &Principal,
    id: &str,
    active: bool,
) -> ApiResult<Json<EndpointOut>> {
    let endpoint = endpoints::set_active(state, &principal.tenant_id, id, active).await?;
    let mut out = EndpointOut::from(&endpoint);
    out.held_deliveries = Some(queue::count_paused(&state.store, &endpoint.id).await?);
    Ok(Json(out))
}

/// How to activate an endpoint.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// Drop the deliveries held while the endpoint was inactive instead of sending them (default
    /// false: they are sent, in order).
    #[serde(default)]
    pub discard_held: bool,
}

#[utoipa::path(post, path = "/api/webhooks/endpoints/{id}/activate", tag = "webhooks",
    params(("id" = String, Path, description = "`wh_…`")),
    request_body(content = Option<ActivateRequest>, description = "Optional"),
    responses((status = 200, description = "Active; the failure count is reset and held deliveries are sent in order (or discarded)", body = EndpointOut),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn activate_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<EndpointOut>> {
    let input: ActivateRequest = crate::http::extract::optional_json(&headers, &body)?;
    if input.discard_held {
        endpoints::discard_held(&state, &principal.tenant_id, &id).await?;
    }
    set_active(&state, &principal, &id, true).await
}

#[utoipa::path(post, path = "/api/webhooks/endpoints/{id}/deactivate", tag = "webhooks",
    params(("id" = String, Path, description = "`wh_…`")),
    responses((status = 200, description = "Inactive; new events skip it and pending deliveries wait", body = EndpointOut),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn deactivate_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<EndpointOut>> {
    set_active(&state, &principal, &id, false).await
}

#[utoipa::path(post, path = "/api/webhooks/endpoints/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path, description = "`wh_…`")),
    responses((status = 200, description = "The new secret, shown only now", body = RotatedSecret), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn rotate_secret(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<RotatedSecret>> {
    let rotated = endpoints::rotate_secret(&state, &principal.tenant_id, &id, None).await?;
    Ok(Json(RotatedSecret {
        secret: rotated.secret,
        previous_secret_expires_at: rfc3339_ms(rotated.previous_until),
    }))
}

#[utoipa::path(post, path = "/api/webhooks/endpoints/{id}/test", tag = "webhooks",
    params(("id" = String, Path, description = "`wh_…`")),
    responses((status = 202, description = "A test.ping was queued for this endpoint only", body = TestSent),
        (status = 404, body = ErrorBody), (status = 409, description = "The endpoint is inactive", body = ErrorBody)),
    security(("bearer" = [])))]
async fn send_test(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<TestSent>)> {
    let ping = endpoints::send_test(&state, &principal.tenant_id, &id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TestSent {
            event_id: ping.event_id,
            delivery_id: ping.delivery_id,
        }),
    ))
}

// ---- deliveries -----------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    #[schema(example = "dlv_0192f0c1a2b37c4d8e9f0a1b2c3d4e5f")]
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `paused` (endpoint inactive), `succeeded` or `failed`.
    pub status: String,
    pub attempt_count: i64,
    pub next_attempt_at: Option<String>,
    pub last_status_code: Option<i64>,
    pub last_error_kind: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
}

impl From<&Delivery> for DeliveryOut {
    fn from(delivery: &Delivery) -> Self {
        DeliveryOut {
            id: delivery.id.clone(),
            endpoint_id: delivery.endpoint_id.clone(),
            event_id: delivery.event_id.clone(),
            event_type: delivery.event_type.clone(),
            status: delivery.status.clone(),
            attempt_count: delivery.attempt_count,
            next_attempt_at: (delivery.status == queue::status::PENDING)
                .then_some(delivery.next_attempt_at)
                .flatten()
                .map(rfc3339_ms),
            last_status_code: delivery.last_status_code,
            last_error_kind: delivery.last_error_kind.clone(),
            created_at: rfc3339_ms(delivery.created_at),
            updated_at: rfc3339_ms(delivery.updated_at),
            completed_at: delivery.completed_at.map(rfc3339_ms),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptOut {
    pub id: String,
    pub attempt_number: i64,
    pub started_at: String,
    pub duration_ms: i64,
    pub url: String,
    pub request_headers: Value,
    pub response_status: Option<i64>,
    pub response_headers: Option<Value>,
    /// The first 64 KiB of the answer.
    pub response_body: Option<String>,
    /// `dns`, `connect`, `tls`, `timeout`, `ssrf_blocked` or `http_status`.
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub succeeded: bool,
}

impl From<Attempt> for AttemptOut {
    fn from(attempt: Attempt) -> Self {
        AttemptOut {
            id: attempt.id,
            attempt_number: attempt.attempt_number,
            started_at: rfc3339_ms(attempt.started_at),
            duration_ms: attempt.duration_ms,
            url: attempt.url,
            request_headers: serde_json::from_str(&attempt.request_headers).unwrap_or(Value::Null),
            response_status: attempt.response_status,
            response_headers: attempt
                .response_headers
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok()),
            response_body: attempt.response_body,
            error_kind: attempt.error_kind,
            error_message: attempt.error_message,
            succeeded: attempt.succeeded,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: DeliveryOut,
    /// The exact body sent (the event envelope).
    pub payload: Value,
    pub attempts: Vec<AttemptOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub data: Vec<DeliveryOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// `pending`, `paused`, `succeeded` or `failed`.
    #[param(pattern = r"^(pending|paused|succeeded|failed)$")]
    status: Option<String>,
    /// Only this event type.
    #[param(max_length = 128, pattern = r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")]
    event_type: Option<String>,
    /// Only deliveries created at or after this RFC 3339 time.
    #[param(format = DateTime)]
    since: Option<String>,
    /// Items per page, 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^dlv_[0-9a-f]{32}$")]
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// Re-queue failed deliveries created at or after this RFC 3339 time.
    #[schema(format = DateTime)]
    pub since: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Recovered {
    pub requeued: u64,
}

#[utoipa::path(get, path = "/api/webhooks/endpoints/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "`wh_…`"), DeliveryQuery),
    responses((status = 200, description = "Newest first", body = DeliveryPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_deliveries(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<DeliveryQuery>,
) -> ApiResult<Json<DeliveryPage>> {
    let listing = DeliveryListing {
        status: query.status,
        event_type: query.event_type,
        since: query.since,
        limit: query.limit,
        cursor: query.cursor,
    };
    let (_, rows, next_cursor) =
        endpoints::deliveries(&state, &principal.tenant_id, &id, listing).await?;
    Ok(Json(DeliveryPage {
        data: rows.iter().map(DeliveryOut::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(post, path = "/api/webhooks/endpoints/{id}/recover", tag = "webhooks",
    params(("id" = String, Path, description = "`wh_…`")), request_body = RecoverRequest,
    responses((status = 202, body = Recovered), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn recover_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<RecoverRequest>,
) -> ApiResult<(StatusCode, Json<Recovered>)> {
    let requeued = endpoints::recover(&state, &principal.tenant_id, &id, &input.since).await?;
    Ok((StatusCode::ACCEPTED, Json(Recovered { requeued })))
}

#[utoipa::path(get, path = "/api/webhooks/deliveries/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "`dlv_…`")),
    responses((status = 200, description = "The delivery, its body and every attempt", body = DeliveryDetail), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_delivery(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<DeliveryDetail>> {
    let delivery = endpoints::load_webhook_delivery(&state, &principal.tenant_id, &id).await?;
    let payload = queue::event_payload(&state.store, &delivery.event_id).await?;
    let attempts = queue::attempts_of(&state.store, &delivery.id).await?;
    Ok(Json(DeliveryDetail {
        delivery: DeliveryOut::from(&delivery),
        payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
        attempts: attempts.into_iter().map(AttemptOut::from).collect(),
    }))
}

#[utoipa::path(post, path = "/api/webhooks/deliveries/{id}/redeliver", tag = "webhooks",
    params(("id" = String, Path, description = "`dlv_…`")),
    responses((status = 202, description = "Queued again with a fresh retry budget", body = DeliveryOut),
        (status = 404, body = ErrorBody), (status = 409, description = "Still pending", body = ErrorBody)),
    security(("bearer" = [])))]
async fn redeliver(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<DeliveryOut>)> {
    let delivery = endpoints::load_webhook_delivery(&state, &principal.tenant_id, &id).await?;
    let delivery = endpoints::redeliver(&state, &principal.tenant_id, &delivery.id).await?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryOut::from(&delivery))))
}
