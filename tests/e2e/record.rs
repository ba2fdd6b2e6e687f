//! The engineering record end to end: deploys with the commits they shipped, incidents through
//! their lifecycle with ranked suspects, and the events they emit — each delivered body checked
//! against its JSON Schema and the documented fields — on both backends.

use std::time::Duration;

use hookline::outbound::event_types;
use serde_json::{Value, json};

use crate::inbound::service_with_secret;
use crate::inbound::{GithubDelivery, fixture};
use crate::on_both_backends;
use crate::outbound::{create_endpoint, outbound_app};
use crate::support::receiver::Receiver;
use crate::support::{Backend, TestApp, json_of};

const SHA_A: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
const SHA_B: &str = "7638417db6d59f3c431d3e1f261cc637155684cd";
const SHA_C: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
const WAIT: Duration = Duration::from_secs(30);

/// A service with the fixture pushes ingested: A and B on `feature/pay`, B and C on `main`.
async fn service_with_commits(app: &TestApp) -> String {
    let (service, secret) = service_with_secret(app, "Payments API", "acme/checkout", false).await;
    for (file, delivery) in [
        ("github/push_new_branch.json", "p-1"),
        ("github/push_main.json", "p-2"),
    ] {
        let (status, body, _) = GithubDelivery::new("push", delivery, fixture(file), &secret)
            .send(app, "/api/github/webhook")
            .await;
        assert_eq!(status, 200, "{body}");
    }
    service
}

/// Checks a delivered envelope's `data` against the type's published schema.
pub fn assert_valid(event: &Value) {
    let event_type = event["type"].as_str().unwrap();
    let schema = (event_types::built_in(event_type)
        .expect("a built-in type")
        .schema)();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&event["data"])
        .map(|error| error.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{event_type}: {errors:?} in {}",
        event["data"]
    );
    assert_eq!(event["version"], "1");
    assert!(event["id"].as_str().unwrap().starts_with("evt_"));
}

fn shas(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|sha| sha.as_str().unwrap())
        .collect()
}

on_both_backends!(
    deploys_record_what_they_shipped_and_emit_deploy_ingested,
    incidents_follow_their_lifecycle_with_ranked_suspects,
);

