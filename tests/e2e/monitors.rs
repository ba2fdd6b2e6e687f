//! HTTP monitors end to end: failing checks open one incident with the monitor in its event,
//! three passes resolve it, checks are recorded, settings are validated (SSRF guard included),
//! and a due monitor is claimed by one node only — on both backends.

use std::time::Duration;

use axum::http::StatusCode;
use hookline::config::Role;
use hookline::store::monitors;
use serde_json::{Value, json};

use crate::inbound::service_with_secret;
use crate::on_both_backends;
use crate::outbound::{create_endpoint, outbound_app};
use crate::support::receiver::Receiver;
use crate::support::{Backend, TestApp, eventually, json_of};

const WAIT: Duration = Duration::from_secs(30);

async fn monitor_app(backend: Backend, adjust: impl FnOnce(&mut hookline::Config)) -> TestApp {
    outbound_app(backend, |config| {
        config.monitors.min_interval_seconds = 1;
        config.monitors.tick_ms = 50;
        adjust(config);
    })
    .await
}

async fn monitor_state(app: &TestApp, id: &str) -> Value {
    json_of(app.get(&format!("/api/monitors/{id}")).await)
        .await
        .1
}

on_both_backends!(
    failing_checks_open_one_incident_and_passes_resolve_it,
    monitor_settings_are_validated,
    a_due_monitor_is_claimed_by_one_node_per_interval,
);

