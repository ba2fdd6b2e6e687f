//! Outbound webhooks: event types, endpoints, the transactional outbox that turns an event into
//! deliveries, signing, the SSRF guard, and the durable delivery worker.
//!
//! Producers (the API, and Hookline's own features) call [`enqueue`] inside their own database
//! transaction, so an event exists exactly when the change it reports does; after the commit they
//! call [`Outbound::wake`] so workers pick the deliveries up at once.

pub mod api;
pub mod client;
pub mod endpoints;
pub mod event_types;
pub mod pages;
pub mod plans;
pub mod publisher;
pub mod retry;
pub mod signing;
pub mod ssrf;
pub mod worker;

use std::borrow::Borrow;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;
use url::Url;

use crate::clock;
use crate::config::Config;
use crate::crypto::Cipher;
use crate::ids::{self, Kind};
use crate::store::outbound::{self as queue, Endpoint};
use crate::store::{Store, StoreError, StoreResult, Tx};
use publisher::PublishWriter;

/// The envelope version every delivery carries.
pub const ENVELOPE_VERSION: &str = "1";

/// The least time between two announcements of queued work to the other nodes (a NOTIFY each):
/// work queued in between is covered by the next one.
pub const ANNOUNCE_SPACING_MS: i64 = 2;

/// What the API and the workers share about outbound delivery.
pub struct Outbound {
    wake: Arc<Notify>,
    /// Asks this node's announcer to tell the other nodes (PostgreSQL NOTIFY).
    announce: Arc<Notify>,
    /// When this node last told the other nodes about work it queued (ms since the epoch).
    announced_at: AtomicI64,
    pub policy: Arc<ssrf::Policy>,
    pub client: reqwest::Client,
    pub retry: retry::RetryPolicy,
    pub schemas: event_types::SchemaCache,
    /// The publish plans this node keeps.
    pub plans: plans::Plans,
    /// This node's delivery worker, taking the deliveries published here while it runs.
    handoff: std::sync::RwLock<Option<Arc<worker::Handoff>>>,
}

impl Outbound {
    pub fn new(config: &Config) -> anyhow::Result<Outbound> {
        let policy = Arc::new(
            ssrf::Policy::new(&config.ssrf.allow)
                .map_err(|why| anyhow::anyhow!("ssrf.allow: {why}"))?,
        );
        Ok(Outbound {
            wake: Arc::new(Notify::new()),
            announce: Arc::new(Notify::new()),
            announced_at: AtomicI64::new(0),
            client: client::build(&config.delivery, policy.clone())?,
            policy,
            retry: retry::RetryPolicy::new(
                &config.delivery.retry_schedule_ms,
                config.delivery.jitter_percent,
            ),
            schemas: event_types::SchemaCache::default(),
            plans: plans::Plans::default(),
            handoff: std::sync::RwLock::new(None),
        })
    }

    /// Tells this node's delivery worker, and through the announcer the other nodes', that new
    /// work was committed. Call it after the commit.
    pub fn wake(&self) {
        self.wake.notify_one();
        self.announce.notify_one();
    }

    pub(crate) fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub(crate) fn announce_handle(&self) -> Arc<Notify> {
        self.announce.clone()
    }

    /// Tells only this node's delivery worker; for work whose announcement to the other nodes
    /// went with its own commit.
    pub fn wake_local(&self) {
        self.wake.notify_one();
    }

