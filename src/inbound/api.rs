//! The receivers (`/api/github/webhook`, `/api/gitlab/webhook`,
//! `/api/v1/integrations/{id}/webhook/github`) and the API over what they kept
//! (`/api/inbound-deliveries`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::forge::{self, ForgeEvent, PayloadError};
use super::writer::{OnItsWay, Work, Written};
use super::{
    Payload, Proof, PushSummary, Received, count, log_rejection, payload_of, push_rows, result,
    service_secrets, source, verification,
};
use crate::app::AppState;
use crate::clock::{self, rfc3339_ms};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{ApiQuery, parse_id};
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::Kind;
use crate::integrations::webhook_secret_of;
use crate::store::inbound::{self as kept, InboundDelivery, InboundFilter};
use crate::store::integrations;
use crate::store::services::{self, Service};
use crate::tenancy::Principal;
use crate::tenancy::api::not_found_as;

/// The header naming the inbound deliveries a receiver stored (comma-separated when a request
/// fed several tenants).
pub const DELIVERY_HEADER: &str = "x-hookline-inbound-delivery";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(github_webhook))
        .routes(routes!(gitlab_webhook))
        .routes(routes!(integration_webhook))
        .routes(routes!(list_inbound))
        .routes(routes!(get_inbound))
        .routes(routes!(replay_inbound))
}

// ---- answers ----------------------------------------------------------------------------------

/// A refusal before anything is stored: exactly `{"error": "<reason>"}`, as GitHub shows it.
fn rejected(received_source: &'static str, reason: &'static str) -> Response {
    let code = if reason == "missing signature" {
        "missing_signature"
    } else {
        "invalid_signature"
    };
    count(received_source, code);
    // The documented `error` text, and a code like every other error answer.
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": reason, "code": code })),
    )
        .into_response()
}

fn with_delivery_header(mut response: Response, ids: &[String]) -> Response {
    if !ids.is_empty()
        && let Ok(value) = HeaderValue::from_str(&ids.join(", "))
    {
        response.headers_mut().insert(DELIVERY_HEADER, value);
    }
    response
}

/// A request that got past the signature header check but could not be used: kept as a failed
/// delivery, answered with a 4xx that says why.
async fn failed(
    state: &AppState,
    received: &Received,
    mut delivery: InboundDelivery,
    error: ApiError,
) -> Response {
    count(received.source, "failed");
    delivery.error = Some(error.to_string());
    delivery.result = result::FAILED.to_owned();
    delivery.duration_ms = received.elapsed_ms();
    // An oversized body was left unread: the connection cannot carry another request.
    let close = matches!(error, ApiError::PayloadTooLarge(_));
    let mut response = match kept::insert(&state.store, &delivery).await {
        Ok(()) => with_delivery_header(error.into_response(), &[delivery.id]),
        Err(store_error) => {
            tracing::error!(error = %store_error, "a failed inbound delivery could not be kept");
            error.into_response()
        }
    };
    if close {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
    }
    response
}

enum Outcome {
    Stored { id: String, processed: bool },
    Duplicate,
}

fn accepted(outcomes: &[Outcome], received_source: &'static str) -> Response {
    let ids: Vec<String> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Outcome::Stored { id, .. } => Some(id.clone()),
            Outcome::Duplicate => None,
        })
        .collect();
    let body = if ids.is_empty() {
        count(received_source, "duplicate");
        json!({"processed": true, "duplicate": true})
    } else if outcomes.iter().any(|outcome| {
        matches!(
            outcome,
            Outcome::Stored {
                processed: true,
                ..
            }
        )
    }) {
        count(received_source, "processed");
        json!({"processed": true})
    } else {
        count(received_source, "ignored");
        json!({"processed": false, "stored": true})
    };
    with_delivery_header((StatusCode::OK, Json(body)).into_response(), &ids)
}

// ---- reading ----------------------------------------------------------------------------------

/// Reads the body within the configured cap; `Err` when it is larger (or the client went away).
async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = state.config.inbound.max_body_bytes;
    let too_large =
        || ApiError::PayloadTooLarge(format!("webhook body exceeds the limit of {limit} bytes"));
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(error) if crate::http::body_timeout::timed_out(&*error) => {
            Err(ApiError::RequestTimeout)
        }
        Err(error) => Err(ApiError::BadRequest(format!(
            "the request body could not be read: {error}"
        ))),
    }
}

