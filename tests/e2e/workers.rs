//! Worker processes against one database: a worker killed with SIGKILL mid-drain loses nothing
//! and repeats at most its in-flight attempts, its deliveries resume within one lease; SIGTERM
//! loses nothing and repeats nothing; and two workers on one PostgreSQL deliver each delivery
//! once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hookline::config::Role;
use hookline::store::outbound as queue;
use serde_json::json;

use crate::on_both_backends;
use crate::outbound::{create_endpoint, create_type, outbound_app, publish};
use crate::support::process::{Served, hookline, serve};
use crate::support::receiver::Receiver;
use crate::support::{Backend, TestApp, TestDb, eventually};

const DRAIN: Duration = Duration::from_secs(90);

/// The most attempts a test worker has in flight (claimed and not yet recorded).
const MAX_IN_FLIGHT: usize = 32;

/// `hookline serve --role worker` on the test app's database, with the default lease.
async fn worker_process(app: &TestApp, dir: &std::path::Path) -> Served {
    node_process(app, dir, "worker", &[]).await
}

/// `hookline serve --role ROLE` on the test app's database, with the default lease; `env` comes
/// last, so it may change the settings above.
async fn node_process(
    app: &TestApp,
    dir: &std::path::Path,
    role: &str,
    env: &[(&str, &str)],
) -> Served {
    let mut command = hookline(dir);
    command
        .args(["--database-url", app.config.database_url.expose()])
        .env("HOOKLINE_ROLE", role)
        .env(
            "HOOKLINE_MASTER_KEY",
            app.config.master_key.as_ref().unwrap().expose(),
        )
        .env("HOOKLINE_DELIVERY__ALLOW_HTTP", "true")
        .env("HOOKLINE_SSRF__ALLOW", "[\"127.0.0.0/8\"]")
        .env(
            "HOOKLINE_DELIVERY__MAX_IN_FLIGHT",
            MAX_IN_FLIGHT.to_string(),
        )
        .env("HOOKLINE_DELIVERY__TIMEOUT_MS", "1000")
        .env("HOOKLINE_LOG__LEVEL", "warn")
        .envs(env.iter().copied());
    serve(command).await
}

/// The deliveries a node holds under lease right now (claimed, result not yet recorded).
async fn leased_deliveries(app: &TestApp) -> BTreeSet<String> {
    let now = hookline::clock::now_ms();
    let rows: Vec<String> = match &app.store {
        hookline::store::Store::Sqlite(sqlite) => sqlx::query_scalar(
            "SELECT id FROM deliveries WHERE status = 'pending' AND lease_owner IS NOT NULL \
             AND lease_until > $1",
        )
        .bind(now)
        .fetch_all(&sqlite.writer)
        .await
        .unwrap(),
        hookline::store::Store::Postgres(pool) => sqlx::query_scalar(
            "SELECT delivery_id FROM delivery_queue WHERE lease_owner IS NOT NULL \
             AND lease_until > $1",
        )
        .bind(now)
        .fetch_all(pool)
        .await
        .unwrap(),
    };
    rows.into_iter().collect()
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

    let doomed = worker_process(&app, dir.path()).await;
    receiver.wait_for(150, DRAIN).await;
    doomed.kill().await;
    let killed_at = std::time::Instant::now();
    let orphans = leased_deliveries(&app).await;
    let before_restart = delivery_counts(&receiver).len();
    assert!(
        before_restart < 1_000,
        "the kill came mid-drain ({before_restart} delivered)"
    );
    assert!(
        !orphans.is_empty() && orphans.len() <= MAX_IN_FLIGHT,
        "the dead worker held {} deliveries under lease (at most {MAX_IN_FLIGHT})",
        orphans.len()
    );

    let successor = worker_process(&app, dir.path()).await;
    eventually(DRAIN, "all 1000 deliveries at the receiver", || async {
        (delivery_counts(&receiver).len() == 1_000).then_some(())
    })
    .await;
    queue_is_drained(&app).await;
    // The dead worker's deliveries wait out one lease (10 s by default), not a long one: the
    // last of them reaches the receiver this long after the kill.
    let received = receiver.received();
    let recovered_in = orphans
        .iter()
        .map(|id| {
            received
                .iter()
                .filter(|request| request.header("x-hookline-delivery") == id.as_str())
                .map(|request| request.at.saturating_duration_since(killed_at))
                .max()
                .expect("every held delivery arrived")
        })
        .max()
        .unwrap();
    let duplicates: usize = delivery_counts(&receiver).values().map(|n| n - 1).sum();
    eprintln!(
        "{before_restart} delivered before SIGKILL, {} held by the dead worker; recovered in \
         {recovered_in:?}; {duplicates} delivered twice",
        orphans.len()
    );
    assert!(
        duplicates <= MAX_IN_FLIGHT,
        "a crash repeats at most the attempts in flight ({MAX_IN_FLIGHT}): {duplicates} repeated"
    );
    assert!(
        recovered_in < Duration::from_secs(30),
        "a crashed worker's deliveries resume within about one lease: {recovered_in:?}"
    );
    assert!(
        successor.terminate().await.0,
        "the second worker stops cleanly"
    );
}