async fn deploys_record_what_they_shipped_and_emit_deploy_ingested(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    create_endpoint(&app, &receiver.url("/hook"), Some(vec!["deploy.ingested"])).await;
    let service = service_with_commits(&app).await;

    let deploy = |body: Value| {
        let app = &app;
        async move { json_of(app.post_json("/api/deploys", &body).await).await }
    };
    let (status, first) = deploy(json!({"service_id": service, "commit_sha": SHA_B,
        "branch": "feature/pay", "environment": "production", "deployed_by": "jane"}))
    .await;
    assert_eq!(status, 201, "{first}");
    assert!(first["id"].as_str().unwrap().starts_with("dep_"));
    assert_eq!(
        shas(&first["commits"]),
        [SHA_B, SHA_A],
        "the first deploy ships the branch"
    );

    let (status, second) = deploy(json!({"service_id": service, "commit_sha": SHA_C,
        "branch": "main", "environment": "production"}))
    .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(
        shas(&second["commits"]),
        [SHA_C],
        "only what came after the previous deploy"
    );
    let (status, staging) =
        deploy(json!({"service_id": service, "commit_sha": SHA_C, "environment": "staging"})).await;
    assert_eq!(status, 201);
    assert_eq!(
        shas(&staging["commits"]),
        [SHA_C, SHA_B, SHA_A],
        "environments are apart"
    );
    let (status, unknown) =
        deploy(json!({"service_id": service, "commit_sha": "f".repeat(40)})).await;
    assert_eq!(
        (status, unknown["commits"].as_array().unwrap().len()),
        (201, 0)
    );

    for (body, expected) in [
        (
            json!({"service_id": service, "commit_sha": "not-a-sha"}),
            422,
        ),
        (json!({"service_id": service, "commit_sha": "abc"}), 422),
        (
            json!({"service_id": "svc_0123456789abcdef0123456789abcdef", "commit_sha": SHA_A}),
            404,
        ),
        (json!({"service_id": "nope", "commit_sha": SHA_A}), 422),
        (json!({"commit_sha": SHA_A}), 422),
    ] {
        let (status, answer) = deploy(body.clone()).await;
        assert_eq!(status, expected, "{body}: {answer}");
    }

    let received = receiver.wait_for(4, WAIT).await;
    let mut events: Vec<Value> = received.iter().map(|request| request.json()).collect();
    events.sort_by_key(|event| event["data"]["deploy_id"].as_str().unwrap().to_owned());
    for event in &events {
        assert_eq!(event["type"], "deploy.ingested");
        assert_valid(event);
    }
    assert_eq!(
        events[0]["data"],
        json!({"deploy_id": first["id"], "commit_sha": SHA_B, "branch": "feature/pay",
               "environment": "production", "deployed_by": "jane"})
    );
    assert_eq!(events[3]["data"]["branch"], Value::Null);
    assert_eq!(events[3]["data"]["deployed_by"], Value::Null);

    let (status, listed) =
        json_of(app.get(&format!("/api/services/{service}/deploys")).await).await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"].as_array().unwrap().len(), 4);
    let (status, one) = json_of(
        app.get(&format!("/api/deploys/{}", first["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!((status, &one["commits"]), (200, &first["commits"]));
}

async fn incidents_follow_their_lifecycle_with_ranked_suspects(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    let (endpoint, _) = create_endpoint(
        &app,
        &receiver.url("/hook"),
        Some(vec![
            "incident.opened",
            "incident.acknowledged",
            "incident.resolved",
        ]),
    )
    .await;
    let service = service_with_commits(&app).await;
    for (sha, branch) in [(SHA_B, "feature/pay"), (SHA_C, "main")] {
        let (status, _) = json_of(
            app.post_json(
                "/api/deploys",
                &json!({"service_id": service, "commit_sha": sha, "branch": branch, "environment": "production"}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 201);
    }

    let (status, incident) = json_of(
        app.post_json(
            "/api/incidents",
            &json!({"title": "payments-api health check failing", "severity": "critical",
                    "type": "availability", "service_id": service}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{incident}");
    let id = incident["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("inc_"));
    assert_eq!(incident["status"], "open");
    assert_eq!(incident["monitor"], Value::Null);
    assert_eq!(incident["service"]["name"], "Payments API");

    let (status, suspects) = json_of(app.get(&format!("/api/incidents/{id}/suspects")).await).await;
    assert_eq!(status, 200);
    let suspects = suspects["data"].as_array().unwrap();
    let ranked: Vec<&str> = suspects
        .iter()
        .map(|suspect| suspect["commit_sha"].as_str().unwrap())
        .collect();
    assert_eq!(ranked.len(), 3, "{suspects:?}");
    assert_eq!(
        ranked[0], SHA_C,
        "the latest deploy's commit comes first: {suspects:?}"
    );
    assert_eq!(suspects[0]["rank"], 1);
    let reasons = suspects[0]["reasons"].to_string();
    assert!(
        reasons.contains("shipped in the latest deploy"),
        "{reasons}"
    );
    assert!(reasons.contains("estimated by the rules"), "{reasons}");
    let scores: Vec<i64> = suspects
        .iter()
        .map(|s| s["score"].as_i64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|pair| pair[0] >= pair[1]),
        "{scores:?}"
    );

    let act = |action: &str| {
        let (app, path) = (&app, format!("/api/incidents/{id}/{action}"));
        async move { json_of(app.post_json(&path, &json!({})).await).await }
    };
    let (status, acknowledged) = act("acknowledge").await;
    assert_eq!(
        (status, acknowledged["status"].as_str()),
        (200, Some("acknowledged"))
    );
    let (status, again) = act("acknowledge").await;
    assert_eq!(status, 409, "{again}");
    let (status, resolved) = act("resolve").await;
    assert_eq!(
        (status, resolved["status"].as_str()),
        (200, Some("resolved"))
    );
    assert!(resolved["duration_seconds"].as_i64().unwrap() >= 0);
    for action in ["resolve", "acknowledge"] {
        let (status, answer) = act(action).await;
        assert_eq!(status, 409, "{action}: {answer}");
    }

    let received = receiver.wait_for(3, WAIT).await;
    let events: Vec<Value> = received.iter().map(|request| request.json()).collect();
    let mut types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    types.sort_unstable();
    assert_eq!(
        types,
        [
            "incident.acknowledged",
            "incident.opened",
            "incident.resolved"
        ]
    );
    for event in &events {
        assert_valid(event);
        assert_eq!(event["data"]["incident_id"], id.as_str());
        assert_eq!(
            event["data"]["service"],
            json!({"id": service, "name": "Payments API"})
        );
        assert_eq!(event["data"]["monitor"], Value::Null);
    }
    let resolved_event = events
        .iter()
        .find(|e| e["type"] == "incident.resolved")
        .unwrap();
    assert_eq!(resolved_event["data"]["status"], "resolved");
    assert_eq!(
        resolved_event["data"]["resolved_at"],
        resolved["resolved_at"]
    );
    assert_eq!(
        resolved_event["data"]["duration_seconds"],
        resolved["duration_seconds"]
    );
    let (_, deliveries) = json_of(
        app.get(&format!("/api/webhooks/endpoints/{endpoint}/deliveries"))
            .await,
    )
    .await;
    assert_eq!(
        deliveries["data"].as_array().unwrap().len(),
        3,
        "refused transitions emit nothing"
    );

    for (body, expected) in [
        (
            json!({"title": "x", "severity": "fatal", "type": "availability", "service_id": service}),
            422,
        ),
        (
            json!({"title": "x", "severity": "info", "type": "errors", "service_id": service}),
            422,
        ),
        (
            json!({"title": " ", "severity": "info", "type": "latency", "service_id": service}),
            422,
        ),
        (
            json!({"title": "x", "severity": "info", "type": "latency",
                "service_id": "svc_0123456789abcdef0123456789abcdef"}),
            404,
        ),
    ] {
        let (status, answer) = json_of(app.post_json("/api/incidents", &body).await).await;
        assert_eq!(status, expected, "{body}: {answer}");
    }
    let (status, open) = json_of(app.get("/api/incidents?status=resolved").await).await;
    assert_eq!((status, open["data"].as_array().unwrap().len()), (200, 1));
}