/// Reads and drops a body that will not be used, so a keep-alive client can send its next request
/// on the same connection (within the size cap; beyond it the connection is closed).
async fn discard_body(state: &AppState, headers: &HeaderMap, body: Body) {
    let _ = read_body(state, headers, body).await;
}

fn received(source: &'static str, headers: HeaderMap, body: Bytes, started: Instant) -> Received {
    Received {
        source,
        headers,
        body,
        received_at: clock::now_ms(),
        started,
    }
}

/// An empty received request for failures before the body was read (too large).
fn unread(source: &'static str, headers: HeaderMap, started: Instant) -> Received {
    received(source, headers, Bytes::new(), started)
}

fn body_error(error: super::BodyError) -> ApiError {
    match error {
        super::BodyError::UnsupportedType(_) => ApiError::UnsupportedMediaType(error.to_string()),
        other => ApiError::BadRequest(other.to_string()),
    }
}

/// The meaning of a verified payload, or why it has none (kept with the failed delivery).
type Parsed = Result<Arc<ForgeEvent>, ApiError>;

fn parse_github(event: Option<&str>, payload: &mut Payload<'_>) -> Parsed {
    let event =
        event.ok_or_else(|| ApiError::BadRequest("missing X-GitHub-Event header".to_owned()))?;
    event_of(payload, |json| forge::github(event, json))
        .map(Arc::new)
        .map_err(payload_error)
}

/// The event a payload carries: the push read with its envelope ([`payload_of`]), or what
/// `read` makes of the JSON now.
pub(super) fn event_of(
    payload: &mut Payload<'_>,
    read: impl FnOnce(&[u8]) -> Result<ForgeEvent, PayloadError>,
) -> Result<ForgeEvent, PayloadError> {
    match payload.push.take() {
        Some(push) => push.map(ForgeEvent::Push),
        None => read(&payload.json),
    }
}

pub(super) fn payload_error(error: PayloadError) -> ApiError {
    ApiError::Unprocessable(error.0)
}

/// What a verified request is, for one tenant.
struct Verified<'a> {
    received: &'a Received,
    /// Counts the delivery as on its way to the writer until it is handed over.
    on_its_way: Option<OnItsWay>,
    tenant_id: String,
    targets: Vec<String>,
    services: Vec<Service>,
    event: String,
    action: Option<String>,
    repository: Option<String>,
    dedupe_key: Option<String>,
}

