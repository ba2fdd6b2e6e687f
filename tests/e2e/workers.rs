//! Worker processes against one database: a worker killed with SIGKILL mid-drain loses nothing,
//! and two workers on one PostgreSQL deliver each delivery once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hookline::config::Role;
use hookline::store::outbound as queue;
use serde_json::json;

use crate::on_both_backends;
use crate::outbound::{create_endpoint, create_type, outbound_app, publish};
use crate::support::process::{Served, hookline, serve};
use crate::support::receiver::Receiver;
use crate::support::{Backend, TestApp, eventually};

const DRAIN: Duration = Duration::from_secs(90);

/// `hookline serve --role worker` on the test app's database.
async fn worker_process(app: &TestApp, dir: &std::path::Path, lease_seconds: u64) -> Served {
    let mut command = hookline(dir);
    command
        .args(["--database-url", app.config.database_url.expose()])
        .env("HOOKLINE_ROLE", "worker")
        .env(
            "HOOKLINE_MASTER_KEY",
            app.config.master_key.as_ref().unwrap().expose(),
        )
        .env("HOOKLINE_DELIVERY__ALLOW_HTTP", "true")
        .env("HOOKLINE_SSRF__ALLOW", "[\"127.0.0.0/8\"]")
        .env(
            "HOOKLINE_DELIVERY__LEASE_SECONDS",
            lease_seconds.to_string(),
        )
        .env("HOOKLINE_DELIVERY__TIMEOUT_MS", "1000")
        .env("HOOKLINE_DELIVERY__POLL_INTERVAL_MS", "200")
        .env("HOOKLINE_LOG__LEVEL", "warn");
    serve(command).await
}

/// An API-only server (no in-process worker), 10 endpoints on one receiver, and `events` events
/// published: `events × 10` deliveries waiting in the queue.
async fn queued_deliveries(backend: Backend, events: usize) -> (TestApp, Receiver) {
    let app = outbound_app(backend, |config| config.role = Role::Api).await;
    let receiver = Receiver::start().await;
    create_type(&app, "invoice.paid").await;
    for n in 0..10 {
        create_endpoint(&app, &receiver.url(&format!("/{n}")), None).await;
    }
    for n in 0..events {
        let published = publish(
            &app,
            "invoice.paid",
            json!({"invoice_id": format!("in_{n}"), "amount": n}),
        )
        .await;
        assert_eq!(published["deliveries"], 10);
    }
    (app, receiver)
}

fn delivery_counts(receiver: &Receiver) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for request in receiver.received() {
        *counts
            .entry(request.header("x-hookline-delivery").to_owned())
            .or_insert(0) += 1;
    }
    counts
}

async fn queue_is_drained(app: &TestApp) {
    eventually(DRAIN, "every delivery recorded as succeeded", || async {
        let (pending, _) = queue::queue_stats(&app.store, hookline::clock::now_ms())
            .await
            .unwrap();
        (pending == 0).then_some(())
    })
    .await;
}

on_both_backends!(a_worker_killed_mid_drain_loses_no_delivery);

async fn a_worker_killed_mid_drain_loses_no_delivery(backend: Backend) {
    let (app, receiver) = queued_deliveries(backend, 100).await;
    receiver.delay(Duration::from_millis(40));
    assert!(
        receiver.received().is_empty(),
        "the API node itself delivers nothing"
    );
    let dir = tempfile::tempdir().unwrap();

    let doomed = worker_process(&app, dir.path(), 2).await;
    receiver.wait_for(150, DRAIN).await;
    doomed.kill().await;
    let before_restart = delivery_counts(&receiver).len();
    assert!(
        before_restart < 1_000,
        "the kill came mid-drain ({before_restart} delivered)"
    );

    let successor = worker_process(&app, dir.path(), 2).await;
    let counts = eventually(DRAIN, "all 1000 deliveries at the receiver", || async {
        let counts = delivery_counts(&receiver);
        (counts.len() == 1_000).then_some(counts)
    })
    .await;
    queue_is_drained(&app).await;
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "{before_restart} delivered before SIGKILL; {duplicates} delivered twice (at-least-once)"
    );
    assert!(
        successor.terminate().await.0,
        "the second worker stops cleanly"
    );
}

#[tokio::test]
async fn two_workers_on_one_postgres_deliver_each_delivery_once() {
    let Some(backend) = Backend::postgres_or_skip().await else {
        return;
    };
    let (app, receiver) = queued_deliveries(backend, 50).await;
    let dir = tempfile::tempdir().unwrap();
    let first = worker_process(&app, dir.path(), 60).await;
    let second = worker_process(&app, dir.path(), 60).await;
    queue_is_drained(&app).await;
    let counts = delivery_counts(&receiver);
    assert_eq!(counts.len(), 500, "every delivery arrived");
    let repeated: BTreeSet<&String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(
        repeated.is_empty(),
        "delivered more than once: {repeated:?}"
    );
    assert_eq!(receiver.received().len(), 500);
    assert!(first.terminate().await.0);
    assert!(second.terminate().await.0);
}
