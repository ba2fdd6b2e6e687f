//! Repository hooks: forge events relayed, GitLab-style, to the hooks of the repository they name.
//! A hook is an endpoint of kind `repository_hook` (its own URL, optional secret token, events and
//! payload format); relaying queues ordinary deliveries, so the outbound engine delivers them with
//! its queue, leases, retries, SSRF guard and attempt history. This module owns the hook rules,
//! the relay, and the headers a hook delivery carries.

pub mod api;
pub mod gitlab;
pub mod pages;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::app::AppState;
use crate::clock;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::parse_id;
use crate::http::paging::{PageQuery, next_cursor};
use crate::ids::{self, Kind};
use crate::outbound::validate_endpoint_url;
use crate::store::outbound::{self as queue, Endpoint, KIND_REPOSITORY_HOOK};
use crate::store::{StoreResult, Tx, hooks as stored};
use gitlab::HookPayload;

/// The events a hook subscribes to, as GitLab names them.
pub const EVENTS: [&str; 5] = ["push", "merge_request", "note", "issue", "pipeline"];
/// What a hook subscribes to when none are named: pushes, as GitLab's default.
pub const DEFAULT_EVENTS: [&str; 1] = ["push"];

/// A hook's payload format.
pub const FORMAT_GITLAB: &str = "gitlab";
pub const FORMAT_ORIGINAL: &str = "original";

/// Failed attempts in a row after which a hook is temporarily disabled, as GitLab does.
pub const TEMPORARY_AFTER: i64 = 4;
/// Failed attempts in a row after which a hook is disabled until a person enables it.
pub const PERMANENT_AFTER: i64 = 40;
const FIRST_BACKOFF_MS: i64 = 60_000;
const MAX_BACKOFF_MS: i64 = 24 * 3_600_000;

/// What a hook's recent failures make of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Not attempted before `until` (events are still queued for it).
    TemporarilyDisabled {
        until: i64,
        reason: String,
    },
    /// Not attempted until a person enables it again (or sends a Test).
    Disabled {
        reason: String,
    },
}

/// GitLab's rule: a 4xx other than 429, or 40 failures in a row, disables a hook; 4 failures in a
/// row disable it for a minute, doubling with each further failure up to a day.
pub fn health_after(failures: i64, client_error: Option<i64>, now: i64) -> Health {
    if let Some(status) = client_error {
        return Health::Disabled {
            reason: format!("the receiver answered {status}"),
        };
    }
    if failures >= PERMANENT_AFTER {
        return Health::Disabled {
            reason: format!("{failures} failures in a row"),
        };
    }
    if failures >= TEMPORARY_AFTER {
        let doublings = u32::try_from(failures - TEMPORARY_AFTER)
            .unwrap_or(u32::MAX)
            .min(20);
        let backoff = FIRST_BACKOFF_MS
            .saturating_mul(1_i64 << doublings)
            .min(MAX_BACKOFF_MS);
        return Health::TemporarilyDisabled {
            until: now + backoff,
            reason: format!("{failures} failures in a row"),
        };
    }
    Health::Healthy
}

/// A hook's state as the API and the page name it.
pub fn state_of(hook: &Endpoint, now: i64) -> &'static str {
    match (hook.active, hook.disabled_until) {
        (false, _) => "disabled",
        (true, Some(until)) if until > now => "temporarily_disabled",
        _ => "enabled",
    }
}

/// The subscription an `object_kind` falls under (a tag push is a push).
pub fn subscription_of(object_kind: &str) -> &str {
    match object_kind {
        "tag_push" => "push",
        other => other,
    }
}

/// `X-Gitlab-Event` for an `object_kind`.
pub fn gitlab_event_header(object_kind: &str) -> &'static str {
    match object_kind {
        "tag_push" => "Tag Push Hook",
        "merge_request" => "Merge Request Hook",
        "note" => "Note Hook",
        "issue" => "Issue Hook",
        "pipeline" => "Pipeline Hook",
        _ => "Push Hook",
    }
}

