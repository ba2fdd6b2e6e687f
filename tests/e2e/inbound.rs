//! Inbound webhooks end to end: GitHub and GitLab deliveries byte for byte as those senders make
//! them (fixtures under `fixtures/`), verified, stored once, and turned into commits, pull
//! requests, issues and experiment activity; integrations and GitHub issue creation against a
//! local fake GitHub.

use hookline::inbound::hub_signature;
use hookline::store::{record, tenants};
use reqwest::Method;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::fake_github::{FakeGithub, GOOD_TOKEN};
use crate::support::{Backend, TestApp, json_of};

const SHA_A: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
const SHA_B: &str = "7638417db6d59f3c431d3e1f261cc637155684cd";
const SHA_C: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
const REPOSITORY: &str = "acme/checkout";

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/e2e/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// Creates a service for `repository` and generates its push secret.
pub async fn service_with_secret(
    app: &TestApp,
    name: &str,
    repository: &str,
    auto_analyze: bool,
) -> (String, String) {
    let (status, service) = json_of(
        app.post_json(
            "/api/services",
            &json!({"name": name, "repository": repository, "auto_analyze": auto_analyze}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{service}");
    let id = service["id"].as_str().unwrap().to_owned();
    let (status, secret) = json_of(
        app.post_json(&format!("/api/services/{id}/webhook-secret"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{secret}");
    (id, secret["secret"].as_str().unwrap().to_owned())
}

/// A GitHub delivery as GitHub sends it: JSON body, event and delivery headers, and the signature
/// over the raw bytes when there is a secret.
pub struct GithubDelivery<'a> {
    pub event: &'a str,
    pub delivery: &'a str,
    pub body: Vec<u8>,
    pub content_type: &'a str,
    pub secret: Option<&'a str>,
}

impl<'a> GithubDelivery<'a> {
    pub fn new(event: &'a str, delivery: &'a str, body: Vec<u8>, secret: &'a str) -> Self {
        GithubDelivery {
            event,
            delivery,
            body,
            content_type: "application/json",
            secret: Some(secret),
        }
    }

    pub async fn send(
        &self,
        app: &TestApp,
        path: &str,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut request = app
            .client
            .post(app.url(path))
            .header("content-type", self.content_type)
            .header("user-agent", "GitHub-Hookshot/044aadd")
            .header("x-github-event", self.event)
            .header("x-github-delivery", self.delivery)
            .header("x-github-hook-id", "1234")
            .body(self.body.clone());
        if let Some(secret) = self.secret {
            request = request.header(
                "x-hub-signature-256",
                hub_signature(secret.as_bytes(), &self.body),
            );
        }
        let response = request.send().await.unwrap();
        let headers = response.headers().clone();
        let (status, body) = json_of(response).await;
        (status, body, headers)
    }
}

async fn commits(app: &TestApp, service_id: &str, query: &str) -> Vec<Value> {
    let (status, page) = json_of(
        app.get(&format!("/api/services/{service_id}/commits{query}"))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().clone()
}

fn shas(commits: &[Value]) -> Vec<&str> {
    commits
        .iter()
        .map(|commit| commit["sha"].as_str().unwrap())
        .collect()
}

async fn inbound(app: &TestApp, query: &str) -> Vec<Value> {
    let (status, page) = json_of(app.get(&format!("/api/inbound-deliveries{query}")).await).await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().clone()
}

on_both_backends!(
    pushes_are_verified_and_each_commit_is_stored_once_per_service,
    rejected_requests_change_nothing_and_are_counted,
    unusable_bodies_are_kept_as_failed_deliveries,
    a_rotated_secret_stops_at_once_unless_a_grace_window_is_asked,
    one_tenants_secret_never_verifies_another_tenants_service,
    integrations_record_pull_requests_issues_and_experiment_links,
    gitlab_events_are_verified_by_token_or_signature_and_ingested,
    a_stored_delivery_can_be_replayed,
    experiments_create_github_issues_through_their_integration,
    concurrent_deliveries_and_their_repeats_are_recorded_exactly_once,
);

async fn pushes_are_verified_and_each_commit_is_stored_once_per_service(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (service, secret) = service_with_secret(&app, "checkout", REPOSITORY, true).await;

    let ping = GithubDelivery::new("ping", "d-ping", fixture("github/ping.json"), &secret);
    let (status, body, _) = ping.send(&app, "/api/github/webhook").await;
    assert_eq!((status, body), (200, json!({"processed": true})));

    let push = GithubDelivery::new(
        "push",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        fixture("github/push_new_branch.json"),
        &secret,
    );
    let (status, body, headers) = push.send(&app, "/api/github/webhook").await;
    assert_eq!((status, &body), (200, &json!({"processed": true})));
    let delivery_id = headers["x-hookline-inbound-delivery"]
        .to_str()
        .unwrap()
        .to_owned();

    let listed = commits(&app, &service, "").await;
    assert_eq!(shas(&listed), [SHA_B, SHA_A], "newest first");
    let first = &listed[1];
    assert_eq!(first["message"], "Add payment retries");
    assert_eq!(
        first["author"],
        json!({"name": "Jane Doe", "email": "jane@example.com"})
    );
    assert_eq!(first["timestamp"], "2026-03-02T09:00:00.000Z");
    assert_eq!(
        first["url"],
        format!("https://github.com/acme/checkout/commit/{SHA_A}")
    );
    assert_eq!(first["repository"], REPOSITORY);
    assert_eq!(first["branches"], json!(["feature/pay"]));
    assert_eq!(
        first["files"],
        json!({"added": ["src/pay/retry.rs"], "removed": [], "modified": ["src/pay/mod.rs", "Cargo.toml"]})
    );
    // Auto-analyze queued a job; the analysis worker may have taken it up since.
    assert!(
        ["queued", "running", "done"].contains(&first["analysis_status"].as_str().unwrap_or("")),
        "auto-analyze queues new commits: {}",
        first["analysis_status"]
    );

    // GitHub's redelivery: same X-GitHub-Delivery, nothing changes.
    let (status, body, _) = push.send(&app, "/api/github/webhook").await;
    assert_eq!(
        (status, body),
        (200, json!({"processed": true, "duplicate": true}))
    );

    // The same commit pushed to main gains the branch; the new one is stored.
    let main = GithubDelivery::new("push", "d-main", fixture("github/push_main.json"), &secret);
    assert_eq!(main.send(&app, "/api/github/webhook").await.0, 200);
    let listed = commits(&app, &service, "").await;
    assert_eq!(shas(&listed), [SHA_C, SHA_B, SHA_A]);
    let (status, both) = json_of(
        app.get(&format!("/api/services/{service}/commits/{SHA_B}"))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{both}");
    assert_eq!(both["branches"], json!(["feature/pay", "main"]));
    assert_eq!(both["files"]["added"], json!(["tests/retry.rs"]));
    let stored = record::get_commit(&app.store, &app.tenant_id, &service, SHA_B)
        .await
        .unwrap();
    assert_eq!(
        record::analysis_jobs_of(&app.store, &stored.id)
            .await
            .unwrap(),
        1,
        "a commit seen twice is analysed once"
    );

    // Deleted branches and tag pushes are processed without error and add nothing.
    for (name, delivery) in [
        ("github/push_delete_branch.json", "d-delete"),
        ("github/push_tag.json", "d-tag"),
    ] {
        let push = GithubDelivery::new("push", delivery, fixture(name), &secret);
        let (status, body, _) = push.send(&app, "/api/github/webhook").await;
        assert_eq!(
            (status, &body),
            (200, &json!({"processed": true})),
            "{name}"
        );
    }
    assert_eq!(commits(&app, &service, "").await.len(), 3);

    // Filters and a short SHA.
    assert_eq!(
        shas(&commits(&app, &service, "?branch=main").await),
        [SHA_C, SHA_B]
    );
    assert_eq!(
        shas(&commits(&app, &service, "?author=SAM@example.com").await),
        [SHA_B]
    );
    assert_eq!(
        shas(
            &commits(
                &app,
                &service,
                "?since=2026-03-02T09:03:00Z&until=2026-03-02T11:00:00Z"
            )
            .await
        ),
        [SHA_B]
    );
    let page = commits(&app, &service, "?limit=1").await;
    assert_eq!(page.len(), 1);
    let (status, short) = json_of(
        app.get(&format!("/api/services/{service}/commits/{}", &SHA_C[..7]))
            .await,
    )
    .await;
    assert_eq!((status, short["sha"].as_str()), (200, Some(SHA_C)));
    for (path, expected) in [
        (format!("/api/services/{service}/commits/zzzzzzz"), 400),
        (
            format!("/api/services/{service}/commits/{}", "e".repeat(40)),
            404,
        ),
        (
            format!("/api/services/{service}/commits?since=yesterday"),
            400,
        ),
        (format!("/api/services/{service}/commits?risk=severe"), 400),
    ] {
        assert_eq!(app.get(&path).await.status(), expected, "{path}");
    }

    // Every accepted delivery is kept, verified, with the secret headers redacted.
    let kept = inbound(&app, "?source=github&event=push").await;
    assert_eq!(kept.len(), 4, "one row per distinct push delivery");
    let (status, one) = json_of(
        app.get(&format!("/api/inbound-deliveries/{delivery_id}"))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(one["verification"], "verified");
    assert_eq!(one["result"], "processed");
    assert_eq!(one["delivery_id"], "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(one["targets"], json!([service]));
    assert_eq!(one["summary"]["commits"], 2);
    assert_eq!(one["summary"]["branch"], "feature/pay");
    assert_eq!(one["headers"]["x-hub-signature-256"], "[redacted]");
    assert_eq!(one["headers"]["x-github-event"], "push");
    assert_eq!(
        one["body"].as_str().unwrap().as_bytes(),
        push.body.as_slice()
    );
    // Kept compressed: the row holds an LZ4 block well under half the body's size.
    let row = hookline::store::inbound::get(&app.store, &app.tenant_id, &delivery_id)
        .await
        .unwrap();
    assert_eq!(row.body_encoding, "lz4");
    assert_eq!(row.body_size, push.body.len() as i64);
    assert!(
        row.body.len() * 2 < push.body.len(),
        "{} stored bytes for a {}-byte body",
        row.body.len(),
        push.body.len()
    );
    let text = app
        .get(&format!("/api/inbound-deliveries/{delivery_id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains(&secret), "the secret is never in an answer");
    let service_view = app
        .get(&format!("/api/services/{service}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!service_view.contains(&secret), "{service_view}");
}

async fn rejected_requests_change_nothing_and_are_counted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (service, secret) = service_with_secret(&app, "checkout", REPOSITORY, false).await;
    let body = fixture("github/push_new_branch.json");

    let unsigned = GithubDelivery {
        secret: None,
        ..GithubDelivery::new("push", "d1", body.clone(), &secret)
    };
    let (status, answer, _) = unsigned.send(&app, "/api/github/webhook").await;
    assert_eq!(
        (status, answer),
        (
            401,
            json!({"error": "missing signature", "code": "missing_signature"})
        )
    );

    let wrong = GithubDelivery::new("push", "d2", body.clone(), "not-the-secret");
    let (status, answer, _) = wrong.send(&app, "/api/github/webhook").await;
    assert_eq!(
        (status, answer),
        (
            401,
            json!({"error": "invalid signature", "code": "invalid_signature"})
        )
    );

    // Signed with the right secret, but the body was changed on the way.
    let mut tampered = GithubDelivery::new("push", "d3", body.clone(), &secret);
    let signature = hub_signature(secret.as_bytes(), &tampered.body);
    tampered.body = String::from_utf8(body.clone())
        .unwrap()
        .replace("Add payment retries", "Add payment retriez")
        .into_bytes();
    let response = app
        .client
        .post(app.url("/api/github/webhook"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-hub-signature-256", signature)
        .body(tampered.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_of(response).await,
        (
            401,
            json!({"error": "invalid signature", "code": "invalid_signature"})
        )
    );

    // A repository no service is linked to.
    let elsewhere = String::from_utf8(body.clone())
        .unwrap()
        .replace("acme/checkout", "acme/unknown")
        .into_bytes();
    let unknown = GithubDelivery::new("push", "d4", elsewhere, &secret);
    let (status, answer, _) = unknown.send(&app, "/api/github/webhook").await;
    assert_eq!(
        (status, answer),
        (
            401,
            json!({"error": "invalid signature", "code": "invalid_signature"})
        )
    );

    assert!(
        commits(&app, &service, "").await.is_empty(),
        "nothing processed"
    );
    assert!(inbound(&app, "").await.is_empty(), "nothing stored");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for outcome in ["missing_signature", "invalid_signature"] {
        assert!(
            metrics
                .lines()
                .any(|line| line.starts_with("hookline_inbound_requests_total")
                    && line.contains(&format!("outcome=\"{outcome}\""))),
            "{outcome} counted: {metrics}"
        );
    }
}

async fn unusable_bodies_are_kept_as_failed_deliveries(backend: Backend) {
    let app =
        TestApp::spawn_with(backend, |config| config.inbound.max_body_bytes = 64 * 1024).await;
    let (service, secret) = service_with_secret(&app, "checkout", REPOSITORY, false).await;

    // A verified push with a payload the push cannot be read from: 422, kept, nothing recorded.
    let broken = br#"{"repository": {"full_name": "acme/checkout"}, "commits": [{"id": "nope"}], "ref": "refs/heads/main"}"#;
    let delivery = GithubDelivery::new("push", "bad-1", broken.to_vec(), &secret);
    let (status, answer, headers) = delivery.send(&app, "/api/github/webhook").await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("not a hex SHA"),
        "{answer}"
    );
    let failed_id = headers["x-hookline-inbound-delivery"]
        .to_str()
        .unwrap()
        .to_owned();

    // Form-encoded bodies are GitHub's other content type; the signature covers the raw form.
    let json_body = String::from_utf8(fixture("github/push_new_branch.json")).unwrap();
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &json_body)
        .finish();
    let form_delivery = GithubDelivery {
        content_type: "application/x-www-form-urlencoded",
        ..GithubDelivery::new("push", "form-1", form.into_bytes(), &secret)
    };
    let (status, answer, _) = form_delivery.send(&app, "/api/github/webhook").await;
    assert_eq!((status, answer), (200, json!({"processed": true})));
    assert_eq!(commits(&app, &service, "").await.len(), 2);

    // Unparsable, wrong content type and oversized bodies on the shared URL: clear 4xx answers.
    let garbage = GithubDelivery::new("push", "bad-2", b"{not json".to_vec(), &secret);
    let (status, answer, _) = garbage.send(&app, "/api/github/webhook").await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON"),
        "{answer}"
    );
    let text = GithubDelivery {
        content_type: "text/plain",
        ..GithubDelivery::new("push", "bad-3", fixture("github/push_main.json"), &secret)
    };
    assert_eq!(text.send(&app, "/api/github/webhook").await.0, 415);
    let huge = GithubDelivery::new("push", "bad-4", vec![b' '; 65 * 1024], &secret);
    let (status, answer, _) = huge.send(&app, "/api/github/webhook").await;
    assert_eq!(status, 413, "{answer}");

    // The tenant sees its failed delivery with the reason; unattributable ones belong to nobody.
    let failed = inbound(&app, "?result=failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["id"], failed_id);
    assert_eq!(failed[0]["verification"], "verified");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("not a hex SHA")
    );
    let (status, answer) = json_of(
        app.post_json(
            &format!("/api/inbound-deliveries/{failed_id}/replay"),
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(
        status, 422,
        "the stored payload is still unusable: {answer}"
    );
    assert_eq!(
        app.get("/api/inbound-deliveries?result=odd").await.status(),
        400
    );
    assert_eq!(
        app.get("/api/inbound-deliveries/ind_nope").await.status(),
        400
    );
}

async fn ping(app: &TestApp, secret: &str, delivery: &str) -> u16 {
    GithubDelivery::new("ping", delivery, fixture("github/ping.json"), secret)
        .send(app, "/api/github/webhook")
        .await
        .0
}

async fn a_rotated_secret_stops_at_once_unless_a_grace_window_is_asked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (service, first) = service_with_secret(&app, "checkout", REPOSITORY, false).await;
    let again = app
        .post_json(
            &format!("/api/services/{service}/webhook-secret"),
            &json!({}),
        )
        .await;
    assert_eq!(
        again.status(),
        409,
        "a secret is generated once, then rotated"
    );

    let rotate = |body: Option<Value>| {
        let mut request = app.request(
            Method::POST,
            &format!("/api/services/{service}/webhook-secret/rotate"),
        );
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move { json_of(request.send().await.unwrap()).await }
    };
    let (status, rotated) = rotate(None).await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(rotated["previous_secret_valid_until"], Value::Null);
    assert_eq!(
        ping(&app, &first, "p1").await,
        401,
        "the old secret stops at once"
    );
    assert_eq!(ping(&app, &second, "p2").await, 200);

    let (status, rotated) = rotate(Some(json!({"grace_seconds": 600}))).await;
    assert_eq!(status, 200, "{rotated}");
    let third = rotated["secret"].as_str().unwrap().to_owned();
    assert!(rotated["previous_secret_valid_until"].is_string());
    assert_eq!(
        ping(&app, &second, "p3").await,
        200,
        "inside the grace window"
    );
    assert_eq!(ping(&app, &third, "p4").await, 200);
    assert_eq!(ping(&app, &first, "p5").await, 401);
    let (_, view) = json_of(app.get(&format!("/api/services/{service}")).await).await;
    assert!(view["previous_secret_valid_until"].is_string(), "{view}");
    assert_eq!(view["webhook_secret_configured"], true);

    let (status, _) = rotate(Some(json!({"grace_seconds": 10_000_000}))).await;
    assert_eq!(status, 422);
    let (status, _) = rotate(Some(json!({"grace": 1}))).await;
    assert_eq!(status, 422, "unknown fields are refused");
}

async fn one_tenants_secret_never_verifies_another_tenants_service(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (mine, my_secret) = service_with_secret(&app, "checkout", REPOSITORY, false).await;
    let mut tx = app.store.begin().await.unwrap();
    let other = tenants::create_tenant(&mut tx, "other").await.unwrap();
    let other_token = hookline::tenancy::issue_token(&mut tx, &other.id, "theirs")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (status, theirs) = json_of(
        app.request_as(&other_token.secret, Method::POST, "/api/services")
            .json(&json!({"name": "checkout", "repository": "ACME/Checkout"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "names are per tenant: {theirs}");
    let theirs_id = theirs["id"].as_str().unwrap();
    let (_, their_secret) = json_of(
        app.request_as(
            &other_token.secret,
            Method::POST,
            &format!("/api/services/{theirs_id}/webhook-secret"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    let their_secret = their_secret["secret"].as_str().unwrap();

    // Signed with the other tenant's secret: only their service records it.
    let push = GithubDelivery::new(
        "push",
        "shared-1",
        fixture("github/push_new_branch.json"),
        their_secret,
    );
    assert_eq!(push.send(&app, "/api/github/webhook").await.0, 200);
    assert!(
        commits(&app, &mine, "").await.is_empty(),
        "my service got nothing"
    );
    assert!(
        inbound(&app, "").await.is_empty(),
        "I see none of their deliveries"
    );
    let (status, their_commits) = json_of(
        app.request_as(
            &other_token.secret,
            Method::GET,
            &format!("/api/services/{theirs_id}/commits"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(their_commits["data"].as_array().unwrap().len(), 2);

    // The same delivery id signed with my secret is mine to process: dedupe is per tenant.
    let mine_push = GithubDelivery::new(
        "push",
        "shared-1",
        fixture("github/push_new_branch.json"),
        &my_secret,
    );
    let (status, body, _) = mine_push.send(&app, "/api/github/webhook").await;
    assert_eq!((status, body), (200, json!({"processed": true})));
    assert_eq!(commits(&app, &mine, "").await.len(), 2);

    // Their service, their commits and their deliveries are 404 to me.
    for path in [
        format!("/api/services/{theirs_id}"),
        format!("/api/services/{theirs_id}/commits"),
        format!("/api/services/{theirs_id}/commits/{SHA_A}"),
    ] {
        assert_eq!(app.get(&path).await.status(), 404, "{path}");
    }
}

/// Creates an integration and returns its id.
async fn create_integration(app: &TestApp, token: &str, secret: &str) -> String {
    let (status, created) = json_of(
        app.post_json(
            "/api/v1/integrations",
            &json!({
                "name": "GitHub Experiments Repo",
                "integration_type": "GITHUB",
                "description": "Webhook integration for the experiments monorepo",
                "config": {"token": token, "webhook_secret": secret}
            }),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

async fn integrations_record_pull_requests_issues_and_experiment_links(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let secret = "a-strong-random-secret-at-least-32-chars";
    let token = "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    let (status, created) = json_of(
        app.post_json(
            "/api/v1/integrations",
            &json!({"name": "GitHub", "integration_type": "GITHUB", "description": "d",
                    "config": {"token": token, "webhook_secret": secret}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    let integration = created["id"].as_str().unwrap().to_owned();
    assert!(
        integration.starts_with("int_") && integration.len() == 40,
        "{integration}"
    );
    for field in ["name", "integration_type", "is_active", "created_at"] {
        assert!(created.get(field).is_some(), "{field} in {created}");
    }
    assert_eq!(created["integration_type"], "GITHUB");
    assert_eq!(created["is_active"], true);
    let listing = app.get("/api/v1/integrations").await.text().await.unwrap();
    let one = app
        .get(&format!("/api/v1/integrations/{integration}"))
        .await
        .text()
        .await
        .unwrap();
    for text in [&created.to_string(), &listing, &one] {
        assert!(!text.contains(token), "the token is never returned: {text}");
        assert!(!text.contains(secret), "the secret is only masked: {text}");
    }
    assert!(one.contains("********hars"), "{one}");

    let (status, experiment) = json_of(
        app.post_json(
            "/api/experiments",
            &json!({"key": "checkout-flow-v2", "name": "Checkout flow v2"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{experiment}");
    let experiment = experiment["id"].as_str().unwrap().to_owned();
    let duplicate = app
        .post_json(
            "/api/experiments",
            &json!({"key": "Checkout-Flow-V2", "name": "again"}),
        )
        .await;
    assert_eq!(
        duplicate.status(),
        409,
        "keys are unique per tenant, without case"
    );

    let hook = format!("/api/v1/integrations/{integration}/webhook/github");
    for (event, delivery, file) in [
        ("pull_request", "pr-1", "github/pull_request_opened.json"),
        ("issues", "is-1", "github/issues_opened.json"),
        ("issues", "is-2", "github/issues_labeled.json"),
        ("pull_request", "pr-2", "github/pull_request_merged.json"),
    ] {
        let (status, body, _) = GithubDelivery::new(event, delivery, fixture(file), secret)
            .send(&app, &hook)
            .await;
        assert_eq!((status, body), (200, json!({"processed": true})), "{file}");
    }
    let pr = record::get_pull_request(&app.store, &app.tenant_id, REPOSITORY, 42)
        .await
        .unwrap();
    assert_eq!((pr.state.as_str(), pr.merged), ("closed", true));
    assert_eq!(
        (pr.head_ref.as_str(), pr.head_sha.as_str()),
        ("feature/pay", SHA_B)
    );
    assert_eq!(pr.base_ref, "main");
    assert_eq!(pr.url, "https://github.com/acme/checkout/pull/42");
    let issue = record::get_issue(&app.store, &app.tenant_id, REPOSITORY, 101)
        .await
        .unwrap();
    assert_eq!(issue.title, "Track experiment: checkout-flow-v2");
    assert_eq!(issue.labels, r#"["experiment","bug"]"#);
    assert_eq!(issue.state, "open");

    // The same pull requests and issues through the read API, per integration and per service.
    let base = format!("/api/v1/integrations/{integration}");
    let (status, prs) = json_of(app.get(&format!("{base}/pull-requests")).await).await;
    assert_eq!(status, 200, "{prs}");
    assert_eq!(prs["data"].as_array().unwrap().len(), 1);
    assert_eq!(prs["data"][0]["number"], 42);
    assert_eq!(prs["data"][0]["state"], "merged");
    assert_eq!(prs["data"][0]["head_ref"], "feature/pay");
    assert_eq!(prs["next_cursor"], Value::Null);
    let (_, open) = json_of(app.get(&format!("{base}/pull-requests?state=open")).await).await;
    assert_eq!(open["data"], json!([]));
    let (status, one) = json_of(app.get(&format!("{base}/pull-requests/42")).await).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["url"], "https://github.com/acme/checkout/pull/42");
    let (status, issues) = json_of(app.get(&format!("{base}/issues?state=open")).await).await;
    assert_eq!(status, 200, "{issues}");
    assert_eq!(issues["data"][0]["labels"], json!(["experiment", "bug"]));
    let (status, _) = json_of(app.get(&format!("{base}/issues/101")).await).await;
    assert_eq!(status, 200);
    assert_eq!(app.get(&format!("{base}/issues/999")).await.status(), 404);
    assert_eq!(
        app.get(&format!("{base}/pull-requests/x1")).await.status(),
        400
    );
    assert_eq!(
        app.get(&format!("{base}/pull-requests?state=draft"))
            .await
            .status(),
        400
    );
    let (service, _) = service_with_secret(&app, "Checkout", REPOSITORY, false).await;
    let (status, prs) = json_of(
        app.get(&format!(
            "/api/services/{service}/pull-requests?state=merged"
        ))
        .await,
    )
    .await;
    assert_eq!(status, 200, "{prs}");
    assert_eq!(
        prs["data"][0]["number"], 42,
        "a service sees its repository's"
    );
    let (status, issue) = json_of(
        app.get(&format!("/api/services/{service}/issues/101"))
            .await,
    )
    .await;
    assert_eq!((status, issue["state"].as_str()), (200, Some("open")));

    let (status, activity) = json_of(
        app.get(&format!("/api/experiments/{experiment}/activity"))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = activity["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["pull_request_linked", "pull_request_merged"]);
    assert_eq!(activity["data"][0]["number"], 42);
    assert_eq!(
        activity["data"][1]["occurred_at"],
        "2026-03-03T09:30:00.000Z"
    );

    // The integration's URL checks its own secret; a bad signature or none is refused.
    let wrong = GithubDelivery::new(
        "issues",
        "is-3",
        fixture("github/issues_opened.json"),
        "wrong-secret",
    );
    assert_eq!(
        wrong.send(&app, &hook).await.1,
        json!({"error": "invalid signature", "code": "invalid_signature"})
    );
    let unsigned = GithubDelivery {
        secret: None,
        ..GithubDelivery::new(
            "issues",
            "is-4",
            fixture("github/issues_opened.json"),
            secret,
        )
    };
    assert_eq!(
        unsigned.send(&app, &hook).await.1,
        json!({"error": "missing signature", "code": "missing_signature"})
    );

    // PUT rotates the secret: the old one stops, the new one verifies.
    let new_secret = "another-strong-secret-for-rotation-0001";
    let (status, replaced) = json_of(
        app.request(Method::PUT, &format!("/api/v1/integrations/{integration}"))
            .json(&json!({"config": {"token": token, "webhook_secret": new_secret}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{replaced}");
    let old = GithubDelivery::new(
        "issues",
        "is-5",
        fixture("github/issues_opened.json"),
        secret,
    );
    assert_eq!(old.send(&app, &hook).await.0, 401);
    let new = GithubDelivery::new(
        "issues",
        "is-6",
        fixture("github/issues_opened.json"),
        new_secret,
    );
    assert_eq!(new.send(&app, &hook).await.0, 200);

    // Bad input: unknown type, missing config fields, malformed id; deletion ends the URL.
    for (body, expected) in [
        (
            json!({"name": "x", "integration_type": "BITBUCKET", "config": {"token": "t", "webhook_secret": "s3cret-long"}}),
            422,
        ),
        (
            json!({"name": "x", "integration_type": "GITHUB", "config": {"token": "t"}}),
            422,
        ),
        (json!({"name": "x", "integration_type": "GITHUB"}), 422),
    ] {
        let (status, answer) = json_of(app.post_json("/api/v1/integrations", &body).await).await;
        assert_eq!(status, expected, "{body}: {answer}");
    }
    assert_eq!(app.get("/api/v1/integrations/int_123").await.status(), 400);
    assert_eq!(
        app.delete(&format!("/api/v1/integrations/{integration}"))
            .await
            .status(),
        204
    );
    assert_eq!(new.send(&app, &hook).await.0, 404);
}

/// A GitLab delivery as GitLab sends it.
async fn send_gitlab(
    app: &TestApp,
    event: &str,
    file: &str,
    token: Option<&str>,
    signature_secret: Option<&str>,
    idempotency_key: &str,
) -> (u16, Value) {
    let body = fixture(file);
    let mut request = app
        .client
        .post(app.url("/api/gitlab/webhook"))
        .header("content-type", "application/json")
        .header("user-agent", "GitLab/17.5.0")
        .header("x-gitlab-event", event)
        .header("x-gitlab-instance", "https://gitlab.example.com")
        .header("x-gitlab-event-uuid", format!("uuid-{idempotency_key}"))
        .header("idempotency-key", idempotency_key);
    if let Some(token) = token {
        request = request.header("x-gitlab-token", token);
    }
    if let Some(secret) = signature_secret {
        request = request.header(
            "x-hub-signature-256",
            hub_signature(secret.as_bytes(), &body),
        );
    }
    json_of(request.body(body).send().await.unwrap()).await
}

async fn gitlab_events_are_verified_by_token_or_signature_and_ingested(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (service, secret) = service_with_secret(&app, "checkout", REPOSITORY, false).await;
    let (status, _) = json_of(
        app.post_json(
            "/api/experiments",
            &json!({"key": "checkout-flow-v2", "name": "v2"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);

    let (status, body) = send_gitlab(
        &app,
        "Push Hook",
        "gitlab/push.json",
        Some(&secret),
        None,
        "k-push",
    )
    .await;
    assert_eq!((status, body), (200, json!({"processed": true})));
    let listed = commits(&app, &service, "").await;
    assert_eq!(shas(&listed), [SHA_B, SHA_A]);
    assert_eq!(listed[1]["branches"], json!(["feature/pay"]));
    assert_eq!(
        listed[1]["files"]["modified"],
        json!(["src/pay/mod.rs", "Cargo.toml"])
    );

    // A retry with the same Idempotency-Key changes nothing.
    let (status, body) = send_gitlab(
        &app,
        "Push Hook",
        "gitlab/push.json",
        Some(&secret),
        None,
        "k-push",
    )
    .await;
    assert_eq!((status, body["duplicate"].as_bool()), (200, Some(true)));

    // Signed instead of a token.
    let (status, _) = send_gitlab(
        &app,
        "Merge Request Hook",
        "gitlab/merge_request.json",
        None,
        Some(&secret),
        "k-mr",
    )
    .await;
    assert_eq!(status, 200);
    let mr = record::get_pull_request(&app.store, &app.tenant_id, REPOSITORY, 7)
        .await
        .unwrap();
    assert_eq!(
        (mr.state.as_str(), mr.head_ref.as_str()),
        ("open", "feature/pay")
    );
    let (status, body) = send_gitlab(
        &app,
        "Issue Hook",
        "gitlab/issue.json",
        Some(&secret),
        None,
        "k-issue",
    )
    .await;
    assert_eq!((status, body), (200, json!({"processed": true})));
    let issue = record::get_issue(&app.store, &app.tenant_id, REPOSITORY, 23)
        .await
        .unwrap();
    assert_eq!(issue.labels, r#"["bug"]"#);
    for (event, file, key) in [
        ("Note Hook", "gitlab/note.json", "k-note"),
        ("Pipeline Hook", "gitlab/pipeline.json", "k-pipeline"),
    ] {
        let (status, body) = send_gitlab(&app, event, file, Some(&secret), None, key).await;
        assert_eq!(
            (status, body),
            (200, json!({"processed": false, "stored": true})),
            "{file}"
        );
    }
    let kept = inbound(&app, "?source=gitlab").await;
    let events: Vec<&str> = kept
        .iter()
        .map(|row| row["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["pipeline", "note", "issue", "merge_request", "push"]
    );
    let (_, note) = json_of(
        app.get(&format!(
            "/api/inbound-deliveries/{}",
            kept[1]["id"].as_str().unwrap()
        ))
        .await,
    )
    .await;
    assert_eq!(note["headers"]["x-gitlab-token"], "[redacted]");
    assert_eq!(note["result"], "ignored");

    let (status, body) = send_gitlab(
        &app,
        "Push Hook",
        "gitlab/push.json",
        Some("wrong"),
        None,
        "k-x",
    )
    .await;
    assert_eq!(
        (status, body),
        (
            401,
            json!({"error": "invalid signature", "code": "invalid_signature"})
        )
    );
    let (status, body) =
        send_gitlab(&app, "Push Hook", "gitlab/push.json", None, None, "k-y").await;
    assert_eq!(
        (status, body),
        (
            401,
            json!({"error": "missing signature", "code": "missing_signature"})
        )
    );
}

async fn a_stored_delivery_can_be_replayed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let secret = "integration-secret-for-replay-0123";
    let integration = create_integration(&app, GOOD_TOKEN, secret).await;
    let hook = format!("/api/v1/integrations/{integration}/webhook/github");

    // A push for a repository no service is linked to yet: kept, nothing recorded.
    let push = GithubDelivery::new(
        "push",
        "early-1",
        fixture("github/push_new_branch.json"),
        secret,
    );
    let (status, _, headers) = push.send(&app, &hook).await;
    assert_eq!(status, 200);
    let delivery = headers["x-hookline-inbound-delivery"]
        .to_str()
        .unwrap()
        .to_owned();
    let (status, service) = json_of(
        app.post_json(
            "/api/services",
            &json!({"name": "checkout", "repository": REPOSITORY}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    let service = service["id"].as_str().unwrap().to_owned();
    assert!(commits(&app, &service, "").await.is_empty());

    // Replaying processing records the commits for the service that now exists; twice is harmless.
    for replays in 1..=2 {
        let (status, replayed) = json_of(
            app.post_json(
                &format!("/api/inbound-deliveries/{delivery}/replay"),
                &json!({}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200, "{replayed}");
        assert_eq!(replayed["replays"], replays);
        assert_eq!(replayed["result"], "processed");
        assert_eq!(commits(&app, &service, "").await.len(), 2);
    }
    let filtered = inbound(&app, &format!("?target={integration}")).await;
    assert_eq!(filtered.len(), 1);
    assert_eq!(
        app.post_json(
            "/api/inbound-deliveries/ind_0123456789abcdef0123456789abcdef/replay",
            &json!({})
        )
        .await
        .status(),
        404
    );
}

async fn experiments_create_github_issues_through_their_integration(backend: Backend) {
    let github = FakeGithub::start().await;
    let api_url = github.api_url();
    let app = TestApp::spawn_with(backend, |config| config.github.api_url = api_url).await;
    let integration = create_integration(&app, GOOD_TOKEN, "integration-secret-0123456789").await;
    let bad_token = create_integration(&app, "ghp_revoked", "integration-secret-9876543210").await;
    let (_, experiment) = json_of(
        app.post_json(
            "/api/experiments",
            &json!({"key": "checkout-flow-v2", "name": "v2"}),
        )
        .await,
    )
    .await;
    let experiment = experiment["id"].as_str().unwrap().to_owned();
    let path = format!("/api/experiments/{experiment}/github-issues");
    let issue = |integration: &str, repository: &str, title: &str| {
        json!({"integration_id": integration, "repository": repository, "title": title,
               "body": "Track the progress of the checkout flow experiment.",
               "labels": ["experiment"]})
    };

    let (status, created) = json_of(
        app.post_json(
            &path,
            &issue(&integration, REPOSITORY, "Track checkout-flow-v2"),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["number"], 101);
    assert_eq!(
        created["url"],
        "https://github.com/acme/checkout/issues/101"
    );
    let sent = github.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/repos/acme/checkout/issues");
    assert_eq!(sent[0].authorization, format!("Bearer {GOOD_TOKEN}"));
    assert_eq!(sent[0].accept, "application/vnd.github+json");
    assert_eq!(sent[0].api_version, "2022-11-28");
    assert_eq!(
        sent[0].body,
        json!({"title": "Track checkout-flow-v2",
               "body": "Track the progress of the checkout flow experiment.",
               "labels": ["experiment"]})
    );
    let (_, activity) = json_of(
        app.get(&format!("/api/experiments/{experiment}/activity"))
            .await,
    )
    .await;
    assert_eq!(activity["data"][0]["kind"], "issue_created");
    assert_eq!(activity["data"][0]["number"], 101);

    // GitHub's refusals come back as clear errors, never a 500.
    let cases = [
        (issue(&bad_token, REPOSITORY, "t"), 502, "Bad credentials"),
        (
            issue(&integration, "acme/missing", "t"),
            404,
            "GitHub repository",
        ),
        (
            issue(&integration, REPOSITORY, "reject me"),
            422,
            "Validation Failed",
        ),
    ];
    for (body, expected, says) in cases {
        let (status, answer) = json_of(app.post_json(&path, &body).await).await;
        assert_eq!(status, expected, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
    }
    github.rate_limit(true);
    let (status, answer) = json_of(
        app.post_json(&path, &issue(&integration, REPOSITORY, "t"))
            .await,
    )
    .await;
    assert_eq!(status, 429, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("42 s"),
        "{answer}"
    );
    github.rate_limit(false);

    // Bad input never reaches GitHub.
    let before = github.requests().len();
    for body in [
        issue("int_nope", REPOSITORY, "t"),
        issue(&integration, "not-a-repo", "t"),
        issue(&integration, REPOSITORY, " "),
        issue("int_01234567-89ab-cdef-0123-456789abcdef", REPOSITORY, "t"),
    ] {
        assert_eq!(app.post_json(&path, &body).await.status(), 422, "{body}");
    }
    assert_eq!(github.requests().len(), before);
}

/// The served binary's log (at debug level) holds no secret, token or signature, though the
/// requests that carried them were accepted and rejected.
#[tokio::test]
async fn secrets_never_reach_the_log() {
    use crate::support::process::{hookline, serve};

    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("h.db").display());
    let mut command = hookline(dir.path());
    command
        .args(["--database-url", &db_url])
        .env("RUST_LOG", "debug");
    let served = serve(command).await;
    let admin = served.token.clone().expect("an admin token");
    let client = crate::support::http_client();
    let api = |method: Method, path: &str| {
        client
            .request(method, format!("{}{path}", served.base_url))
            .bearer_auth(&admin)
    };
    let service: Value = api(Method::POST, "/api/services")
        .json(&json!({"name": "checkout", "repository": REPOSITORY, "github_token": "ghp_serviceTokenNeverLogged"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let service_id = service["id"].as_str().unwrap();
    let secret: Value = api(
        Method::POST,
        &format!("/api/services/{service_id}/webhook-secret"),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let secret = secret["secret"].as_str().unwrap().to_owned();
    let integration_secret = "integration-secret-never-logged-42";
    let integration: Value = api(Method::POST, "/api/v1/integrations")
        .json(&json!({"name": "gh", "integration_type": "GITHUB",
                      "config": {"token": "ghp_integrationTokenNeverLogged", "webhook_secret": integration_secret}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let integration_id = integration["id"].as_str().unwrap();

    let body = fixture("github/push_new_branch.json");
    let mut signatures = Vec::new();
    for (path, key) in [
        ("/api/github/webhook".to_owned(), secret.as_str()),
        ("/api/github/webhook".to_owned(), "wrong-secret"),
        (
            format!("/api/v1/integrations/{integration_id}/webhook/github"),
            integration_secret,
        ),
    ] {
        let signature = hub_signature(key.as_bytes(), &body);
        let status = client
            .post(format!("{}{path}", served.base_url))
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .header("x-github-delivery", format!("log-{}", signatures.len()))
            .header("x-hub-signature-256", &signature)
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status, if key == "wrong-secret" { 401 } else { 200 });
        signatures.push(signature);
    }
    let gitlab = client
        .post(format!("{}/api/gitlab/webhook", served.base_url))
        .header("content-type", "application/json")
        .header("x-gitlab-event", "Push Hook")
        .header("x-gitlab-token", &secret)
        .body(fixture("gitlab/push.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(gitlab.status(), 200);

    let (clean_exit, log) = served.terminate().await;
    assert!(clean_exit, "{log}");
    assert!(
        log.contains("inbound webhook rejected"),
        "the rejection is logged: {log}"
    );
    let forbidden = [
        secret.as_str(),
        integration_secret,
        "ghp_serviceTokenNeverLogged",
        "ghp_integrationTokenNeverLogged",
        admin.as_str(),
    ];
    for needle in forbidden
        .iter()
        .copied()
        .chain(signatures.iter().map(String::as_str))
    {
        assert!(!log.contains(needle), "`{needle}` leaked into the log");
    }
    assert!(
        !log.contains("Add payment retries"),
        "bodies are not logged"
    );
}

async fn concurrent_deliveries_and_their_repeats_are_recorded_exactly_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (service, secret) = service_with_secret(&app, "checkout", REPOSITORY, true).await;
    let template = String::from_utf8(fixture("github/push_new_branch.json")).unwrap();
    // 20 deliveries of the same two commits on 20 branches, each sent twice, all at once: the
    // writer batches them, and repeats inside one batch must still count once.
    let mut sends = Vec::new();
    for n in 0..20 {
        let body = template
            .replace(
                "refs/heads/feature/pay",
                &format!("refs/heads/branch-{n:02}"),
            )
            .into_bytes();
        for _ in 0..2 {
            let (app, body, secret) = (&app, body.clone(), secret.clone());
            sends.push(async move {
                let delivery = format!("concurrent-{n}");
                GithubDelivery::new("push", &delivery, body, &secret)
                    .send(app, "/api/github/webhook")
                    .await
            });
        }
    }
    let answers = futures_util::future::join_all(sends).await;
    let duplicates = answers
        .iter()
        .filter(|(status, body, _)| {
            assert_eq!(*status, 200, "{body}");
            body["duplicate"] == true
        })
        .count();
    assert_eq!(duplicates, 20, "each repeat is answered as a duplicate");

    let listed = commits(&app, &service, "").await;
    assert_eq!(shas(&listed), [SHA_B, SHA_A], "each commit stored once");
    let branches = listed[0]["branches"].as_array().unwrap();
    assert_eq!(
        branches.len(),
        20,
        "every branch joined the commit: {branches:?}"
    );
    for sha in [SHA_A, SHA_B] {
        let stored = record::get_commit(&app.store, &app.tenant_id, &service, sha)
            .await
            .unwrap();
        assert_eq!(
            record::analysis_jobs_of(&app.store, &stored.id)
                .await
                .unwrap(),
            1
        );
    }
    assert_eq!(inbound(&app, "?limit=100").await.len(), 20);
}
