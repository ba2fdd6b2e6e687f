//! Repository hooks end to end: forge events relayed GitLab-style to the hooks of their
//! repository (and only theirs), the bytes and headers each receiver gets, the hooks API, and the
//! GitHub → GitLab mapping checked field by field against GitLab's own examples.

use std::time::Duration;

use hookline::inbound::hub_signature;
use reqwest::Method;
use serde_json::{Value, json};

use crate::inbound::{GithubDelivery, fixture, service_with_secret};
use crate::on_both_backends;
use crate::outbound::outbound_app;
use crate::support::receiver::{Answer, Receiver};
use crate::support::{Backend, TestApp, eventually, json_of};

const WAIT: Duration = Duration::from_secs(30);

on_both_backends!(
    a_push_reaches_the_subscribed_hooks_of_its_repository_only,
    hooks_are_managed_for_known_repositories_and_tested,
    failing_hooks_are_disabled_as_gitlab_does,
    an_integrations_events_feed_the_hooks_of_their_repository,
);

async fn create_hook(app: &TestApp, repository: &str, body: Value) -> String {
    let (status, hook) = json_of(
        app.post_json(&format!("/api/repos/{repository}/hooks"), &body)
            .await,
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    hook["id"].as_str().unwrap().to_owned()
}

async fn hook_deliveries(app: &TestApp, repository: &str, hook: &str) -> Vec<Value> {
    let (status, page) = json_of(
        app.get(&format!("/api/repos/{repository}/hooks/{hook}/deliveries"))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().clone()
}

async fn a_push_reaches_the_subscribed_hooks_of_its_repository_only(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let (_, secret) = service_with_secret(&app, "checkout", "acme/checkout", false).await;
    service_with_secret(&app, "other", "acme/other", false).await;
    let (gitlab, original, unsubscribed, elsewhere) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let gitlab_hook = create_hook(
        &app,
        "acme/checkout",
        json!({"url": gitlab.url("/gitlab"), "token": "s3cret-token", "events": ["push", "note"]}),
    )
    .await;
    let original_hook = create_hook(
        &app,
        "Acme/Checkout",
        json!({"url": original.url("/original"), "payload_format": "original"}),
    )
    .await;
    let unsubscribed_hook = create_hook(
        &app,
        "acme/checkout",
        json!({"url": unsubscribed.url("/mr"), "events": ["merge_request"]}),
    )
    .await;
    let elsewhere_hook =
        create_hook(&app, "acme/other", json!({"url": elsewhere.url("/other")})).await;

    let body = fixture("github/push_main.json");
    let push = GithubDelivery::new("push", "relay-1", body.clone(), &secret);
    let (status, answer, headers) = push.send(&app, "/api/github/webhook").await;
    assert_eq!(status, 200, "{answer}");
    let inbound_id = headers[hookline::inbound::api::DELIVERY_HEADER]
        .to_str()
        .unwrap()
        .to_owned();

    // Queued before the answer: the hooks that do not want it have nothing.
    assert!(
        hook_deliveries(&app, "acme/checkout", &unsubscribed_hook)
            .await
            .is_empty()
    );
    assert!(
        hook_deliveries(&app, "acme/other", &elsewhere_hook)
            .await
            .is_empty()
    );

    let received = gitlab.wait_for(1, WAIT).await;
    let request = &received[0];
    assert_eq!(request.header("x-gitlab-event"), "Push Hook");
    assert_eq!(request.header("x-gitlab-token"), "s3cret-token");
    assert_eq!(
        request.header("x-hub-signature-256"),
        hub_signature(b"s3cret-token", &request.body)
    );
    assert_eq!(request.header("x-gitlab-webhook-uuid"), gitlab_hook);
    assert!(request.header("x-gitlab-event-uuid").starts_with("evt_"));
    assert!(request.header("idempotency-key").starts_with("dlv_"));
    assert_eq!(request.header("content-type"), "application/json");
    let payload = request.json();
    assert_eq!(payload["object_kind"], "push");
    assert_eq!(payload["event_name"], "push");
    assert_eq!(payload["ref"], "refs/heads/main");
    assert_eq!(payload["project"]["path_with_namespace"], "acme/checkout");
    assert_eq!(payload["total_commits_count"], 2);
    assert_eq!(payload["checkout_sha"], payload["after"]);
    assert_eq!(payload["commits"][0]["title"], "Test payment retries");
    assert_eq!(payload["commits"][1]["title"], "Release 1.2.0");

    let received = original.wait_for(1, WAIT).await;
    let request = &received[0];
    assert_eq!(
        request.body.as_ref(),
        body.as_slice(),
        "the sender's bytes, unchanged"
    );
    assert_eq!(request.header("x-gitlab-event"), "Push Hook");
    assert!(request.headers.get("x-gitlab-token").is_none());
    assert!(request.headers.get("x-hub-signature-256").is_none());

    // GitHub's redelivery (same delivery id) relays nothing twice.
    let (status, _, _) = push.send(&app, "/api/github/webhook").await;
    assert_eq!(status, 200);
    let deliveries = hook_deliveries(&app, "acme/checkout", &gitlab_hook).await;
    assert_eq!(deliveries.len(), 1);
    let delivery_id = deliveries[0]["id"].as_str().unwrap().to_owned();
    let detail = eventually(WAIT, "the hook delivery to succeed", || async {
        let (status, detail) = json_of(
            app.get(&format!(
                "/api/repos/acme/checkout/hook-deliveries/{delivery_id}"
            ))
            .await,
        )
        .await;
        assert_eq!(status, 200, "{detail}");
        (detail["status"] == "succeeded").then_some(detail)
    })
    .await;
    assert_eq!(detail["hook_id"], gitlab_hook);
    assert_eq!(detail["payload"]["object_kind"], "push");
    assert_eq!(
        detail["attempts"][0]["request_headers"]["x-gitlab-event"],
        "Push Hook"
    );
    assert_eq!(detail["attempts"][0]["response_status"], 200);
    assert_eq!(
        detail["attempts"][0]["request_headers"]["x-gitlab-token"], "[redacted]",
        "the token is never kept in the history"
    );
    assert_eq!(
        detail["attempts"][0]["request_headers"]["x-hub-signature-256"],
        "[redacted]"
    );
    assert!(!detail.to_string().contains("s3cret-token"));
    // The webhooks API does not serve hook deliveries.
    let response = app
        .get(&format!("/api/webhooks/deliveries/{delivery_id}"))
        .await;
    assert_eq!(response.status(), 404);
    // Another repository's hook delivery is not found through this one.
    let response = app
        .get(&format!(
            "/api/repos/acme/other/hook-deliveries/{delivery_id}"
        ))
        .await;
    assert_eq!(response.status(), 404);
    assert_eq!(original_hook.len(), gitlab_hook.len());

    // Resend queues it again; the receiver gets it a second time with the same idempotency key.
    let (status, resent) = json_of(
        app.post_json(
            &format!("/api/repos/acme/checkout/hook-deliveries/{delivery_id}/resend"),
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 202, "{resent}");
    let received = gitlab.wait_for(2, WAIT).await;
    assert_eq!(
        received[1].header("idempotency-key"),
        received[0].header("idempotency-key")
    );
    // Replaying the inbound delivery's processing relays nothing, unless asked.
    let replay = format!("/api/inbound-deliveries/{inbound_id}/replay");
    assert_eq!(app.post_json(&replay, &json!({})).await.status(), 200);
    assert_eq!(
        hook_deliveries(&app, "acme/checkout", &gitlab_hook)
            .await
            .len(),
        1
    );
    assert_eq!(
        app.post_json(&replay, &json!({"relay": true}))
            .await
            .status(),
        200
    );
    assert_eq!(
        hook_deliveries(&app, "acme/checkout", &gitlab_hook)
            .await
            .len(),
        2
    );
    assert_eq!(
        hook_deliveries(&app, "acme/checkout", &original_hook)
            .await
            .len(),
        2
    );

    // Hooks are not webhook endpoints: the webhooks API does not list them.
    let (_, endpoints) = json_of(app.get("/api/webhooks/endpoints").await).await;
    assert_eq!(endpoints["data"], json!([]));
}

async fn hooks_are_managed_for_known_repositories_and_tested(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    let url = receiver.url("/hook");

    // Only a repository Hookline knows has hooks.
    let response = app
        .post_json("/api/repos/acme/unknown/hooks", &json!({"url": url}))
        .await;
    assert_eq!(response.status(), 404);
    service_with_secret(&app, "checkout", "acme/checkout", false).await;

    for (body, field) in [
        (json!({"url": "ftp://example.com/x"}), "url"),
        (json!({"url": "http://127.0.0.1:0/x"}), "url"),
        (json!({"url": url, "events": ["tag_push"]}), "events"),
        (json!({"url": url, "events": []}), "events"),
        (
            json!({"url": url, "payload_format": "xml"}),
            "payload_format",
        ),
        (json!({"url": url, "token": ""}), "token"),
    ] {
        let (status, error) =
            json_of(app.post_json("/api/repos/acme/checkout/hooks", &body).await).await;
        assert_eq!(status, 422, "{body}: {error}");
        assert!(
            error["error"].as_str().unwrap().starts_with(field),
            "{error}"
        );
    }

    let hook = create_hook(
        &app,
        "acme/checkout",
        json!({"url": url, "token": "tok-123"}),
    )
    .await;
    let (status, listed) = json_of(app.get("/api/repos/acme/checkout/hooks").await).await;
    assert_eq!(status, 200);
    let listed = &listed["data"][0];
    assert_eq!(listed["id"], hook);
    assert_eq!(listed["events"], json!(["push"]), "pushes by default");
    assert_eq!(listed["payload_format"], "gitlab");
    assert_eq!(listed["enabled"], true);
    assert_eq!(listed["token_configured"], true);
    assert!(
        !listed.to_string().contains("tok-123"),
        "the token is never returned"
    );

    // Test sends a realistic push to this hook only.
    let (status, sent) = json_of(
        app.post_json(
            &format!("/api/repos/acme/checkout/hooks/{hook}/test"),
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 202, "{sent}");
    let received = receiver.wait_for(1, WAIT).await;
    assert_eq!(received[0].header("x-gitlab-event"), "Push Hook");
    assert_eq!(received[0].header("x-gitlab-token"), "tok-123");
    let payload = received[0].json();
    assert_eq!(payload["project"]["path_with_namespace"], "acme/checkout");
    assert_eq!(payload["commits"][0]["title"], "Test push from Hookline");

    let response = app
        .request(
            Method::PATCH,
            &format!("/api/repos/acme/checkout/hooks/{hook}"),
        )
        .json(&json!({"token": null, "events": ["push", "issue"], "enabled": false}))
        .send()
        .await
        .unwrap();
    let (status, updated) = json_of(response).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["token_configured"], false);
    assert_eq!(updated["events"], json!(["issue", "push"]));
    assert_eq!(updated["enabled"], false);

    let path = format!("/api/repos/acme/checkout/hooks/{hook}");
    assert_eq!(app.delete(&path).await.status(), 204);
    assert_eq!(app.get(&path).await.status(), 404);
    let malformed = app.get("/api/repos/acme/checkout/hooks/wh_nope").await;
    assert_eq!(malformed.status(), 400);
}

// ---- the mapping, against GitLab's documented examples ------------------------------------------

fn json_fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// The JSON type of a value, with `null` matching anything GitLab may leave empty.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every field of GitLab's example object is in ours with the same JSON type (or null where
/// GitHub has no value), and ours has no field GitLab does not document.
fn assert_fields_match(path: &str, ours: &Value, theirs: &Value) {
    let (Some(ours), Some(theirs)) = (ours.as_object(), theirs.as_object()) else {
        panic!("{path}: not objects: {ours} / {theirs}");
    };
    for (key, expected) in theirs {
        let Some(actual) = ours.get(key) else {
            panic!("{path}.{key} is missing");
        };
        if !actual.is_null() && !expected.is_null() {
            assert_eq!(
                kind(actual),
                kind(expected),
                "{path}.{key}: {actual} vs {expected}"
            );
        }
    }
    for key in ours.keys() {
        assert!(
            theirs.contains_key(key),
            "{path}.{key} is not a GitLab field"
        );
    }
}

#[test]
fn pushes_have_gitlabs_push_fields() {
    let gitlab = json_fixture("gitlab/push.json");
    for name in [
        "push_main",
        "push_new_branch",
        "push_tag",
        "push_delete_branch",
    ] {
        let github = json_fixture(&format!("github/{name}.json"));
        let ours = hookline::hooks::gitlab::push(&github).body;
        assert_fields_match(name, &ours, &gitlab);
        assert_fields_match(
            &format!("{name}.project"),
            &ours["project"],
            &gitlab["project"],
        );
        assert_fields_match(
            &format!("{name}.repository"),
            &ours["repository"],
            &gitlab["repository"],
        );
        if let Some(commit) = ours["commits"].get(0) {
            assert_fields_match(&format!("{name}.commits[0]"), commit, &gitlab["commits"][0]);
        }
        assert_eq!(ours["before"], github["before"]);
        assert_eq!(ours["after"], github["after"]);
        assert_eq!(ours["ref"], github["ref"]);
    }
    let tag = hookline::hooks::gitlab::push(&json_fixture("github/push_tag.json"));
    assert_eq!(tag.object_kind, "tag_push");
    assert_eq!(tag.body["object_kind"], "tag_push");
    let deleted = hookline::hooks::gitlab::push(&json_fixture("github/push_delete_branch.json"));
    assert_eq!(deleted.body["after"], hookline::hooks::gitlab::ZERO_SHA);
    assert_eq!(deleted.body["checkout_sha"], Value::Null);
    assert_eq!(deleted.body["total_commits_count"], 0);
}

/// Fields GitLab's merge request, issue and note hooks have, checked by name and type.
#[test]
fn merge_requests_and_issues_carry_gitlabs_core_fields() {
    use hookline::hooks::gitlab::from_github;
    let merge_request = json_fixture("gitlab/merge_request.json");
    for (name, state, action) in [
        ("pull_request_opened", "opened", "open"),
        ("pull_request_merged", "merged", "merge"),
    ] {
        let ours = from_github(
            "pull_request",
            &json_fixture(&format!("github/{name}.json")),
        )
        .unwrap()
        .body;
        for key in [
            "object_kind",
            "event_type",
            "user",
            "project",
            "object_attributes",
            "labels",
            "changes",
            "repository",
        ] {
            assert!(ours.get(key).is_some(), "{name}: {key}");
        }
        let attributes = &ours["object_attributes"];
        for key in [
            "id",
            "iid",
            "title",
            "description",
            "state",
            "action",
            "source_branch",
            "target_branch",
            "source_project_id",
            "target_project_id",
            "author_id",
            "created_at",
            "updated_at",
            "url",
            "source",
            "target",
            "last_commit",
            "work_in_progress",
            "draft",
            "merge_status",
        ] {
            let theirs = &merge_request["object_attributes"][key];
            let value = &attributes[key];
            assert!(
                attributes.get(key).is_some(),
                "{name}: object_attributes.{key}"
            );
            if !value.is_null() && !theirs.is_null() {
                assert_eq!(kind(value), kind(theirs), "{name}: object_attributes.{key}");
            }
        }
        assert_eq!(attributes["state"], state, "{name}");
        assert_eq!(attributes["action"], action, "{name}");
        assert_fields_match(
            &format!("{name}.project"),
            &ours["project"],
            &merge_request["project"],
        );
    }
    let issue = json_fixture("gitlab/issue.json");
    let ours = from_github("issues", &json_fixture("github/issues_opened.json"))
        .unwrap()
        .body;
    assert_eq!(ours["object_kind"], "issue");
    for key in [
        "id",
        "iid",
        "title",
        "description",
        "state",
        "action",
        "url",
        "created_at",
        "author_id",
    ] {
        let value = &ours["object_attributes"][key];
        assert!(ours["object_attributes"].get(key).is_some(), "issue: {key}");
        let theirs = &issue["object_attributes"][key];
        if !value.is_null() && !theirs.is_null() {
            assert_eq!(kind(value), kind(theirs), "issue: object_attributes.{key}");
        }
    }
    assert_eq!(ours["object_attributes"]["state"], "opened");
    assert_eq!(ours["object_attributes"]["action"], "open");
    assert_eq!(
        ours["object_attributes"]["created_at"]
            .as_str()
            .unwrap()
            .len(),
        "2026-03-02 15:00:00 UTC".len(),
        "GitLab's time format"
    );
}

async fn hook(app: &TestApp, id: &str) -> Value {
    let (status, hook) = json_of(
        app.get(&format!("/api/repos/acme/checkout/hooks/{id}"))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{hook}");
    hook
}

async fn failing_hooks_are_disabled_as_gitlab_does(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let (_, secret) = service_with_secret(&app, "checkout", "acme/checkout", false).await;
    let (failing, refusing) = (Receiver::start().await, Receiver::start().await);
    failing.answer_with(Answer::status(500).with_body("down"));
    refusing.answer_with(Answer::status(404));
    let failing_hook = create_hook(&app, "acme/checkout", json!({"url": failing.url("/ci")})).await;
    let refusing_hook =
        create_hook(&app, "acme/checkout", json!({"url": refusing.url("/gone")})).await;

    let push = GithubDelivery::new(
        "push",
        "health-1",
        fixture("github/push_main.json"),
        &secret,
    );
    assert_eq!(push.send(&app, "/api/github/webhook").await.0, 200);

    // A 4xx other than 429 disables the hook until a person enables it.
    let refused = eventually(WAIT, "the refusing hook to be disabled", || async {
        let hook = hook(&app, &refusing_hook).await;
        (hook["state"] == "disabled").then_some(hook)
    })
    .await;
    assert_eq!(refused["enabled"], false);
    assert_eq!(refused["disabled_reason"], "the receiver answered 404");
    assert_eq!(refusing.received().len(), 1, "no retry after a 404");

    // Four failures in a row: temporarily disabled for a minute; the delivery waits for it.
    let temporarily = eventually(
        WAIT,
        "the failing hook to be temporarily disabled",
        || async {
            let hook = hook(&app, &failing_hook).await;
            (hook["state"] == "temporarily_disabled").then_some(hook)
        },
    )
    .await;
    assert_eq!(temporarily["enabled"], true);
    assert_eq!(temporarily["consecutive_failures"], 4);
    let until =
        hookline::clock::parse_rfc3339_ms(temporarily["disabled_until"].as_str().unwrap()).unwrap();
    let remaining = until - hookline::clock::now_ms();
    assert!(
        (30_000..=60_000).contains(&remaining),
        "about a minute: {remaining} ms"
    );
    let waiting = eventually(WAIT, "the delivery to wait for the hook", || async {
        let deliveries = hook_deliveries(&app, "acme/checkout", &failing_hook).await;
        let delivery = deliveries[0].clone();
        let next = delivery["next_attempt_at"]
            .as_str()
            .and_then(hookline::clock::parse_rfc3339_ms);
        next.filter(|next| *next >= until).map(|_| delivery)
    })
    .await;
    assert_eq!(waiting["status"], "pending", "still queued, not dropped");
    assert_eq!(failing.received().len(), 4);

    // Test brings it back at once; with the receiver up, the held delivery goes through too.
    failing.respond_with(axum::http::StatusCode::OK);
    let (status, _) = json_of(
        app.post_json(
            &format!("/api/repos/acme/checkout/hooks/{failing_hook}/test"),
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 202);
    let restored = hook(&app, &failing_hook).await;
    assert_eq!(restored["state"], "enabled");
    assert_eq!(restored["consecutive_failures"], 0);
    failing.wait_for(6, WAIT).await;
    let (status, _) = json_of(
        app.post_json(
            &format!("/api/repos/acme/checkout/hooks/{refusing_hook}/test"),
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 202);
    // Enabled again by the Test, so the sample push went out (and its 404 disabled it again).
    refusing.wait_for(2, WAIT).await;
}

async fn an_integrations_events_feed_the_hooks_of_their_repository(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let secret = "a-strong-random-secret-at-least-32-chars";
    let (status, created) = json_of(
        app.post_json(
            "/api/v1/integrations",
            &json!({"name": "GitHub", "integration_type": "GITHUB", "description": "d",
                    "config": {"token": "ghp_x", "webhook_secret": secret}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let path = format!(
        "/api/v1/integrations/{}/webhook/github",
        created["id"].as_str().unwrap()
    );
    // Before the integration received anything for it, the repository is unknown.
    let receiver = Receiver::start().await;
    let body =
        json!({"url": receiver.url("/issues"), "events": ["issue"], "payload_format": "gitlab"});
    let response = app.post_json("/api/repos/acme/checkout/hooks", &body).await;
    assert_eq!(response.status(), 404);

    let first = GithubDelivery::new(
        "issues",
        "int-1",
        fixture("github/issues_opened.json"),
        secret,
    );
    assert_eq!(first.send(&app, &path).await.0, 200);
    let hook = create_hook(&app, "acme/checkout", body).await;
    let labeled = GithubDelivery::new(
        "issues",
        "int-2",
        fixture("github/issues_labeled.json"),
        secret,
    );
    assert_eq!(labeled.send(&app, &path).await.0, 200);

    let received = receiver.wait_for(1, WAIT).await;
    assert_eq!(received[0].header("x-gitlab-event"), "Issue Hook");
    assert_eq!(received[0].header("x-gitlab-webhook-uuid"), hook);
    let payload = received[0].json();
    assert_eq!(payload["object_kind"], "issue");
    assert_eq!(payload["object_attributes"]["action"], "update");
    assert_eq!(payload["project"]["path_with_namespace"], "acme/checkout");
    assert_eq!(hook_deliveries(&app, "acme/checkout", &hook).await.len(), 1);

    // GitHub's redelivery of the first event, sent before the hook existed, reaches the hook
    // now; redelivered again it relays nothing twice.
    assert_eq!(first.send(&app, &path).await.0, 200);
    assert_eq!(hook_deliveries(&app, "acme/checkout", &hook).await.len(), 2);
    assert_eq!(first.send(&app, &path).await.0, 200);
    assert_eq!(labeled.send(&app, &path).await.0, 200);
    assert_eq!(hook_deliveries(&app, "acme/checkout", &hook).await.len(), 2);
}

fn schema(kind: &str) -> jsonschema::Validator {
    let schema = json_fixture(&format!("gitlab/schemas/{kind}.schema.json"));
    jsonschema::validator_for(&schema).unwrap_or_else(|error| panic!("{kind}: {error}"))
}

fn assert_valid(validator: &jsonschema::Validator, what: &str, payload: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(payload)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}");
}

/// Every GitHub example relayed as a hook validates against the JSON Schema written from GitLab's
/// documentation, as GitLab's own examples do.
#[test]
fn every_relayed_event_validates_against_gitlabs_schemas() {
    for kind in ["push", "merge_request", "issue", "note", "pipeline"] {
        assert_valid(
            &schema(kind),
            &format!("GitLab's own {kind} example"),
            &json_fixture(&format!("gitlab/{kind}.json")),
        );
    }
    for (event, fixture_name, kind) in [
        ("push", "push_main", "push"),
        ("push", "push_new_branch", "push"),
        ("push", "push_tag", "push"),
        ("push", "push_delete_branch", "push"),
        ("pull_request", "pull_request_opened", "merge_request"),
        ("pull_request", "pull_request_merged", "merge_request"),
        ("issues", "issues_opened", "issue"),
        ("issues", "issues_labeled", "issue"),
        ("issue_comment", "issue_comment_created", "note"),
        (
            "pull_request_review_comment",
            "pull_request_review_comment_created",
            "note",
        ),
        ("workflow_run", "workflow_run_completed", "pipeline"),
        ("check_suite", "check_suite_completed", "pipeline"),
    ] {
        let github = json_fixture(&format!("github/{fixture_name}.json"));
        let relayed = hookline::hooks::gitlab::from_github(event, &github)
            .unwrap_or_else(|| panic!("{fixture_name} is relayed"));
        assert_eq!(hookline::hooks::subscription_of(relayed.object_kind), kind);
        assert_valid(&schema(kind), fixture_name, &relayed.body);
    }
    // The schemas can fail: a push without its project, or with GitHub's time format, does.
    let mut broken = hookline::hooks::gitlab::push(&json_fixture("github/push_main.json")).body;
    broken.as_object_mut().unwrap().remove("project");
    assert!(!schema("push").is_valid(&broken));
    let mut github_time =
        hookline::hooks::gitlab::from_github("issues", &json_fixture("github/issues_opened.json"))
            .unwrap()
            .body;
    github_time["object_attributes"]["created_at"] = json!("2026-03-02T15:00:00Z");
    assert!(!schema("issue").is_valid(&github_time));
    let mut deleted = json_fixture("github/issue_comment_created.json");
    deleted["action"] = json!("deleted");
    assert!(hookline::hooks::gitlab::from_github("issue_comment", &deleted).is_none());
    let mut actions = json_fixture("github/check_suite_completed.json");
    actions["check_suite"]["app"]["slug"] = json!("github-actions");
    assert!(
        hookline::hooks::gitlab::from_github("check_suite", &actions).is_none(),
        "an Actions run reaches hooks once, as its workflow run"
    );
    let check_suite = hookline::hooks::gitlab::from_github(
        "check_suite",
        &json_fixture("github/check_suite_completed.json"),
    )
    .unwrap();
    assert_eq!(check_suite.body["object_attributes"]["status"], "failed");
    assert_eq!(check_suite.body["object_attributes"]["duration"], 215);
}
