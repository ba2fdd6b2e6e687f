//! HTTP monitors: worker nodes check each active monitor once per interval (a claim moves its
//! next check on atomically, so several nodes never check it twice), through the SSRF-guarded
//! client. `monitors.failure_threshold` failed checks in a row open an incident (`availability`,
//! or `latency` when only the latency threshold was missed) with the monitor in its event; three
//! passes in a row resolve it. A monitor has at most one open incident at a time.

pub mod api;

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::app::AppState;
use crate::clock;
use crate::ids::{self, Kind};
use crate::incidents::{Status, Transition, change_in, open_in, rank_suspects};
use crate::store::deploys::{self, Incident};
use crate::store::monitors::{self, Check, Monitor};
use crate::store::{StoreResult, services};

/// Passing checks in a row that resolve a monitor's incident.
pub const RECOVERY_PASSES: i64 = 3;
/// Monitors claimed per tick.
const CLAIM_BATCH: u32 = 64;

/// What one check found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    /// `None` when the check passed; otherwise `availability` or `latency`.
    pub failure: Option<&'static str>,
    pub error: Option<String>,
}

pub fn spawn(state: &AppState, tracker: &TaskTracker, shutdown: &CancellationToken) {
    let (state, stop, checks) = (state.clone(), shutdown.clone(), tracker.clone());
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(state.config.monitors.tick_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let due = match monitors::claim_due(&state.store, clock::now_ms(), CLAIM_BATCH).await {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(%error, "claiming due monitors failed");
                    continue;
                }
            };
            for monitor in due {
                let state = state.clone();
                checks.spawn(async move {
                    let outcome = check(&state, &monitor).await;
                    if let Err(error) = record(&state, &monitor, &outcome).await {
                        tracing::warn!(monitor_id = %monitor.id, %error, "recording a monitor check failed");
                    }
                });
            }
        }
    });
}

