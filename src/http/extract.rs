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
        if !is_json(request.headers()) {
            return Err(json_rejection(JsonRejection::MissingJsonContentType(
                Default::default(),
            )));
        }
        let body = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| json_rejection(JsonRejection::BytesRejection(rejection)))?;
        refuse_non_object(&body)?;
        match axum::Json::<T>::from_bytes(&body) {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(JsonRejection::JsonDataError(error)) => with_integral_numbers(&body)
                .ok_or_else(|| json_rejection(JsonRejection::JsonDataError(error)))
                .map(ApiJson),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// Every request body of the API is a JSON object. serde would also fill a struct from an array
/// of its fields in order; that is refused here, as the schema says.
fn refuse_non_object(body: &[u8]) -> Result<(), ApiError> {
    match body.iter().find(|byte| !byte.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        Some(b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
            // Valid JSON of another kind is a shape error; anything else is malformed.
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => Err(ApiError::Unprocessable(
                    "invalid request body: expected a JSON object".to_owned(),
                )),
                Err(error) => Err(ApiError::BadRequest(format!("malformed JSON: {error}"))),
            }
        }
        _ => Err(ApiError::BadRequest(
            "malformed JSON: expected a JSON object".to_owned(),
        )),
    }
}

/// For `#[serde(deserialize_with = "object")]` on a nested struct: only a JSON object fills it
/// (serde would also take an array of its fields in order).
pub fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    match serde_json::Value::deserialize(deserializer)? {
        value @ serde_json::Value::Object(_) => {
            serde_json::from_value(value).map_err(serde::de::Error::custom)
        }
        _ => Err(serde::de::Error::custom("expected a JSON object")),
    }
}

/// [`object`] for an optional field: `null` or absent is `None`.
pub fn optional_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        None => Ok(None),
        Some(value @ serde_json::Value::Object(_)) => serde_json::from_value(value)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(_) => Err(serde::de::Error::custom("expected a JSON object")),
    }
}

/// Whether a request says its body is JSON (`application/json`, or any `+json` type).
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
}

/// JSON counts `5.0` as the integer 5 (and JSON Schema's `integer` allows it); serde does not.
/// A body refused for its shape is read again with every whole-valued number as an integer.
fn with_integral_numbers<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    fn integral(value: &mut serde_json::Value) -> bool {
        match value {
            serde_json::Value::Number(number) if number.is_f64() => {
                let float = number.as_f64().unwrap_or(f64::NAN);
                if float.fract() == 0.0 && float.abs() < 9.0e15 {
                    *value = serde_json::Value::from(float as i64);
                    true
                } else {
                    false
                }
            }
            serde_json::Value::Array(items) => {
                let mut changed = false;
                for item in items {
                    changed |= integral(item);
                }
                changed
            }
            serde_json::Value::Object(fields) => {
                let mut changed = false;
                for field in fields.values_mut() {
                    changed |= integral(field);
                }
                changed
            }
            _ => false,
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    if !integral(&mut value) {
        return None;
    }
    serde_json::from_value(value).ok()
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

/// A query string; anything unparsable is a 400 naming the parameter, and so is a NUL character
/// (no stored text can hold one).
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        if url::form_urlencoded::parse(query.as_bytes())
            .any(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            return Err(ApiError::BadRequest(
                "invalid query string: a parameter holds a NUL character".to_owned(),
            ));
        }
        let uri = &parts.uri;
        axum::extract::Query::<T>::try_from_uri(uri)
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|error| {
                ApiError::BadRequest(format!("invalid query string: {}", source_text(&error)))
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
        tenancy::authenticate_cached(&state.store, &state.token_cache, token)
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

/// A JSON body that may be left out: an empty body, or JSON `null`, is `T::default()`; anything
/// else must be JSON of the expected shape.
pub fn optional_json<T>(headers: &axum::http::HeaderMap, body: &[u8]) -> Result<T, ApiError>
where
    T: DeserializeOwned + Default,
{
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType(
            "expected a JSON body with Content-Type: application/json".to_owned(),
        ));
    }
    let is_null = body.trim_ascii() == b"null";
    if !is_null {
        refuse_non_object(body)?;
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    Option::<T>::deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value.unwrap_or_default()))
        .or_else(|error| match with_integral_numbers::<Option<T>>(body) {
            Some(value) if error.is_data() => Ok(value.unwrap_or_default()),
            _ => Err(error),
        })
        .map_err(|error| {
            if error.is_data() {
                ApiError::Unprocessable(format!("invalid request body: {error}"))
            } else {
                ApiError::BadRequest(format!("malformed JSON: {error}"))
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue, header};

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Limits {
        rate: Option<i64>,
        burst: Option<i64>,
    }

    fn json_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers
    }

    fn read(body: &str) -> Result<Limits, ApiError> {
        optional_json(&json_headers(), body.as_bytes())
    }

    #[test]
    fn an_optional_body_may_be_absent_or_null() {
        assert_eq!(read("").unwrap(), Limits::default());
        assert_eq!(read(" null ").unwrap(), Limits::default());
        assert_eq!(
            read(r#"{"rate": 5}"#).unwrap(),
            Limits {
                rate: Some(5),
                burst: None
            }
        );
    }

    #[test]
    fn whole_valued_numbers_count_as_integers() {
        assert_eq!(read(r#"{"rate": 5.0, "burst": 2}"#).unwrap().rate, Some(5));
        assert!(matches!(
            read(r#"{"rate": 5.5}"#),
            Err(ApiError::Unprocessable(_))
        ));
    }

    #[test]
    fn only_an_object_fills_a_body() {
        for (body, unprocessable) in [
            ("[5, 6]", true),
            ("[null, null]", true),
            ("\"text\"", true),
            ("7", true),
            ("[5,", false),
            ("nope", false),
        ] {
            match read(body) {
                Err(ApiError::Unprocessable(_)) if unprocessable => {}
                Err(ApiError::BadRequest(_)) if !unprocessable => {}
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[derive(Debug, Deserialize)]
    struct Nested {
        #[serde(deserialize_with = "object")]
        inner: Limits,
    }

    #[test]
    fn a_nested_struct_takes_only_an_object() {
        let nested: Nested = serde_json::from_str(r#"{"inner": {"rate": 1}}"#).unwrap();
        assert_eq!(nested.inner.rate, Some(1));
        assert!(serde_json::from_str::<Nested>(r#"{"inner": [1, 2]}"#).is_err());
    }
}