/// The associated data a hook's secret token is sealed under.
pub fn token_context(hook_id: &str) -> String {
    format!("endpoints.secret:{hook_id}:token")
}

/// `owner/name` from the path, checked like a service's repository; returns the lowercased key.
pub fn repository_key(owner: &str, name: &str) -> ApiResult<String> {
    crate::record::validate_repository(&format!("{owner}/{name}"))
        .map(|repository| repository.to_lowercase())
        .map_err(ApiError::BadRequest)
}

/// A repository Hookline knows for the tenant: a service's, or one an integration received
/// events for. Others are 404, as on GitLab.
pub async fn known_repository(state: &AppState, tenant_id: &str, key: &str) -> ApiResult<()> {
    if stored::service_repository(&state.store, tenant_id, key).await?
        || crate::store::inbound::integration_knows(&state.store, tenant_id, key).await?
    {
        Ok(())
    } else {
        Err(ApiError::NotFound("repository"))
    }
}

/// A new hook as a person gives it.
#[derive(Debug, Default)]
pub struct NewHook {
    pub url: String,
    pub token: Option<String>,
    pub events: Option<Vec<String>>,
    pub format: Option<String>,
}

/// Changes to a hook; `None` leaves a field alone, `token: Some(None)` removes the token.
#[derive(Debug, Default)]
pub struct HookChanges {
    pub url: Option<String>,
    pub token: Option<Option<String>>,
    pub events: Option<Vec<String>>,
    pub format: Option<String>,
    pub enabled: Option<bool>,
}

fn check_events(events: Option<Vec<String>>) -> ApiResult<String> {
    let mut events = events.unwrap_or_else(|| DEFAULT_EVENTS.map(str::to_owned).to_vec());
    if events.is_empty() {
        return Err(ApiError::Unprocessable(
            "events must name at least one of push, merge_request, note, issue, pipeline"
                .to_owned(),
        ));
    }
    events.sort();
    events.dedup();
    if let Some(unknown) = events
        .iter()
        .find(|event| !EVENTS.contains(&event.as_str()))
    {
        return Err(ApiError::Unprocessable(format!(
            "events: `{unknown}` is not one of push, merge_request, note, issue, pipeline"
        )));
    }
    Ok(serde_json::to_string(&events).expect("strings serialise"))
}

fn check_format(format: Option<String>) -> ApiResult<String> {
    match format.as_deref().unwrap_or(FORMAT_GITLAB) {
        FORMAT_GITLAB => Ok(FORMAT_GITLAB.to_owned()),
        FORMAT_ORIGINAL => Ok(FORMAT_ORIGINAL.to_owned()),
        other => Err(ApiError::Unprocessable(format!(
            "payload_format must be gitlab or original, not `{other}`"
        ))),
    }
}

fn check_token(token: &str) -> ApiResult<&str> {
    // It travels as a header value: visible ASCII only.
    if token.is_empty() || token.len() > 255 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::Unprocessable(
            "token must be 1 to 255 visible ASCII characters (no spaces)".to_owned(),
        ));
    }
    Ok(token)
}

/// Hooks take `http://` and `https://` alike (as GitLab does); the SSRF policy applies.
async fn check_url(state: &AppState, url: &str) -> ApiResult<String> {
    validate_endpoint_url(url, true, &state.outbound.policy)
        .await
        .map(String::from)
        .map_err(ApiError::Unprocessable)
}

fn seal_token(state: &AppState, hook_id: &str, token: Option<&str>) -> Vec<u8> {
    state
        .cipher
        .seal_str(&token_context(hook_id), token.unwrap_or_default())
}

/// The hook's secret token, if it has one.
pub fn token_of(cipher: &crate::crypto::Cipher, hook: &Endpoint) -> anyhow::Result<Option<String>> {
    let token = cipher
        .open_str(&token_context(&hook.id), &hook.secret)
        .map_err(|why| anyhow::anyhow!("{why}"))?;
    Ok((!token.is_empty()).then_some(token))
}

