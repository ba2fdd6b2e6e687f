//! The delivery worker: claims due deliveries in short transactions, attempts them outside any
//! transaction under per-endpoint and per-node concurrency caps, and writes results in batches,
//! each only where the lease is still held. Deliveries published on its own node it takes
//! without a claim, written already leased to it ([`Handoff`]). It wakes on new work
//! (in-process, and through PostgreSQL LISTEN/NOTIFY from other nodes) and polls slowly as a
//! fallback.
//!
//! Leases are short and renewed while this node holds them, so a crashed node's deliveries are
//! due again within one lease. A delivery counts against the node's `max_in_flight` from its
//! claim until its result is committed: a crash can repeat at most that many attempts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::client::{self, AttemptOutcome, ErrorKind};
use super::{signing, signing_secrets};
use crate::app::AppState;
use crate::clock;
use crate::ids::{self, Kind};
use crate::store::Store;
use crate::store::outbound::{self as queue, Attempt, AttemptResult, Claimed, Endpoint, Next};

const CHANNEL: &str = "hookline_deliveries";
const RECORD_BATCH: usize = 512;

/// Starts the delivery worker and its helpers on `tracker`; all of them end when `shutdown` is
/// cancelled (in-flight attempts finish first, claimed-but-unstarted ones are released).
pub fn spawn(state: &AppState, tracker: &TaskTracker, shutdown: &CancellationToken) {
    let worker = Arc::new(Worker::new(state.clone()));
    let (results, recorder_input) = mpsc::channel(4 * RECORD_BATCH);
    tracker.spawn(record(worker.clone(), recorder_input));
    tracker.spawn(renew_leases(worker.clone(), shutdown.clone()));
    tracker.spawn(claim_loop(
        worker.clone(),
        results,
        tracker.clone(),
        shutdown.clone(),
    ));
    if let Store::Postgres(pool) = &state.store {
        tracker.spawn(listen(
            pool.clone(),
            state.outbound.wake_handle(),
            shutdown.clone(),
        ));
        tracker.spawn(refresh_statistics(state.clone(), shutdown.clone()));
    }
    tracker.spawn(report_queue(state.clone(), shutdown.clone()));
    tracker.spawn(prune(state.clone(), shutdown.clone()));
}

struct Worker {
    state: AppState,
    node_slots: Arc<Semaphore>,
    endpoint_slots: Mutex<HashMap<String, EndpointSlots>>,
    /// A finished attempt: room for more work.
    capacity: Notify,
    /// The earliest retry the recorder scheduled (ms), `i64::MAX` when none is known.
    next_retry: AtomicI64,
    /// Endpoints this node's recorder disabled: jobs already claimed for them are not sent.
    disabled: Mutex<std::collections::HashSet<String>>,
    /// Deliveries this node holds under lease (claimed, result not yet committed), with the
    /// owner stamp of their claim: the lease renewer keeps them reserved.
    held: Mutex<HashMap<String, String>>,
    /// Until when the last successful renewal extended every held lease (ms).
    renewed_until: AtomicI64,
    /// The lease length (ms).
    lease_ms: i64,
    /// No delivery is known to wait in the queue: the last claim came back short with no
    /// endpoint excluded, and no publish queued one since. Publishes hand off only then.
    caught_up: std::sync::atomic::AtomicBool,
}

/// A delivery this node holds: its node slot and its lease. Dropped once its result is
/// committed or it went back to the queue; only then may the node claim another.
struct Held {
    worker: Arc<Worker>,
    delivery_id: String,
    node_slot: Option<OwnedSemaphorePermit>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.worker
            .held
            .lock()
            .expect("held lock")
            .remove(&self.delivery_id);
        drop(self.node_slot.take());
        if self.worker.node_slots.available_permits() == 1 {
            self.worker.capacity.notify_one();
        }
    }
}

struct EndpointSlots {
    semaphore: Arc<Semaphore>,
    claimed: usize,
}

/// A claimed delivery with what its attempt needs.
struct Job {
    claimed: Claimed,
    lease_until: i64,
    endpoint: Arc<Endpoint>,
    payload: Bytes,
}

impl Worker {
    fn new(state: AppState) -> Worker {
        let max_in_flight = usize::try_from(state.config.delivery.max_in_flight).unwrap_or(512);
        Worker {
            node_slots: Arc::new(Semaphore::new(max_in_flight)),
            endpoint_slots: Mutex::new(HashMap::new()),
            capacity: Notify::new(),
            next_retry: AtomicI64::new(i64::MAX),
            disabled: Mutex::new(std::collections::HashSet::new()),
            held: Mutex::new(HashMap::new()),
            renewed_until: AtomicI64::new(0),
            caught_up: std::sync::atomic::AtomicBool::new(false),
            lease_ms: i64::try_from(state.config.delivery.lease_seconds.saturating_mul(1000))
                .unwrap_or(i64::MAX / 4),
            state,
        }
    }

