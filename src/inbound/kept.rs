//! The inbound deliveries Hookline kept, as the API and the pages read them: one of them, the
//! ones a service received, and replaying a delivery's processing.

use super::api::{event_of, payload_error};
use super::{apply, forge, payload_of, source, verification};
use crate::app::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::parse_id;
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::Kind;
use crate::store::inbound::{self as kept, InboundDelivery, InboundFilter};
use crate::store::services;
use crate::tenancy::api::not_found_as;

/// A kept delivery of the tenant by its id as given (malformed: 400; another tenant's: 404).
pub async fn load(state: &AppState, tenant_id: &str, id: &str) -> ApiResult<InboundDelivery> {
    let id = parse_id(Kind::InboundDelivery, id)?;
    kept::get(&state.store, tenant_id, &id)
        .await
        .map_err(|error| not_found_as(error, "inbound delivery"))
}

/// One page of the deliveries verified for a service (or an integration), newest first.
pub async fn of_target(
    state: &AppState,
    tenant_id: &str,
    target: &str,
    page: &PageQuery,
) -> ApiResult<(Vec<InboundDelivery>, Option<String>)> {
    let limit = page.limit()?;
    let cursor = page.cursor(Kind::InboundDelivery)?;
    let rows = kept::list(
        &state.store,
        tenant_id,
        &InboundFilter {
            source: None,
            event: None,
            result: None,
            target: Some(target),
        },
        cursor.as_deref(),
        limit,
    )
    .await?;
    Ok(next_cursor(rows, limit, |row| row.id.clone()))
}

/// Runs a verified delivery's processing again over its stored body; returns it as it is now.
/// With `relay`, its repository's hooks get it again too (they do not otherwise).
pub async fn replay(
    state: &AppState,
    tenant_id: &str,
    id: &str,
    relay: bool,
) -> ApiResult<InboundDelivery> {
    let store = &state.store;
    let delivery = load(state, tenant_id, id).await?;
    let id = delivery.id.clone();
    if delivery.verification != verification::VERIFIED {
        return Err(ApiError::Conflict(
            "only a verified delivery can be replayed; this one was never verified".to_owned(),
        ));
    }
    let body = delivery.raw_body()?;
    let gitlab = delivery.source == source::GITLAB;
    let mut payload = payload_of(
        &delivery.content_type,
        &body,
        forge::is_push(gitlab, &delivery.event),
    )
    .map_err(|error| ApiError::Unprocessable(error.to_string()))?;
    let event = event_of(&mut payload, |json| match gitlab {
        true => forge::gitlab(&delivery.event, json),
        false => forge::github(&delivery.event, json),
    })
    .map_err(payload_error)?;
    let repository = delivery.repository.clone();
    let services = if delivery.source == source::INTEGRATION {
        match &repository {
            Some(repository) => {
                services::of_tenant_by_repository(store, tenant_id, repository).await?
            }
            None => Vec::new(),
        }
    } else {
        let targets: Vec<String> = serde_json::from_str(&delivery.targets).unwrap_or_default();
        services::by_ids(store, tenant_id, &targets).await?
    };
    let mut tx = store.begin().await?;
    let applied = apply(
        &mut tx,
        &id,
        tenant_id,
        &services,
        repository.as_deref(),
        &event,
    )
    .await?;
    kept::record_replay(&mut tx, &id, applied.result, &applied.summary.to_string()).await?;
    tx.commit().await?;
    tracing::info!(delivery_id = %id, relay, "inbound delivery replayed");
    if relay && let Some(repository) = &repository {
        let payload = super::json_of(&delivery.content_type, &body)
            .map_err(|error| ApiError::Unprocessable(error.to_string()))?;
        crate::hooks::relay(
            state,
            tenant_id,
            &repository.to_lowercase(),
            crate::hooks::ForgeEvent {
                gitlab,
                event: &delivery.event,
                payload: &payload,
                relay_key: None,
            },
        )
        .await?;
    }
    Ok(kept::get(store, tenant_id, &id).await?)
}