on_both_backends!(a_worker_stopped_with_sigterm_mid_drain_repeats_nothing);

async fn a_worker_stopped_with_sigterm_mid_drain_repeats_nothing(backend: Backend) {
    let (app, receiver) = queued_deliveries(backend, 100).await;
    receiver.delay(Duration::from_millis(40));
    let dir = tempfile::tempdir().unwrap();

    let first = worker_process(&app, dir.path()).await;
    receiver.wait_for(150, DRAIN).await;
    let (clean, log) = first.terminate().await;
    assert!(clean, "SIGTERM ends the worker with success: {log}");
    let before_restart = delivery_counts(&receiver).len();
    assert!(
        before_restart < 1_000,
        "the stop came mid-drain ({before_restart} delivered)"
    );
    assert!(
        leased_deliveries(&app).await.is_empty(),
        "a stopped worker leaves no delivery under lease"
    );

    let second = worker_process(&app, dir.path()).await;
    queue_is_drained(&app).await;
    let counts = delivery_counts(&receiver);
    assert_eq!(counts.len(), 1_000, "every delivery arrived");
    let repeated: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(repeated.is_empty(), "delivered twice: {repeated:?}");
    assert!(second.terminate().await.0);
}

/// Deliveries a worker process counts as succeeded, from its own `/metrics`.
async fn succeeded_by(worker: &Served) -> u64 {
    counted_by(worker, "hookline_deliveries_total", "outcome=\"succeeded\"").await
}