    /// Records whether the worker is caught up with the queue, so publishes on this node may
    /// hand their deliveries to it (`hookline_delivery_handoff_open`: 1 while they may).
    fn set_caught_up(&self, caught_up: bool) {
        if self.caught_up.swap(caught_up, Ordering::AcqRel) != caught_up {
            metrics::gauge!("hookline_delivery_handoff_open").set(f64::from(u8::from(caught_up)));
        }
    }

    fn endpoint_cap(&self) -> usize {
        usize::try_from(self.state.config.delivery.endpoint_concurrency).unwrap_or(8)
    }

    /// Endpoints with as many claimed deliveries on this node as their cap.
    fn saturated_endpoints(&self) -> Vec<String> {
        let cap = self.endpoint_cap();
        self.endpoint_slots
            .lock()
            .expect("slots lock")
            .iter()
            .filter(|(_, slots)| slots.claimed >= cap)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// An endpoint slot unless this node already holds `limit` deliveries of the endpoint.
    fn try_take_endpoint_slot(&self, endpoint_id: &str, limit: usize) -> Option<Arc<Semaphore>> {
        let cap = self.endpoint_cap();
        let mut all = self.endpoint_slots.lock().expect("slots lock");
        let slots = all
            .entry(endpoint_id.to_owned())
            .or_insert_with(|| EndpointSlots {
                semaphore: Arc::new(Semaphore::new(cap)),
                claimed: 0,
            });
        if slots.claimed >= limit {
            return None;
        }
        slots.claimed += 1;
        Some(slots.semaphore.clone())
    }

    fn take_endpoint_slot(&self, endpoint_id: &str) -> Arc<Semaphore> {
        self.try_take_endpoint_slot(endpoint_id, usize::MAX)
            .expect("no limit")
    }

    /// Gives back a finished job's endpoint slot. The claim loop is woken only when that makes
    /// room it could use: the endpoint dropping below its cap.
    fn finish_job(&self, endpoint_id: &str) {
        let cap = self.endpoint_cap();
        let mut below_cap_again = false;
        let mut all = self.endpoint_slots.lock().expect("slots lock");
        if let Some(slots) = all.get_mut(endpoint_id) {
            below_cap_again = slots.claimed == cap;
            slots.claimed = slots.claimed.saturating_sub(1);
            if slots.claimed == 0 {
                all.remove(endpoint_id);
            }
        }
        drop(all);
        if below_cap_again {
            self.capacity.notify_one();
        }
    }

    /// Whether a lease taken at `claimed_until` (and renewed since) still has `margin_ms` left.
    fn lease_holds(&self, claimed_until: i64, now: i64, margin_ms: i64) -> bool {
        let until = claimed_until.max(self.renewed_until.load(Ordering::Acquire));
        now + margin_ms < until
    }

    /// How long the claim loop may sleep before something could be due.
    fn idle_wait(&self) -> Duration {
        let poll = Duration::from_millis(self.state.config.delivery.poll_interval_ms);
        let next = self.next_retry.load(Ordering::Acquire);
        if next == i64::MAX {
            return poll;
        }
        let now = clock::now_ms();
        if next <= now {
            let _ = self.next_retry.compare_exchange(
                next,
                i64::MAX,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            return Duration::ZERO;
        }
        poll.min(Duration::from_millis(
            u64::try_from(next - now).unwrap_or(0),
        ))
    }
}

/// Deliveries published on this node go straight to its worker: each is written already leased
/// to the worker, and its attempt starts once the write commits, with the endpoint and payload
/// the publish holds. That takes the claim, and reading back the payload and the endpoint, out of
/// a fresh delivery's way (three round trips and a row update each on the database).
///
/// Only while the worker is caught up (nothing known to wait in the queue, so no delivery
/// overtakes an older one) and has room: publishes hand off at most half of `max_in_flight`, and
/// only deliveries whose endpoint has a free sending slot (`endpoint_concurrency`), so none waits
/// in memory. The rest are queued as before, and from then on everything goes through the queue,
/// oldest first, until a claim finds it drained. A node that stops before sending leaves its
/// handed-off deliveries leased: they are due again when the lease runs out, as claimed ones.
pub struct Handoff {
    worker: Arc<Worker>,
    /// The lease owner of every delivery handed to this worker.
    owner: String,
    results: mpsc::Sender<(AttemptResult, Held)>,
    tracker: TaskTracker,
    /// The worker's runtime: attempts start from the publish writer's thread.
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
}

/// Sending slots one publish reserved for some of its deliveries; given back when dropped
/// unstarted (its write failed).
pub struct Reserved {
    handoff: Arc<Handoff>,
    lease_until: i64,
    /// By the delivery's place among the publish's targets, in that order.
    slots: Vec<(usize, Slot)>,
}

struct Slot {
    held: Option<Held>,
    endpoint_id: String,
    endpoint_slot: Arc<Semaphore>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            held.worker.finish_job(&self.endpoint_id);
        }
    }
}

