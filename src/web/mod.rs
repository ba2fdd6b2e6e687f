//! What every page of the web UI shares: the page router, the signed-in person and their CSRF
//! check (`session`), the layout and its navigation, flash messages, form errors, the HTML error
//! page, security headers, and the static assets embedded in the binary.
//!
//! Pages are thin: each feature keeps its own in `<feature>/pages.rs` and performs every action
//! through the same feature function its JSON API calls.

pub mod assets;
pub mod chart;
pub mod form;
pub mod once;
pub mod session;
pub mod sparkline;

use askama::Template;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::people::{Role, SignedIn};

pub use form::{FormData, FormErrors};
pub use session::{Admin, CsrfForm, Viewer};

const FLASH_COOKIE: &str = "hookline_flash";
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// Every page route, with the security headers every HTML answer carries.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/static/{file}", get(assets::serve))
        .route("/favicon.ico", get(favicon))
        .merge(crate::people::pages::router())
        .merge(crate::outbound::pages::router())
        .merge(crate::record::pages::router())
        .merge(crate::analysis::pages::router())
        .merge(crate::incidents::pages::router())
        .merge(crate::fixes::pages::router())
        .merge(crate::tenancy::pages::router())
        .merge(crate::hooks::pages::router())
        .layer(middleware::from_fn(security_headers))
}

/// Browsers ask for `/favicon.ico` on their own: the icon is the embedded SVG.
async fn favicon() -> Redirect {
    Redirect::permanent(assets::url("favicon.svg"))
}

async fn home(viewer: Option<Viewer>) -> Redirect {
    match viewer {
        Some(_) => Redirect::to("/services"),
        None => Redirect::to("/login"),
    }
}

/// Strict headers on every page answer: no inline script, no framing, no sniffing, and no caching
/// of pages that may show a secret once.
async fn security_headers(request: Request, next: Next) -> Response {
    let is_static = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !is_static {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// `?cursor=` of a paged list page.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CursorQuery {
    pub cursor: Option<String>,
}

/// The sections of the navigation; a page names the one it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Services,
    Incidents,
    FixProposals,
    Webhooks,
    EventTypes,
    Tokens,
    Users,
    Account,
    None,
}

/// What the layout needs on every page: who is signed in, their CSRF token, the current section
/// and a flash message from the action before.
pub struct Chrome {
    pub title: String,
    pub section: Section,
    pub user_name: String,
    pub user_email: String,
    pub is_admin: bool,
    pub csrf: String,
    pub flash: Option<String>,
    pub signed_in: bool,
    /// The page shows a one-time value ([`once`]): its answer clears the cookie that carried it.
    pub clear_once: bool,
}

impl Chrome {
    pub fn new(
        viewer: &SignedIn,
        headers: &HeaderMap,
        title: impl Into<String>,
        section: Section,
    ) -> Chrome {
        Chrome {
            title: title.into(),
            section,
            user_name: viewer.user.display_name.clone(),
            user_email: viewer.user.email.clone(),
            is_admin: viewer.role == Role::Admin,
            csrf: viewer.csrf_token.clone(),
            flash: read_flash(headers),
            signed_in: true,
            clear_once: false,
        }
    }

    /// For the pages of people not signed in (sign-in, setup links, errors).
    pub fn anonymous(headers: &HeaderMap, title: impl Into<String>) -> Chrome {
        Chrome {
            title: title.into(),
            section: Section::None,
            user_name: String::new(),
            user_email: String::new(),
            is_admin: false,
            csrf: String::new(),
            flash: read_flash(headers),
            signed_in: false,
            clear_once: false,
        }
    }

    /// Whether the page belongs to the navigation entry `name` (for `aria-current`).
    pub fn at(&self, name: &str) -> bool {
        let current = match self.section {
            Section::Services => "services",
            Section::Incidents => "incidents",
            Section::FixProposals => "fix-proposals",
            Section::Webhooks => "webhooks",
            Section::EventTypes => "event-types",
            Section::Tokens => "tokens",
            Section::Users => "users",
            Section::Account => "account",
            Section::None => "",
        };
        current == name
    }

    pub fn css(&self) -> &'static str {
        assets::url("app.css")
    }

    pub fn js(&self) -> &'static str {
        assets::url("app.js")
    }

    pub fn favicon(&self) -> &'static str {
        assets::url("favicon.svg")
    }

    pub fn htmx(&self) -> &'static str {
        assets::url("htmx.min.js")
    }
}

/// A page template: it holds the layout's [`Chrome`].
pub trait Page: Template {
    fn chrome(&self) -> &Chrome;
}

/// Implements [`Page`] for templates whose layout data sits in a `chrome` field.
macro_rules! pages {
    ($($page:ident),* $(,)?) => {
        $(impl $crate::web::Page for $page {
            fn chrome(&self) -> &$crate::web::Chrome {
                &self.chrome
            }
        })*
    };
}
pub(crate) use pages;

/// Renders a page (200) and clears the flash message it showed.
pub fn render(page: &impl Page) -> Response {
    render_with(StatusCode::OK, page)
}

pub fn render_with(status: StatusCode, page: &impl Page) -> Response {
    let chrome = page.chrome();
    match page.render() {
        Ok(html) => {
            let mut response = (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response();
            if chrome.flash.is_some()
                && let Ok(cleared) = HeaderValue::from_str(&format!(
                    "{FLASH_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
                ))
            {
                response.headers_mut().append(header::SET_COOKIE, cleared);
            }
            if chrome.clear_once {
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, once::cleared());
            }
            response
        }
        Err(error) => PageError::Api(ApiError::internal(error)).into_response(),
    }
}