pub async fn create(
    state: &AppState,
    tenant_id: &str,
    repository_key: &str,
    input: NewHook,
) -> ApiResult<Endpoint> {
    known_repository(state, tenant_id, repository_key).await?;
    let token = input.token.as_deref().map(check_token).transpose()?;
    let events = check_events(input.events)?;
    let format = check_format(input.format)?;
    let url = check_url(state, &input.url).await?;
    let id = ids::new(Kind::RepositoryHook);
    let now = clock::now_ms();
    let hook = Endpoint {
        secret: seal_token(state, &id, token),
        id,
        tenant_id: tenant_id.to_owned(),
        name: format!("{repository_key} hook"),
        url,
        description: String::new(),
        event_types: Some(events),
        active: true,
        previous_secret: None,
        previous_secret_until: None,
        consecutive_failures: 0,
        disabled_reason: None,
        disabled_at: None,
        created_at: now,
        updated_at: now,
        kind: KIND_REPOSITORY_HOOK.to_owned(),
        repository_key: Some(repository_key.to_owned()),
        payload_format: Some(format),
        disabled_until: None,
        rate_limit_per_second: None,
    };
    queue::insert_endpoint(&state.store, &hook).await?;
    state.hook_cache.clear();
    tracing::info!(hook_id = %hook.id, "repository hook created");
    Ok(hook)
}

pub async fn list(
    state: &AppState,
    tenant_id: &str,
    repository_key: &str,
    page: &PageQuery,
) -> ApiResult<(Vec<Endpoint>, Option<String>)> {
    known_repository(state, tenant_id, repository_key).await?;
    let limit = page.limit()?;
    let cursor = page.cursor(Kind::RepositoryHook)?;
    let rows = stored::list(
        &state.store,
        tenant_id,
        repository_key,
        cursor.as_deref(),
        limit + 1,
    )
    .await?;
    Ok(next_cursor(rows, limit, |hook| hook.id.clone()))
}

pub async fn load(
    state: &AppState,
    tenant_id: &str,
    repository_key: &str,
    id: &str,
) -> ApiResult<Endpoint> {
    let id = parse_id(Kind::RepositoryHook, id)?;
    stored::get(&state.store, tenant_id, repository_key, &id)
        .await
        .map_err(|error| crate::tenancy::api::not_found_as(error, "repository hook"))
}

pub async fn update(
    state: &AppState,
    tenant_id: &str,
    repository_key: &str,
    id: &str,
    changes: HookChanges,
) -> ApiResult<Endpoint> {
    let mut hook = load(state, tenant_id, repository_key, id).await?;
    if let Some(events) = changes.events {
        hook.event_types = Some(check_events(Some(events))?);
    }
    if let Some(format) = changes.format {
        hook.payload_format = Some(check_format(Some(format))?);
    }
    if let Some(url) = &changes.url {
        hook.url = check_url(state, url).await?;
    }
    let token = match &changes.token {
        Some(Some(token)) => Some(Some(check_token(token)?)),
        Some(None) => Some(None),
        None => None,
    };
    queue::update_endpoint(&state.store, &hook).await?;
    if let Some(token) = token {
        stored::set_token(&state.store, &hook, &seal_token(state, &hook.id, token)).await?;
    }
    state.hook_cache.clear();
    if let Some(enabled) = changes.enabled
        && (enabled != hook.active || (enabled && hook.disabled_until.is_some()))
    {
        if enabled {
            bring_back(state, tenant_id, &hook.id).await?;
        } else {
            queue::set_endpoint_active(&state.store, tenant_id, &hook.id, false).await?;
        }
    }
    load(state, tenant_id, repository_key, &hook.id).await
}