impl Handoff {
    /// Reserves slots for the deliveries (`delivery_ids`, one per target) this node can attempt
    /// now; `None` when it can take none of them.
    pub fn reserve(
        self: &Arc<Self>,
        targets: &[Arc<Endpoint>],
        delivery_ids: &[String],
    ) -> Option<Reserved> {
        let worker = &self.worker;
        if self.shutdown.is_cancelled() || !worker.caught_up.load(Ordering::Acquire) {
            return None;
        }
        let max_in_flight = usize::try_from(worker.state.config.delivery.max_in_flight)
            .unwrap_or(512)
            .max(1);
        let left_to_claims = max_in_flight / 2;
        let per_endpoint = worker.endpoint_cap();
        let now = clock::now_ms();
        let mut slots = Vec::new();
        for (place, (endpoint, delivery_id)) in targets.iter().zip(delivery_ids).enumerate() {
            if !endpoint.active
                || endpoint.disabled_until.is_some_and(|until| until > now)
                || worker.node_slots.available_permits() <= left_to_claims
                || worker
                    .disabled
                    .lock()
                    .expect("disabled lock")
                    .contains(&endpoint.id)
            {
                continue;
            }
            let Ok(node_slot) = worker.node_slots.clone().try_acquire_owned() else {
                break;
            };
            let Some(endpoint_slot) = worker.try_take_endpoint_slot(&endpoint.id, per_endpoint)
            else {
                continue;
            };
            worker
                .held
                .lock()
                .expect("held lock")
                .insert(delivery_id.clone(), self.owner.clone());
            let held = Held {
                worker: worker.clone(),
                delivery_id: delivery_id.clone(),
                node_slot: Some(node_slot),
            };
            slots.push((
                place,
                Slot {
                    held: Some(held),
                    endpoint_id: endpoint.id.clone(),
                    endpoint_slot,
                },
            ));
        }
        // Some go to the queue (paused ones aside, which no claim takes either; every reserved
        // one is active): the ones published after them must not overtake them.
        if targets.iter().filter(|endpoint| endpoint.active).count() > slots.len() {
            worker.set_caught_up(false);
        }
        (!slots.is_empty()).then(|| Reserved {
            handoff: self.clone(),
            lease_until: now + worker.lease_ms,
            slots,
        })
    }
}

/// What [`Reserved::start`] needs of the event whose deliveries it starts.
pub struct PublishedEvent {
    pub id: String,
    pub tenant_id: String,
    pub event_type: String,
    pub payload: Bytes,
    /// The endpoints it was published to, and its deliveries' ids, in the same order.
    pub targets: Vec<Arc<Endpoint>>,
    pub delivery_ids: Vec<String>,
}

impl Reserved {
    /// The lease the delivery at `place` among the targets is written with, if it has a slot.
    pub fn lease(&self, place: usize) -> Option<queue::Lease<'_>> {
        self.slots
            .binary_search_by_key(&place, |(reserved, _)| *reserved)
            .is_ok()
            .then_some(queue::Lease {
                owner: &self.handoff.owner,
                until: self.lease_until,
            })
    }

    /// Starts the attempts of the reserved deliveries, once their write committed (on the
    /// worker's runtime, from whichever thread committed it).
    pub fn start(self, event: PublishedEvent) {
        let Reserved {
            handoff,
            lease_until,
            mut slots,
        } = self;
        metrics::counter!("hookline_deliveries_handed_off_total").increment(slots.len() as u64);
        for (place, slot) in &mut slots {
            let Some(held) = slot.held.take() else {
                continue;
            };
            let job = Job {
                claimed: Claimed {
                    id: event.delivery_ids[*place].clone(),
                    tenant_id: event.tenant_id.clone(),
                    endpoint_id: slot.endpoint_id.clone(),
                    event_id: event.id.clone(),
                    event_type: event.event_type.clone(),
                    attempt_count: 0,
                    round_attempts: 0,
                },
                lease_until,
                endpoint: event.targets[*place].clone(),
                payload: event.payload.clone(),
            };
            handoff.tracker.spawn_on(
                run_job(
                    handoff.worker.clone(),
                    job,
                    handoff.owner.clone(),
                    held,
                    slot.endpoint_slot.clone(),
                    handoff.results.clone(),
                    handoff.shutdown.clone(),
                ),
                &handoff.runtime,
            );
        }
    }
}