/// Keeps a verified delivery and applies it, once: a delivery seen before for this tenant changes
/// nothing.
async fn finish(
    state: &AppState,
    verified: Verified<'_>,
    parsed: &Parsed,
) -> Result<Outcome, Response> {
    let received = verified.received;
    let mut delivery = received.delivery(&verified.event);
    delivery.tenant_id = Some(verified.tenant_id.clone());
    delivery.targets = serde_json::to_string(&verified.targets).expect("ids serialize");
    delivery.delivery_key = received
        .header("x-github-delivery")
        .or_else(|| received.header("idempotency-key"))
        .or_else(|| received.header("x-gitlab-event-uuid"))
        .map(str::to_owned);
    delivery.action = verified.action.clone();
    delivery.repository = verified.repository.clone();
    delivery.verification = verification::VERIFIED.to_owned();
    let event = match parsed {
        Ok(event) => event,
        Err(error) => {
            // Not on its way to the writer any more: `failed` itself waits for a writing
            // connection the writer may hold.
            drop(verified.on_its_way);
            let error = ApiError::from_status(error.status(), error.to_string());
            return Err(failed(state, received, delivery, error).await);
        }
    };
    delivery.result = match event.as_ref() {
        ForgeEvent::Other => result::IGNORED,
        _ => result::PROCESSED,
    }
    .to_owned();
    delivery.summary = match event.as_ref() {
        ForgeEvent::Push(push) => serde_json::to_string(&PushSummary::of(push, &verified.services))
            .expect("a push summary serializes"),
        _ => "{}".to_owned(),
    };
    delivery.dedupe_key = verified.dedupe_key.clone();
    delivery.duration_ms = received.elapsed_ms();
    let id = delivery.id.clone();
    let processed = delivery.result == result::PROCESSED;
    let push_rows = match event.as_ref() {
        ForgeEvent::Push(push) => Some(push_rows(
            &delivery.id,
            &verified.services,
            verified.repository.as_deref(),
            push,
        )),
        _ => None,
    };
    let relay_to = verified.repository.as_deref().map(|repository| {
        (
            verified.tenant_id.clone(),
            repository.to_lowercase(),
            verified
                .dedupe_key
                .as_deref()
                .map(|key| format!("{}:{key}", received.source)),
        )
    });
    let work = Work {
        tenant_id: verified.tenant_id,
        services: verified.services,
        repository: verified.repository,
        event: event.clone(),
        delivery,
        push_rows,
    };
    match state.inbound.write(work, verified.on_its_way).await {
        Ok(written) => {
            // A duplicate is relayed again under the same key: that queues nothing when the
            // first relay happened, and heals one lost to a crash after the delivery was kept.
            if let Some((tenant_id, repository_key, relay_key)) = &relay_to
                && (written == Written::Stored || relay_key.is_some())
            {
                let target = RelayTarget {
                    tenant_id,
                    repository_key,
                    relay_key: relay_key.as_deref(),
                };
                relay(state, received, &verified.event, target).await;
            }
            Ok(match written {
                Written::Stored => Outcome::Stored { id, processed },
                Written::Duplicate => Outcome::Duplicate,
            })
        }
        Err((error, work)) => {
            tracing::error!(%error, "processing an inbound delivery failed");
            let answer = ApiError::internal(anyhow::anyhow!("processing failed: {error}"));
            match work {
                Some(work) => {
                    let mut delivery = work.delivery;
                    delivery.dedupe_key = None;
                    Err(failed(state, received, delivery, answer).await)
                }
                None => Err(answer.into_response()),
            }
        }
    }
}

/// Where a kept delivery is relayed, and under which key.
struct RelayTarget<'a> {
    tenant_id: &'a str,
    repository_key: &'a str,
    relay_key: Option<&'a str>,
}

/// Relays a kept delivery to its repository's hooks; the relay key makes a redelivery relay
/// nothing twice. A failure is logged and the sender still gets its answer: its redelivery
/// relays again.
async fn relay(state: &AppState, received: &Received, event: &str, target: RelayTarget<'_>) {
    let Ok(payload) = super::json_of(&received.content_type(), &received.body) else {
        return;
    };
    let forge_event = crate::hooks::ForgeEvent {
        gitlab: received.source == source::GITLAB,
        event,
        payload: &payload,
        relay_key: target.relay_key,
    };
    if let Err(error) =
        crate::hooks::relay(state, target.tenant_id, target.repository_key, forge_event).await
    {
        tracing::error!(%error, "relaying an inbound delivery to repository hooks failed");
    }
}

// ---- receivers ---------------------------------------------------------------------------------

/// Which forge a shared receiver serves.
#[derive(Clone, Copy, PartialEq)]
enum Forge {
    Github,
    Gitlab,
}

#[utoipa::path(post, path = "/api/github/webhook", tag = "inbound",
    request_body(content = Object, description = "The webhook payload exactly as GitHub sends it: \
        JSON, or form-encoded with a `payload` field", content_type = "application/json"),
    params(
        ("X-Hub-Signature-256" = String, Header, description = "`sha256=<hex HMAC-SHA256(secret, raw body)>`"),
        ("X-GitHub-Event" = String, Header, description = "Event name, e.g. `push`"),
        ("X-GitHub-Delivery" = Option<String>, Header, description = "Delivery GUID; a repeat changes nothing"),
    ),
    responses(
        (status = 200, description = "Stored (and processed): `{\"processed\": true}`"),
        (status = 400, description = "Malformed body (kept as a failed delivery)", body = ErrorBody),
        (status = 401, description = "`{\"error\": \"missing signature\"}` or `{\"error\": \"invalid signature\"}`"),
        (status = 413, description = "Body over the size cap", body = ErrorBody),
        (status = 415, description = "Neither JSON nor form-encoded", body = ErrorBody),
        (status = 422, description = "A payload the event cannot be read from", body = ErrorBody),
    ))]
