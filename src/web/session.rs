//! The signed-in person on every page, and the checks every state-changing form passes: the
//! request comes from this site (Origin, Sec-Fetch-Site) and carries the session's CSRF token.

use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::{FormData, PageError};
use crate::app::AppState;
use crate::people::{self, SignedIn};

pub const SESSION_COOKIE: &str = "hookline_session";
/// The largest form body a page accepts.
const MAX_FORM_BYTES: usize = 256 * 1024;

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// The `Set-Cookie` value that starts a session.
pub fn session_cookie(state: &AppState, value: &str, max_age_seconds: i64) -> String {
    let secure = if state.config.web.secure_cookie() {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age_seconds}; HttpOnly; SameSite=Lax{secure}"
    )
}

/// The `Set-Cookie` value that ends one.
pub fn cleared_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax")
}

pub(crate) async fn signed_in(
    parts: &Parts,
    state: &AppState,
) -> Result<Option<SignedIn>, PageError> {
    let Some(value) = cookie(&parts.headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    Ok(people::resume_session(&state.store, &state.config, &value).await?)
}

fn to_sign_in(parts: &Parts) -> Response {
    // After signing in the browser comes back with a GET: only a page it can GET is worth
    // returning to (a form's action is not).
    let here = if parts.method == axum::http::Method::GET {
        parts
            .uri
            .path_and_query()
            .map(|path| path.as_str())
            .unwrap_or("/")
    } else {
        "/"
    };
    let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
    Redirect::to(&format!("/login?next={next}")).into_response()
}

/// A signed-in person; anyone else is sent to the sign-in page and back here afterwards.
pub struct Viewer(pub SignedIn);

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match signed_in(parts, state).await {
            Ok(Some(viewer)) => Ok(Viewer(viewer)),
            Ok(None) => Err(to_sign_in(parts)),
            Err(error) => Err(error.into_response()),
        }
    }
}

impl OptionalFromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Response> {
        signed_in(parts, state)
            .await
            .map(|viewer| viewer.map(Viewer))
            .map_err(IntoResponse::into_response)
    }
}

/// A signed-in admin; a member gets a 403 page.
pub struct Admin(pub SignedIn);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Viewer(viewer) =
            <Viewer as FromRequestParts<AppState>>::from_request_parts(parts, state).await?;
        super::require_admin(&viewer).map_err(IntoResponse::into_response)?;
        Ok(Admin(viewer))
    }
}

/// Whether a form post comes from a page of this site: browsers say so in `Sec-Fetch-Site` and
/// `Origin`; a request that sends neither (an old browser, curl) passes on the CSRF token alone.
/// The origin may be the `Host` the request names or `web.public_url` (behind a proxy that
/// rewrites `Host`).
pub fn same_origin(headers: &HeaderMap, public_url: Option<&str>) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let origin = origin.trim_end_matches('/');
    if let Some(public) = public_url
        && same_site_address(origin, public.trim_end_matches('/'))
    {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, _)) = origin.split_once("://") else {
        return false;
    };
    same_site_address(origin, &format!("{scheme}://{host}"))
}

/// Whether two `scheme://host[:port]` addresses name the same origin (a default port may be
/// written or left out).
fn same_site_address(one: &str, other: &str) -> bool {
    let normal = |address: &str| {
        let address = address.to_ascii_lowercase();
        let address = address
            .strip_suffix(":443")
            .filter(|_| address.starts_with("https://"))
            .or_else(|| {
                address
                    .strip_suffix(":80")
                    .filter(|_| address.starts_with("http://"))
            })
            .map(str::to_owned)
            .unwrap_or(address);
        address.split('/').take(3).collect::<Vec<_>>().join("/")
    };
    normal(one) == normal(other)
}

async fn read_form(request: Request) -> Result<FormData, Response> {
    let body = axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES)
        .await
        .map_err(|_| {
            PageError::Api(crate::http::error::ApiError::PayloadTooLarge(
                "the form is too large".to_owned(),
            ))
            .into_response()
        })?;
    Ok(FormData::parse(&body))
}

/// A form posted by a signed-in person from this site with their session's CSRF token. Anything
/// else is a 403 page, and the action does not run.
pub struct CsrfForm {
    pub viewer: SignedIn,
    pub form: FormData,
}

impl FromRequest<AppState> for CsrfForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        if !same_origin(request.headers(), state.config.web.public_url.as_deref()) {
            return Err(PageError::Forbidden(
                "This form was sent from another site, so it was refused.",
            )
            .into_response());
        }
        let (mut parts, body) = request.into_parts();
        let Viewer(viewer) =
            <Viewer as FromRequestParts<AppState>>::from_request_parts(&mut parts, state).await?;
        let form = read_form(Request::from_parts(parts, body)).await?;
        if !people::csrf_matches(&viewer, form.get("csrf")) {
            return Err(PageError::Forbidden(
                "The form's security token is missing or belongs to another session. \
                 Reload the page and try again.",
            )
            .into_response());
        }
        Ok(CsrfForm { viewer, form })
    }
}

/// A form from someone not signed in yet (sign-in, setup links): only the origin is checked.
pub struct PublicForm(pub FormData);

impl FromRequest<AppState> for PublicForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        if !same_origin(request.headers(), state.config.web.public_url.as_deref()) {
            return Err(PageError::Forbidden(
                "This form was sent from another site, so it was refused.",
            )
            .into_response());
        }
        read_form(request).await.map(PublicForm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let map = headers(&[("cookie", "a=1; hookline_session=abc"), ("cookie", "b=2")]);
        assert_eq!(cookie(&map, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&map, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&map, "hookline"), None);
    }

    #[test]
    fn cross_site_posts_are_refused() {
        assert!(same_origin(&headers(&[]), None));
        assert!(same_origin(
            &headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
                ("sec-fetch-site", "same-origin"),
            ]),
            None
        ));
        assert!(!same_origin(
            &headers(&[("sec-fetch-site", "cross-site")]),
            None
        ));
        assert!(!same_origin(
            &headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example")
            ]),
            None
        ));
        // Behind a proxy that rewrites Host, the public address is this site too.
        let proxied = headers(&[
            ("host", "10.0.0.5:8080"),
            ("origin", "https://hooks.example.com"),
        ]);
        assert!(!same_origin(&proxied, None));
        assert!(same_origin(&proxied, Some("https://hooks.example.com/")));
        assert!(same_origin(
            &headers(&[
                ("host", "hooks.example.com:443"),
                ("origin", "https://hooks.example.com")
            ]),
            None
        ));
        assert!(!same_origin(
            &headers(&[
                ("host", "hooks.example.com"),
                ("origin", "https://hooks.example.com.evil.example")
            ]),
            None
        ));
    }
}