async fn claim_loop(
    worker: Arc<Worker>,
    results: mpsc::Sender<(AttemptResult, Held)>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let state = &worker.state;
    state.outbound.set_handoff(Some(Arc::new(Handoff {
        worker: worker.clone(),
        owner: uuid::Uuid::new_v4().simple().to_string(),
        results: results.clone(),
        tracker: tracker.clone(),
        runtime: tokio::runtime::Handle::current(),
        shutdown: shutdown.clone(),
    })));
    let delivery = &state.config.delivery;
    let wake = state.outbound.wake_handle();
    let lease = worker.lease_ms;
    tracing::info!("delivery worker started");
    while !shutdown.is_cancelled() {
        let room = worker
            .node_slots
            .available_permits()
            .min(delivery.batch_size as usize);
        if room == 0 {
            tokio::select! {
                () = worker.capacity.notified() => {}
                () = shutdown.cancelled() => break,
            }
            continue;
        }
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let now = clock::now_ms();
        let excluded = worker.saturated_endpoints();
        let claim = queue::Claim {
            now,
            lease_until: now + lease,
            owner: &owner,
            limit: room as u32,
            // One claim may fill a batch for a single endpoint: fewer, larger claims keep the
            // single SQLite writer free for publishes. Attempts still run `endpoint_concurrency`
            // at a time, and a job whose lease would end first goes back to the queue.
            per_endpoint: delivery.endpoint_concurrency.saturating_mul(2),
            window: delivery.batch_size.saturating_mul(8),
        };
        let claimed = match queue::claim_due(&state.store, claim, &excluded).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(error = %error, "claiming deliveries failed; retrying shortly");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = shutdown.cancelled() => break,
                }
                continue;
            }
        };
        let full_batch = claimed.len() == room;
        // A full batch may have left more behind; a short one with no endpoint excluded took all
        // that was due.
        if full_batch || excluded.is_empty() {
            worker.set_caught_up(!full_batch);
        }
        if !claimed.is_empty() {
            start_attempts(
                &worker,
                claimed,
                &owner,
                now + lease,
                &results,
                &tracker,
                &shutdown,
            )
            .await;
        }
        if full_batch {
            continue;
        }
        tokio::select! {
            () = wake.notified() => {}
            () = worker.capacity.notified(), if !excluded.is_empty() => {}
            () = tokio::time::sleep(worker.idle_wait()) => {}
            () = shutdown.cancelled() => break,
        }
    }
    state.outbound.set_handoff(None);
    tracing::info!("delivery worker stopped claiming");
}

/// Loads what the claimed deliveries need and starts one task per attempt.
async fn start_attempts(
    worker: &Arc<Worker>,
    claimed: Vec<Claimed>,
    owner: &str,
    lease_until: i64,
    results: &mpsc::Sender<(AttemptResult, Held)>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let store = &worker.state.store;
    let mut event_ids: Vec<String> = claimed.iter().map(|c| c.event_id.clone()).collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    let mut endpoint_ids: Vec<String> = claimed.iter().map(|c| c.endpoint_id.clone()).collect();
    endpoint_ids.sort_unstable();
    endpoint_ids.dedup();
    let loaded = async {
        let payloads = queue::event_payloads(store, &event_ids).await?;
        let endpoints = queue::endpoints_by_ids(store, &endpoint_ids).await?;
        Ok::<_, crate::store::StoreError>((payloads, endpoints))
    }
    .await;
    let (payloads, endpoints) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::warn!(error = %error, "loading claimed deliveries failed; releasing them");
            let ids: Vec<String> = claimed.into_iter().map(|c| c.id).collect();
            let _ = queue::release(store, &ids, owner, 1_000).await;
            return;
        }
    };
    let payloads: HashMap<String, Bytes> = payloads
        .into_iter()
        .map(|(id, payload)| (id, Bytes::from(payload)))
        .collect();
    let endpoints: HashMap<String, Arc<Endpoint>> = endpoints
        .into_iter()
        .map(|endpoint| (endpoint.id.clone(), Arc::new(endpoint)))
        .collect();
    {
        // An endpoint read as active again was re-activated since this node disabled it.
        let mut disabled = worker.disabled.lock().expect("disabled lock");
        disabled.retain(|id| endpoints.get(id).is_none_or(|endpoint| !endpoint.active));
    }
    for claimed in claimed {
        // Deleted meanwhile: the delivery went with its endpoint or event.
        let (Some(endpoint), Some(payload)) = (
            endpoints.get(&claimed.endpoint_id),
            payloads.get(&claimed.event_id),
        ) else {
            continue;
        };
        let Ok(node_slot) = worker.node_slots.clone().try_acquire_owned() else {
            let _ = queue::release(store, std::slice::from_ref(&claimed.id), owner, 0).await;
            continue;
        };
        worker
            .held
            .lock()
            .expect("held lock")
            .insert(claimed.id.clone(), owner.to_owned());
        let held = Held {
            worker: worker.clone(),
            delivery_id: claimed.id.clone(),
            node_slot: Some(node_slot),
        };
        let endpoint_slot = worker.take_endpoint_slot(&claimed.endpoint_id);
        let job = Job {
            claimed,
            lease_until,
            endpoint: endpoint.clone(),
            payload: payload.clone(),
        };
        tracker.spawn(run_job(
            worker.clone(),
            job,
            owner.to_owned(),
            held,
            endpoint_slot,
            results.clone(),
            shutdown.clone(),
        ));
    }
}

