//! The admins' API tokens page: list, create (the secret shown once), revoke. The same
//! operations as `/api/tokens`.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

use crate::app::AppState;
use crate::http::paging::PageQuery;
use crate::people::SignedIn;
use crate::store::tenants::Token;
use crate::web::{
    Admin, Chrome, CsrfForm, CursorQuery, FormErrors, PageResult, Section, redirect_with_flash,
    render, render_with, when,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/org/tokens", get(tokens_page).post(create))
        .route("/org/tokens/{id}/revoke", post(revoke))
}

crate::web::pages!(TokensPage);

struct TokenRow {
    id: String,
    name: String,
    prefix: String,
    created: String,
    last_used: String,
    revoked: bool,
}

#[derive(Template)]
#[template(path = "tenancy/tokens.html")]
struct TokensPage {
    chrome: Chrome,
    tokens: Vec<TokenRow>,
    next_cursor: Option<String>,
    name: String,
    errors: FormErrors,
    created_secret: Option<String>,
    created_name: String,
}

async fn token_rows(
    state: &AppState,
    viewer: &SignedIn,
    cursor: Option<String>,
) -> PageResult<(Vec<TokenRow>, Option<String>)> {
    let (tokens, next) = crate::tenancy::list_tokens(
        &state.store,
        &viewer.user.tenant_id,
        &PageQuery::new(None, cursor),
    )
    .await?;
    let rows = tokens
        .into_iter()
        .map(|token: Token| TokenRow {
            created: when(token.created_at),
            last_used: token
                .last_used_at
                .map(when)
                .unwrap_or_else(|| "never".to_owned()),
            revoked: token.revoked_at.is_some(),
            id: token.id,
            name: token.name,
            prefix: token.prefix,
        })
        .collect();
    Ok((rows, next))
}

/// A token just created, carried across the redirect to be shown once.
#[derive(serde::Serialize, serde::Deserialize)]
struct Created {
    name: String,
    secret: String,
}

const CREATED_TOKEN: &str = "api-token";

async fn tokens_page(
    State(state): State<AppState>,
    Admin(viewer): Admin,
    headers: HeaderMap,
    Query(query): Query<CursorQuery>,
) -> PageResult {
    let (tokens, next_cursor) = token_rows(&state, &viewer, query.cursor).await?;
    let created: Option<Created> = crate::web::once::take(&state, &viewer, &headers, CREATED_TOKEN)
        .and_then(|value| serde_json::from_str(&value).ok());
    let mut chrome = Chrome::new(&viewer, &headers, "API tokens", Section::Tokens);
    chrome.clear_once = created.is_some();
    Ok(render(&TokensPage {
        chrome,
        tokens,
        next_cursor,
        name: String::new(),
        errors: FormErrors::default(),
        created_name: created
            .as_ref()
            .map(|created| created.name.clone())
            .unwrap_or_default(),
        created_secret: created.map(|created| created.secret),
    }))
}

async fn create(State(state): State<AppState>, CsrfForm { viewer, form }: CsrfForm) -> PageResult {
    crate::web::require_admin(&viewer)?;
    match crate::tenancy::create_token(&state.store, &viewer.user.tenant_id, form.get("name")).await
    {
        Ok(issued) => {
            let created = Created {
                name: issued.token.name.clone(),
                secret: issued.secret,
            };
            Ok(crate::web::once::redirect(
                &state,
                &viewer,
                "/org/tokens",
                &format!("Token {} created.", created.name),
                CREATED_TOKEN,
                &serde_json::to_string(&created).unwrap_or_default(),
            ))
        }
        Err(error) => {
            let errors = FormErrors::from_api(error, &["name"])?;
            let (tokens, next_cursor) = token_rows(&state, &viewer, None).await?;
            Ok(render_with(
                StatusCode::UNPROCESSABLE_ENTITY,
                &TokensPage {
                    chrome: Chrome::new(&viewer, &HeaderMap::new(), "API tokens", Section::Tokens),
                    tokens,
                    next_cursor,
                    name: form.get("name").to_owned(),
                    errors,
                    created_name: String::new(),
                    created_secret: None,
                },
            ))
        }
    }
}

async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, .. }: CsrfForm,
) -> PageResult {
    crate::web::require_admin(&viewer)?;
    let token = crate::tenancy::revoke_token(
        &state.store,
        &state.token_cache,
        &viewer.user.tenant_id,
        &id,
    )
    .await?;
    Ok(redirect_with_flash(
        "/org/tokens",
        &format!(
            "Token {} revoked: requests with it now get 401.",
            token.name
        ),
    ))
}