/// Runs one check: the SSRF guard first (the URL's host, then every resolved address through the
/// client's resolver), then the request, judged by status and latency.
pub async fn check(state: &AppState, monitor: &Monitor) -> Outcome {
    let started = Instant::now();
    let failed = |error: String, started: Instant| Outcome {
        status_code: None,
        latency_ms: elapsed_ms(started),
        failure: Some("availability"),
        error: Some(error),
    };
    let url = match Url::parse(&monitor.url) {
        Ok(url) => url,
        Err(error) => return failed(format!("invalid URL: {error}"), started),
    };
    if let Err(blocked) = state.outbound.policy.check_url_host(&url) {
        return failed(blocked.to_string(), started);
    }
    let method =
        reqwest::Method::from_bytes(monitor.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let response = state
        .outbound
        .client
        .request(method, url)
        .timeout(Duration::from_millis(monitor.timeout_ms.max(1) as u64))
        .send()
        .await;
    let latency_ms = elapsed_ms(started);
    match response {
        Err(error) => {
            let message = if error.is_timeout() {
                format!("no answer within {} ms", monitor.timeout_ms)
            } else {
                let mut source: &dyn std::error::Error = &error;
                while let Some(next) = source.source() {
                    source = next;
                }
                format!("request failed: {source}")
            };
            failed(message, started)
        }
        Ok(response) => {
            let status = response.status().as_u16();
            drop(response);
            if i64::from(status) != monitor.expected_status {
                return Outcome {
                    status_code: Some(status),
                    latency_ms,
                    failure: Some("availability"),
                    error: Some(format!(
                        "answered {status}, expected {}",
                        monitor.expected_status
                    )),
                };
            }
            match monitor.latency_threshold_ms {
                Some(threshold) if latency_ms > threshold => Outcome {
                    status_code: Some(status),
                    latency_ms,
                    failure: Some("latency"),
                    error: Some(format!("took {latency_ms} ms, over {threshold} ms")),
                },
                _ => Outcome {
                    status_code: Some(status),
                    latency_ms,
                    failure: None,
                    error: None,
                },
            }
        }
    }
}

fn elapsed_ms(started: Instant) -> i64 {
    i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// Keeps the check and moves the monitor's state on, opening or resolving its incident, all in
/// one transaction.
pub async fn record(state: &AppState, claimed: &Monitor, outcome: &Outcome) -> StoreResult<()> {
    let now = clock::now_ms();
    // Suspects are ranked before the transaction: it reads many rows the writer need not wait on.
    let would_open = outcome.failure.is_some()
        && claimed.open_incident_id.is_none()
        && claimed.consecutive_failures + 1 >= i64::from(state.config.monitors.failure_threshold);
    let suspects = if would_open {
        rank_suspects(
            &state.store,
            &claimed.service_id,
            claimed.failing_since.unwrap_or(now),
        )
        .await?
    } else {
        Vec::new()
    };
    let mut tx = state.store.begin().await?;
    let Some(mut monitor) = monitors::lock_in(&mut tx, &claimed.id).await? else {
        return Ok(()); // deleted meanwhile
    };
    monitors::add_check_in(
        &mut tx,
        &Check {
            id: ids::new(Kind::MonitorCheck),
            monitor_id: monitor.id.clone(),
            checked_at: now,
            passed: outcome.failure.is_none(),
            failure: outcome.failure.map(str::to_owned),
            status_code: outcome.status_code.map(i64::from),
            latency_ms: outcome.latency_ms,
            error: outcome.error.clone(),
        },
    )
    .await?;
    // An incident resolved by hand frees the monitor to open another.
    if let Some(open) = &monitor.open_incident_id {
        let still_open = deploys::get_incident(&state.store, &monitor.tenant_id, open)
            .await
            .map(|incident| incident.status != Status::Resolved.as_str())
            .unwrap_or(false);
        if !still_open {
            monitor.open_incident_id = None;
        }
    }
    let mut opened = None;
    let mut resolved = None;
    match outcome.failure {
        Some(failure) => {
            monitor.consecutive_passes = 0;
            monitor.consecutive_failures += 1;
            let since = *monitor.failing_since.get_or_insert(now);
            if monitor.open_incident_id.is_none()
                && monitor.consecutive_failures
                    >= i64::from(state.config.monitors.failure_threshold)
            {
                let incident = Incident {
                    id: ids::new(Kind::Incident),
                    tenant_id: monitor.tenant_id.clone(),
                    service_id: monitor.service_id.clone(),
                    title: format!(
                        "{} failing: {}",
                        monitor.name,
                        outcome.error.as_deref().unwrap_or(failure)
                    ),
                    severity: if failure == "latency" { "warning" } else { "critical" }
                        .to_owned(),
                    incident_type: failure.to_owned(),
                    status: Status::Open.as_str().to_owned(),
                    monitor: Some(
                        serde_json::json!({"id": monitor.id, "name": monitor.name, "url": monitor.url})
                            .to_string(),
                    ),
                    monitor_id: Some(monitor.id.clone()),
                    started_at: since,
                    acknowledged_at: None,
                    resolved_at: None,
                    created_at: now,
                    updated_at: now,
                };
                // The service's name goes into the event; it is read only when one is emitted.
                let service =
                    services::get(&state.store, &monitor.tenant_id, &monitor.service_id).await?;
                open_in(&mut tx, &incident, &service.name, &suspects).await?;
                monitor.open_incident_id = Some(incident.id.clone());
                opened = Some(incident.id);
            }
        }
        None => {
            monitor.consecutive_failures = 0;
            monitor.failing_since = None;
            monitor.consecutive_passes += 1;
            if monitor.consecutive_passes >= RECOVERY_PASSES
                && let Some(incident_id) = monitor.open_incident_id.take()
            {
                let service =
                    services::get(&state.store, &monitor.tenant_id, &monitor.service_id).await?;
                change_in(
                    &mut tx,
                    &monitor.tenant_id,
                    &incident_id,
                    Transition::Resolve,
                    &service.name,
                )
                .await?;
                resolved = Some(incident_id);
            }
        }
    }
    monitors::set_state_in(&mut tx, &monitor).await?;
    tx.commit().await?;
    if opened.is_some() || resolved.is_some() {
        state.outbound.wake();
    }
    if let Some(id) = opened {
        tracing::warn!(monitor_id = %monitor.id, incident_id = %id, "monitor opened an incident");
    }
    if let Some(id) = resolved {
        tracing::info!(monitor_id = %monitor.id, incident_id = %id, "monitor resolved its incident");
    }
    Ok(())
}