/// Enables a hook with a clean slate: no failures, no temporary disable, and the deliveries it
/// held due now.
async fn bring_back(state: &AppState, tenant_id: &str, id: &str) -> ApiResult<Endpoint> {
    let hook = queue::set_endpoint_active(&state.store, tenant_id, id, true).await?;
    state.hook_cache.clear();
    stored::resume_held(&state.store, &hook.id, clock::now_ms()).await?;
    state.outbound.wake();
    Ok(hook)
}

pub async fn delete(
    state: &AppState,
    tenant_id: &str,
    repository_key: &str,
    id: &str,
) -> ApiResult<Endpoint> {
    let hook = load(state, tenant_id, repository_key, id).await?;
    queue::delete_endpoint(&state.store, tenant_id, &hook.id).await?;
    state.hook_cache.clear();
    tracing::info!(hook_id = %hook.id, "repository hook deleted");
    Ok(hook)
}

/// Queues `payload` (already in the hooks' format) as one event for `hooks`. With `event_id`
/// given (a relay's own id), an event already queued under it queues nothing again.
async fn queue_for(
    tx: &mut Tx<'_>,
    tenant_id: &str,
    object_kind: &str,
    payload: &str,
    hooks: &[&Endpoint],
    event_id: Option<String>,
) -> StoreResult<Vec<String>> {
    if hooks.is_empty() {
        return Ok(Vec::new());
    }
    let now = clock::now_ms();
    let event_id = match event_id {
        Some(event_id) => {
            if !queue::insert_event_once(tx, &event_id, tenant_id, object_kind, payload, now)
                .await?
            {
                return Ok(Vec::new());
            }
            event_id
        }
        None => {
            let event_id = format!("evt_{}", uuid::Uuid::now_v7().hyphenated());
            queue::insert_event(tx, &event_id, tenant_id, object_kind, payload, now).await?;
            event_id
        }
    };
    let ids: Vec<String> = hooks.iter().map(|_| ids::new(Kind::Delivery)).collect();
    let deliveries: Vec<queue::NewDelivery<'_>> = hooks
        .iter()
        .zip(&ids)
        .map(|(hook, id)| queue::NewDelivery {
            id,
            endpoint_id: &hook.id,
            paused: false,
            lease: None,
        })
        .collect();
    queue::insert_deliveries(tx, tenant_id, &event_id, object_kind, &deliveries, now).await?;
    Ok(ids)
}

/// A forge event to relay: which forge, its event name, and its payload as sent.
pub struct ForgeEvent<'a> {
    pub gitlab: bool,
    /// `X-GitHub-Event` (`push`, `pull_request`, …) or GitLab's `object_kind`.
    pub event: &'a str,
    /// The JSON payload as the sender sent it.
    pub payload: &'a [u8],
    /// What identifies this delivery at its sender (source and delivery id): relaying it again
    /// under the same key queues nothing twice. `None` relays anew (a replay that asks to).
    pub relay_key: Option<&'a str>,
}

/// The event id a relay of `relay_key` in `format` gets: the same every time, so a second relay
/// of one delivery finds its first.
fn relay_event_id(tenant_id: &str, repository_key: &str, relay_key: &str, format: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!(
        "{tenant_id}\n{repository_key}\n{relay_key}\n{format}"
    ));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    format!("evt_{}", uuid::Uuid::from_bytes(bytes).hyphenated())
}

