//! The record's pages: services and their settings, a service's deploys, and the pull requests
//! and issues of a service or an integration. Each calls the same feature functions as the API.

pub(crate) mod deploys;
mod forge;
mod services;

use axum::Router;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(services::router())
        .merge(deploys::router())
        .merge(forge::router())
}