async fn run_job(
    worker: Arc<Worker>,
    job: Job,
    owner: String,
    held: Held,
    endpoint_slot: Arc<Semaphore>,
    results: mpsc::Sender<(AttemptResult, Held)>,
    shutdown: CancellationToken,
) {
    let endpoint_id = job.claimed.endpoint_id.clone();
    let permit = tokio::select! {
        permit = endpoint_slot.acquire_owned() => permit.ok(),
        () = shutdown.cancelled() => None,
    };
    let permit = match permit {
        Some(permit) if wait_for_rate_slot(&worker, &job, &shutdown).await => Some(permit),
        _ => None,
    };
    match permit {
        Some(_permit) => match attempt(&worker, &job).await {
            Ok((attempt, next)) => {
                let result = AttemptResult {
                    claimed: job.claimed,
                    lease_owner: owner,
                    attempt,
                    next,
                };
                // The node slot and the lease go with the result, until it is committed.
                worker.finish_job(&endpoint_id);
                if results.send((result, held)).await.is_err() {
                    tracing::error!("the delivery recorder stopped; the lease will expire");
                }
                return;
            }
            Err(Skip::Unpreparable) => {
                // Cannot be signed now (e.g. its secret does not open): try again later.
                let _ =
                    queue::release(&worker.state.store, &[job.claimed.id], &owner, 60_000).await;
            }
            Err(Skip::LeaseEnding) => {
                let _ = queue::release(&worker.state.store, &[job.claimed.id], &owner, 0).await;
            }
            Err(Skip::EndpointDisabled) => {
                let _ = queue::pause_claimed(&worker.state.store, &[job.claimed.id], &owner).await;
            }
            Err(Skip::Until(until)) => {
                let delay = until.saturating_sub(clock::now_ms()).max(0);
                let _ = queue::release(&worker.state.store, &[job.claimed.id], &owner, delay).await;
            }
        },
        None => {
            let _ = queue::release(&worker.state.store, &[job.claimed.id], &owner, 0).await;
        }
    }
    worker.finish_job(&endpoint_id);
    drop(held);
}

/// How far ahead a rate-limited attempt may book its sending slot; beyond it, it asks again.
const RATE_SLOT_HORIZON_US: i64 = 1_000_000;

/// Waits for a sending slot of a rate-limited endpoint (slots are shared by every node through
/// the database). False when the node is shutting down first.
async fn wait_for_rate_slot(worker: &Worker, job: &Job, shutdown: &CancellationToken) -> bool {
    let Some(limit) = job
        .endpoint
        .rate_limit_per_second
        .filter(|limit| *limit > 0)
    else {
        return true;
    };
    let interval_us = (1_000_000 / limit).max(1);
    loop {
        let pause = match queue::reserve_rate_slot(
            &worker.state.store,
            &job.endpoint.id,
            interval_us,
            RATE_SLOT_HORIZON_US,
        )
        .await
        {
            Ok(Some(slot_us)) => {
                // The slot is on the database's clock; nodes keep theirs in step (NTP).
                let wait = u64::try_from(slot_us - clock::now_us()).unwrap_or(0);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_micros(wait)) => return true,
                    () = shutdown.cancelled() => return false,
                }
            }
            // Every slot within the horizon is booked (by this node or others): ask again later.
            Ok(None) => Duration::from_millis(250),
            Err(error) => {
                tracing::warn!(error = %error, endpoint_id = %job.endpoint.id, "booking a rate-limit slot failed");
                Duration::from_millis(500)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return false,
        }
    }
}

/// Why a claimed delivery was not attempted.
enum Skip {
    /// It cannot be signed (its secret does not open).
    Unpreparable,
    /// Its lease would run out before the attempt could finish: another claim may take it.
    LeaseEnding,
    /// Its endpoint was disabled by a result recorded after the claim.
    EndpointDisabled,
    /// Its repository hook is temporarily disabled until then.
    Until(i64),
}

