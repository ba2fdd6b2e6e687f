//! Request extractors whose rejections are [`ApiError`]s, so every bad input gets the same JSON
//! error shape: bodies, query strings, path IDs and the bearer token.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::app::AppState;
use crate::ids::{self, Kind};
use crate::tenancy::{self, Principal};

/// A JSON body: 415 without a JSON content type, 400 when malformed, 413 when too large, 422 when
/// it does not fit the expected shape (missing or unknown fields, wrong types).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "expected a JSON body with Content-Type: application/json".to_owned(),
        ),
        JsonRejection::JsonSyntaxError(error) => {
            ApiError::BadRequest(format!("malformed JSON: {}", source_text(&error)))
        }
        JsonRejection::JsonDataError(error) => {
            ApiError::Unprocessable(format!("invalid request body: {}", source_text(&error)))
        }
        other if super::body_timeout::timed_out(&other) => ApiError::RequestTimeout,
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge("request body exceeds the size limit".to_owned())
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// The innermost cause of a rejection (serde's own words: field, line, column), without axum's
/// generic preamble.
fn source_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

/// A query string; anything unparsable is a 400 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection| {
                ApiError::BadRequest(format!("invalid query string: {}", source_text(&rejection)))
            })
    }
}

/// Checks that a path segment is an ID of `kind`: a malformed one is a 400 that says what was
/// expected, rather than a 404 that hides a typo.
pub fn parse_id(kind: Kind, candidate: &str) -> Result<String, ApiError> {
    if ids::is_valid(kind, candidate) {
        Ok(candidate.to_owned())
    } else {
        Err(ApiError::BadRequest(format!(
            "`{}` is not a valid {} id (expected {}_ followed by {})",
            candidate.chars().take(80).collect::<String>(),
            kind.noun(),
            kind.prefix(),
            if kind == Kind::Integration {
                "a hyphenated UUID"
            } else {
                "32 hex digits"
            }
        )))
    }
}

/// The caller, authenticated by `Authorization: Bearer <token>`.
impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "missing API token: send Authorization: Bearer <token>",
            ))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or(ApiError::Unauthorized(
                "malformed Authorization header: expected Bearer <token>",
            ))?;
        tenancy::authenticate(&state.store, token)
            .await?
            .ok_or(ApiError::Unauthorized("invalid or revoked API token"))
    }
}

/// Checks a free-text field: at most `max` characters once trimmed, and no control characters
/// (PostgreSQL refuses NUL in text, and none belongs in a name). Returns the trimmed text.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(ApiError::Unprocessable(format!(
            "{field} must be at most {max} characters"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ApiError::Unprocessable(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(value.to_owned())
}

/// Like [`check_text`], for a field that must not be empty once trimmed.
pub fn required_text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = check_text(field, value, max)?;
    if value.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "{field} must not be empty"
        )));
    }
    Ok(value)
}

/// For `#[serde(default, deserialize_with = "present")]` on an `Option<Option<T>>`: tells a field
/// given as `null` (`Some(None)`, clear it) from a missing one (`None`, leave it).
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A JSON body that may be left out: an empty body is `T::default()`, anything else must be JSON
/// of the expected shape.
pub fn optional_json<T>(headers: &axum::http::HeaderMap, body: &[u8]) -> Result<T, ApiError>
where
    T: DeserializeOwned + Default,
{
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        });
    if !is_json {
        return Err(ApiError::UnsupportedMediaType(
            "expected a JSON body with Content-Type: application/json".to_owned(),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    T::deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|error| {
            if error.is_data() {
                ApiError::Unprocessable(format!("invalid request body: {error}"))
            } else {
                ApiError::BadRequest(format!("malformed JSON: {error}"))
            }
        })
}