/// The sum of a process's counter `name` over the series whose labels contain `labels`.
async fn counted_by(process: &Served, name: &str, labels: &str) -> u64 {
    let text = crate::support::http_client()
        .get(format!("{}/metrics", process.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| line.split(['{', ' ']).next() == Some(name) && line.contains(labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|count| count as u64)
        .sum()
}

on_both_backends!(deliveries_published_on_a_worker_node_go_straight_to_its_worker);

/// A node that runs a worker sends what is published on it without a claim: the deliveries are
/// written leased to its worker, as long as their endpoint has a free sending slot
/// (`endpoint_concurrency`). Once one had to be queued, the next ones queue behind it, unleased,
/// for claims; when the queue is drained, publishes are handed over again.
async fn deliveries_published_on_a_worker_node_go_straight_to_its_worker(backend: Backend) {
    let app = outbound_app(backend, |config| config.role = Role::Api).await;
    let receiver = Receiver::start().await;
    create_type(&app, "invoice.paid").await;
    create_endpoint(&app, &receiver.url("/hook"), None).await;
    // The first attempt is held at the receiver while the test looks at the queue.
    receiver.delay(Duration::from_secs(3));
    let dir = tempfile::tempdir().unwrap();
    let node = node_process(
        &app,
        dir.path(),
        "all",
        &[
            ("HOOKLINE_DELIVERY__ENDPOINT_CONCURRENCY", "2"),
            ("HOOKLINE_DELIVERY__TIMEOUT_MS", "10000"),
        ],
    )
    .await;
    let publish_on_node = |n: usize| {
        let (url, token) = (format!("{}/api/events", node.base_url), app.token.clone());
        async move {
            let answer = crate::support::http_client()
                .post(url)
                .bearer_auth(token)
                .json(&json!({"type": "invoice.paid", "data": {"invoice_id": format!("in_{n}"), "amount": n}}))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 202);
            let body: serde_json::Value = answer.json().await.unwrap();
            body["id"].as_str().unwrap().to_owned()
        }
    };
    // Until its first claim found the queue empty, the worker is not caught up.
    eventually(
        DRAIN,
        "the node's worker caught up with the queue",
        || async {
            (counted_by(&node, "hookline_delivery_handoff_open", "").await == 1).then_some(())
        },
    )
    .await;
    let mut events = Vec::new();
    for n in 0..5 {
        events.push(publish_on_node(n).await);
    }
    let mut leased_events = BTreeSet::new();
    for delivery_id in leased_deliveries(&app).await {
        let delivery = queue::get_delivery(&app.store, &app.tenant_id, &delivery_id)
            .await
            .unwrap();
        leased_events.insert(delivery.event_id);
    }
    assert_eq!(
        leased_events,
        events[..2].iter().cloned().collect::<BTreeSet<_>>(),
        "the first two publishes were written leased to the node; the others wait for a claim"
    );
    assert_eq!(
        counted_by(&node, "hookline_deliveries_handed_off_total", "").await,
        2
    );

    receiver.delay(Duration::ZERO);
    eventually(DRAIN, "all 5 deliveries at the receiver", || async {
        (delivery_counts(&receiver).len() == 5).then_some(())
    })
    .await;
    queue_is_drained(&app).await;
    assert!(
        delivery_counts(&receiver).values().all(|n| *n == 1),
        "each delivered once: {:?}",
        delivery_counts(&receiver)
    );
    assert_eq!(
        counted_by(&node, "hookline_deliveries_handed_off_total", "").await,
        2,
        "the three queued deliveries went through claims"
    );
    assert_eq!(succeeded_by(&node).await, 5);

    // The queue is drained: once the worker has seen it empty, publishes are handed over again.
    let mut n = 5;
    eventually(DRAIN, "a publish handed to the worker again", || {
        n += 1;
        let published = publish_on_node(n);
        let node = &node;
        async move {
            published.await;
            let handed_off = counted_by(node, "hookline_deliveries_handed_off_total", "").await;
            (handed_off == 3).then_some(())
        }
    })
    .await;
    receiver.wait_for(n, DRAIN).await;
    assert!(node.terminate().await.0);
}

/// One API node and two worker processes on one PostgreSQL schema drain a backlog: every delivery
/// exactly once at the receiver and in the results, and both workers did part of it.
#[tokio::test]
async fn two_workers_on_one_postgres_deliver_each_delivery_once() {
    let Some(backend) = Backend::postgres_or_skip().await else {
        return;
    };
    let (app, receiver) = queued_deliveries(backend, 50).await;
    // Slow enough answers that the drain outlasts a worker's start.
    receiver.delay(Duration::from_millis(100));
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = tokio::join!(
        worker_process(&app, dir.path()),
        worker_process(&app, dir.path())
    );
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
    let (by_first, by_second) = (succeeded_by(&first).await, succeeded_by(&second).await);
    eprintln!("first worker delivered {by_first}, second {by_second}");
    assert_eq!(by_first + by_second, 500, "each result recorded once");
    assert!(
        by_first > 0 && by_second > 0,
        "both workers took part: {by_first} and {by_second}"
    );
    assert!(first.terminate().await.0);
    assert!(second.terminate().await.0);
}

on_both_backends!(a_node_publishes_to_endpoints_as_changed_on_another_node_at_once);

/// A node keeps the plans it publishes from (a tenant's endpoints and event types), and nothing
/// tells it when another node changes them: its next publish still goes exactly to the endpoints
/// as they are now, because the write refuses a plan that is no longer current. Each step below
/// publishes on the node right after the change on the other one.
async fn a_node_publishes_to_endpoints_as_changed_on_another_node_at_once(backend: Backend) {
    let app = outbound_app(backend, |config| config.role = Role::Api).await;
    let receiver = Receiver::start().await;
    create_type(&app, "invoice.paid").await;
    create_type(&app, "invoice.voided").await;
    let (first, _) = create_endpoint(&app, &receiver.url("/first"), None).await;
    let dir = tempfile::tempdir().unwrap();
    let node = node_process(&app, dir.path(), "all", &[]).await;
    let publish_on_node = |data: serde_json::Value| {
        let (url, token) = (format!("{}/api/events", node.base_url), app.token.clone());
        async move {
            let answer = crate::support::http_client()
                .post(url)
                .bearer_auth(token)
                .json(&json!({"type": "invoice.paid", "data": data}))
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            (status, answer.json::<serde_json::Value>().await.unwrap())
        }
    };
    let invoice = |n: u32| json!({"invoice_id": format!("in_{n}"), "amount": n});
    let deliveries_of = |body: &serde_json::Value| body["deliveries"].as_u64().unwrap();
    let paths_of = |invoice_id: &str| {
        let mut paths: Vec<String> = receiver
            .received()
            .into_iter()
            .filter(|request| request.json()["data"]["invoice_id"] == invoice_id)
            .map(|request| request.path)
            .collect();
        paths.sort();
        paths
    };

    for n in 0..3 {
        let (status, body) = publish_on_node(invoice(n)).await;
        assert_eq!((status, deliveries_of(&body)), (202, 1), "{body}");
    }
    receiver.wait_for(3, DRAIN).await;

    // A new endpoint gets the very next event.
    let (second, _) = create_endpoint(&app, &receiver.url("/second"), None).await;
    let (status, body) = publish_on_node(invoice(3)).await;
    assert_eq!((status, deliveries_of(&body)), (202, 2), "{body}");
    receiver.wait_for(5, DRAIN).await;
    assert_eq!(paths_of("in_3"), ["/first", "/second"]);

    // A filter that no longer wants the type, a deletion.
    let changed = app
        .request(
            reqwest::Method::PATCH,
            &format!("/api/webhooks/endpoints/{first}"),
        )
        .json(&json!({"event_types": ["invoice.voided"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let (status, body) = publish_on_node(invoice(4)).await;
    assert_eq!((status, deliveries_of(&body)), (202, 1), "{body}");
    receiver.wait_for(6, DRAIN).await;
    assert_eq!(paths_of("in_4"), ["/second"]);
    let deleted = app
        .delete(&format!("/api/webhooks/endpoints/{second}"))
        .await;
    let status = deleted.status();
    assert_eq!(status, 204, "{}", deleted.text().await.unwrap());
    let (status, body) = publish_on_node(invoice(5)).await;
    assert_eq!((status, deliveries_of(&body)), (202, 0), "{body}");

    // The event type, deleted on the other node, is unknown to the next publish; registered
    // again with another schema, that schema judges the next event.
    assert_eq!(
        app.delete("/api/event-types/invoice.paid").await.status(),
        204
    );
    let (status, body) = publish_on_node(invoice(6)).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|message| message.contains("unknown event type")),
        "{body}"
    );
    let registered = app
        .post_json(
            "/api/event-types",
            &json!({"name": "invoice.paid", "description": "d", "schema": {
                "type": "object",
                "required": ["invoice_id", "amount", "currency"],
            }}),
        )
        .await;
    assert_eq!(registered.status(), 201);
    let (status, body) = publish_on_node(invoice(7)).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("currency"), "{body}");
    assert!(node.terminate().await.0);
    assert_eq!(receiver.received().len(), 6, "nothing else was sent");
}

on_both_backends!(a_server_killed_mid_publish_delivers_every_accepted_event);

/// kill -9 of a serving process while clients publish: every event that got its 202 is delivered
/// once the server is back, on the same database.
async fn a_server_killed_mid_publish_delivers_every_accepted_event(backend: Backend) {
    let db = TestDb::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let server = |db: &TestDb| {
        let mut command = hookline(dir.path());
        command
            .args(["--database-url", db.url()])
            .env("HOOKLINE_MASTER_KEY", db.master_key())
            .env("HOOKLINE_DELIVERY__ALLOW_HTTP", "true")
            .env("HOOKLINE_SSRF__ALLOW", "[\"127.0.0.0/8\"]")
            .env("HOOKLINE_LOG__LEVEL", "error");
        serve(command)
    };
    let doomed = server(&db).await;
    let token = doomed
        .token
        .clone()
        .expect("the first start prints a token");
    let client = crate::support::http_client();
    let base = doomed.base_url.clone();
    let created = client
        .post(format!("{base}/api/event-types"))
        .bearer_auth(&token)
        .json(&json!({"name": "invoice.paid", "description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created = client
        .post(format!("{base}/api/webhooks/endpoints"))
        .bearer_auth(&token)
        .json(&json!({"url": receiver.url("/hook"), "name": "r"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    // Four clients publish as fast as they can until the server is gone.
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let mut publishers = Vec::new();
    for publisher in 0..4 {
        let (client, base, token, accepted) = (
            client.clone(),
            base.clone(),
            token.clone(),
            accepted.clone(),
        );
        publishers.push(tokio::spawn(async move {
            for n in 0..5_000 {
                let invoice = format!("in_{publisher}_{n}");
                let answer = client
                    .post(format!("{base}/api/events"))
                    .bearer_auth(&token)
                    .json(&json!({"type": "invoice.paid", "data": {"invoice_id": invoice}}))
                    .send()
                    .await;
                match answer {
                    Ok(answer) if answer.status() == 202 => {
                        accepted.lock().unwrap().insert(invoice);
                    }
                    _ => return,
                }
            }
        }));
    }
    eventually(DRAIN, "a few hundred publishes accepted", || async {
        (accepted.lock().unwrap().len() >= 300).then_some(())
    })
    .await;
    doomed.kill().await;
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();

    let successor = server(&db).await;
    let delivered = eventually(DRAIN, "every accepted event delivered", || async {
        let delivered = receiver.invoice_ids();
        accepted.is_subset(&delivered).then_some(delivered)
    })
    .await;
    eprintln!(
        "{} publishes accepted before SIGKILL; {} events delivered after the restart",
        accepted.len(),
        delivered.len()
    );
    assert!(successor.terminate().await.0);
}