    /// Whether a publish about to be written may carry the announcement itself (a NOTIFY in its
    /// own statement, so no transaction of its own): at most one every [`ANNOUNCE_SPACING_MS`]. A
    /// publish that may not calls [`Outbound::wake`] after its commit, and the announcer follows
    /// up unless another announcement was made after it.
    pub fn take_announcement(&self) -> bool {
        let now = clock::now_ms();
        let last = self.announced_at.load(Ordering::Acquire);
        now - last >= ANNOUNCE_SPACING_MS
            && self
                .announced_at
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// When the last announcement was made or taken (ms since the epoch).
    pub(crate) fn announced_at(&self) -> i64 {
        self.announced_at.load(Ordering::Acquire)
    }

    pub(crate) fn mark_announced(&self, at: i64) {
        self.announced_at.fetch_max(at, Ordering::AcqRel);
    }

    pub(crate) fn handoff(&self) -> Option<Arc<worker::Handoff>> {
        self.handoff.read().expect("handoff lock").clone()
    }

    pub(crate) fn set_handoff(&self, handoff: Option<Arc<worker::Handoff>>) {
        *self.handoff.write().expect("handoff lock") = handoff;
    }
}

/// The body of every delivery, field for field as documented.
#[derive(Debug, Serialize)]
pub struct Envelope<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    pub version: &'static str,
    pub created_at: String,
    pub tenant_id: &'a str,
    pub data: &'a Value,
}

/// An event written to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub event_id: String,
    pub delivery_ids: Vec<String>,
}

/// Which endpoints an event goes to.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// Every active endpoint of the tenant whose filter matches.
    Subscribers,
    /// Only this endpoint, whatever its filter (test pings).
    Endpoint(&'a str),
}

/// An event ready to be stored: its id, its envelope as sent, and when it was made.
struct NewEvent {
    id: String,
    payload: String,
    created_at: i64,
}

fn new_event(tenant_id: &str, event_type: &str, data: &Value) -> NewEvent {
    let created_at = clock::now_ms();
    let id = format!("evt_{}", uuid::Uuid::now_v7().hyphenated());
    let envelope = Envelope {
        id: &id,
        event_type,
        version: ENVELOPE_VERSION,
        created_at: clock::rfc3339_ms(created_at),
        tenant_id,
        data,
    };
    let payload = serde_json::to_string(&envelope).expect("an envelope serialises");
    NewEvent {
        id,
        payload,
        created_at,
    }
}

/// The subscribers among a tenant's webhook endpoints: those whose filter wants `event_type`.
fn subscribers(endpoints: Vec<Endpoint>, event_type: &str) -> Vec<Endpoint> {
    endpoints
        .into_iter()
        .filter(|endpoint| endpoint.wants(event_type))
        .collect()
}

/// Fresh delivery ids, one per target.
fn delivery_ids_for(targets: usize) -> Vec<String> {
    (0..targets).map(|_| ids::new(Kind::Delivery)).collect()
}

/// The deliveries to queue: one per target, held (paused) for an inactive endpoint, leased to
/// this node's worker where it `reserved` them.
fn new_deliveries<'a>(
    targets: &'a [impl Borrow<Endpoint>],
    delivery_ids: &'a [String],
    reserved: Option<&'a worker::Reserved>,
) -> Vec<queue::NewDelivery<'a>> {
    targets
        .iter()
        .zip(delivery_ids)
        .enumerate()
        .map(|(place, (endpoint, id))| {
            let endpoint: &Endpoint = endpoint.borrow();
            queue::NewDelivery {
                id,
                endpoint_id: &endpoint.id,
                paused: !endpoint.active,
                lease: reserved.and_then(|reserved| reserved.lease(place)),
            }
        })
        .collect()
}

/// Writes an event and its deliveries inside the caller's transaction (the outbox). `data` must
/// already be valid for its type.
pub async fn enqueue(
    tx: &mut Tx<'_>,
    tenant_id: &str,
    event_type: &str,
    data: &Value,
    audience: Audience<'_>,
) -> StoreResult<Published> {
    let event = new_event(tenant_id, event_type, data);
    queue::insert_event(
        tx,
        &event.id,
        tenant_id,
        event_type,
        &event.payload,
        event.created_at,
    )
    .await?;
    let targets: Vec<Endpoint> = match audience {
        Audience::Subscribers => subscribers(
            queue::webhook_endpoints_in(tx, tenant_id).await?,
            event_type,
        ),
        Audience::Endpoint(id) => vec![queue::endpoint_in(tx, tenant_id, id).await?],
    };
    let delivery_ids = delivery_ids_for(targets.len());
    let deliveries = new_deliveries(&targets, &delivery_ids, None);
    queue::insert_deliveries(
        tx,
        tenant_id,
        &event.id,
        event_type,
        &deliveries,
        event.created_at,
    )
    .await?;
    Ok(Published {
        event_id: event.id,
        delivery_ids,
    })
}