async fn failing_checks_open_one_incident_and_passes_resolve_it(backend: Backend) {
    let app = monitor_app(backend, |_| {}).await;
    let events = Receiver::start().await;
    create_endpoint(
        &app,
        &events.url("/hook"),
        Some(vec!["incident.opened", "incident.resolved"]),
    )
    .await;
    let target = Receiver::start().await;
    target.respond_with(StatusCode::SERVICE_UNAVAILABLE);
    let (service, _) = service_with_secret(&app, "Payments API", "acme/checkout", false).await;
    let (status, monitor) = json_of(
        app.post_json(
            "/api/monitors",
            &json!({"service_id": service, "name": "Health Check", "url": target.url("/health"),
                    "interval_seconds": 1, "timeout_ms": 500, "expected_status": 200}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{monitor}");
    let id = monitor["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("mon_"));

    let incident_id = eventually(WAIT, "an incident from the monitor", || async {
        monitor_state(&app, &id).await["open_incident_id"]
            .as_str()
            .map(str::to_owned)
    })
    .await;
    let (_, incident) = json_of(app.get(&format!("/api/incidents/{incident_id}")).await).await;
    assert_eq!(incident["status"], "open");
    assert_eq!(incident["type"], "availability");
    assert_eq!(incident["severity"], "critical");
    assert_eq!(
        incident["monitor"],
        json!({"id": id, "name": "Health Check", "url": target.url("/health")})
    );
    assert!(
        incident["title"].as_str().unwrap().contains("503"),
        "{incident}"
    );

    // Still failing: no second incident while the first is open.
    eventually(WAIT, "two more failed checks", || async {
        (monitor_state(&app, &id).await["consecutive_failures"].as_i64() >= Some(4)).then_some(())
    })
    .await;
    let (_, open) = json_of(app.get("/api/incidents?status=open").await).await;
    assert_eq!(open["data"].as_array().unwrap().len(), 1);

    target.respond_with(StatusCode::OK);
    eventually(WAIT, "the incident resolved by three passes", || async {
        let (_, incident) = json_of(app.get(&format!("/api/incidents/{incident_id}")).await).await;
        (incident["status"] == "resolved").then_some(())
    })
    .await;
    let state = monitor_state(&app, &id).await;
    assert_eq!(state["open_incident_id"], Value::Null);
    assert!(state["consecutive_passes"].as_i64().unwrap() >= 3);

    let (_, checks) = json_of(app.get(&format!("/api/monitors/{id}/checks")).await).await;
    let checks = checks["data"].as_array().unwrap();
    assert!(checks.len() >= 7, "{checks:?}");
    assert_eq!(checks[0]["passed"], true);
    let failed = checks
        .iter()
        .find(|check| check["passed"] == false)
        .unwrap();
    assert_eq!(failed["status_code"], 503);
    assert_eq!(failed["failure"], "availability");

    let received = events.wait_for(2, WAIT).await;
    let mut delivered: Vec<Value> = received.iter().map(|request| request.json()).collect();
    delivered.sort_by_key(|event| event["type"].as_str().unwrap().to_owned());
    assert_eq!(delivered[0]["type"], "incident.opened");
    assert_eq!(delivered[1]["type"], "incident.resolved");
    for event in &delivered {
        assert_eq!(event["data"]["monitor"]["id"], id.as_str());
        assert_eq!(event["data"]["incident_id"], incident_id.as_str());
    }
}

async fn monitor_settings_are_validated(backend: Backend) {
    let app = monitor_app(backend, |config| config.monitors.min_interval_seconds = 10).await;
    let (service, _) = service_with_secret(&app, "Payments API", "acme/checkout", false).await;
    let base = json!({"service_id": service, "name": "Health", "url": "http://127.0.0.1:9/health",
                      "interval_seconds": 30});
    let with = |field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    for (body, expected) in [
        (with("interval_seconds", json!(5)), 422),
        (with("timeout_ms", json!(30_000)), 422),
        (with("expected_status", json!(42)), 422),
        (with("method", json!("BREW")), 422),
        (with("method", json!("DELETE")), 422),
        (with("url", json!("http://127.0.0.1:0/health")), 422),
        (
            with("url", json!("http://169.254.169.254/latest/meta-data")),
            422,
        ),
        (with("url", json!("ftp://127.0.0.1/")), 422),
        (
            with("service_id", json!("svc_0123456789abcdef0123456789abcdef")),
            404,
        ),
        (with("latency_threshold_ms", json!(0)), 422),
        // The default timeout is 5 s: a check never runs longer, so 5 s or more is never crossed.
        (with("latency_threshold_ms", json!(5_000)), 422),
        (with("latency_threshold_ms", json!(86_400_000)), 422),
    ] {
        let (status, answer) = json_of(app.post_json("/api/monitors", &body).await).await;
        assert_eq!(status, expected, "{body}: {answer}");
    }
    let (status, created) = json_of(app.post_json("/api/monitors", &base).await).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let (status, patched) = json_of(
        app.request(reqwest::Method::PATCH, &format!("/api/monitors/{id}"))
            .json(&json!({"active": false, "latency_threshold_ms": 250}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        (
            patched["active"].as_bool(),
            patched["latency_threshold_ms"].as_i64()
        ),
        (Some(false), Some(250))
    );
    assert_eq!(
        app.delete(&format!("/api/monitors/{id}")).await.status(),
        204
    );
    assert_eq!(app.get(&format!("/api/monitors/{id}")).await.status(), 404);
}

async fn a_due_monitor_is_claimed_by_one_node_per_interval(backend: Backend) {
    // An API-only node: no worker claims monitors behind the test's back.
    let app = monitor_app(backend, |config| config.role = Role::Api).await;
    let (service, _) = service_with_secret(&app, "Payments API", "acme/checkout", false).await;
    let (status, _) = json_of(
        app.post_json(
            "/api/monitors",
            &json!({"service_id": service, "name": "Health", "url": "http://127.0.0.1:9/health",
                    "interval_seconds": 60}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    let now = hookline::clock::now_ms();
    let (first, second) = tokio::join!(
        monitors::claim_due(&app.store, now, 10),
        monitors::claim_due(&app.store, now, 10)
    );
    let claimed = first.unwrap().len() + second.unwrap().len();
    assert_eq!(claimed, 1, "two nodes claiming at once check it once");
    let later = monitors::claim_due(&app.store, now + 30_000, 10)
        .await
        .unwrap();
    assert!(later.is_empty(), "not due again within its interval");
    let next = monitors::claim_due(&app.store, now + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(next.len(), 1, "due again one interval on");
}