async fn github_webhook(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    receive_for_services(&state, Forge::Github, headers, body).await
}

#[utoipa::path(post, path = "/api/gitlab/webhook", tag = "inbound",
    request_body(content = Object, description = "The webhook payload exactly as GitLab sends it",
        content_type = "application/json"),
    params(
        ("X-Gitlab-Token" = Option<String>, Header, description = "The service's push secret (or sign with X-Hub-Signature-256)"),
        ("X-Gitlab-Event" = String, Header, description = "Event name, e.g. `Push Hook`"),
        ("Idempotency-Key" = Option<String>, Header, description = "Stable across retries; a repeat changes nothing"),
    ),
    responses(
        (status = 200, description = "Stored (and processed)"),
        (status = 400, description = "Malformed body (kept as a failed delivery)", body = ErrorBody),
        (status = 401, description = "`{\"error\": \"missing signature\"}` or `{\"error\": \"invalid signature\"}`"),
        (status = 413, description = "Body over the size cap", body = ErrorBody),
        (status = 415, description = "Neither JSON nor form-encoded", body = ErrorBody),
        (status = 422, description = "A payload the event cannot be read from", body = ErrorBody),
    ))]
async fn gitlab_webhook(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    receive_for_services(&state, Forge::Gitlab, headers, body).await
}

