//! Fix proposals end to end, and the whole loop they close: push → deploy → monitor failure →
//! incident with suspects → revert pull request → merged webhook → proposal merged → monitor
//! passes → incident resolved; AI fixes through approval, their PR-creation job and the poll of
//! their pull request. GitHub is a local fake; every emitted event is checked against its schema.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::inbound::{GithubDelivery, fixture};
use crate::on_both_backends;
use crate::outbound::{create_endpoint, outbound_app};
use crate::record::assert_valid;
use crate::support::fake_github::{FakeGithub, GOOD_TOKEN, HEAD_SHA};
use crate::support::receiver::Receiver;
use crate::support::{Backend, TestApp, eventually, json_of};

const SHA_C: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
const WAIT: Duration = Duration::from_secs(30);
const FIX_EVENTS: [&str; 7] = [
    "deploy.ingested",
    "incident.opened",
    "incident.acknowledged",
    "incident.resolved",
    "fix_proposal.generated",
    "fix_proposal.applied",
    "fix_proposal.rejected",
];

async fn fix_app(backend: Backend, github: &FakeGithub, poll_seconds: u64) -> TestApp {
    let api_url = github.api_url();
    outbound_app(backend, |config| {
        config.github.api_url = api_url;
        config.monitors.min_interval_seconds = 1;
        config.monitors.tick_ms = 50;
        config.fix_proposals.tick_ms = 50;
        config.fix_proposals.poll_seconds = poll_seconds;
        config.analysis.poll_interval_ms = 50;
    })
    .await
}

