//! A service's deploys as a timeline per environment, and a deploy's page with the commits it
//! shipped and their risk.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;

use crate::analysis::pages::CommitRow;
use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::{self, Kind};
use crate::record::services;
use crate::store::deploys::{self, Deploy};
use crate::store::services::Service;
use crate::tenancy::api::not_found_as;
use crate::web::{Chrome, CursorQuery, PageResult, Section, Viewer, render, when};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/services/{id}/deploys", get(list_page))
        .route("/deploys/{id}", get(deploy_page))
}

crate::web::pages!(ListPage, DeployPage);

/// What a deploy's environment is called on a page.
pub fn environment_name(deploy: &Deploy) -> String {
    deploy
        .environment
        .clone()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "no environment".to_owned())
}

pub struct DeployRow {
    pub id: String,
    pub short_sha: String,
    pub branch: String,
    pub deployed_by: String,
    pub deployed: String,
}

impl DeployRow {
    pub fn of(deploy: &Deploy) -> DeployRow {
        DeployRow {
            id: deploy.id.clone(),
            short_sha: deploy.commit_sha.chars().take(7).collect(),
            branch: deploy.branch.clone().unwrap_or_default(),
            deployed_by: deploy.deployed_by.clone().unwrap_or_default(),
            deployed: when(deploy.deployed_at),
        }
    }
}

/// One environment's deploys on the page, newest first.
struct Lane {
    environment: String,
    deploys: Vec<DeployRow>,
}

#[derive(Template)]
#[template(path = "record/deploys.html")]
struct ListPage {
    chrome: Chrome,
    service: Service,
    tab: &'static str,
    lanes: Vec<Lane>,
    next_cursor: Option<String>,
}

async fn list_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<CursorQuery>,
) -> PageResult {
    let service = services::load(&state, &viewer.user.tenant_id, &id).await?;
    let page = PageQuery::new(None, query.cursor);
    let limit = page.limit()?;
    let rows = deploys::list(
        &state.store,
        &service.tenant_id,
        &service.id,
        page.cursor(Kind::Deploy)?.as_deref(),
        limit,
    )
    .await?;
    let (rows, next_cursor) = next_cursor(rows, limit, |row| row.id.clone());
    let mut lanes: Vec<Lane> = Vec::new();
    for deploy in &rows {
        let environment = environment_name(deploy);
        match lanes
            .iter_mut()
            .find(|lane| lane.environment == environment)
        {
            Some(lane) => lane.deploys.push(DeployRow::of(deploy)),
            None => lanes.push(Lane {
                environment,
                deploys: vec![DeployRow::of(deploy)],
            }),
        }
    }
    Ok(render(&ListPage {
        chrome: Chrome::new(
            &viewer,
            &headers,
            format!("Deploys · {}", service.name),
            Section::Services,
        ),
        service,
        tab: "deploys",
        lanes,
        next_cursor,
    }))
}

#[derive(Template)]
#[template(path = "record/deploy.html")]
struct DeployPage {
    chrome: Chrome,
    service: Service,
    deploy: Deploy,
    row: DeployRow,
    environment: String,
    commits: Vec<CommitRow>,
}

async fn deploy_page(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    if !ids::is_valid(Kind::Deploy, &id) {
        return Err(ApiError::NotFound("deploy").into());
    }
    let deploy = deploys::get(&state.store, &viewer.user.tenant_id, &id)
        .await
        .map_err(|error| not_found_as(error, "deploy"))?;
    let service = services::load(&state, &viewer.user.tenant_id, &deploy.service_id).await?;
    let commits = deploys::commits_of(&state.store, &deploy.id)
        .await?
        .iter()
        .map(|commit| CommitRow::of(commit, Vec::new()))
        .collect();
    Ok(render(&DeployPage {
        chrome: Chrome::new(
            &viewer,
            &headers,
            format!("Deploy {} · {}", deploy.id, service.name),
            Section::Services,
        ),
        row: DeployRow::of(&deploy),
        environment: environment_name(&deploy),
        service,
        deploy,
        commits,
    }))
}
