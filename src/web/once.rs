//! One-time values — a new signing secret, push secret, API token or invitation link — carried
//! across the redirect that follows the form which made them, so that reloading the page never
//! repeats the action and the value is shown exactly once.
//!
//! The value is sealed with the server's key under this session's hash and the page it is for,
//! kept in a short-lived `HttpOnly` cookie, and opened by that page alone, whose answer clears
//! the cookie. Another session, another page, or the same cookie after its few minutes open
//! nothing. It works across nodes (they share the key) and keeps nothing on the server.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::people::SignedIn;

pub const COOKIE: &str = "hookline_once";
/// Long enough for the redirect, short enough that a forgotten cookie is soon worthless.
const LIFETIME_MS: i64 = 120_000;

#[derive(Serialize, Deserialize)]
struct Sealed {
    /// What the value is and for which object, e.g. `endpoint-secret:wh_…`.
    purpose: String,
    value: String,
    expires_at: i64,
}

fn context(viewer: &SignedIn) -> String {
    format!("web.once:{}", viewer.session_hash)
}

/// A redirect to `to` with a flash message, carrying `value` for the page that asks for
/// `purpose`.
pub fn redirect(
    state: &AppState,
    viewer: &SignedIn,
    to: &str,
    flash: &str,
    purpose: &str,
    value: &str,
) -> Response {
    let mut response = super::redirect_with_flash(to, flash);
    let sealed = Sealed {
        purpose: purpose.to_owned(),
        value: value.to_owned(),
        expires_at: crate::clock::now_ms() + LIFETIME_MS,
    };
    let Ok(json) = serde_json::to_string(&sealed) else {
        return response;
    };
    let cookie = URL_SAFE_NO_PAD.encode(state.cipher.seal_str(&context(viewer), &json));
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{COOKIE}={cookie}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
        LIFETIME_MS / 1_000
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The value carried for `purpose` to this session, if the request holds one still fresh.
/// The page showing it must clear the cookie ([`super::Chrome::clear_once`]).
pub fn take(
    state: &AppState,
    viewer: &SignedIn,
    headers: &HeaderMap,
    purpose: &str,
) -> Option<String> {
    let raw = super::session::cookie(headers, COOKIE)?;
    let sealed = URL_SAFE_NO_PAD.decode(raw.as_bytes()).ok()?;
    let json = state.cipher.open_str(&context(viewer), &sealed).ok()?;
    let sealed: Sealed = serde_json::from_str(&json).ok()?;
    (sealed.purpose == purpose && sealed.expires_at > crate::clock::now_ms())
        .then_some(sealed.value)
}

/// The `Set-Cookie` value that clears the carried value.
pub fn cleared() -> HeaderValue {
    HeaderValue::from_static("hookline_once=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax")
}