/// Publishes an event to its subscribers on its own, with no transaction of the caller's,
/// planned from this node's kept plan for its type ([`plans`]; read when none is kept): `check`
/// judges the data against the plan's registration of the type first (and when it refuses the
/// data on a kept plan, once more on a plan read now). The event and its deliveries are written
/// together by the publish writer, with other events published at the same moment
/// ([`publisher`]). Deliveries this node's worker has room for are handed to it
/// ([`worker::Handoff`]); for the others it wakes the workers, its own and (by NOTIFY) the other
/// nodes'. Fewer round trips than [`enqueue`]: none to plan while the plan is current. A plan
/// that is not (an endpoint or event type of the tenant changed since it was read, on any node)
/// fails the write, and is then forgotten, read anew, checked and written again.
pub async fn publish<E: From<StoreError>>(
    store: &Store,
    outbound: &Outbound,
    writer: &PublishWriter,
    tenant_id: &str,
    event_type: &str,
    data: &Value,
    check: impl Fn(Option<&queue::EventType>) -> Result<(), E>,
) -> Result<Published, E> {
    let handoff = outbound.handoff();
    let mut kept = outbound.plans.kept(tenant_id, event_type);
    let mut event = None;
    let mut tries = 0;
    loop {
        let (plan, read_now) = match kept.take() {
            Some(plan) => (plan, false),
            None => (
                outbound.plans.read(store, tenant_id, event_type).await?,
                true,
            ),
        };
        if let Err(refused) = check(plan.registered.as_ref()) {
            if read_now {
                return Err(refused);
            }
            // A kept plan may be out of date (the type registered or changed since): only a
            // current one may refuse the event.
            continue;
        }
        tries += 1;
        let event = event.get_or_insert_with(|| new_event(tenant_id, event_type, data));
        let targets = &plan.targets;
        let delivery_ids = delivery_ids_for(targets.len());
        let reserved = handoff
            .as_ref()
            .and_then(|handoff| handoff.reserve(targets, &delivery_ids));
        let deliveries: Vec<queue::DeliveryToQueue> =
            new_deliveries(targets, &delivery_ids, reserved.as_ref())
                .iter()
                .map(queue::DeliveryToQueue::from)
                .collect();
        // Only deliveries left for a claim need anyone woken.
        let queued = deliveries
            .iter()
            .any(|delivery| !delivery.paused && delivery.lease.is_none());
        let announce = queued && outbound.take_announcement();
        let row = queue::EventToPublish {
            id: event.id.clone(),
            tenant_id: tenant_id.to_owned(),
            event_type: event_type.to_owned(),
            payload: event.payload.clone(),
            created_at: event.created_at,
            deliveries,
            plan_version: plan.version,
        };
        let start = reserved.map(|reserved| {
            let published = worker::PublishedEvent {
                id: event.id.clone(),
                tenant_id: tenant_id.to_owned(),
                event_type: event_type.to_owned(),
                payload: axum::body::Bytes::from(event.payload.clone()),
                targets: targets.clone(),
                delivery_ids: delivery_ids.clone(),
            };
            Box::new(move || reserved.start(published)) as publisher::OnCommit
        });
        match writer.write(row, announce, start).await {
            Ok(()) => {
                match (queued, announce) {
                    (true, true) => outbound.wake_local(),
                    (true, false) => outbound.wake(),
                    (false, _) => {}
                }
                return Ok(Published {
                    event_id: event.id.clone(),
                    delivery_ids,
                });
            }
            Err(StoreError::Conflict(_)) if tries < 3 => {
                outbound.plans.forget(tenant_id, plan.version);
                tracing::debug!(event_id = %event.id, "the plan of a publish was no longer current; planning again");
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Where an endpoint's sealed secrets live, bound into their encryption.
pub fn secret_context(endpoint_id: &str) -> String {
    format!("endpoints.secret:{endpoint_id}")
}

pub fn previous_secret_context(endpoint_id: &str) -> String {
    format!("endpoints.previous_secret:{endpoint_id}")
}

/// The secrets that sign an endpoint's deliveries now: the current one, and the previous one while
/// its overlap lasts.
pub fn signing_secrets(
    cipher: &Cipher,
    endpoint: &Endpoint,
    now: i64,
) -> Result<Vec<String>, crate::crypto::CryptoError> {
    let mut secrets = vec![cipher.open_str(&secret_context(&endpoint.id), &endpoint.secret)?];
    if let (Some(previous), Some(until)) =
        (&endpoint.previous_secret, endpoint.previous_secret_until)
        && until > now
    {
        secrets.push(cipher.open_str(&previous_secret_context(&endpoint.id), previous)?);
    }
    Ok(secrets)
}

/// Checks an endpoint URL as it is saved: scheme, no credentials, a host the SSRF guard allows
/// (by name and by every address it resolves to). Returns the normalised URL.
pub async fn validate_endpoint_url(
    raw: &str,
    allow_http: bool,
    policy: &ssrf::Policy,
) -> Result<Url, String> {
    let url = endpoint_url_shape(raw, allow_http)?;
    policy
        .check_url(&url)
        .await
        .map_err(|why| format!("url: {why}"))?;
    Ok(url)
}

/// What an endpoint URL must look like before anything is resolved: at most 2048 characters,
/// `https://` (or `http://` when allowed), no credentials, no fragment, not port 0. Returns the
/// URL normalised by the WHATWG rules.
pub fn endpoint_url_shape(raw: &str, allow_http: bool) -> Result<Url, String> {
    let raw = raw.trim();
    if raw.len() > 2_048 {
        return Err("url must be at most 2048 characters".to_owned());
    }
    let url = Url::parse(raw).map_err(|error| format!("url is not a valid URL: {error}"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(
                "url must use https:// (plain http:// is not allowed on this server)".to_owned(),
            );
        }
        other => return Err(format!("url must use https://, not {other}://")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url must not contain credentials (user:password@)".to_owned());
    }
    if url.fragment().is_some() {
        return Err("url must not contain a #fragment".to_owned());
    }
    if url.port() == Some(0) {
        return Err("url must not use port 0".to_owned());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoint_urls_are_checked_before_any_lookup() {
        let strict = ssrf::Policy::new(&[]).unwrap();
        let cases = [
            ("ftp://127.0.0.1/", "https://"),
            ("http://127.0.0.1/", "https://"),
            ("https://user:pw@127.0.0.1/", "credentials"),
            ("https://127.0.0.1/#frag", "fragment"),
            ("not a url", "valid URL"),
            ("https://127.0.0.1/hook", "loopback"),
            ("https://[::1]/hook", "loopback"),
            ("https://localhost/hook", "localhost"),
            ("https://169.254.169.254/latest", "metadata"),
        ];
        for (url, expected) in cases {
            let error = validate_endpoint_url(url, false, &strict)
                .await
                .unwrap_err();
            assert!(error.contains(expected), "{url}: {error}");
        }
        let loopback = ssrf::Policy::new(&["127.0.0.0/8".to_owned()]).unwrap();
        let url = validate_endpoint_url("http://127.0.0.1:9/x", true, &loopback)
            .await
            .unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/x");
    }
}