/// The shared URLs: the payload's repository picks the candidate services (in any tenant), and
/// the delivery is for those whose secret verifies it.
async fn receive_for_services(
    state: &AppState,
    forge: Forge,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let source = match forge {
        Forge::Github => source::GITHUB,
        Forge::Gitlab => source::GITLAB,
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    };
    let signature = header("x-hub-signature-256");
    let token = (forge == Forge::Gitlab)
        .then(|| header("x-gitlab-token"))
        .flatten();
    if signature.is_none() && token.is_none() {
        discard_body(state, &headers, body).await;
        log_rejection(&unread(source, headers, started), "missing signature", None);
        return rejected(source, "missing signature");
    }
    let event_name = match forge {
        Forge::Github => header("x-github-event").unwrap_or_default(),
        Forge::Gitlab => header("x-gitlab-event")
            .map(|event| forge::gitlab_event_name(&event))
            .unwrap_or_default(),
    };
    let bytes = match read_body(state, &headers, body).await {
        Ok(bytes) => bytes,
        Err(error) => {
            let received = unread(source, headers, started);
            let delivery = received.delivery(&event_name);
            return failed(state, &received, delivery, error).await;
        }
    };
    let mut on_its_way = Some(state.inbound.on_its_way());
    let received = received(source, headers, bytes, started);
    let with_push = forge::is_push(forge == Forge::Gitlab, &event_name);
    let mut payload = match payload_of(&received.content_type(), &received.body, with_push) {
        Ok(payload) => payload,
        Err(error) => {
            drop(on_its_way);
            let delivery = received.delivery(&event_name);
            return failed(state, &received, delivery, body_error(error)).await;
        }
    };
    let Some(repository) = payload.envelope.repository.clone() else {
        log_rejection(&received, "no repository in the payload", None);
        return rejected(source, "invalid signature");
    };
    let candidates = match state
        .service_cache
        .by_repository(&state.store, &repository)
        .await
    {
        Ok(candidates) => candidates,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let proof = match (&token, &signature) {
        (Some(token), _) => Proof::Token(token),
        (None, Some(signature)) => Proof::HubSignature(signature),
        (None, None) => unreachable!("checked above"),
    };
    let now = clock::now_ms();
    let verified: Vec<Service> = candidates
        .into_iter()
        .filter(|service| {
            service_secrets(&state.cipher, service, now)
                .iter()
                .any(|secret| proof.holds_for(secret, &received.body))
        })
        .collect();
    if verified.is_empty() {
        log_rejection(&received, "no service secret verifies", Some(&repository));
        return rejected(source, "invalid signature");
    }
    let (parsed, event_name) = match forge {
        Forge::Github => (
            parse_github(received.header("x-github-event"), &mut payload),
            event_name,
        ),
        Forge::Gitlab => {
            // Without the header, GitLab's `object_kind` names the event.
            let event_name = if event_name.is_empty() {
                payload.envelope.object_kind.clone().unwrap_or_default()
            } else {
                event_name
            };
            let parsed = if event_name.is_empty() {
                Err(ApiError::BadRequest(
                    "missing X-Gitlab-Event header".to_owned(),
                ))
            } else {
                event_of(&mut payload, |json| forge::gitlab(&event_name, json))
                    .map(Arc::new)
                    .map_err(payload_error)
            };
            (parsed, event_name)
        }
    };
    let dedupe_key = match forge {
        Forge::Github => received.header("x-github-delivery"),
        Forge::Gitlab => received
            .header("idempotency-key")
            .or_else(|| received.header("x-gitlab-event-uuid")),
    }
    .map(str::to_owned);
    let action = payload.envelope.action.clone();
    let mut by_tenant: BTreeMap<String, Vec<Service>> = BTreeMap::new();
    for service in verified {
        by_tenant
            .entry(service.tenant_id.clone())
            .or_default()
            .push(service);
    }
    let mut outcomes = Vec::with_capacity(by_tenant.len());
    for (tenant_id, services) in by_tenant {
        let verified = Verified {
            received: &received,
            on_its_way: on_its_way.take(),
            tenant_id,
            targets: services.iter().map(|service| service.id.clone()).collect(),
            services,
            event: event_name.clone(),
            action: action.clone(),
            repository: Some(repository.clone()),
            dedupe_key: dedupe_key.clone(),
        };
        match finish(state, verified, &parsed).await {
            Ok(outcome) => outcomes.push(outcome),
            Err(response) => return response,
        }
    }
    accepted(&outcomes, source)
}

#[utoipa::path(post, path = "/api/v1/integrations/{id}/webhook/github", tag = "inbound",
    params(
        ("id" = String, Path, description = "Integration id (`int_…`)"),
        ("X-Hub-Signature-256" = String, Header, description = "`sha256=<hex HMAC-SHA256(webhook_secret, raw body)>`"),
        ("X-GitHub-Event" = String, Header, description = "`push`, `pull_request`, `issues`, …"),
        ("X-GitHub-Delivery" = Option<String>, Header, description = "Delivery GUID; a repeat changes nothing"),
    ),
    request_body(content = Object, description = "The webhook payload exactly as GitHub sends it",
        content_type = "application/json"),
    responses(
        (status = 200, description = "`{\"processed\": true}`"),
        (status = 400, description = "Malformed body (kept as a failed delivery)", body = ErrorBody),
        (status = 401, description = "`{\"error\": \"missing signature\"}` or `{\"error\": \"invalid signature\"}`"),
        (status = 403, description = "The integration is inactive (kept as a failed delivery)", body = ErrorBody),
        (status = 404, description = "No such integration", body = ErrorBody),
        (status = 413, description = "Body over the size cap", body = ErrorBody),
        (status = 415, description = "Neither JSON nor form-encoded", body = ErrorBody),
        (status = 422, description = "A payload the event cannot be read from", body = ErrorBody),
    ))]
