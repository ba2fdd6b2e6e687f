//! The pages of people: sign in and out, one-time setup links, the account page, and the admins'
//! user list with invitations.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{LinkForm, LinkTarget, Role, SignInError};
use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::Kind;
use crate::store::people;
use crate::web::session::{self, PublicForm};
use crate::web::{
    Admin, Chrome, CsrfForm, CursorQuery, FormErrors, PageResult, Section, Viewer,
    redirect_with_flash, render, render_with, when,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/setup/{code}", get(link_page).post(use_link))
        .route("/account", get(account_page))
        .route("/account/password", post(change_password))
        .route("/org/users", get(users_page).post(invite))
        .route("/org/users/{id}/remove", post(remove))
}

/// Where to go after signing in: a path of this site only, never another host.
fn safe_next(next: &str) -> &str {
    // Browsers drop tabs and newlines from URLs and read `\` as `/`: `/\t/evil.example` would
    // become `//evil.example`. Only plain path characters pass.
    let plain = next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    if plain && next.starts_with('/') && !next.starts_with("//") {
        next
    } else {
        "/services"
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(
            safe_next("/org/webhooks?status=failed"),
            "/org/webhooks?status=failed"
        );
        for outside in [
            "//evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\\/evil.example",
            "\\/evil.example",
            "https://evil.example",
            "/ /evil.example",
            "",
        ] {
            assert_eq!(safe_next(outside), "/services", "{outside:?}");
        }
    }
}

crate::web::pages!(LoginPage, LinkPage, AccountPage, UsersPage);

