//! The operations on services shared by the JSON API and the web pages: create, change (the
//! auto-analyze toggle among them), and the push secret's generation and rotation.

use super::{generate_push_secret, github_token_context as token_context, validate_repository};
use crate::app::AppState;
use crate::clock;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{parse_id, required_text};
use crate::ids::{self, Kind};
use crate::inbound::{service_previous_secret_context, service_secret_context};
use crate::store::services::{self, Service};
use crate::tenancy::api::not_found_as;

/// The longest grace window a rotation may give the replaced push secret: one week.
pub const MAX_GRACE_SECONDS: u64 = 7 * 24 * 3_600;

/// What a person gives to create a service.
#[derive(Debug, Default)]
pub struct NewService {
    pub name: String,
    pub repository: String,
    pub github_token: Option<String>,
    pub auto_analyze: bool,
}

/// Fields to change; `None` leaves one as it is. `github_token: Some(None)` removes the token.
#[derive(Debug, Default)]
pub struct ServiceChanges {
    pub name: Option<String>,
    pub repository: Option<String>,
    pub github_token: Option<Option<String>>,
    pub auto_analyze: Option<bool>,
}

/// A push secret just generated: in clear only now.
pub struct IssuedSecret {
    pub secret: String,
    pub created_at: i64,
    /// Until when the replaced secret still verifies (`None`: it stopped at once).
    pub previous_valid_until: Option<i64>,
}

fn seal_token(state: &AppState, service_id: &str, token: &str) -> ApiResult<Vec<u8>> {
    crate::github::check_token("github_token", token).map_err(ApiError::Unprocessable)?;
    Ok(state.cipher.seal_str(&token_context(service_id), token))
}

pub async fn create(state: &AppState, tenant_id: &str, input: NewService) -> ApiResult<Service> {
    let name = required_text("name", &input.name, 200)?;
    let repository = validate_repository(&input.repository).map_err(ApiError::Unprocessable)?;
    let id = ids::new(Kind::Service);
    let github_token = input
        .github_token
        .as_deref()
        .map(|token| seal_token(state, &id, token))
        .transpose()?;
    let now = clock::now_ms();
    let service = Service {
        repository_key: repository.to_lowercase(),
        id,
        tenant_id: tenant_id.to_owned(),
        name,
        repository,
        github_token,
        auto_analyze: input.auto_analyze,
        webhook_secret: None,
        webhook_secret_created_at: None,
        previous_webhook_secret: None,
        previous_secret_until: None,
        created_at: now,
        updated_at: now,
    };
    services::insert(&state.store, &service).await?;
    state.service_cache.clear();
    tracing::info!(service_id = %service.id, "service created");
    Ok(service)
}

/// A service of the tenant by its id as given (malformed: 400; another tenant's: 404).
pub async fn load(state: &AppState, tenant_id: &str, id: &str) -> ApiResult<Service> {
    let id = parse_id(Kind::Service, id)?;
    services::get(&state.store, tenant_id, &id)
        .await
        .map_err(|error| not_found_as(error, "service"))
}

pub async fn update(
    state: &AppState,
    tenant_id: &str,
    id: &str,
    changes: ServiceChanges,
) -> ApiResult<Service> {
    let mut service = load(state, tenant_id, id).await?;
    if let Some(name) = &changes.name {
        service.name = required_text("name", name, 200)?;
    }
    if let Some(repository) = &changes.repository {
        service.repository = validate_repository(repository).map_err(ApiError::Unprocessable)?;
        service.repository_key = service.repository.to_lowercase();
    }
    match &changes.github_token {
        None => {}
        Some(None) => service.github_token = None,
        Some(Some(token)) => service.github_token = Some(seal_token(state, &service.id, token)?),
    }
    if let Some(auto_analyze) = changes.auto_analyze {
        service.auto_analyze = auto_analyze;
    }
    services::update(&state.store, &service).await?;
    state.service_cache.clear();
    Ok(services::get(&state.store, tenant_id, &service.id).await?)
}

pub async fn delete(state: &AppState, tenant_id: &str, id: &str) -> ApiResult<Service> {
    let service = load(state, tenant_id, id).await?;
    services::delete(&state.store, tenant_id, &service.id).await?;
    state.service_cache.clear();
    tracing::info!(service_id = %service.id, "service deleted");
    Ok(service)
}

/// The first push secret of a service; a service that has one must rotate instead.
pub async fn generate_secret(
    state: &AppState,
    tenant_id: &str,
    id: &str,
) -> ApiResult<IssuedSecret> {
    let service = load(state, tenant_id, id).await?;
    if service.webhook_secret.is_some() {
        return Err(ApiError::Conflict(
            "the service already has a webhook secret; rotate it to get a new one".to_owned(),
        ));
    }
    let issued = replace_secret(state, &service, None).await?;
    tracing::info!(service_id = %service.id, "service webhook secret generated");
    Ok(issued)
}

/// A new push secret; the old one stops at once, or after `grace_seconds` (at most a week).
pub async fn rotate_secret(
    state: &AppState,
    tenant_id: &str,
    id: &str,
    grace_seconds: u64,
    expected: Option<&str>,
) -> ApiResult<IssuedSecret> {
    let service = load(state, tenant_id, id).await?;
    if let Some(expected) = expected
        && service
            .webhook_secret
            .as_deref()
            .map(crate::crypto::fingerprint)
            .as_deref()
            != Some(expected)
    {
        return Err(ApiError::Conflict(
            crate::outbound::endpoints::ALREADY_ROTATED.to_owned(),
        ));
    }
    if grace_seconds > MAX_GRACE_SECONDS {
        return Err(ApiError::Unprocessable(format!(
            "grace_seconds must be at most {MAX_GRACE_SECONDS}"
        )));
    }
    if service.webhook_secret.is_none() {
        return Err(ApiError::Conflict(
            "the service has no webhook secret yet; generate one first".to_owned(),
        ));
    }
    let grace_until = (grace_seconds > 0)
        .then(|| clock::now_ms() + i64::try_from(grace_seconds * 1_000).unwrap_or(i64::MAX));
    let issued = replace_secret(state, &service, grace_until).await?;
    tracing::info!(service_id = %service.id, grace_seconds, "service webhook secret rotated");
    Ok(issued)
}

async fn replace_secret(
    state: &AppState,
    service: &Service,
    grace_until: Option<i64>,
) -> ApiResult<IssuedSecret> {
    let secret = generate_push_secret();
    let sealed = state
        .cipher
        .seal_str(&service_secret_context(&service.id), &secret);
    // The replaced secret is sealed again under its own context, so one column's value can never
    // be swapped into the other.
    let previous = match (&service.webhook_secret, grace_until) {
        (Some(current), Some(_)) => Some(
            state
                .cipher
                .open(&service_secret_context(&service.id), current)
                .map(|plain| {
                    state
                        .cipher
                        .seal(&service_previous_secret_context(&service.id), &plain)
                })
                .map_err(ApiError::internal)?,
        ),
        _ => None,
    };
    services::set_secret(
        &state.store,
        service,
        &sealed,
        previous.as_deref(),
        grace_until,
    )
    .await?;
    state.service_cache.clear();
    Ok(IssuedSecret {
        secret,
        created_at: clock::now_ms(),
        previous_valid_until: grace_until,
    })
}