async fn integration_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let source = source::INTEGRATION;
    let integration = match parse_id(Kind::Integration, &id) {
        Ok(id) => match integrations::by_id(&state.store, &id).await {
            Ok(integration) => integration,
            Err(error) => return not_found_as(error, "integration").into_response(),
        },
        Err(error) => return error.into_response(),
    };
    let Some(signature) = headers
        .get("x-hub-signature-256")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
    else {
        discard_body(&state, &headers, body).await;
        log_rejection(&unread(source, headers, started), "missing signature", None);
        return rejected(source, "missing signature");
    };
    let event_name = headers
        .get("x-github-event")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_owned();
    let bytes = match read_body(&state, &headers, body).await {
        Ok(bytes) => bytes,
        Err(error) => {
            let received = unread(source, headers, started);
            let mut delivery = received.delivery(&event_name);
            delivery.tenant_id = Some(integration.tenant_id.clone());
            delivery.targets = json!([integration.id]).to_string();
            return failed(&state, &received, delivery, error).await;
        }
    };
    let received = received(source, headers, bytes, started);
    let secret = match webhook_secret_of(&state.cipher, &integration) {
        Ok(secret) => secret,
        Err(error) => return ApiError::internal(error).into_response(),
    };
    if !Proof::HubSignature(&signature).holds_for(secret.as_bytes(), &received.body) {
        log_rejection(&received, "the integration secret does not verify", None);
        return rejected(source, "invalid signature");
    }
    let mut delivery = received.delivery(&event_name);
    delivery.tenant_id = Some(integration.tenant_id.clone());
    delivery.targets = json!([integration.id]).to_string();
    delivery.verification = verification::VERIFIED.to_owned();
    if !integration.is_active {
        let error = ApiError::Forbidden("the integration is inactive".to_owned());
        return failed(&state, &received, delivery, error).await;
    }
    let with_push = forge::is_push(false, &event_name);
    let mut payload = match payload_of(&received.content_type(), &received.body, with_push) {
        Ok(payload) => payload,
        Err(error) => return failed(&state, &received, delivery, body_error(error)).await,
    };
    let repository = payload.envelope.repository.clone();
    let services = match &repository {
        Some(repository) => {
            match services::of_tenant_by_repository(
                &state.store,
                &integration.tenant_id,
                repository,
            )
            .await
            {
                Ok(services) => services,
                Err(error) => return ApiError::from(error).into_response(),
            }
        }
        None => Vec::new(),
    };
    let parsed = parse_github(received.header("x-github-event"), &mut payload);
    let verified = Verified {
        received: &received,
        on_its_way: None,
        tenant_id: integration.tenant_id.clone(),
        targets: vec![integration.id.clone()],
        services,
        event: event_name,
        action: payload.envelope.action.clone(),
        repository,
        dedupe_key: received
            .header("x-github-delivery")
            .map(|key| format!("{}:{key}", integration.id)),
    };
    match finish(&state, verified, &parsed).await {
        Ok(outcome) => accepted(&[outcome], source),
        Err(response) => response,
    }
}