/// One attempt of one delivery, unless it should not be made now.
async fn attempt(worker: &Worker, job: &Job) -> Result<(Attempt, Next), Skip> {
    let state = &worker.state;
    let claimed = &job.claimed;
    let started_at = clock::now_ms();
    // Renewal keeps the lease while the attempt runs; one that has nearly run out means renewal
    // is failing (the database is unreachable), and another node may take the delivery.
    if !worker.lease_holds(
        job.lease_until,
        started_at,
        (worker.lease_ms / 3).min(1_000),
    ) {
        return Err(Skip::LeaseEnding);
    }
    if worker
        .disabled
        .lock()
        .expect("disabled lock")
        .contains(&claimed.endpoint_id)
    {
        return Err(Skip::EndpointDisabled);
    }
    if let Some(until) = job.endpoint.disabled_until
        && until > started_at
    {
        // A repository hook temporarily disabled after failures: its deliveries wait.
        return Err(Skip::Until(until));
    }
    let headers = if job.endpoint.is_repository_hook() {
        // A repository hook is signed as GitLab signs: its token, and an HMAC of the body.
        let token = match crate::hooks::token_of(&state.cipher, &job.endpoint) {
            Ok(token) => token,
            Err(error) => {
                tracing::error!(hook_id = %job.endpoint.id, error = %error, "hook token cannot be opened");
                return Err(Skip::Unpreparable);
            }
        };
        crate::hooks::delivery_headers(
            &job.endpoint,
            token.as_deref(),
            &claimed.event_type,
            &claimed.event_id,
            &claimed.id,
            &job.payload,
        )
    } else {
        let timestamp = started_at / 1000;
        let secrets = match signing_secrets(&state.cipher, &job.endpoint, started_at) {
            Ok(secrets) => secrets,
            Err(error) => {
                tracing::error!(endpoint_id = %job.endpoint.id, error = %error, "endpoint secret cannot be opened");
                return Err(Skip::Unpreparable);
            }
        };
        let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let signatures = signing::sign(&secret_refs, &claimed.event_id, timestamp, &job.payload);
        delivery_headers(claimed, timestamp, &signatures)
    };
    let recorded_headers = headers_json(&headers);

    let outcome = match url::Url::parse(&job.endpoint.url) {
        Ok(url) => {
            client::attempt(
                &state.outbound.client,
                &state.outbound.policy,
                &url,
                headers,
                job.payload.clone(),
            )
            .await
        }
        Err(error) => AttemptOutcome {
            status: None,
            response_headers: Vec::new(),
            body: None,
            error: Some((
                ErrorKind::Connect,
                format!("stored URL is invalid: {error}"),
            )),
            duration: Duration::ZERO,
            retry_after: None,
        },
    };
    metrics::histogram!("hookline_delivery_attempt_duration_seconds")
        .record(outcome.duration.as_secs_f64());
    let result_label = outcome
        .error
        .as_ref()
        .map_or("success", |(kind, _)| kind.as_str());
    metrics::counter!("hookline_delivery_attempts_total", "result" => result_label).increment(1);

    let attempts_in_round = u32::try_from(claimed.round_attempts + 1).unwrap_or(u32::MAX);
    let next = if outcome.succeeded() {
        Next::Succeeded
    } else if outcome.gone() {
        Next::Failed { gone: true }
    } else {
        match state
            .outbound
            .retry
            .next_delay(attempts_in_round, outcome.retry_after)
        {
            Some(delay) => {
                let at = clock::now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
                // A claim loop already asleep would otherwise wait out its whole poll: wake it
                // to sleep until this retry is due instead.
                if at < worker.next_retry.fetch_min(at, Ordering::AcqRel) {
                    state.outbound.wake();
                }
                Next::RetryAt(at)
            }
            None => Next::Failed { gone: false },
        }
    };
    let (error_kind, error_message) = match &outcome.error {
        Some((kind, message)) => (Some(kind.as_str().to_owned()), Some(message.clone())),
        None => (None, None),
    };
    let attempt = Attempt {
        id: ids::new(Kind::Attempt),
        delivery_id: claimed.id.clone(),
        attempt_number: claimed.attempt_count + 1,
        started_at,
        duration_ms: i64::try_from(outcome.duration.as_millis()).unwrap_or(i64::MAX),
        url: job.endpoint.url.clone(),
        request_headers: recorded_headers,
        response_status: outcome.status.map(i64::from),
        response_headers: (!outcome.response_headers.is_empty()).then(|| {
            let map: serde_json::Map<String, serde_json::Value> = outcome
                .response_headers
                .iter()
                .map(|(name, value)| (name.clone(), serde_json::Value::String(value.clone())))
                .collect();
            serde_json::Value::Object(map).to_string()
        }),
        response_body: outcome.body,
        error_kind,
        error_message,
        succeeded: outcome.error.is_none(),
    };
    Ok((attempt, next))
}

fn delivery_headers(
    claimed: &Claimed,
    timestamp: i64,
    signatures: &signing::SignatureHeaders,
) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(10);
    let mut put = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    let timestamp = timestamp.to_string();
    put("x-hookline-signature", &signatures.hookline);
    put("x-hookline-timestamp", &timestamp);
    put("x-hookline-event", &claimed.event_type);
    put("x-hookline-delivery", &claimed.id);
    put("webhook-id", &claimed.event_id);
    put("webhook-timestamp", &timestamp);
    put("webhook-signature", &signatures.standard);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("Hookline/", env!("CARGO_PKG_VERSION"))),
    );
    headers
}

