//! The HTTP surface: router assembly, middleware (request ids, tracing, metrics, body limits),
//! the OpenAPI document, and the operational endpoints.

pub mod body_timeout;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod paging;
pub mod serve;
mod system;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use crate::config::Role;
use error::ApiError;

/// The header that carries each request's id, set when the client did not send one.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hookline API",
        description = "Self-hosted webhook hub: inbound forge webhooks, signed outbound webhooks, \
                       and the engineering record between them.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "operations", description = "Health, readiness, metrics and this document"),
        (name = "tenancy", description = "The caller's tenant and its API tokens"),
        (name = "events", description = "Event types and publishing events"),
        (name = "webhooks", description = "Outbound webhook endpoints, deliveries and their history"),
        (name = "inbound", description = "GitHub and GitLab webhook receivers and the deliveries they kept"),
        (name = "services", description = "Services, their push-webhook secret, and their commits"),
        (name = "integrations", description = "GitHub integrations"),
        (name = "deploys", description = "Deploys and the commits they shipped"),
        (name = "incidents", description = "Incidents and their suspect commits"),
        (name = "monitors", description = "HTTP monitors and their checks"),
        (name = "fix proposals", description = "Reverts and AI fixes for incidents, and their pull requests"),
        (name = "experiments", description = "Experiments, their activity, and GitHub issues for them"),
        (name = "repository hooks", description = "GitLab-style hooks of a repository: forge events relayed with retries and history"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token: `Authorization: Bearer hkl_…`"))
                    .build(),
            ),
        );
    }
}

/// Every route of the API with its OpenAPI description (the document is derived from it).
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(system::router())
        .merge(crate::tenancy::api::router())
        .merge(crate::outbound::api::router())
        .merge(crate::inbound::api::router())
        .merge(crate::record::api::router())
        .merge(crate::analysis::api::router())
        .merge(crate::record::deploys::router())
        .merge(crate::record::forge::router())
        .merge(crate::incidents::api::router())
        .merge(crate::monitors::api::router())
        .merge(crate::fixes::api::router())
        .merge(crate::integrations::api::router())
        .merge(crate::experiments::api::router())
        .merge(crate::hooks::api::router())
}

/// The OpenAPI document of every route, as served at `/api/openapi.json`.
pub fn openapi() -> OpenApiDoc {
    documented_routes().split_for_parts().1
}

/// The application's router for a node of `role`: a worker node answers only the operational
/// endpoints (health, readiness, metrics).
pub fn router(state: AppState, role: Role) -> Router {
    let (api, _) = documented_routes().split_for_parts();
    let routes = if role.serves_api() {
        api.merge(crate::web::router())
    } else {
        system::operations_only()
    };
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    routes
        .fallback(|uri: axum::http::Uri| async move {
            // People who mistype a page address get a page; programs get the API's JSON.
            if uri.path().starts_with("/api/") || uri.path() == "/api" {
                ApiError::NotFound("route").into_response()
            } else {
                crate::web::not_found_page()
            }
        })
        .method_not_allowed_fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                if uri.path().starts_with("/api/") || uri.path() == "/api" {
                    ApiError::MethodNotAllowed("method not allowed on this route".to_owned())
                        .into_response()
                } else {
                    crate::web::form_address(&method, uri.path())
                }
            },
        )
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::web::with_navigation,
        ))
        .layer(DefaultBodyLimit::max(state.config.http.max_body_bytes))
        .layer(middleware::from_fn(record_metrics))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let id = request
                    .headers()
                    .get(REQUEST_ID_HEADER)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("-");
                // A one-time link's code is a credential: it never reaches a log line.
                let path = match request.uri().path() {
                    path if path.starts_with("/setup/") => "/setup/{code}",
                    path => path,
                };
                tracing::info_span!(
                    "request",
                    request_id = %id,
                    method = %request.method(),
                    path = %path,
                )
            }),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(middleware::map_request(drop_unsafe_request_id))
        .layer(middleware::from_fn(errors_as_json))
        .with_state(state)
}

/// The longest request URI served; a longer one gets a JSON 414. (Past 64 KiB the HTTP layer
/// itself refuses the request head, with an empty 414.)
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// One error format for programs: an error answer of the API or a webhook receiver that is not
/// already JSON (a rejection from the router or an extractor, in plain text) becomes the
/// documented `{"error", "code"}`; a URI past [`MAX_URI_BYTES`] is refused the same way.
async fn errors_as_json(request: Request, next: Next) -> Response {
    let uri_length = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if uri_length > MAX_URI_BYTES {
        return error::json_error(
            axum::http::StatusCode::URI_TOO_LONG,
            format!("the request URI is {uri_length} bytes; at most {MAX_URI_BYTES} are accepted"),
        );
    }
    let path = request.uri().path();
    let for_programs =
        path == "/api" || path.starts_with("/api/") || path.starts_with("/webhooks/");
    let response = next.run(request).await;
    let status = response.status();
    if !for_programs || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4 * 1024)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let mut answer = error::json_error(status, message);
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// A client's `X-Request-Id` is kept only when it is short and plain (letters, digits, `-`, `_`,
/// `.`, `:`; at most 128): anything else could forge or break a log line, so it is dropped and a
/// fresh id is made instead.
async fn drop_unsafe_request_id(mut request: Request) -> Request {
    let safe = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .map(|value| is_safe_request_id(value.as_bytes()));
    if safe == Some(false) {
        request.headers_mut().remove(REQUEST_ID_HEADER);
    }
    request
}

fn is_safe_request_id(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Counts requests and times them by route template (never by raw path, which holds IDs).
async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(
        "hookline_http_requests_total",
        "method" => method.clone(), "route" => route.clone(), "status" => status
    )
    .increment(1);
    metrics::histogram!(
        "hookline_http_request_duration_seconds",
        "method" => method, "route" => route
    )
    .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::is_safe_request_id;

    #[test]
    fn only_short_plain_request_ids_are_kept() {
        assert!(is_safe_request_id(b"7f3c2a10-9b1e-4c55-8e0d-2f1a6b7c8d9e"));
        assert!(is_safe_request_id(b"trace:abc.1_2"));
        for bad in [
            &b""[..],
            b"}{\"level\":\"ERROR\"",
            b"a b",
            b"x\xff",
            &[b'a'; 129][..],
        ] {
            assert!(!is_safe_request_id(bad), "{bad:?}");
        }
    }
}
