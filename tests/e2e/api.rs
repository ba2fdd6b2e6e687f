//! The HTTP foundation: authentication, tokens, tenant isolation, bad input, paging, operational
//! endpoints and the OpenAPI document.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{Backend, TestApp, json_of};
use hookline::store::tenants;

on_both_backends!(
    requests_without_a_valid_token_get_401,
    tokens_are_shown_once_usable_and_revocable,
    another_tenants_objects_answer_404,
    bad_input_gets_clear_errors_and_writes_nothing,
    paging_walks_every_token_once,
    operational_endpoints_answer,
    readyz_fails_when_the_database_is_gone,
);

async fn requests_without_a_valid_token_get_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let anonymous = app.client.get(app.url("/api/tenant")).send().await.unwrap();
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let (status, body) = json_of(anonymous).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "unauthorized");
    assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");

    for header in [
        "Basic YWRtaW46YWRtaW4=",
        "Bearer",
        "Bearer hkl_unknown",
        "hkl_x",
    ] {
        let response = app
            .client
            .get(app.url("/api/tenant"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{header}");
    }

    let (status, body) = json_of(app.get("/api/tenant").await).await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], app.tenant_id);
    assert_eq!(body["name"], "default");
}

async fn tokens_are_shown_once_usable_and_revocable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, created) =
        json_of(app.post_json("/api/tokens", &json!({"name": " ci "})).await).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["token_secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("hkl_"), "{secret}");
    assert_eq!(created["name"], "ci");
    assert_eq!(created["status"], "active");
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));

    // The new token works, and the server remembers when it was used.
    let response = app
        .request_as(&secret, Method::GET, "/api/tenant")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, shown) = json_of(app.get(&format!("/api/tokens/{id}")).await).await;
    assert!(shown["last_used_at"].is_string(), "{shown}");

    // Listing and reading never show a secret again.
    let listing = app.get("/api/tokens").await.text().await.unwrap();
    assert!(listing.contains(&id));
    assert!(!listing.contains(&secret));
    assert!(!listing.contains(&app.token));
    assert!(!listing.contains("token_secret"));

    // Only a hash is stored.
    let stored = tenants::find_token_by_hash(&app.store, &hookline::crypto::sha256_hex(&secret))
        .await
        .unwrap()
        .expect("stored by hash");
    assert_eq!(stored.id, id);

    let (status, revoked) = json_of(app.delete(&format!("/api/tokens/{id}")).await).await;
    assert_eq!(status, 200);
    assert_eq!(revoked["status"], "revoked");
    let first_revocation = revoked["revoked_at"].clone();
    let (status, again) = json_of(app.delete(&format!("/api/tokens/{id}")).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        again["revoked_at"], first_revocation,
        "revoking twice keeps the first time"
    );

    let response = app
        .request_as(&secret, Method::GET, "/api/tenant")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "a revoked token is refused");

    // A token may revoke itself: that answer arrives, later requests are refused.
    let (status, own) = json_of(
        app.post_json("/api/tokens", &json!({"name": "script"}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{own}");
    let (own_id, own_secret) = (
        own["id"].as_str().unwrap().to_owned(),
        own["token_secret"].as_str().unwrap().to_owned(),
    );
    let (status, revoked) = json_of(
        app.request_as(
            &own_secret,
            Method::DELETE,
            &format!("/api/tokens/{own_id}"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((status, &revoked["status"]), (200, &json!("revoked")));
    let response = app
        .request_as(&own_secret, Method::GET, "/api/tenant")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "a self-revoked token is refused");
}

async fn another_tenants_objects_answer_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut tx = app.store.begin().await.unwrap();
    let other = tenants::create_tenant(&mut tx, "other").await.unwrap();
    let other_token = hookline::tenancy::issue_token(&mut tx, &other.id, "theirs")
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let (_, mine) = json_of(app.post_json("/api/tokens", &json!({"name": "mine"})).await).await;
    let my_token_id = mine["id"].as_str().unwrap();

    let as_other = |method, path: &str| app.request_as(&other_token.secret, method, path);
    let (status, body) = json_of(
        as_other(Method::GET, &format!("/api/tokens/{my_token_id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found");
    let response = as_other(Method::DELETE, &format!("/api/tokens/{my_token_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    let (_, still_mine) = json_of(app.get(&format!("/api/tokens/{my_token_id}")).await).await;
    assert_eq!(
        still_mine["status"], "active",
        "the other tenant changed nothing"
    );

    let (_, theirs) = json_of(as_other(Method::GET, "/api/tokens").send().await.unwrap()).await;
    let names: Vec<&str> = theirs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["theirs"], "a tenant lists only its own tokens");
}

async fn bad_input_gets_clear_errors_and_writes_nothing(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.http.max_body_bytes = 1024).await;
    let post_raw = |body: &'static str, content_type: &'static str| {
        app.request(Method::POST, "/api/tokens")
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases: Vec<(reqwest::Response, u16, &str, &str)> = vec![
        (
            post_raw("{\"name\":", "application/json").await.unwrap(),
            400,
            "bad_request",
            "malformed JSON",
        ),
        (
            post_raw("name=x", "application/x-www-form-urlencoded")
                .await
                .unwrap(),
            415,
            "unsupported_media_type",
            "application/json",
        ),
        (
            post_raw("{\"name\": 5}", "application/json").await.unwrap(),
            422,
            "invalid_body",
            "name",
        ),
        (
            post_raw("{\"name\": \"x\", \"admin\": true}", "application/json")
                .await
                .unwrap(),
            422,
            "invalid_body",
            "admin",
        ),
        (
            post_raw("{}", "application/json").await.unwrap(),
            422,
            "invalid_body",
            "name",
        ),
        (
            post_raw("{\"name\": \"   \"}", "application/json")
                .await
                .unwrap(),
            422,
            "invalid_body",
            "empty",
        ),
        (
            app.get("/api/tokens/tok_nothex").await,
            400,
            "bad_request",
            "tok_",
        ),
        (
            app.get("/api/tokens/tn_0123456789abcdef0123456789abcdef")
                .await,
            400,
            "bad_request",
            "API token id",
        ),
        (
            app.get("/api/tokens/tok_0123456789abcdef0123456789abcdef")
                .await,
            404,
            "not_found",
            "API token",
        ),
        (
            app.get("/api/tokens?limit=0").await,
            400,
            "bad_request",
            "limit",
        ),
        (
            app.get("/api/tokens?limit=ten").await,
            400,
            "bad_request",
            "limit",
        ),
        (
            app.get("/api/tokens?cursor=nope").await,
            400,
            "bad_request",
            "cursor",
        ),
        (
            app.get("/api/no-such-route").await,
            404,
            "not_found",
            "route",
        ),
        (
            app.request(Method::PUT, "/api/tenant")
                .send()
                .await
                .unwrap(),
            405,
            "method_not_allowed",
            "method",
        ),
    ];
    for (response, want_status, want_code, want_text) in cases {
        let (status, body) = json_of(response).await;
        assert_eq!(status, want_status, "{body}");
        assert_eq!(body["code"], want_code, "{body}");
        let message = body["error"].as_str().unwrap();
        assert!(
            message.contains(want_text),
            "`{message}` lacks `{want_text}`"
        );
    }

    // Answers made by the router and the HTTP layer have the same JSON shape.
    let long_query = format!("/api/tokens?cursor={}", "a".repeat(10 * 1024));
    for (path, want_status, want_code) in [
        ("/api/webhooks/endpoints/wh_%FF%FE", 400, "bad_request"),
        (long_query.as_str(), 414, "uri_too_long"),
    ] {
        let response = app.get(path).await;
        let content_type = response
            .headers()
            .get("content-type")
            .map(|value| value.to_str().unwrap().to_owned());
        let (status, body) = json_of(response).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (want_status, Some(want_code)),
            "{}: {body}",
            &path[..path.len().min(60)]
        );
        assert_eq!(content_type.as_deref(), Some("application/json"));
        assert!(!body["error"].as_str().unwrap().is_empty());
    }

    let oversized = json!({"name": "x".repeat(2048)}).to_string();
    let (status, body) = json_of(
        app.request(Method::POST, "/api/tokens")
            .header("content-type", "application/json")
            .body(oversized)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large"))
    );

    let tokens = tenants::list_tokens(&app.store, &app.tenant_id, None, 100)
        .await
        .unwrap();
    assert_eq!(
        tokens.len(),
        1,
        "only the bootstrap token exists: {tokens:?}"
    );
}

async fn paging_walks_every_token_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for n in 0..7 {
        let response = app
            .post_json("/api/tokens", &json!({"name": format!("t{n}")}))
            .await;
        assert_eq!(response.status(), 201);
    }
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut path = "/api/tokens?limit=3".to_owned();
    loop {
        let (status, page) = json_of(app.get(&path).await).await;
        assert_eq!(status, 200, "{page}");
        let ids: Vec<String> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect();
        pages.push(ids.len());
        seen.extend(ids);
        match &page["next_cursor"] {
            Value::String(cursor) => path = format!("/api/tokens?limit=3&cursor={cursor}"),
            Value::Null => break,
            other => panic!("next_cursor {other}"),
        }
    }
    assert_eq!(pages, [3, 3, 2]);
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 8, "every token once");
    let mut newest_first = seen.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, newest_first);
}

async fn operational_endpoints_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    let generated_id = health.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(generated_id.len(), 36, "a UUID request id: {generated_id}");
    assert_eq!(json_of(health).await, (200, json!({"status": "ok"})));

    let ready = app
        .client
        .get(app.url("/readyz"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.headers()["x-request-id"],
        "trace-me-123",
        "a client's id is kept"
    );
    assert_eq!(json_of(ready).await, (200, json!({"status": "ready"})));

    // Ids that could forge or break a log line are replaced by a fresh one.
    for forged in [
        "x\"} {\"level\":\"ERROR\",\"message\":\"forged".to_owned(),
        "a".repeat(10_000),
        "two words".to_owned(),
    ] {
        let answer = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", forged.as_str())
            .send()
            .await
            .unwrap();
        let id = answer.headers()["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 36, "replaced by a UUID, not {forged:.40}: {id}");
    }

    let failed = app.client.get(app.url("/api/tenant")).send().await.unwrap();
    assert!(
        failed.headers().contains_key("x-request-id"),
        "errors carry an id too"
    );

    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains(
            "hookline_http_requests_total{method=\"GET\",route=\"/readyz\",status=\"200\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains("hookline_http_request_duration_seconds_bucket"),
        "{text}"
    );

    let base_url = app.base_url.clone();
    app.stop().await;
    assert!(
        crate::support::http_client()
            .get(format!("{base_url}/healthz"))
            .send()
            .await
            .is_err(),
        "a stopped server no longer answers"
    );
}

async fn readyz_fails_when_the_database_is_gone(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.store.close().await;
    let (status, body) = json_of(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "unavailable");
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(
        health.status(),
        200,
        "liveness does not depend on the database"
    );
}

#[tokio::test]
async fn openapi_documents_exactly_the_routes_that_exist() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (status, doc) = json_of(
        app.client
            .get(app.url("/api/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/openapi.json",
        "/api/tenant",
        "/api/tokens",
        "/api/tokens/{id}",
        "/api/event-types",
        "/api/event-types/{name}",
        "/api/events",
        "/api/webhooks/endpoints",
        "/api/webhooks/endpoints/{id}",
        "/api/webhooks/endpoints/{id}/activate",
        "/api/webhooks/endpoints/{id}/deactivate",
        "/api/webhooks/endpoints/{id}/rotate-secret",
        "/api/webhooks/endpoints/{id}/test",
        "/api/webhooks/endpoints/{id}/deliveries",
        "/api/webhooks/endpoints/{id}/recover",
        "/api/webhooks/deliveries/{id}",
        "/api/webhooks/deliveries/{id}/redeliver",
        "/api/repos/{owner}/{repo}/hooks",
        "/api/repos/{owner}/{repo}/hooks/{id}",
        "/api/repos/{owner}/{repo}/hooks/{id}/test",
        "/api/repos/{owner}/{repo}/hooks/{id}/deliveries",
        "/api/repos/{owner}/{repo}/hook-deliveries/{id}",
        "/api/repos/{owner}/{repo}/hook-deliveries/{id}/resend",
        "/api/github/webhook",
        "/api/gitlab/webhook",
        "/api/inbound-deliveries",
        "/api/inbound-deliveries/{id}",
        "/api/inbound-deliveries/{id}/replay",
        "/api/services",
        "/api/services/{id}",
        "/api/services/{id}/webhook-secret",
        "/api/services/{id}/webhook-secret/rotate",
        "/api/services/{id}/commits",
        "/api/services/{id}/commits/{sha}",
        "/api/services/{id}/commits/{sha}/analyze",
        "/api/services/{id}/analyze-range",
        "/api/services/{id}/range-analyses/{range_id}",
        "/api/services/{id}/deploys",
        "/api/services/{id}/pull-requests",
        "/api/services/{id}/pull-requests/{number}",
        "/api/services/{id}/issues",
        "/api/services/{id}/issues/{number}",
        "/api/deploys",
        "/api/deploys/{id}",
        "/api/incidents",
        "/api/incidents/{id}",
        "/api/incidents/{id}/acknowledge",
        "/api/incidents/{id}/resolve",
        "/api/incidents/{id}/suspects",
        "/api/monitors",
        "/api/monitors/{id}",
        "/api/monitors/{id}/checks",
        "/api/incidents/{id}/fix-proposals",
        "/api/fix-proposals",
        "/api/fix-proposals/{id}",
        "/api/fix-proposals/{id}/approve",
        "/api/fix-proposals/{id}/reject",
        "/api/v1/integrations",
        "/api/v1/integrations/{id}",
        "/api/v1/integrations/{id}/webhook/github",
        "/api/v1/integrations/{id}/pull-requests",
        "/api/v1/integrations/{id}/pull-requests/{number}",
        "/api/v1/integrations/{id}/issues",
        "/api/v1/integrations/{id}/issues/{number}",
        "/api/experiments",
        "/api/experiments/{id}",
        "/api/experiments/{id}/activity",
        "/api/experiments/{id}/github-issues",
    ]
    .into();
    assert_eq!(documented, expected);
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    // Every documented operation is served: none answers "route not found" or 405.
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let concrete = path
                .replace("{id}", "tok_0123456789abcdef0123456789abcdef")
                .replace("{name}", "no.such");
            let response = app
                .request(method.clone(), &concrete)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path}");
            assert!(
                !body.contains("route not found"),
                "{method} {path} is documented but not routed"
            );
        }
    }
}

#[tokio::test]
async fn a_worker_node_serves_only_operational_endpoints() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.role = hookline::config::Role::Worker;
    })
    .await;
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (status, body) = json_of(app.get("/api/tenant").await).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
}