#[derive(Template)]
#[template(path = "people/login.html")]
struct LoginPage {
    chrome: Chrome,
    next: String,
    email: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_page(
    viewer: Option<Viewer>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Response {
    let next = query.next.unwrap_or_default();
    if viewer.is_some() {
        return Redirect::to(safe_next(&next)).into_response();
    }
    render(&LoginPage {
        chrome: Chrome::anonymous(&headers, "Sign in"),
        next,
        email: String::new(),
        error: None,
    })
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    PublicForm(form): PublicForm,
) -> PageResult {
    let email = form.get("email").trim().to_owned();
    let next = form.get("next").to_owned();
    let refused = |status: StatusCode, error: String, email: String, next: String| {
        render_with(
            status,
            &LoginPage {
                chrome: Chrome::anonymous(&headers, "Sign in"),
                next,
                email,
                error: Some(error),
            },
        )
    };
    match super::sign_in(&state.store, &email, form.get("password")).await {
        Ok(user) => {
            let session = super::start_session(&state.store, &state.config, &user).await?;
            let mut response = Redirect::to(safe_next(&next)).into_response();
            set_cookie(
                &mut response,
                &session::session_cookie(&state, &session.cookie_value, session.max_age_seconds),
            );
            Ok(response)
        }
        Err(SignInError::WrongCredentials) => Ok(refused(
            StatusCode::UNAUTHORIZED,
            "Wrong email or password.".to_owned(),
            email,
            next,
        )),
        Err(SignInError::Throttled {
            retry_after_seconds,
        }) => {
            let mut response = refused(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed sign-ins for this email. Try again in {} minute(s).",
                    (retry_after_seconds + 59) / 60
                ),
                email,
                next,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
            Ok(response)
        }
        Err(SignInError::Store(error)) => Err(error.into()),
    }
}

fn set_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

async fn logout(State(state): State<AppState>, CsrfForm { viewer, .. }: CsrfForm) -> PageResult {
    super::sign_out(&state.store, &viewer).await?;
    let mut response = redirect_with_flash("/login", "You are signed out.");
    set_cookie(&mut response, &session::cleared_session_cookie());
    Ok(response)
}

#[derive(Template)]
#[template(path = "people/setup.html")]
struct LinkPage {
    chrome: Chrome,
    code: String,
    new_admin: bool,
    email: String,
    display_name: String,
    errors: FormErrors,
}

fn dead_link() -> crate::web::PageError {
    crate::web::PageError::Api(ApiError::NotFound(
        "link (it is unknown, already used or expired)",
    ))
}

async fn link_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> PageResult {
    let (_, target) = super::open_link(&state.store, &code)
        .await?
        .ok_or_else(dead_link)?;
    let (new_admin, email, display_name) = match target {
        LinkTarget::NewAdmin => (true, String::new(), String::new()),
        LinkTarget::Existing(user) => (false, user.email, user.display_name),
    };
    let title = if new_admin {
        "Create the first admin"
    } else {
        "Choose your password"
    };
    Ok(render(&LinkPage {
        chrome: Chrome::anonymous(&headers, title),
        code,
        new_admin,
        email,
        display_name,
        errors: FormErrors::default(),
    }))
}

async fn use_link(
    State(state): State<AppState>,
    Path(code): Path<String>,
    PublicForm(form): PublicForm,
) -> PageResult {
    let (_, target) = super::open_link(&state.store, &code)
        .await?
        .ok_or_else(dead_link)?;
    let new_admin = matches!(target, LinkTarget::NewAdmin);
    let outcome = if form.get("password") != form.get("password_confirm") {
        Err(ApiError::Unprocessable(
            "password_confirm does not match the password".to_owned(),
        ))
    } else {
        super::complete_link(
            &state.store,
            &code,
            LinkForm {
                email: new_admin.then(|| form.get("email")),
                display_name: form.get("display_name"),
                password: form.get("password"),
            },
        )
        .await
    };
    match outcome {
        Ok(user) => {
            let session = super::start_session(&state.store, &state.config, &user).await?;
            let mut response = redirect_with_flash(
                "/services",
                &format!("Welcome, {}. You are signed in.", user.display_name),
            );
            set_cookie(
                &mut response,
                &session::session_cookie(&state, &session.cookie_value, session.max_age_seconds),
            );
            Ok(response)
        }
        Err(error) => {
            let errors = FormErrors::from_api(
                error,
                &["email", "display_name", "password_confirm", "password"],
            )?;
            let email = match target {
                LinkTarget::NewAdmin => form.get("email").to_owned(),
                LinkTarget::Existing(user) => user.email,
            };
            Ok(render_with(
                StatusCode::UNPROCESSABLE_ENTITY,
                &LinkPage {
                    chrome: Chrome::anonymous(&HeaderMap::new(), "Set up your account"),
                    code,
                    new_admin,
                    email,
                    display_name: form.get("display_name").to_owned(),
                    errors,
                },
            ))
        }
    }
}

#[derive(Template)]
#[template(path = "people/account.html")]
struct AccountPage {
    chrome: Chrome,
    role: &'static str,
    errors: FormErrors,
}

async fn account_page(Viewer(viewer): Viewer, headers: HeaderMap) -> Response {
    let page = AccountPage {
        role: viewer.role.as_str(),
        errors: FormErrors::default(),
        chrome: Chrome::new(&viewer, &headers, "Your account", Section::Account),
    };
    render(&page)
}

async fn change_password(
    State(state): State<AppState>,
    CsrfForm { viewer, form }: CsrfForm,
) -> PageResult {
    match super::change_password(
        &state.store,
        &viewer,
        form.get("current_password"),
        form.get("new_password"),
    )
    .await
    {
        Ok(()) => Ok(redirect_with_flash(
            "/account",
            "Password changed. Your other sessions are signed out.",
        )),
        Err(error) => {
            let errors = FormErrors::from_api(error, &["current_password", "new_password"])?;
            Ok(render_with(
                StatusCode::UNPROCESSABLE_ENTITY,
                &AccountPage {
                    role: viewer.role.as_str(),
                    errors,
                    chrome: Chrome::new(
                        &viewer,
                        &HeaderMap::new(),
                        "Your account",
                        Section::Account,
                    ),
                },
            ))
        }
    }
}

struct UserRow {
    id: String,
    name: String,
    email: String,
    role: String,
    invited: bool,
    is_you: bool,
    created: String,
}

#[derive(Template)]
#[template(path = "people/users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<UserRow>,
    next_cursor: Option<String>,
    errors: FormErrors,
    email: String,
    invited_link: Option<String>,
    invited_email: String,
    invited_until: String,
}

async fn user_rows(
    state: &AppState,
    viewer: &super::SignedIn,
    cursor: Option<String>,
) -> PageResult<(Vec<UserRow>, Option<String>)> {
    let page = PageQuery::new(None, cursor);
    let limit = page.limit()?;
    let rows = people::list_users(
        &state.store,
        &viewer.user.tenant_id,
        page.cursor(Kind::User)?.as_deref(),
        limit + 1,
    )
    .await?;
    let (rows, next) = next_cursor(rows, limit, |user| user.id.clone());
    Ok((
        rows.into_iter()
            .map(|user| UserRow {
                is_you: user.id == viewer.user.id,
                invited: user.password_hash.is_none(),
                created: when(user.created_at),
                id: user.id,
                name: user.display_name,
                email: user.email,
                role: user.role,
            })
            .collect(),
        next,
    ))
}

/// An invitation just made, carried across the redirect to be shown once.
#[derive(serde::Serialize, serde::Deserialize)]
struct Invited {
    email: String,
    link: String,
    until: String,
}

const INVITED: &str = "invitation";

async fn users_page(
    State(state): State<AppState>,
    Admin(viewer): Admin,
    headers: HeaderMap,
    Query(query): Query<CursorQuery>,
) -> PageResult {
    let (users, next_cursor) = user_rows(&state, &viewer, query.cursor).await?;
    let invited: Option<Invited> = crate::web::once::take(&state, &viewer, &headers, INVITED)
        .and_then(|value| serde_json::from_str(&value).ok());
    let mut chrome = Chrome::new(&viewer, &headers, "Users", Section::Users);
    chrome.clear_once = invited.is_some();
    Ok(render(&UsersPage {
        chrome,
        users,
        next_cursor,
        errors: FormErrors::default(),
        email: String::new(),
        invited_email: invited
            .as_ref()
            .map(|invited| invited.email.clone())
            .unwrap_or_default(),
        invited_until: invited
            .as_ref()
            .map(|invited| invited.until.clone())
            .unwrap_or_default(),
        invited_link: invited.map(|invited| invited.link),
    }))
}

async fn invite(
    State(state): State<AppState>,
    headers: HeaderMap,
    CsrfForm { viewer, form }: CsrfForm,
) -> PageResult {
    crate::web::require_admin(&viewer)?;
    let role = if form.get("role") == "admin" {
        Role::Admin
    } else {
        Role::Member
    };
    match super::invite(
        &state.store,
        &viewer.user.tenant_id,
        form.get("email"),
        role,
    )
    .await
    {
        Ok((user, link)) => {
            let base_url = crate::web::public_base(&state, &headers);
            let invited = Invited {
                email: user.email.clone(),
                link: link.url(&base_url),
                until: when(link.expires_at),
            };
            Ok(crate::web::once::redirect(
                &state,
                &viewer,
                "/org/users",
                &format!("{} is invited.", user.email),
                INVITED,
                &serde_json::to_string(&invited).unwrap_or_default(),
            ))
        }
        Err(error) => {
            let errors = FormErrors::from_api(error, &["email"])?;
            let (users, next_cursor) = user_rows(&state, &viewer, None).await?;
            Ok(render_with(
                StatusCode::UNPROCESSABLE_ENTITY,
                &UsersPage {
                    chrome: Chrome::new(&viewer, &HeaderMap::new(), "Users", Section::Users),
                    users,
                    next_cursor,
                    email: form.get("email").to_owned(),
                    errors,
                    invited_link: None,
                    invited_email: String::new(),
                    invited_until: String::new(),
                },
            ))
        }
    }
}

async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, .. }: CsrfForm,
) -> PageResult {
    crate::web::require_admin(&viewer)?;
    let id = crate::http::extract::parse_id(Kind::User, &id)?;
    match super::remove_user(&state.store, &viewer, &id).await {
        Ok(user) => Ok(redirect_with_flash(
            "/org/users",
            &format!("{} was removed.", user.email),
        )),
        Err(ApiError::Conflict(message)) => Ok(redirect_with_flash("/org/users", &message)),
        Err(other) => Err(other.into()),
    }
}