/// A redirect after an action, carrying a message for the next page.
pub fn redirect_with_flash(to: &str, message: &str) -> Response {
    let encoded: String = url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
    let mut response = Redirect::to(to).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "{FLASH_COOKIE}={encoded}; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"
    )) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

fn read_flash(headers: &HeaderMap) -> Option<String> {
    let raw = session::cookie(headers, FLASH_COOKIE)?;
    let message: String = url::form_urlencoded::parse(format!("m={raw}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())?;
    let message: String = message
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    (!message.is_empty()).then_some(message)
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    status: u16,
    heading: &'static str,
    message: String,
}

pages!(ErrorPage);

/// What an error page said, kept on its answer so [`with_navigation`] can draw it again inside
/// the navigation of the person who asked.
#[derive(Debug, Clone)]
struct ErrorInfo {
    status: StatusCode,
    heading: &'static str,
    message: String,
}

fn error_page(chrome: Chrome, info: &ErrorInfo) -> Response {
    let mut response = render_with(
        info.status,
        &ErrorPage {
            chrome,
            status: info.status.as_u16(),
            heading: info.heading,
            message: info.message.clone(),
        },
    );
    response.extensions_mut().insert(info.clone());
    response
}

/// Error pages keep the navigation for a signed-in person: a page that failed before it knew
/// who asked (an unknown address, a malformed id) is drawn again with their session's chrome.
pub async fn with_navigation(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers().clone();
    let response = next.run(request).await;
    let Some(info) = response.extensions().get::<ErrorInfo>().cloned() else {
        return response;
    };
    if session::cookie(&headers, session::SESSION_COOKIE).is_none() {
        return response;
    }
    let (mut parts, ()) = axum::http::Request::new(()).into_parts();
    parts.headers = headers;
    match session::signed_in(&parts, &state).await {
        Ok(Some(viewer)) => {
            let mut chrome = Chrome::new(&viewer, &parts.headers, info.heading, Section::None);
            // The flash belongs to the next real page.
            chrome.flash = None;
            error_page(chrome, &info)
        }
        _ => response,
    }
}

/// Why a page could not be shown; rendered as an HTML page with the matching status. 500s say
/// nothing of their cause (it is logged once, as the API does).
#[derive(Debug)]
pub enum PageError {
    Api(ApiError),
    /// A form without a valid CSRF token, or from another site.
    Forbidden(&'static str),
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        PageError::Api(error)
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(error: crate::store::StoreError) -> Self {
        PageError::Api(error.into())
    }
}

pub type PageResult<T = Response> = Result<T, PageError>;

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, heading, message) = match self {
            PageError::Forbidden(why) => (StatusCode::FORBIDDEN, "Forbidden", why.to_owned()),
            PageError::Api(ApiError::Internal(cause)) => {
                tracing::error!(error = format!("{cause:#}"), "page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The server could not show this page. The error was logged; try again."
                        .to_owned(),
                )
            }
            PageError::Api(error) => {
                let status = error.status();
                let heading = match status {
                    StatusCode::NOT_FOUND => "Not found",
                    StatusCode::TOO_MANY_REQUESTS => "Too many requests",
                    StatusCode::CONFLICT => "Not possible right now",
                    _ => "That did not work",
                };
                (status, heading, error.to_string())
            }
        };
        error_page(
            Chrome::anonymous(&HeaderMap::new(), heading),
            &ErrorInfo {
                status,
                heading,
                message,
            },
        )
    }
}

/// A page address that only takes a form (`…/secret`, `…/acknowledge`), opened as a page — from
/// the address bar after the form, say — leads to the page the form was on; other methods get
/// an HTML page saying what is allowed.
pub fn form_address(method: &axum::http::Method, path: &str) -> Response {
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        let parent = path.trim_end_matches('/').rsplit_once('/').map(|(p, _)| p);
        let to = match parent {
            Some("") | None => "/",
            Some(parent) => parent,
        };
        return Redirect::to(to).into_response();
    }
    PageError::Api(ApiError::MethodNotAllowed(
        "This address does not take that request.".to_owned(),
    ))
    .into_response()
}

/// The answer for an unknown path outside the API: an HTML 404.
pub fn not_found_page() -> Response {
    PageError::Api(ApiError::NotFound("page")).into_response()
}

/// Formats a stored millisecond time for people: `2026-03-21 14:30:05 UTC`.
pub fn when(ms: i64) -> String {
    let text = crate::clock::rfc3339_ms(ms);
    format!("{} {} UTC", &text[..10], &text[11..19])
}

/// Pretty-prints JSON text (as stored) for a `<pre>`; text that is not JSON is shown as it is.
pub fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| text.to_owned())
}

/// The base URL people reach this server at: `web.public_url`, else the `Host` they used.
pub fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if state.config.web.public_url.is_some() {
        return state.config.web.base_url(state.config.listen);
    }
    headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .filter(|host| {
            host.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .map(|host| format!("http://{host}"))
        .unwrap_or_else(|| state.config.web.base_url(state.config.listen))
}

/// Refuses a member where only admins may act.
pub fn require_admin(viewer: &SignedIn) -> PageResult<()> {
    if viewer.role == Role::Admin {
        Ok(())
    } else {
        Err(PageError::Forbidden(
            "Only admins manage users and API tokens.",
        ))
    }
}
