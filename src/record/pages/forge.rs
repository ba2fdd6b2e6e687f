//! The pull requests and issues of a service, with their state and labels, filtered by state.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use serde::Deserialize;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::paging::PageQuery;
use crate::record::forge::{
    self, ISSUE_STATES, Owner, PULL_REQUEST_STATES, labels_of, pull_request_state,
};
use crate::record::services;
use crate::store::services::Service;
use crate::web::{Chrome, FormErrors, PageResult, Section, Viewer, render, when};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/services/{id}/pull-requests", get(pull_requests_page))
        .route("/services/{id}/issues", get(issues_page))
}

crate::web::pages!(PullRequestsPage, IssuesPage);

#[derive(Debug, Default, Deserialize)]
struct StateQuery {
    state: Option<String>,
    cursor: Option<String>,
}

impl StateQuery {
    fn state(&self) -> Option<&str> {
        self.state.as_deref().filter(|state| !state.is_empty())
    }
}

pub struct PullRequestRow {
    pub number: i64,
    pub title: String,
    pub url: String,
    pub state: &'static str,
    pub state_class: &'static str,
    pub author: String,
    pub branches: String,
    pub updated: String,
}

/// The badge class of a pull request's or an issue's state.
fn state_class(state: &str) -> &'static str {
    match state {
        "open" => "ok",
        "merged" => "merged",
        _ => "muted",
    }
}

#[derive(Template)]
#[template(path = "record/pull_requests.html")]
struct PullRequestsPage {
    chrome: Chrome,
    service: Service,
    tab: &'static str,
    rows: Vec<PullRequestRow>,
    next_cursor: Option<String>,
    state: String,
    states: [&'static str; 3],
    errors: FormErrors,
}

/// The rows of a page, or nothing and the filter's error beside it.
fn or_filter_error<T>(
    found: Result<(Vec<T>, Option<String>), ApiError>,
    errors: &mut FormErrors,
) -> PageResult<(Vec<T>, Option<String>)> {
    match found {
        Ok(found) => Ok(found),
        Err(error @ ApiError::BadRequest(_)) => {
            *errors = FormErrors::from_api(error, &["state", "cursor"])?;
            Ok((Vec::new(), None))
        }
        Err(error) => Err(error.into()),
    }
}

async fn pull_requests_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<StateQuery>,
) -> PageResult {
    let tenant_id = &viewer.user.tenant_id;
    let service = services::load(&state, tenant_id, &id).await?;
    let owner = Owner::of_service(&service);
    let page = PageQuery::new(None, query.cursor.clone());
    let mut errors = FormErrors::default();
    let (rows, next_cursor) = or_filter_error(
        forge::pull_requests(&state, tenant_id, &owner, query.state(), &page).await,
        &mut errors,
    )?;
    Ok(render(&PullRequestsPage {
        chrome: Chrome::new(
            &viewer,
            &headers,
            format!("Pull requests · {}", service.name),
            Section::Services,
        ),
        rows: rows
            .into_iter()
            .map(|pr| {
                let state = pull_request_state(&pr);
                PullRequestRow {
                    number: pr.number,
                    state_class: state_class(state),
                    state,
                    branches: format!("{} → {}", pr.head_ref, pr.base_ref),
                    updated: when(pr.updated_at),
                    title: pr.title,
                    url: pr.url,
                    author: pr.author,
                }
            })
            .collect(),
        next_cursor,
        state: query.state().unwrap_or("").to_owned(),
        states: PULL_REQUEST_STATES,
        errors,
        service,
        tab: "pull-requests",
    }))
}

pub struct IssueRow {
    pub number: i64,
    pub title: String,
    pub url: String,
    pub state: String,
    pub state_class: &'static str,
    pub labels: Vec<String>,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "record/issues.html")]
struct IssuesPage {
    chrome: Chrome,
    service: Service,
    tab: &'static str,
    rows: Vec<IssueRow>,
    next_cursor: Option<String>,
    state: String,
    states: [&'static str; 2],
    errors: FormErrors,
}

async fn issues_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<StateQuery>,
) -> PageResult {
    let tenant_id = &viewer.user.tenant_id;
    let service = services::load(&state, tenant_id, &id).await?;
    let owner = Owner::of_service(&service);
    let page = PageQuery::new(None, query.cursor.clone());
    let mut errors = FormErrors::default();
    let (rows, next_cursor) = or_filter_error(
        forge::issues(&state, tenant_id, &owner, query.state(), &page).await,
        &mut errors,
    )?;
    Ok(render(&IssuesPage {
        chrome: Chrome::new(
            &viewer,
            &headers,
            format!("Issues · {}", service.name),
            Section::Services,
        ),
        rows: rows
            .into_iter()
            .map(|issue| IssueRow {
                number: issue.number,
                labels: labels_of(&issue),
                state_class: state_class(&issue.state),
                updated: when(issue.updated_at),
                state: issue.state,
                title: issue.title,
                url: issue.url,
            })
            .collect(),
        next_cursor,
        state: query.state().unwrap_or("").to_owned(),
        states: ISSUE_STATES,
        errors,
        service,
        tab: "issues",
    }))
}