/// The request headers as the attempt history keeps them. A repository hook's token travels in
/// clear (`X-Gitlab-Token`, as GitLab sends it) but is never stored or shown, nor is its HMAC of
/// the body (with the body beside it, a short token could be guessed offline).
fn headers_json(headers: &HeaderMap) -> String {
    let map: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(name, value)| {
            let text = if matches!(name.as_str(), "x-gitlab-token" | "x-hub-signature-256") {
                "[redacted]".to_owned()
            } else {
                client::storable_text(value.as_bytes())
            };
            (name.as_str().to_owned(), serde_json::Value::String(text))
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// Writes attempt results in batches: whatever has arrived since the last write, in one
/// transaction. A failed write is retried; if it keeps failing the leases expire and the
/// deliveries are attempted again (at-least-once). Each result's node slot and lease are given
/// up only after its write.
async fn record(worker: Arc<Worker>, mut input: mpsc::Receiver<(AttemptResult, Held)>) {
    let disable_after = i64::from(worker.state.config.delivery.disable_after_failures);
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    let mut holds = Vec::with_capacity(RECORD_BATCH);
    while let Some((first, held)) = input.recv().await {
        batch.push(first);
        holds.push(held);
        while batch.len() < RECORD_BATCH {
            match input.try_recv() {
                Ok((result, held)) => {
                    batch.push(result);
                    holds.push(held);
                }
                Err(_) => break,
            }
        }
        write_batch(&worker, &batch, disable_after).await;
        batch.clear();
        holds.clear();
    }
}

async fn write_batch(worker: &Worker, batch: &[AttemptResult], disable_after: i64) {
    let mut backoff = Duration::from_millis(50);
    for round in 1..=4 {
        match queue::record_results(&worker.state.store, batch, disable_after).await {
            Ok(recorded) => {
                remember_disabled(worker, &recorded);
                report(batch, recorded);
                return;
            }
            Err(error) if round < 4 => {
                tracing::warn!(error = %error, round, "recording attempt results failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(error) => {
                // One bad row must not cost the others: write them one at a time.
                tracing::warn!(error = %error, "recording a batch failed; writing its results one by one");
                for result in batch {
                    match queue::record_results(
                        &worker.state.store,
                        std::slice::from_ref(result),
                        disable_after,
                    )
                    .await
                    {
                        Ok(recorded) => {
                            remember_disabled(worker, &recorded);
                            report(std::slice::from_ref(result), recorded);
                        }
                        Err(error) => tracing::error!(
                            delivery_id = %result.claimed.id,
                            error = %error,
                            "attempt result lost; the delivery is retried when its lease expires"
                        ),
                    }
                }
            }
        }
    }
}

/// Keeps the leases of every delivery this node holds from running out: renewed every third of
/// a lease, so a missed renewal or two is survived. Ends after shutdown, once nothing is held.
async fn renew_leases(worker: Arc<Worker>, shutdown: CancellationToken) {
    let every = Duration::from_millis(u64::try_from(worker.lease_ms / 3).unwrap_or(1_000).max(100));
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        if shutdown.is_cancelled() {
            // Attempts still in flight finish and are recorded: keep their leases until then.
            tokio::time::sleep(Duration::from_millis(50).min(every)).await;
        } else {
            tokio::select! {
                () = tokio::time::sleep_until(last_renewal + every) => {}
                () = shutdown.cancelled() => {}
            }
        }
        let (ids, owners) = {
            let held = worker.held.lock().expect("held lock");
            if held.is_empty() && shutdown.is_cancelled() {
                return;
            }
            if last_renewal.elapsed() < every {
                continue;
            }
            let mut owners: Vec<String> = held.values().cloned().collect();
            owners.sort_unstable();
            owners.dedup();
            (held.keys().cloned().collect::<Vec<String>>(), owners)
        };
        last_renewal = tokio::time::Instant::now();
        if ids.is_empty() {
            continue;
        }
        let until = clock::now_ms() + worker.lease_ms;
        match queue::renew_leases(&worker.state.store, &ids, &owners, until).await {
            Ok(_) => worker.renewed_until.store(until, Ordering::Release),
            Err(error) => {
                tracing::warn!(error = %error, held = ids.len(), "renewing delivery leases failed");
            }
        }
    }
}

fn remember_disabled(worker: &Worker, recorded: &queue::Recorded) {
    if !recorded.disabled.is_empty() {
        let mut disabled = worker.disabled.lock().expect("disabled lock");
        disabled.extend(recorded.disabled.iter().map(|d| d.endpoint_id.clone()));
    }
}

/// Metrics and log lines for a written batch.
fn report(batch: &[AttemptResult], recorded: queue::Recorded) {
    count_outcomes(batch);
    if recorded.lease_lost > 0 {
        tracing::warn!(
            lost = recorded.lease_lost,
            "attempt results dropped: their lease had passed to another claim"
        );
        metrics::counter!("hookline_delivery_leases_lost_total")
            .increment(recorded.lease_lost as u64);
    }
    for disabled in recorded.disabled {
        tracing::warn!(
            event = "endpoint.disabled",
            endpoint_id = %disabled.endpoint_id,
            tenant_id = %disabled.tenant_id,
            reason = %disabled.reason,
            "endpoint disabled"
        );
        metrics::counter!("hookline_endpoints_disabled_total").increment(1);
    }
}

fn count_outcomes(batch: &[AttemptResult]) {
    for result in batch {
        let outcome = match result.next {
            Next::Succeeded => "succeeded",
            Next::RetryAt(_) => "retrying",
            Next::Failed { .. } => "failed",
        };
        metrics::counter!("hookline_deliveries_total", "outcome" => outcome).increment(1);
    }
}

/// Starts the announcer on PostgreSQL: every node runs it, whatever its role, so workers on other
/// nodes hear of work queued here.
pub fn spawn_announcer(state: &AppState, tracker: &TaskTracker, shutdown: &CancellationToken) {
    if matches!(state.store, Store::Postgres(_)) {
        tracker.spawn(announce(
            state.clone(),
            state.outbound.announce_handle(),
            shutdown.clone(),
        ));
    }
}

/// Tells other nodes that deliveries were queued, after the queuing transaction committed: a
/// NOTIFY inside every such transaction would make their commits wait for each other on
/// PostgreSQL's notification lock, and one per publish is wasted on workers that are already
/// awake. A request waits out [`super::ANNOUNCE_SPACING_MS`], so requests in between are folded
/// into one NOTIFY, and is dropped when a publish carried an announcement in its own statement
/// meanwhile ([`super::Outbound::take_announcement`]).
async fn announce(state: AppState, requests: Arc<Notify>, shutdown: CancellationToken) {
    let spacing = Duration::from_millis(super::ANNOUNCE_SPACING_MS.unsigned_abs());
    loop {
        tokio::select! {
            () = requests.notified() => {}
            () = shutdown.cancelled() => return,
        }
        let requested_at = clock::now_ms();
        tokio::time::sleep(spacing).await;
        if state.outbound.announced_at() > requested_at {
            continue;
        }
        state.outbound.mark_announced(clock::now_ms());
        if let Err(error) = queue::announce_queued(&state.store).await {
            tracing::debug!(error = %error, "announcing queued deliveries failed");
        }
    }
}

/// Wakes this node when another node queues deliveries (PostgreSQL LISTEN/NOTIFY).
async fn listen(pool: sqlx::PgPool, wake: Arc<Notify>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(CHANNEL).await {
                Ok(()) => loop {
                    tokio::select! {
                        notification = listener.recv() => match notification {
                            Ok(_) => wake.notify_one(),
                            Err(error) => {
                                tracing::warn!(error = %error, "delivery notifications interrupted");
                                break;
                            }
                        },
                        () = shutdown.cancelled() => return,
                    }
                },
                Err(error) => tracing::warn!(error = %error, "LISTEN failed"),
            },
            Err(error) => tracing::warn!(error = %error, "cannot open the notification connection"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Publishes queue depth and the age of the oldest due delivery as gauges, and pauses what a
/// publish racing a deactivation left pending ([`queue::pause_for_inactive_endpoints`]).
async fn report_queue(state: AppState, shutdown: CancellationToken) {
    let mut wait = QUEUE_REPORT_EVERY;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
        let now = clock::now_ms();
        let started = tokio::time::Instant::now();
        match queue::queue_stats(&state.store, now).await {
            Ok((depth, oldest_due)) => {
                metrics::gauge!("hookline_delivery_queue_depth").set(depth as f64);
                let age = oldest_due.map_or(0.0, |due| (now - due).max(0) as f64 / 1000.0);
                metrics::gauge!("hookline_delivery_oldest_due_age_seconds").set(age);
            }
            Err(error) => tracing::debug!(error = %error, "queue statistics unavailable"),
        }
        match queue::pause_for_inactive_endpoints(&state.store).await {
            Ok(0) => {}
            Ok(paused) => tracing::info!(paused, "deliveries of inactive endpoints paused"),
            Err(error) => tracing::warn!(error = %error, "pausing held deliveries failed"),
        }
        wait = report_pause(started.elapsed());
    }
}

/// Keeps PostgreSQL's statistics of the queue current. A burst of publishes grows the queue far
/// faster than autovacuum looks at it (once a minute, and never where it is turned off), and a
/// claim planned from statistics of a small queue reads all of a large one: 0.4 s per claim with
/// 870,000 due, a 1,000,000-delivery drain at 1,250/s instead of 10,400/s once analysed.
async fn refresh_statistics(state: AppState, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(STATISTICS_CHECK_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
        match queue::refresh_queue_statistics(&state.store).await {
            Ok(true) => tracing::debug!("queue statistics refreshed"),
            Ok(false) => {}
            Err(error) => tracing::debug!(error = %error, "refreshing queue statistics failed"),
        }
    }
}

/// How often a worker looks at how much of the queue changed since its statistics were taken
/// (one cheap read of the table's counters).
const STATISTICS_CHECK_EVERY: Duration = Duration::from_secs(1);

/// How often the queue gauges are refreshed while counting is cheap.
const QUEUE_REPORT_EVERY: Duration = Duration::from_secs(5);

/// The pause before the next count: [`QUEUE_REPORT_EVERY`], or longer when counting took long
/// (a count walks every pending delivery: 1.3 s with 1,000,000 pending on PostgreSQL, which every
/// 5 s was a fifth of the database's time during a drain), so counting takes at most about 5 %
/// of the time.
fn report_pause(count_took: Duration) -> Duration {
    QUEUE_REPORT_EVERY.max(count_took.saturating_mul(20))
}

/// Deletes history past the retention period, and expired idempotency keys, once an hour.
async fn prune(state: AppState, shutdown: CancellationToken) {
    let retention = i64::from(state.config.delivery.retention_days) * 86_400_000;
    let mut tick = tokio::time::interval(Duration::from_secs(3_600));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let now = clock::now_ms();
        match queue::prune(&state.store, now - retention).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "old deliveries pruned"),
            Err(error) => tracing::warn!(error = %error, "pruning deliveries failed"),
        }
        if let Err(error) =
            queue::prune_idempotency_keys(&state.store, now - super::api::IDEMPOTENCY_WINDOW_MS)
                .await
        {
            tracing::warn!(error = %error, "pruning idempotency keys failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::report_pause;

    #[test]
    fn queue_counts_take_at_most_a_twentieth_of_the_time() {
        assert_eq!(
            report_pause(Duration::from_millis(3)),
            Duration::from_secs(5)
        );
        assert_eq!(
            report_pause(Duration::from_millis(250)),
            Duration::from_secs(5)
        );
        assert_eq!(
            report_pause(Duration::from_millis(1300)),
            Duration::from_secs(26)
        );
    }
}