// ---- the API over kept deliveries --------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct InboundDeliveryOut {
    pub id: String,
    /// `github`, `gitlab` or `github_integration`.
    pub source: String,
    /// The services (or the integration) the delivery was verified for.
    pub targets: Vec<String>,
    /// The sender's delivery id (`X-GitHub-Delivery`, GitLab's `Idempotency-Key`).
    pub delivery_id: Option<String>,
    pub event: String,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub content_type: String,
    /// `verified` or `not_checked`.
    pub verification: String,
    /// `processed`, `ignored` or `failed`.
    pub result: String,
    pub error: Option<String>,
    /// What processing changed.
    pub summary: Value,
    pub received_at: String,
    pub duration_ms: i64,
    pub body_size: i64,
    /// How many times processing was replayed.
    pub replays: i64,
    /// Request headers, secrets redacted (single delivery view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Value>,
    /// The raw body as text (single delivery view only; invalid UTF-8 replaced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl InboundDeliveryOut {
    fn from(delivery: InboundDelivery, full: bool) -> Result<InboundDeliveryOut, ApiError> {
        let body = if full {
            Some(String::from_utf8_lossy(&delivery.raw_body()?).into_owned())
        } else {
            None
        };
        Ok(InboundDeliveryOut {
            targets: serde_json::from_str(&delivery.targets).unwrap_or_default(),
            summary: serde_json::from_str(&delivery.summary).unwrap_or(Value::Null),
            received_at: rfc3339_ms(delivery.received_at),
            headers: full.then(|| serde_json::from_str(&delivery.headers).unwrap_or(Value::Null)),
            body,
            id: delivery.id,
            source: delivery.source,
            delivery_id: delivery.delivery_key,
            event: delivery.event,
            action: delivery.action,
            repository: delivery.repository,
            content_type: delivery.content_type,
            verification: delivery.verification,
            result: delivery.result,
            error: delivery.error,
            duration_ms: delivery.duration_ms,
            body_size: delivery.body_size,
            replays: delivery.replays,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboundDeliveryPage {
    pub data: Vec<InboundDeliveryOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InboundQuery {
    /// `github`, `gitlab` or `github_integration`.
    #[param(pattern = r"^(github|gitlab|github_integration)$")]
    source: Option<String>,
    /// Event name, e.g. `push`.
    event: Option<String>,
    /// `processed`, `ignored` or `failed`.
    #[param(pattern = r"^(processed|ignored|failed)$")]
    result: Option<String>,
    /// Only deliveries for this service (`svc_…`) or integration (`int_…`).
    #[param(
        pattern = r"^(svc_[0-9a-f]{32}|int_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
    )]
    target: Option<String>,
    /// Items per page, 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^ind_[0-9a-f]{32}$")]
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/inbound-deliveries", tag = "inbound", params(InboundQuery),
    responses((status = 200, body = InboundDeliveryPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_inbound(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<InboundQuery>,
) -> ApiResult<Json<InboundDeliveryPage>> {
    if let Some(source) = &query.source
        && ![source::GITHUB, source::GITLAB, source::INTEGRATION].contains(&source.as_str())
    {
        return Err(ApiError::BadRequest(format!(
            "source must be github, gitlab or github_integration, not `{source}`"
        )));
    }
    if let Some(wanted) = &query.result
        && !result::ALL.contains(&wanted.as_str())
    {
        return Err(ApiError::BadRequest(format!(
            "result must be one of {}, not `{wanted}`",
            result::ALL.join(", ")
        )));
    }
    if let Some(target) = &query.target
        && parse_id(Kind::Service, target).is_err()
        && parse_id(Kind::Integration, target).is_err()
    {
        return Err(ApiError::BadRequest(
            "target must be a service id (svc_…) or an integration id (int_…)".to_owned(),
        ));
    }
    let page = PageQuery::new(query.limit, query.cursor.clone());
    let limit = page.limit()?;
    let cursor = page.cursor(Kind::InboundDelivery)?;
    let rows = kept::list(
        &state.store,
        &principal.tenant_id,
        &InboundFilter {
            source: query.source.as_deref(),
            event: query.event.as_deref(),
            result: query.result.as_deref(),
            target: query.target.as_deref(),
        },
        cursor.as_deref(),
        limit,
    )
    .await?;
    let (rows, next_cursor) = next_cursor(rows, limit, |row| row.id.clone());
    Ok(Json(InboundDeliveryPage {
        data: rows
            .into_iter()
            .map(|row| InboundDeliveryOut::from(row, false))
            .collect::<Result<_, _>>()?,
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/inbound-deliveries/{id}", tag = "inbound",
    params(("id" = String, Path, description = "Inbound delivery id (`ind_…`)")),
    responses((status = 200, body = InboundDeliveryOut), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_inbound(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<InboundDeliveryOut>> {
    let delivery = super::kept::load(&state, &principal.tenant_id, &id).await?;
    Ok(Json(InboundDeliveryOut::from(delivery, true)?))
}

/// What a replay does besides processing again.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Also relay the delivery to its repository's hooks again (default false).
    #[serde(default)]
    pub relay: bool,
}

#[utoipa::path(post, path = "/api/inbound-deliveries/{id}/replay", tag = "inbound",
    params(("id" = String, Path, description = "Inbound delivery id (`ind_…`)")),
    request_body(content = Option<ReplayRequest>, description = "Optional"),
    responses(
        (status = 200, description = "Processing ran again; the delivery as it is now", body = InboundDeliveryOut),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The delivery was never verified", body = ErrorBody),
        (status = 422, description = "The stored payload still cannot be processed", body = ErrorBody)),
    security(("bearer" = [])))]
async fn replay_inbound(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<InboundDeliveryOut>> {
    let input: ReplayRequest = crate::http::extract::optional_json(&headers, &body)?;
    let delivery = super::kept::replay(&state, &principal.tenant_id, &id, input.relay).await?;
    Ok(Json(InboundDeliveryOut::from(delivery, true)?))
}