/// A service with a GitHub token and push secret, and the `main` push ingested.
async fn service(app: &TestApp) -> (String, String) {
    let (status, service) = json_of(
        app.post_json(
            "/api/services",
            &json!({"name": "Payments API", "repository": "acme/checkout", "github_token": GOOD_TOKEN}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    let id = service["id"].as_str().unwrap().to_owned();
    let (_, secret) = json_of(
        app.post_json(&format!("/api/services/{id}/webhook-secret"), &json!({}))
            .await,
    )
    .await;
    let secret = secret["secret"].as_str().unwrap().to_owned();
    let (status, _, _) = GithubDelivery::new(
        "push",
        "loop-push",
        fixture("github/push_main.json"),
        &secret,
    )
    .send(app, "/api/github/webhook")
    .await;
    assert_eq!(status, 200);
    (id, secret)
}

async fn fix(app: &TestApp, id: &str) -> Value {
    json_of(app.get(&format!("/api/fix-proposals/{id}")).await)
        .await
        .1
}

fn events_of<'a>(events: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["type"] == event_type)
        .collect()
}

on_both_backends!(
    the_whole_loop_from_push_to_resolved_incident,
    ai_fixes_wait_for_approval_then_a_job_opens_their_pull_request,
);

async fn the_whole_loop_from_push_to_resolved_incident(backend: Backend) {
    let github = FakeGithub::start().await;
    let app = fix_app(backend, &github, 3_600).await;
    let events = Receiver::start().await;
    create_endpoint(&app, &events.url("/hook"), Some(FIX_EVENTS.to_vec())).await;
    let (service, secret) = service(&app).await;

    let (status, deploy) = json_of(
        app.post_json(
            "/api/deploys",
            &json!({"service_id": service, "commit_sha": SHA_C, "branch": "main",
                    "environment": "production", "deployed_by": "jane"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{deploy}");

    let target = Receiver::start().await;
    target.respond_with(StatusCode::SERVICE_UNAVAILABLE);
    let (status, monitor) = json_of(
        app.post_json(
            "/api/monitors",
            &json!({"service_id": service, "name": "Health Check", "url": target.url("/health"),
                    "interval_seconds": 1, "timeout_ms": 500}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{monitor}");
    let monitor_id = monitor["id"].as_str().unwrap().to_owned();
    let incident = eventually(WAIT, "the monitor's incident", || async {
        json_of(app.get(&format!("/api/monitors/{monitor_id}")).await)
            .await
            .1["open_incident_id"]
            .as_str()
            .map(str::to_owned)
    })
    .await;
    let (_, suspects) = json_of(
        app.get(&format!("/api/incidents/{incident}/suspects"))
            .await,
    )
    .await;
    let top = suspects["data"][0]["commit_sha"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        top, SHA_C,
        "the deployed commit is the first suspect: {suspects}"
    );

    // Revert the suspect: the pull request is opened at once.
    let (status, proposal) = json_of(
        app.post_json(
            &format!("/api/incidents/{incident}/fix-proposals"),
            &json!({"fix_type": "revert", "commit_sha": top}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{proposal}");
    assert_eq!(proposal["status"], "pr_created");
    assert_eq!(proposal["summary"], "Revert a1b2c3d: Release 1.2.0");
    let number = proposal["pr_number"].as_i64().unwrap();
    assert_eq!(
        proposal["pr_url"],
        format!("https://github.com/acme/checkout/pull/{number}")
    );
    let calls = github.calls();
    let paths: Vec<&str> = calls.iter().map(|(_, path, _)| path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/repos/acme/checkout/git/trees",
            "/repos/acme/checkout/git/commits",
            "/repos/acme/checkout/git/refs",
            "/repos/acme/checkout/pulls",
        ]
    );
    assert_eq!(calls[0].2["base_tree"], format!("tree-of-{HEAD_SHA}"));
    assert_eq!(
        calls[0].2["tree"],
        json!([
            {"path": "migrations/0009_sessions.sql", "mode": "100644", "type": "blob", "sha": null},
            {"path": "src/auth/login.rs", "mode": "100644", "type": "blob",
             "sha": "b10b0000000000000000000000000000000000b2"}
        ]),
        "added files go, modified files get their parent's blob"
    );
    assert_eq!(calls[1].2["parents"], json!([HEAD_SHA]));
    assert!(
        calls[1].2["message"]
            .as_str()
            .unwrap()
            .contains(&format!("This reverts commit {SHA_C}."))
    );
    assert_eq!(calls[3].2["base"], "main");
    assert_eq!(calls[3].2["head"], proposal["head_branch"]);

    // GitHub reports the revert merged: the proposal follows.
    let merged = String::from_utf8(fixture("github/pull_request_merged.json"))
        .unwrap()
        .replace("\"number\": 42", &format!("\"number\": {number}"));
    let (status, body, _) =
        GithubDelivery::new("pull_request", "loop-merged", merged.into_bytes(), &secret)
            .send(&app, "/api/github/webhook")
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        fix(&app, proposal["id"].as_str().unwrap()).await["status"],
        "merged"
    );

    // The service recovers: three passing checks resolve the incident.
    target.respond_with(StatusCode::OK);
    eventually(WAIT, "the incident resolved", || async {
        let (_, state) = json_of(app.get(&format!("/api/incidents/{incident}")).await).await;
        (state["status"] == "resolved").then_some(())
    })
    .await;

    let received = events.wait_for(4, WAIT).await;
    let delivered: Vec<Value> = received.iter().map(|request| request.json()).collect();
    for event in &delivered {
        assert_valid(event);
    }
    let opened = events_of(&delivered, "incident.opened");
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0]["data"]["monitor"]["id"], monitor_id.as_str());
    let generated = events_of(&delivered, "fix_proposal.generated");
    assert_eq!(
        generated[0]["data"],
        json!({"proposal_id": proposal["id"], "incident_id": incident, "fix_type": "revert",
               "status": "pr_created", "confidence_score": null, "risk_assessment": null,
               "summary": "Revert a1b2c3d: Release 1.2.0"})
    );
    assert_eq!(events_of(&delivered, "deploy.ingested").len(), 1);
    assert_eq!(events_of(&delivered, "incident.resolved").len(), 1);
}

const PATCH: &str = "--- a/src/pay.rs
+++ b/src/pay.rs
@@ -1,4 +1,4 @@
 fn charge(amount: Option<u64>) {
-    let amount = amount.unwrap();
+    let Some(amount) = amount else { return };
     send(amount);
 }
";

async fn ai_fixes_wait_for_approval_then_a_job_opens_their_pull_request(backend: Backend) {
    let github = FakeGithub::start().await;
    let app = fix_app(backend, &github, 1).await;
    let events = Receiver::start().await;
    create_endpoint(&app, &events.url("/hook"), Some(FIX_EVENTS[4..].to_vec())).await;
    let (service, _) = service(&app).await;
    let (_, incident) = json_of(
        app.post_json(
            "/api/incidents",
            &json!({"title": "Null amount", "severity": "error", "type": "availability", "service_id": service}),
        )
        .await,
    )
    .await;
    let incident = incident["id"].as_str().unwrap().to_owned();
    let propose = |body: Value| {
        let (app, path) = (&app, format!("/api/incidents/{incident}/fix-proposals"));
        async move { json_of(app.post_json(&path, &body).await).await }
    };
    let ai_fix = json!({"fix_type": "ai_fix", "summary": "Guard against a missing amount",
                        "patch": PATCH, "confidence_score": 78, "risk_assessment": "medium"});
    let (status, ready) = propose(ai_fix.clone()).await;
    assert_eq!(status, 201, "{ready}");
    assert_eq!(ready["status"], "ready");
    let id = ready["id"].as_str().unwrap().to_owned();
    assert!(
        github.calls().is_empty(),
        "nothing reaches GitHub before approval"
    );

    let act = |id: &str, action: &str, body: Value| {
        let (app, path) = (&app, format!("/api/fix-proposals/{id}/{action}"));
        async move { json_of(app.post_json(&path, &body).await).await }
    };
    let (status, applied) = act(&id, "approve", json!({})).await;
    assert_eq!((status, applied["status"].as_str()), (200, Some("applied")));
    let opened = eventually(WAIT, "the PR-creation job", || async {
        let state = fix(&app, &id).await;
        (state["status"] == "pr_created").then_some(state)
    })
    .await;
    let number = opened["pr_number"].as_i64().unwrap();
    let tree = github
        .calls()
        .into_iter()
        .find(|(_, path, _)| path.ends_with("/git/trees"))
        .unwrap()
        .2;
    assert_eq!(
        tree["tree"][0]["content"],
        "fn charge(amount: Option<u64>) {\n    let Some(amount) = amount else { return };\n    send(amount);\n}\n"
    );
    for action in ["approve", "reject"] {
        assert_eq!(
            act(&id, action, json!({})).await.0,
            409,
            "{action} after approval"
        );
    }

    // The poll notices the merge the webhook never told.
    github.merge_pull(number);
    eventually(WAIT, "the poll to see the merge", || async {
        (fix(&app, &id).await["status"] == "merged").then_some(())
    })
    .await;

    let (_, second) = propose(ai_fix.clone()).await;
    let second = second["id"].as_str().unwrap().to_owned();
    let (status, rejected) = act(
        &second,
        "reject",
        json!({"reason": "Fix does not address the root cause"}),
    )
    .await;
    assert_eq!(
        (status, rejected["status"].as_str()),
        (200, Some("rejected"))
    );
    assert_eq!(act(&second, "approve", json!({})).await.0, 409);

    for (body, expected) in [
        (json!({"fix_type": "rewrite"}), 422),
        (
            json!({"fix_type": "ai_fix", "summary": "x", "confidence_score": 5, "risk_assessment": "low"}),
            422,
        ),
        (
            json!({"fix_type": "ai_fix", "summary": "x", "patch": "not a diff", "confidence_score": 5, "risk_assessment": "low"}),
            422,
        ),
        (
            json!({"fix_type": "ai_fix", "summary": "x", "patch": PATCH, "confidence_score": 101, "risk_assessment": "low"}),
            422,
        ),
        (
            json!({"fix_type": "ai_fix", "summary": "x", "patch": PATCH, "confidence_score": 5, "risk_assessment": "severe"}),
            422,
        ),
        (json!({"fix_type": "revert", "commit_sha": "xyz"}), 422),
    ] {
        let (status, answer) = propose(body.clone()).await;
        assert_eq!(status, expected, "{body}: {answer}");
    }

    let received = events.wait_for(4, WAIT).await;
    let delivered: Vec<Value> = received.iter().map(|request| request.json()).collect();
    for event in &delivered {
        assert_valid(event);
    }
    let generated = events_of(&delivered, "fix_proposal.generated");
    assert_eq!(generated.len(), 2);
    let first = generated
        .iter()
        .find(|event| event["data"]["proposal_id"] == id.as_str())
        .unwrap();
    assert_eq!(
        first["data"],
        json!({"proposal_id": id, "incident_id": incident, "fix_type": "ai_fix", "status": "ready",
               "confidence_score": 78, "risk_assessment": "medium",
               "summary": "Guard against a missing amount"})
    );
    assert_eq!(
        events_of(&delivered, "fix_proposal.applied")[0]["data"],
        json!({"proposal_id": id, "incident_id": incident, "fix_type": "ai_fix"})
    );
    assert_eq!(
        events_of(&delivered, "fix_proposal.rejected")[0]["data"],
        json!({"proposal_id": second, "incident_id": incident, "fix_type": "ai_fix",
               "reason": "Fix does not address the root cause"})
    );
}