/// Queues a forge event for every enabled hook of `repository_key` that subscribes to it, in the
/// hook's format, and returns how many deliveries were queued. Events hooks do not relay queue
/// nothing.
pub async fn relay(
    state: &AppState,
    tenant_id: &str,
    repository_key: &str,
    event: ForgeEvent<'_>,
) -> ApiResult<usize> {
    let has_hooks = state
        .hook_cache
        .get_or_load(format!("{tenant_id}/{repository_key}"), || {
            stored::any_enabled(&state.store, tenant_id, repository_key)
        })
        .await?;
    if !has_hooks {
        return Ok(0);
    }
    let Ok(json) = serde_json::from_slice::<Value>(event.payload) else {
        return Ok(0);
    };
    let converted: Option<HookPayload> = if event.gitlab {
        // GitLab sends confidential issues and notes only to hooks that ask for them, which
        // these hooks cannot: they are not relayed.
        let confidential = json
            .get("event_type")
            .and_then(Value::as_str)
            .is_some_and(|kind| kind.starts_with("confidential_"));
        gitlab::object_kind_of(&json)
            .filter(|_| !confidential)
            .map(|object_kind| HookPayload {
                object_kind,
                body: Value::Null,
            })
    } else {
        gitlab::from_github(event.event, &json)
    };
    let Some(converted) = converted else {
        return Ok(0);
    };
    let mut tx = state.store.begin().await?;
    let hooks = stored::enabled_in(&mut tx, tenant_id, repository_key).await?;
    let subscription = subscription_of(converted.object_kind);
    let wanting: Vec<&Endpoint> = hooks
        .iter()
        .filter(|hook| hook.wants(subscription))
        .collect();
    if wanting.is_empty() {
        return Ok(0);
    }
    let original = String::from_utf8_lossy(event.payload);
    let (original_hooks, gitlab_hooks): (Vec<&Endpoint>, Vec<&Endpoint>) = wanting
        .into_iter()
        .partition(|hook| event.gitlab || hook.payload_format.as_deref() == Some(FORMAT_ORIGINAL));
    let event_id = |format: &str| {
        event
            .relay_key
            .map(|key| relay_event_id(tenant_id, repository_key, key, format))
    };
    let mut queued = queue_for(
        &mut tx,
        tenant_id,
        converted.object_kind,
        &original,
        &original_hooks,
        event_id(FORMAT_ORIGINAL),
    )
    .await?
    .len();
    if !gitlab_hooks.is_empty() {
        let body = serde_json::to_string(&converted.body).expect("a payload serialises");
        queued += queue_for(
            &mut tx,
            tenant_id,
            converted.object_kind,
            &body,
            &gitlab_hooks,
            event_id(FORMAT_GITLAB),
        )
        .await?
        .len();
    }
    tx.commit().await?;
    state.outbound.wake();
    Ok(queued)
}

/// Sends a sample push to one hook: the repository's latest recorded push, or a realistic one
/// when none was received yet. Returns the delivery id.
pub async fn test(
    state: &AppState,
    tenant_id: &str,
    repository_key: &str,
    id: &str,
) -> ApiResult<String> {
    let mut hook = load(state, tenant_id, repository_key, id).await?;
    // Test brings a disabled hook back, as on GitLab.
    if !hook.active || hook.disabled_until.is_some() || hook.consecutive_failures > 0 {
        hook = bring_back(state, tenant_id, &hook.id).await?;
    }
    let github =
        match crate::store::inbound::latest_push(&state.store, tenant_id, repository_key).await? {
            Some(delivery) if delivery.source != crate::inbound::source::GITLAB => {
                let body = delivery.raw_body()?;
                crate::inbound::json_of(&delivery.content_type, &body)
                    .ok()
                    .and_then(|json| serde_json::from_slice::<Value>(&json).ok())
                    .unwrap_or_else(|| sample_push(repository_key))
            }
            _ => sample_push(repository_key),
        };
    let converted = gitlab::push(&github);
    let body = if hook.payload_format.as_deref() == Some(FORMAT_ORIGINAL) {
        github.to_string()
    } else {
        converted.body.to_string()
    };
    let mut tx = state.store.begin().await?;
    let ids = queue_for(
        &mut tx,
        tenant_id,
        converted.object_kind,
        &body,
        &[&hook],
        None,
    )
    .await?;
    tx.commit().await?;
    state.outbound.wake();
    Ok(ids.into_iter().next().unwrap_or_default())
}

/// A GitHub push of one commit to the default branch of `repository` (`owner/name`).
fn sample_push(repository: &str) -> Value {
    let (owner, name) = repository
        .split_once('/')
        .unwrap_or((repository, repository));
    let sha = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7";
    serde_json::json!({
        "ref": "refs/heads/main",
        "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
        "after": sha,
        "created": false, "deleted": false, "forced": false,
        "repository": {
            "id": 0, "name": name, "full_name": repository,
            "description": "", "private": true,
            "html_url": format!("https://github.com/{repository}"),
            "clone_url": format!("https://github.com/{repository}.git"),
            "ssh_url": format!("git@github.com:{repository}.git"),
            "default_branch": "main", "owner": {"login": owner},
        },
        "pusher": {"name": "hookline", "email": "hookline@example.com"},
        "sender": {"login": "hookline", "id": 0, "avatar_url": Value::Null},
        "commits": [{
            "id": sha,
            "message": "Test push from Hookline",
            "timestamp": clock::rfc3339_ms(clock::now_ms()),
            "url": format!("https://github.com/{repository}/commit/{sha}"),
            "author": {"name": "Hookline", "email": "hookline@example.com"},
            "added": [], "modified": ["README.md"], "removed": [],
        }],
        "head_commit": {
            "id": sha, "message": "Test push from Hookline",
            "author": {"name": "Hookline", "email": "hookline@example.com"},
        },
    })
}

/// The headers of a hook delivery, as GitLab sends them: the event, the hook, the event's and
/// the delivery's ids, and with a token the token itself and an HMAC of the body.
pub fn delivery_headers(
    hook: &Endpoint,
    token: Option<&str>,
    object_kind: &str,
    event_id: &str,
    delivery_id: &str,
    body: &[u8],
) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(9);
    let mut put = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    put("x-gitlab-event", gitlab_event_header(object_kind));
    put("x-gitlab-webhook-uuid", &hook.id);
    put("x-gitlab-event-uuid", event_id);
    put("idempotency-key", delivery_id);
    put("content-type", "application/json");
    put(
        "user-agent",
        concat!("Hookline/", env!("CARGO_PKG_VERSION")),
    );
    if let Some(token) = token {
        put("x-gitlab-token", token);
        put(
            "x-hub-signature-256",
            &crate::inbound::hub_signature(token.as_bytes(), body),
        );
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_default_to_push_and_are_checked() {
        assert_eq!(check_events(None).unwrap(), "[\"push\"]");
        assert_eq!(
            check_events(Some(vec!["note".into(), "push".into(), "note".into()])).unwrap(),
            "[\"note\",\"push\"]"
        );
        assert!(check_events(Some(vec![])).is_err());
        assert!(check_events(Some(vec!["tag_push".into()])).is_err());
        assert!(check_format(Some("xml".into())).is_err());
        assert_eq!(check_format(None).unwrap(), FORMAT_GITLAB);
    }

    #[test]
    fn health_follows_gitlabs_rule() {
        let now = 1_000_000;
        assert_eq!(health_after(3, None, now), Health::Healthy);
        assert_eq!(
            health_after(4, None, now),
            Health::TemporarilyDisabled {
                until: now + 60_000,
                reason: "4 failures in a row".into()
            }
        );
        let Health::TemporarilyDisabled { until, .. } = health_after(6, None, now) else {
            panic!("six failures")
        };
        assert_eq!(until, now + 4 * 60_000, "doubling");
        let Health::TemporarilyDisabled { until, .. } = health_after(39, None, now) else {
            panic!("39 failures")
        };
        assert_eq!(until, now + 24 * 3_600_000, "capped at a day");
        assert!(matches!(
            health_after(40, None, now),
            Health::Disabled { .. }
        ));
        assert_eq!(
            health_after(1, Some(404), now),
            Health::Disabled {
                reason: "the receiver answered 404".into()
            }
        );
    }

    #[test]
    fn headers_name_the_event_like_gitlab() {
        assert_eq!(gitlab_event_header("tag_push"), "Tag Push Hook");
        assert_eq!(gitlab_event_header("merge_request"), "Merge Request Hook");
        assert_eq!(subscription_of("tag_push"), "push");
    }
}
