//! Outbound webhooks end to end: publishing, signing, retries, auto-disable, rotation, history,
//! recovery and the SSRF guard, on both backends, against real local receivers.

use std::collections::BTreeSet;
use std::time::Duration;

use hookline::outbound::signing;
use hookline::store::outbound as queue;
use reqwest::Method;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::receiver::{Answer, Receiver};
use crate::support::{Backend, TestApp, eventually, json_of};

const WAIT: Duration = Duration::from_secs(30);

/// A server that may deliver to loopback receivers, with a millisecond retry schedule.
pub async fn outbound_app(backend: Backend, adjust: impl FnOnce(&mut hookline::Config)) -> TestApp {
    TestApp::spawn_with(backend, |config| {
        config.delivery.allow_http = true;
        config.ssrf.allow = vec!["127.0.0.0/8".to_owned()];
        config.delivery.retry_schedule_ms = vec![20, 40, 80, 160, 320];
        config.delivery.jitter_percent = 0;
        config.delivery.poll_interval_ms = 100;
        adjust(config);
    })
    .await
}

/// Creates an endpoint and returns its id and secret.
pub async fn create_endpoint(
    app: &TestApp,
    url: &str,
    event_types: Option<Vec<&str>>,
) -> (String, String) {
    let mut body = json!({"url": url, "name": "receiver"});
    if let Some(types) = event_types {
        body["event_types"] = json!(types);
    }
    let (status, created) = json_of(app.post_json("/api/webhooks/endpoints", &body).await).await;
    assert_eq!(status, 201, "{created}");
    (
        created["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

pub async fn create_type(app: &TestApp, name: &str) {
    let schema = json!({
        "type": "object",
        "required": ["invoice_id", "amount"],
        "properties": {"invoice_id": {"type": "string"}, "amount": {"type": "integer", "minimum": 0}}
    });
    let (status, body) = json_of(
        app.post_json(
            "/api/event-types",
            &json!({"name": name, "description": "d", "schema": schema}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

pub async fn publish(app: &TestApp, event_type: &str, data: Value) -> Value {
    let (status, body) = json_of(
        app.post_json("/api/events", &json!({"type": event_type, "data": data}))
            .await,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    body
}

/// Sends a test ping to an endpoint; returns the status and `{event_id, delivery_id}`.
pub async fn send_test(app: &TestApp, endpoint_id: &str) -> (u16, Value) {
    post_empty(app, &format!("/api/webhooks/endpoints/{endpoint_id}/test")).await
}

/// A POST without a body.
async fn post_empty(app: &TestApp, path: &str) -> (u16, Value) {
    json_of(app.request(Method::POST, path).send().await.unwrap()).await
}

async fn delivery(app: &TestApp, id: &str) -> Value {
    let (status, body) = json_of(app.get(&format!("/api/webhooks/deliveries/{id}")).await).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until the delivery reaches `status` and returns its detail.
async fn delivery_reaches(app: &TestApp, id: &str, status: &str) -> Value {
    eventually(WAIT, &format!("delivery {id} {status}"), || async {
        let detail = delivery(app, id).await;
        (detail["status"] == status).then_some(detail)
    })
    .await
}

async fn endpoint(app: &TestApp, id: &str) -> Value {
    json_of(app.get(&format!("/api/webhooks/endpoints/{id}")).await)
        .await
        .1
}

async fn deliveries_of(app: &TestApp, endpoint_id: &str, query: &str) -> Vec<Value> {
    let (status, page) = json_of(
        app.get(&format!(
            "/api/webhooks/endpoints/{endpoint_id}/deliveries{query}"
        ))
        .await,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().clone()
}

on_both_backends!(
    auto_disable_stops_at_exactly_the_configured_count,
    events_for_an_inactive_endpoint_are_held_then_sent_or_discarded,
    a_retry_is_attempted_when_due_not_at_the_next_poll,
    a_published_event_arrives_signed_as_the_documented_envelope,
    publishing_checks_the_type_and_data_and_writes_nothing_on_failure,
    an_idempotency_key_returns_the_first_answer,
    failed_attempts_are_retried_on_schedule_then_the_delivery_fails,
    retry_after_is_honoured_within_the_schedule,
    gone_disables_the_endpoint_at_once,
    ten_failed_deliveries_in_a_row_disable_the_endpoint,
    a_rotated_secret_signs_beside_the_new_one,
    redeliver_and_recover_queue_failed_deliveries_again,
    the_ssrf_guard_blocks_loopback_unless_allow_listed,
    endpoints_are_validated_listed_updated_and_deleted,
    a_test_ping_goes_to_one_endpoint_only,
    inactive_endpoints_hold_new_events_and_resume_when_activated,
    one_slow_endpoint_gets_at_most_its_concurrency_cap,
    the_outbox_commits_events_with_the_producer_or_not_at_all,
    retention_prunes_finished_deliveries_with_their_history_only,
    a_gone_answer_disables_even_when_a_later_result_in_the_batch_succeeded,
);

async fn a_published_event_arrives_signed_as_the_documented_envelope(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    create_type(&app, "invoice.paid").await;
    let (endpoint_id, secret) = create_endpoint(&app, &receiver.url("/hooks"), None).await;
    let published = publish(
        &app,
        "invoice.paid",
        json!({"invoice_id": "in_1", "amount": 4200}),
    )
    .await;
    assert_eq!(published["deliveries"], 1);
    let event_id = published["id"].as_str().unwrap();
    assert!(
        event_id.starts_with("evt_") && event_id.len() == 40,
        "{event_id}"
    );

    let got = receiver.wait_for(1, WAIT).await;
    let request = &got[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks");
    let body = request.json();
    let raw = std::str::from_utf8(&request.body).unwrap();
    let positions: Vec<usize> = [
        "\"id\":",
        "\"type\":",
        "\"version\":",
        "\"created_at\":",
        "\"tenant_id\":",
        "\"data\":",
    ]
    .iter()
    .map(|key| {
        raw.find(key)
            .unwrap_or_else(|| panic!("{key} missing in {raw}"))
    })
    .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "envelope field order: {raw}"
    );
    assert_eq!(body.as_object().unwrap().len(), 6, "{raw}");
    assert_eq!(body["id"], event_id);
    assert_eq!(body["type"], "invoice.paid");
    assert_eq!(body["version"], "1");
    assert_eq!(body["tenant_id"], app.tenant_id.as_str());
    assert_eq!(body["data"], json!({"invoice_id": "in_1", "amount": 4200}));
    let created_at = body["created_at"].as_str().unwrap();
    assert!(
        created_at.len() == 24 && created_at.ends_with('Z') && created_at.as_bytes()[19] == b'.',
        "{created_at}"
    );

    let now = hookline::clock::now_ms() / 1000;
    let timestamp = request.header("x-hookline-timestamp");
    assert_eq!(
        signing::verify_hookline(
            &secret,
            request.header("x-hookline-signature"),
            timestamp,
            &request.body,
            now,
            300
        ),
        Ok(())
    );
    assert_eq!(request.header("webhook-id"), event_id);
    assert_eq!(request.header("webhook-timestamp"), timestamp);
    assert_eq!(
        signing::verify_standard(
            &secret,
            request.header("webhook-id"),
            request.header("webhook-signature"),
            request.header("webhook-timestamp"),
            &request.body,
            now,
            300
        ),
        Ok(())
    );
    assert_eq!(request.header("x-hookline-event"), "invoice.paid");
    assert_eq!(request.header("content-type"), "application/json");
    assert!(request.header("user-agent").starts_with("Hookline/"));
    let delivery_id = request.header("x-hookline-delivery").to_owned();
    assert!(delivery_id.starts_with("dlv_"));

    let detail = delivery_reaches(&app, &delivery_id, "succeeded").await;
    assert_eq!(detail["endpoint_id"], endpoint_id);
    assert_eq!(detail["attempt_count"], 1);
    assert_eq!(detail["payload"], body);
    let attempt = &detail["attempts"][0];
    assert_eq!(attempt["response_status"], 200);
    assert_eq!(attempt["response_body"], "ok");
    assert_eq!(attempt["succeeded"], true);
    assert_eq!(
        attempt["request_headers"]["x-hookline-delivery"],
        delivery_id.as_str()
    );
    assert!(attempt["error_kind"].is_null());
}

async fn publishing_checks_the_type_and_data_and_writes_nothing_on_failure(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    create_type(&app, "invoice.paid").await;
    let (endpoint_id, _) = create_endpoint(&app, &receiver.url("/"), None).await;
    let cases = [
        (
            json!({"type": "invoice.unknown", "data": {}}),
            "unknown event type",
        ),
        (
            json!({"type": "invoice.paid", "data": {"invoice_id": "in_1", "amount": "12"}}),
            "/amount",
        ),
        (
            json!({"type": "invoice.paid", "data": {"invoice_id": "in_1"}}),
            "amount",
        ),
        (
            json!({"type": "test.ping", "data": {"message": "hi", "endpoint_id": 3}}),
            "/endpoint_id",
        ),
        (json!({"type": "invoice.paid"}), "data"),
        (
            json!({"type": "invoice.paid", "data": {}, "extra": 1}),
            "extra",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = json_of(app.post_json("/api/events", &body).await).await;
        assert_eq!(status, 422, "{body} → {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains(expected), "{message} lacks {expected}");
    }
    assert!(
        deliveries_of(&app, &endpoint_id, "").await.is_empty(),
        "nothing was queued"
    );

    // Built-in types validate against their documented schema.
    let ok = publish(&app, "deploy.ingested", json!({"deploy_id": "dep_1", "commit_sha": "a1b2", "branch": null, "environment": "production", "deployed_by": null})).await;
    assert_eq!(ok["deliveries"], 1);
}

async fn an_idempotency_key_returns_the_first_answer(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    create_type(&app, "invoice.paid").await;
    let (endpoint_id, _) = create_endpoint(&app, &receiver.url("/"), None).await;
    let body = json!({"type": "invoice.paid", "data": {"invoice_id": "in_1", "amount": 1}});
    let send = |body: Value| {
        app.request(Method::POST, "/api/events")
            .header("idempotency-key", "order-42")
            .json(&body)
            .send()
    };
    let first = send(body.clone()).await.unwrap();
    assert!(first.headers().get("idempotent-replayed").is_none());
    let (status, first) = json_of(first).await;
    assert_eq!(status, 202);
    let again = send(body.clone()).await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let (status, again) = json_of(again).await;
    assert_eq!((status, &again), (202, &first));

    let (status, conflict) = json_of(
        send(json!({"type": "invoice.paid", "data": {"invoice_id": "in_2", "amount": 1}}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 409, "{conflict}");

    receiver.wait_for(1, WAIT).await;
    assert_eq!(
        deliveries_of(&app, &endpoint_id, "").await.len(),
        1,
        "one event, one delivery"
    );
}

async fn failed_attempts_are_retried_on_schedule_then_the_delivery_fails(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    receiver.respond_with(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let (endpoint_id, _) = create_endpoint(&app, &receiver.url("/"), None).await;
    let (_, sent) = send_test(&app, &endpoint_id).await;
    let delivery_id = sent["delivery_id"].as_str().unwrap();

    let detail = delivery_reaches(&app, delivery_id, "failed").await;
    assert_eq!(
        detail["attempt_count"], 6,
        "the first attempt and 5 retries"
    );
    assert_eq!(detail["last_status_code"], 500);
    assert_eq!(detail["last_error_kind"], "http_status");
    let got = receiver.received();
    assert_eq!(got.len(), 6);
    assert!(
        got.iter()
            .all(|r| r.header("x-hookline-delivery") == delivery_id),
        "same id on every retry"
    );
    let attempts = detail["attempts"].as_array().unwrap();
    let numbers: Vec<i64> = attempts
        .iter()
        .map(|a| a["attempt_number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
    for (gap, minimum) in got
        .windows(2)
        .map(|pair| pair[1].at - pair[0].at)
        .zip([20, 40, 80, 160, 320])
    {
        assert!(
            gap >= Duration::from_millis(minimum),
            "retry came after {gap:?}, schedule says {minimum} ms"
        );
    }
    assert_eq!(
        endpoint(&app, &endpoint_id).await["consecutive_failures"],
        1
    );
}

async fn retry_after_is_honoured_within_the_schedule(backend: Backend) {
    let app = outbound_app(backend, |config| {
        config.delivery.retry_schedule_ms = vec![20, 1_500];
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.script([Answer::status(429).with_header("retry-after", "1")]);
    let (endpoint_id, _) = create_endpoint(&app, &receiver.url("/"), None).await;
    let (_, sent) = send_test(&app, &endpoint_id).await;
    delivery_reaches(&app, sent["delivery_id"].as_str().unwrap(), "succeeded").await;
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured: {gap:?}"
    );
    assert!(
        gap < Duration::from_millis(1_500 + 1_000),
        "waited past the schedule: {gap:?}"
    );
}

async fn gone_disables_the_endpoint_at_once(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    receiver.respond_with(axum::http::StatusCode::GONE);
    let (endpoint_id, _) = create_endpoint(&app, &receiver.url("/"), None).await;
    let (_, sent) = send_test(&app, &endpoint_id).await;
    let detail = delivery_reaches(&app, sent["delivery_id"].as_str().unwrap(), "failed").await;
    assert_eq!(detail["attempt_count"], 1, "410 is not retried");
    let shown = endpoint(&app, &endpoint_id).await;
    assert_eq!(shown["active"], false);
    assert!(
        shown["disabled_reason"].as_str().unwrap().contains("410"),
        "{shown}"
    );
    assert!(shown["disabled_at"].is_string());
}

async fn ten_failed_deliveries_in_a_row_disable_the_endpoint(backend: Backend) {
    let app = outbound_app(backend, |config| config.delivery.retry_schedule_ms = vec![]).await;
    let receiver = Receiver::start().await;
    receiver.respond_with(axum::http::StatusCode::SERVICE_UNAVAILABLE);
    create_type(&app, "invoice.paid").await;
    let (endpoint_id, _) = create_endpoint(&app, &receiver.url("/"), None).await;
    let data = json!({"invoice_id": "in", "amount": 1});
    for n in 1..=9 {
        publish(&app, "invoice.paid", data.clone()).await;
        eventually(WAIT, "the failure to be counted", || async {
            (endpoint(&app, &endpoint_id).await["consecutive_failures"] == n).then_some(())
        })
        .await;
    }
    assert_eq!(
        endpoint(&app, &endpoint_id).await["active"],
        true,
        "nine failures keep it active"
    );
    publish(&app, "invoice.paid", data.clone()).await;
    let disabled = eventually(WAIT, "the endpoint to be disabled", || async {
        let shown = endpoint(&app, &endpoint_id).await;
        (shown["active"] == false).then_some(shown)
    })
    .await;
    assert_eq!(disabled["consecutive_failures"], 10);
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("10 consecutive"),
        "{disabled}"
    );
    assert_eq!(
        publish(&app, "invoice.paid", data.clone()).await["deliveries"],
        1,
        "a disabled endpoint holds new events"
    );
    assert_eq!(receiver.received().len(), 10, "and sends nothing");

    let (status, activated) = post_empty(
        &app,
        &format!("/api/webhooks/endpoints/{endpoint_id}/activate"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(activated["active"], true);
    assert_eq!(
        activated["consecutive_failures"], 0,
        "re-enabling resets the count"
    );
    assert!(activated["disabled_reason"].is_null());
    receiver.wait_for(11, WAIT).await;
}

async fn a_rotated_secret_signs_beside_the_new_one(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    let (endpoint_id, old_secret) = create_endpoint(&app, &receiver.url("/"), None).await;
    let (status, rotated) = post_empty(
        &app,
        &format!("/api/webhooks/endpoints/{endpoint_id}/rotate-secret"),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);
    assert!(endpoint(&app, &endpoint_id).await["previous_secret_expires_at"].is_string());

    send_test(&app, &endpoint_id).await;
    let request = &receiver.wait_for(1, WAIT).await[0];
    let now = hookline::clock::now_ms() / 1000;
    let hookline_signatures = request.header("x-hookline-signature");
    let standard_signatures = request.header("webhook-signature");
    assert_eq!(
        hookline_signatures.split(' ').count(),
        2,
        "{hookline_signatures}"
    );
    assert_eq!(
        standard_signatures.split(' ').count(),
        2,
        "{standard_signatures}"
    );
    for secret in [&old_secret, &new_secret] {
        for single in hookline_signatures.split(' ').filter(|candidate| {
            signing::verify_hookline(
                secret,
                candidate,
                request.header("x-hookline-timestamp"),
                &request.body,
                now,
                300,
            )
            .is_ok()
        }) {
            assert!(single.starts_with("sha256="));
        }
        assert_eq!(
            signing::verify_hookline(
                secret,
                hookline_signatures,
                request.header("x-hookline-timestamp"),
                &request.body,
                now,
                300
            ),
            Ok(())
        );
        assert_eq!(
            signing::verify_standard(
                secret,
                request.header("webhook-id"),
                standard_signatures,
                request.header("webhook-timestamp"),
                &request.body,
                now,
                300
            ),
            Ok(())
        );
    }
    // Each secret matches exactly one of the two values.
    let matching = |secret: &str| {
        hookline_signatures
            .split(' ')
            .filter(|candidate| {
                signing::verify_hookline(
                    secret,
                    candidate,
                    request.header("x-hookline-timestamp"),
                    &request.body,
                    now,
                    300,
                )
                .is_ok()
            })
            .count()
    };
    assert_eq!((matching(&old_secret), matching(&new_secret)), (1, 1));
}

async fn redeliver_and_recover_queue_failed_deliveries_again(backend: Backend) {
    let app = outbound_app(backend, |config| config.delivery.retry_schedule_ms = vec![]).await;
    let receiver = Receiver::start().await;
    receiver.respond_with(axum::http::StatusCode::BAD_GATEWAY);
    create_type(&app, "invoice.paid").await;
    let (endpoint_id, _) = create_endpoint(&app, &receiver.url("/"), None).await;
    let since = hookline::clock::rfc3339_ms(hookline::clock::now_ms() - 1);
    for n in 0..3 {
        publish(
            &app,
            "invoice.paid",
            json!({"invoice_id": format!("in_{n}"), "amount": n}),
        )
        .await;
    }
    let failed = eventually(WAIT, "three failed deliveries", || async {
        let failed = deliveries_of(&app, &endpoint_id, "?status=failed").await;
        (failed.len() == 3).then_some(failed)
    })
    .await;
    let first_id = failed[0]["id"].as_str().unwrap().to_owned();

    receiver.respond_with(axum::http::StatusCode::OK);
    let (status, requeued) = post_empty(
        &app,
        &format!("/api/webhooks/deliveries/{first_id}/redeliver"),
    )
    .await;
    assert_eq!(status, 202, "{requeued}");
    let detail = delivery_reaches(&app, &first_id, "succeeded").await;
    assert_eq!(detail["attempt_count"], 2);
    assert_eq!(detail["attempts"][0]["succeeded"], false);
    assert_eq!(detail["attempts"][1]["succeeded"], true);
    let (status, _) = post_empty(
        &app,
        "/api/webhooks/deliveries/dlv_0123456789abcdef0123456789abcdef/redeliver",
    )
    .await;
    assert_eq!(status, 404);

    let (status, recovered) = json_of(
        app.post_json(
            &format!("/api/webhooks/endpoints/{endpoint_id}/recover"),
            &json!({"since": since}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 202, "{recovered}");
    assert_eq!(recovered["requeued"], 2);
    eventually(WAIT, "every delivery to succeed", || async {
        (deliveries_of(&app, &endpoint_id, "?status=succeeded")
            .await
            .len()
            == 3)
            .then_some(())
    })
    .await;
    let (status, bad) = json_of(
        app.post_json(
            &format!("/api/webhooks/endpoints/{endpoint_id}/recover"),
            &json!({"since": "last week"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{bad}");
}

async fn the_ssrf_guard_blocks_loopback_unless_allow_listed(backend: Backend) {
    let receiver = Receiver::start().await;
    let app = outbound_app(backend, |config| config.ssrf.allow = vec![]).await;
    for url in [
        receiver.url("/"),
        format!("http://localhost:{}/", receiver.addr.port()),
        format!("http://2130706433:{}/", receiver.addr.port()),
        format!("http://[::ffff:127.0.0.1]:{}/", receiver.addr.port()),
    ] {
        let (status, body) = json_of(
            app.post_json("/api/webhooks/endpoints", &json!({"url": url, "name": "r"}))
                .await,
        )
        .await;
        assert_eq!(status, 422, "{url}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("not allowed"),
            "{body}"
        );
    }

    // Saved while allow-listed; the guard is checked again at every attempt.
    let app = app
        .restart_with(|config| config.ssrf.allow = vec!["127.0.0.0/8".to_owned()])
        .await;
    let (endpoint_id, _) = create_endpoint(&app, &receiver.url("/"), None).await;
    let app = app.restart_with(|config| config.ssrf.allow = vec![]).await;
    let (_, sent) = send_test(&app, &endpoint_id).await;
    let delivery_id = sent["delivery_id"].as_str().unwrap();
    let detail = eventually(WAIT, "a blocked attempt", || async {
        let detail = delivery(&app, delivery_id).await;
        (detail["attempt_count"].as_i64() >= Some(1)).then_some(detail)
    })
    .await;
    assert_eq!(
        detail["attempts"][0]["error_kind"], "ssrf_blocked",
        "{detail}"
    );
    assert!(
        receiver.received().is_empty(),
        "nothing reached the receiver"
    );
}

async fn endpoints_are_validated_listed_updated_and_deleted(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    let url = receiver.url("/a");
    let bad = [
        (
            json!({"url": "ftp://127.0.0.1/", "name": "x"}),
            422,
            "https",
        ),
        (
            json!({"url": "http://u:p@127.0.0.1/", "name": "x"}),
            422,
            "credentials",
        ),
        (json!({"url": url, "name": ""}), 422, "name"),
        (
            json!({"url": url, "name": "x", "event_types": ["no.such"]}),
            422,
            "no.such",
        ),
        (
            json!({"url": url, "name": "x", "event_types": []}),
            422,
            "at least one",
        ),
        (
            json!({"url": url, "name": "x", "secret": "mine"}),
            422,
            "secret",
        ),
        (json!({"name": "x"}), 422, "url"),
        (
            json!({"url": url, "name": "a\u{0}b"}),
            422,
            "control characters",
        ),
    ];
    for (body, status, text) in bad {
        let (got, answer) = json_of(app.post_json("/api/webhooks/endpoints", &body).await).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(text), "{answer}");
    }
    let strict = outbound_app(backend, |config| config.delivery.allow_http = false).await;
    let (status, answer) = json_of(
        strict
            .post_json("/api/webhooks/endpoints", &json!({"url": url, "name": "x"}))
            .await,
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        answer["error"].as_str().unwrap().contains("https://"),
        "{answer}"
    );

    let mut ids = Vec::new();
    for n in 0..3 {
        let (id, _) = create_endpoint(
            &app,
            &receiver.url(&format!("/{n}")),
            Some(vec!["test.ping"]),
        )
        .await;
        ids.push(id);
    }
    let (_, page) = json_of(app.get("/api/webhooks/endpoints?limit=2").await).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = json_of(
        app.get(&format!("/api/webhooks/endpoints?limit=2&cursor={cursor}"))
            .await,
    )
    .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null());
    let listing = serde_json::to_string(&page).unwrap() + &serde_json::to_string(&rest).unwrap();
    assert!(!listing.contains("whsec_"), "secrets are never listed");

    let path = format!("/api/webhooks/endpoints/{}", ids[0]);
    let patch = |body: Value| app.request(Method::PATCH, &path).json(&body).send();
    let (status, updated) = json_of(
        patch(json!({"name": "renamed", "event_types": null}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["name"], "renamed");
    assert!(
        updated["event_types"].is_null(),
        "null subscribes to every type"
    );
    assert_eq!(
        updated["url"],
        receiver.url("/0"),
        "fields not given are kept"
    );
    let (status, _) = json_of(
        patch(json!({"url": "https://user:pw@127.0.0.1/"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        endpoint(&app, &ids[0]).await["url"],
        receiver.url("/0"),
        "a refused change writes nothing"
    );
    let (status, updated) = json_of(patch(json!({"active": false})).await.unwrap()).await;
    assert_eq!((status, &updated["active"]), (200, &json!(false)));

    assert_eq!(app.delete(&path).await.status(), 204);
    assert_eq!(app.get(&path).await.status(), 404);
    assert_eq!(app.delete(&path).await.status(), 404);
    assert_eq!(
        app.get("/api/webhooks/endpoints/wh_nope").await.status(),
        400
    );

    // Another tenant sees none of it.
    let mut tx = app.store.begin().await.unwrap();
    let other = hookline::store::tenants::create_tenant(&mut tx, "other")
        .await
        .unwrap();
    let theirs = hookline::tenancy::issue_token(&mut tx, &other.id, "t")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let foreign = format!("/api/webhooks/endpoints/{}", ids[1]);
    let response = app
        .request_as(&theirs.secret, Method::GET, &foreign)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = app
        .request_as(&theirs.secret, Method::DELETE, &foreign)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        app.get(&foreign).await.status(),
        200,
        "still there for its owner"
    );
}

async fn a_test_ping_goes_to_one_endpoint_only(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let (first, second) = (Receiver::start().await, Receiver::start().await);
    create_endpoint(&app, &first.url("/"), None).await;
    create_type(&app, "invoice.paid").await;
    let (second_id, _) = create_endpoint(&app, &second.url("/"), Some(vec!["invoice.paid"])).await;
    let (status, sent) = send_test(&app, &second_id).await;
    assert_eq!(status, 202, "{sent}");
    let got = second.wait_for(1, WAIT).await;
    let body = got[0].json();
    assert_eq!(body["type"], "test.ping");
    assert_eq!(
        body["data"],
        json!({"message": "Webhook endpoint test", "endpoint_id": second_id})
    );
    assert_eq!(body["id"], sent["event_id"]);
    delivery_reaches(&app, sent["delivery_id"].as_str().unwrap(), "succeeded").await;
    assert!(
        first.received().is_empty(),
        "the test went to one endpoint only"
    );
}

async fn inactive_endpoints_hold_new_events_and_resume_when_activated(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    receiver.respond_with(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let (endpoint_id, _) = create_endpoint(&app, &receiver.url("/"), None).await;
    create_type(&app, "invoice.paid").await;
    publish(
        &app,
        "invoice.paid",
        json!({"invoice_id": "a", "amount": 1}),
    )
    .await;
    receiver.wait_for(1, WAIT).await;
    let deactivate = format!("/api/webhooks/endpoints/{endpoint_id}/deactivate");
    let (_, shown) = post_empty(&app, &deactivate).await;
    assert_eq!(shown["active"], false);
    assert_eq!(
        publish(
            &app,
            "invoice.paid",
            json!({"invoice_id": "b", "amount": 1})
        )
        .await["deliveries"],
        1,
        "held for the inactive endpoint, not dropped"
    );
    let waiting = eventually(WAIT, "the retrying delivery to wait", || async {
        let all = deliveries_of(&app, &endpoint_id, "").await;
        (all.len() == 2 && all.iter().all(|d| d["status"] == "paused")).then_some(all)
    })
    .await;
    let (status, _) = send_test(&app, &endpoint_id).await;
    assert_eq!(status, 409, "an inactive endpoint cannot be tested");

    receiver.respond_with(axum::http::StatusCode::OK);
    app.request(
        Method::POST,
        &format!("/api/webhooks/endpoints/{endpoint_id}/activate"),
    )
    .send()
    .await
    .unwrap();
    delivery_reaches(&app, waiting[0]["id"].as_str().unwrap(), "succeeded").await;
    delivery_reaches(&app, waiting[1]["id"].as_str().unwrap(), "succeeded").await;
}

async fn one_slow_endpoint_gets_at_most_its_concurrency_cap(backend: Backend) {
    // Small claims, so the slow endpoint's backlog fills the oldest part of the queue.
    let app = outbound_app(backend, |config| {
        config.delivery.endpoint_concurrency = 2;
        config.delivery.batch_size = 4;
    })
    .await;
    let slow = Receiver::start().await;
    slow.delay(Duration::from_millis(100));
    let fast = Receiver::start().await;
    create_type(&app, "invoice.paid").await;
    create_type(&app, "invoice.sent").await;
    create_endpoint(&app, &slow.url("/"), Some(vec!["invoice.paid"])).await;
    create_endpoint(&app, &fast.url("/"), Some(vec!["invoice.sent"])).await;
    for n in 0..100 {
        publish(
            &app,
            "invoice.paid",
            json!({"invoice_id": format!("in_{n}"), "amount": n}),
        )
        .await;
    }
    for n in 0..10 {
        publish(
            &app,
            "invoice.sent",
            json!({"invoice_id": format!("in_{n}"), "amount": n}),
        )
        .await;
    }
    fast.wait_for(10, WAIT).await;
    let slow_so_far = slow.received().len();
    assert!(
        slow_so_far < 30,
        "the fast endpoint waited for the slow one's backlog ({slow_so_far}/100)"
    );
    slow.wait_for(100, WAIT).await;
    assert_eq!(
        slow.max_in_flight(),
        2,
        "the slow endpoint never had more than its cap"
    );
}

async fn the_outbox_commits_events_with_the_producer_or_not_at_all(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    let (endpoint_id, _) = create_endpoint(&app, &receiver.url("/"), None).await;
    let data = json!({"deploy_id": "dep_1", "commit_sha": "abc", "branch": null, "environment": null, "deployed_by": null});

    let mut tx = app.store.begin().await.unwrap();
    let rolled_back = hookline::outbound::enqueue(
        &mut tx,
        &app.tenant_id,
        "deploy.ingested",
        &data,
        hookline::outbound::Audience::Subscribers,
    )
    .await
    .unwrap();
    drop(tx);
    assert!(matches!(
        queue::event_payload(&app.store, &rolled_back.event_id).await,
        Err(hookline::store::StoreError::NotFound)
    ));

    let mut tx = app.store.begin().await.unwrap();
    let committed = hookline::outbound::enqueue(
        &mut tx,
        &app.tenant_id,
        "deploy.ingested",
        &data,
        hookline::outbound::Audience::Subscribers,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(committed.delivery_ids.len(), 1);
    // No in-process wake-up: another node's worker (PostgreSQL NOTIFY) or the poll picks it up.
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["id"], committed.event_id.as_str());
    let ids: BTreeSet<String> = deliveries_of(&app, &endpoint_id, "")
        .await
        .iter()
        .map(|d| d["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, BTreeSet::from([committed.event_id]));
}

async fn retention_prunes_finished_deliveries_with_their_history_only(backend: Backend) {
    // A retry a minute away: the failing delivery below stays unfinished.
    let app = outbound_app(backend, |config| {
        config.delivery.retry_schedule_ms = vec![60_000]
    })
    .await;
    let receiver = Receiver::start().await;
    create_type(&app, "invoice.paid").await;
    let (done_endpoint, _) = create_endpoint(&app, &receiver.url("/done"), None).await;
    let mut finished = Vec::new();
    for n in 0..2 {
        let published = publish(
            &app,
            "invoice.paid",
            json!({"invoice_id": format!("in_{n}"), "amount": n}),
        )
        .await;
        finished.push(published["id"].as_str().unwrap().to_owned());
    }
    let delivered = eventually(WAIT, "two succeeded deliveries", || async {
        let done = deliveries_of(&app, &done_endpoint, "?status=succeeded").await;
        (done.len() == 2).then_some(done)
    })
    .await;
    // A delivery still waiting for its retry must survive pruning; one held for an inactive
    // endpoint past the retention period goes.
    post_empty(
        &app,
        &format!("/api/webhooks/endpoints/{done_endpoint}/deactivate"),
    )
    .await;
    let (waiting_endpoint, _) = create_endpoint(&app, &receiver.url("/waiting"), None).await;
    receiver.respond_with(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let kept = publish(
        &app,
        "invoice.paid",
        json!({"invoice_id": "in_kept", "amount": 9}),
    )
    .await;
    eventually(WAIT, "the kept delivery's first failed attempt", || async {
        let waiting = deliveries_of(&app, &waiting_endpoint, "").await;
        (waiting.len() == 1 && waiting[0]["attempt_count"] == 1).then_some(())
    })
    .await;

    let pruned = queue::prune(&app.store, hookline::clock::now_ms() + 60_000)
        .await
        .unwrap();
    assert_eq!(
        pruned, 3,
        "the two finished deliveries, and the one held past retention"
    );
    assert!(
        deliveries_of(&app, &done_endpoint, "?status=paused")
            .await
            .is_empty()
    );
    for old in &delivered {
        let id = old["id"].as_str().unwrap();
        assert_eq!(
            app.get(&format!("/api/webhooks/deliveries/{id}"))
                .await
                .status(),
            404
        );
        assert!(
            queue::attempts_of(&app.store, id).await.unwrap().is_empty(),
            "attempts went too"
        );
    }
    for event_id in &finished {
        assert!(
            queue::event_payload(&app.store, event_id).await.is_err(),
            "orphaned events went"
        );
    }
    let remaining = deliveries_of(&app, &waiting_endpoint, "").await;
    assert_eq!(remaining.len(), 1, "the unfinished delivery stays");
    assert_eq!(remaining[0]["event_id"], kept["id"]);
    assert!(
        queue::event_payload(&app.store, kept["id"].as_str().unwrap())
            .await
            .is_ok()
    );
}

async fn a_gone_answer_disables_even_when_a_later_result_in_the_batch_succeeded(backend: Backend) {
    let (app, endpoint_id, claimed, now) = claimed_by_hand(backend, 2).await;
    let batch = [
        hand_result(&claimed[0], 410, queue::Next::Failed { gone: true }, now),
        hand_result(&claimed[1], 200, queue::Next::Succeeded, now),
    ];
    let recorded = queue::record_results(&app.store, &batch, 10).await.unwrap();
    assert_eq!(recorded.written, 2);
    assert_eq!(recorded.disabled.len(), 1, "{recorded:?}");
    let shown = endpoint(&app, &endpoint_id).await;
    assert_eq!(shown["active"], false, "{shown}");
    assert!(shown["disabled_reason"].as_str().unwrap().contains("410"));

    // A second write of the same results finds the leases gone and changes nothing.
    let again = queue::record_results(&app.store, &batch, 10).await.unwrap();
    assert_eq!((again.written, again.lease_lost), (0, 2));
}

async fn a_retry_is_attempted_when_due_not_at_the_next_poll(backend: Backend) {
    // A fallback poll far longer than the retry delay: the retry must not wait for it.
    let app = outbound_app(backend, |config| {
        config.delivery.poll_interval_ms = 20_000;
        config.delivery.retry_schedule_ms = vec![300];
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.script([Answer::status(503)]);
    let (endpoint_id, _) = create_endpoint(&app, &receiver.url("/hook"), None).await;
    let (status, _) = json_of(
        app.post_json(
            &format!("/api/webhooks/endpoints/{endpoint_id}/test"),
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 202);
    let received = receiver.wait_for(2, WAIT).await;
    let gap = received[1].at - received[0].at;
    assert!(
        gap >= Duration::from_millis(250),
        "the retry waited its delay: {gap:?}"
    );
    assert!(
        gap < Duration::from_secs(10),
        "the retry went when due, not at the next 20 s poll: {gap:?}"
    );
}

async fn events_for_an_inactive_endpoint_are_held_then_sent_or_discarded(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    let (endpoint_id, _) = create_endpoint(&app, &receiver.url("/hook"), None).await;
    create_type(&app, "invoice.paid").await;
    let path = format!("/api/webhooks/endpoints/{endpoint_id}");
    let post = |suffix: &'static str, body: Value| {
        let (app, path) = (&app, &path);
        async move { json_of(app.post_json(&format!("{path}{suffix}"), &body).await).await }
    };
    assert_eq!(post("/deactivate", json!({})).await.0, 200);
    for n in 0..3 {
        publish(
            &app,
            "invoice.paid",
            json!({"invoice_id": format!("inv_{n}"), "amount": n}),
        )
        .await;
    }
    let (status, endpoint) = json_of(app.get(&path).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        endpoint["held_deliveries"], 3,
        "kept, not dropped: {endpoint}"
    );
    let (_, held) = json_of(app.get(&format!("{path}/deliveries?status=paused")).await).await;
    assert_eq!(held["data"].as_array().unwrap().len(), 3);
    assert!(receiver.received().is_empty());

    // Activating sends them all (oldest first; attempts to one endpoint may overlap).
    let (status, activated) = post("/activate", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(activated["held_deliveries"], 0);
    let received = receiver.wait_for(3, WAIT).await;
    let mut amounts: Vec<i64> = received
        .iter()
        .map(|r| r.json()["data"]["amount"].as_i64().unwrap())
        .collect();
    amounts.sort_unstable();
    assert_eq!(amounts, [0, 1, 2]);

    // Or the person discards them.
    assert_eq!(post("/deactivate", json!({})).await.0, 200);
    publish(
        &app,
        "invoice.paid",
        json!({"invoice_id": "inv_9", "amount": 9}),
    )
    .await;
    let (status, activated) = post("/activate", json!({"discard_held": true})).await;
    assert_eq!(status, 200, "{activated}");
    assert_eq!(activated["held_deliveries"], 0);
    let (_, all) = json_of(app.get(&format!("{path}/deliveries")).await).await;
    assert_eq!(
        all["data"].as_array().unwrap().len(),
        3,
        "the discarded one is gone"
    );
    publish(
        &app,
        "invoice.paid",
        json!({"invoice_id": "inv_10", "amount": 10}),
    )
    .await;
    let received = receiver.wait_for(4, WAIT).await;
    assert_eq!(
        received[3].json()["data"]["amount"],
        10,
        "the discarded event never arrived"
    );
}

async fn auto_disable_stops_at_exactly_the_configured_count(backend: Backend) {
    // Results recorded by hand in batches larger than the limit, as a busy worker's are.
    let (app, endpoint_id, claimed, now) = claimed_by_hand(backend, 15).await;
    let failed = |claimed: &queue::Claimed| {
        hand_result(claimed, 500, queue::Next::Failed { gone: false }, now)
    };
    let first: Vec<_> = claimed[..12].iter().map(failed).collect();
    let recorded = queue::record_results(&app.store, &first, 10).await.unwrap();
    assert_eq!(recorded.disabled.len(), 1);
    let shown = endpoint(&app, &endpoint_id).await;
    assert_eq!(shown["active"], false);
    assert_eq!(shown["consecutive_failures"], 10, "not 12: {shown}");
    assert_eq!(shown["disabled_reason"], "10 consecutive deliveries failed");

    // Results that arrive after the disable are recorded, but count no more.
    let late: Vec<_> = claimed[12..].iter().map(failed).collect();
    let recorded = queue::record_results(&app.store, &late, 10).await.unwrap();
    assert_eq!(recorded.written, 3);
    assert!(recorded.disabled.is_empty());
    assert_eq!(
        endpoint(&app, &endpoint_id).await["consecutive_failures"],
        10
    );
}

/// An API-only node (no worker) with `count` deliveries to one endpoint, claimed by hand by
/// `test-owner`, for tests that record results themselves as a worker would.
async fn claimed_by_hand(
    backend: Backend,
    count: u32,
) -> (TestApp, String, Vec<queue::Claimed>, i64) {
    let app = outbound_app(backend, |config| config.role = hookline::config::Role::Api).await;
    create_type(&app, "invoice.paid").await;
    let (endpoint_id, _) = create_endpoint(&app, "http://127.0.0.1:9/", None).await;
    for n in 0..count {
        publish(
            &app,
            "invoice.paid",
            json!({"invoice_id": format!("in_{n}"), "amount": n}),
        )
        .await;
    }
    let now = hookline::clock::now_ms();
    let claim = queue::Claim {
        now,
        lease_until: now + 60_000,
        owner: "test-owner",
        limit: count + 5,
        per_endpoint: count + 5,
        window: 100,
    };
    let claimed = queue::claim_due(&app.store, claim, &[]).await.unwrap();
    assert_eq!(claimed.len(), count as usize);
    (app, endpoint_id, claimed, now)
}

/// An attempt's result as a worker records it, made by hand for tests that record batches
/// themselves (claimed by `test-owner`).
fn hand_result(
    claimed: &queue::Claimed,
    status: i64,
    next: queue::Next,
    now: i64,
) -> queue::AttemptResult {
    queue::AttemptResult {
        claimed: claimed.clone(),
        lease_owner: "test-owner".to_owned(),
        attempt: queue::Attempt {
            id: hookline::ids::new(hookline::ids::Kind::Attempt),
            delivery_id: claimed.id.clone(),
            attempt_number: 1,
            started_at: now,
            duration_ms: 1,
            url: "http://127.0.0.1:9/".to_owned(),
            request_headers: "{}".to_owned(),
            response_status: Some(status),
            response_headers: None,
            response_body: Some("\u{fffd}".to_owned()),
            error_kind: (status != 200).then(|| "http_status".to_owned()),
            error_message: None,
            succeeded: status == 200,
        },
        next,
    }
}

/// A retry recorded while its endpoint is being deactivated waits paused, not pending (which no
/// claim would ever take while the endpoint is inactive). On PostgreSQL the recorder's statement
/// can start before the deactivation commits and then wait for the endpoint's lock: what it reads
/// of the endpoint must be the committed deactivation, not its own older snapshot. The order is
/// forced with a third transaction that holds the endpoint's row until both are queued behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_recorded_while_its_endpoint_is_deactivated_waits_paused() {
    let Some(backend) = Backend::postgres_or_skip().await else {
        return;
    };
    let (app, endpoint_id, claimed, now) = claimed_by_hand(backend, 1).await;
    let hookline::store::Store::Postgres(pool) = &app.store else {
        unreachable!("a PostgreSQL test")
    };
    let mut holder = pool.begin().await.unwrap();
    let holder_xid: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    sqlx::query("SELECT 1 FROM endpoints WHERE id = $1 FOR UPDATE")
        .bind(&endpoint_id)
        .execute(&mut *holder)
        .await
        .unwrap();

    let deactivation = tokio::spawn({
        let (store, tenant_id, id) = (
            app.store.clone(),
            app.tenant_id.clone(),
            endpoint_id.clone(),
        );
        async move { queue::set_endpoint_active(&store, &tenant_id, &id, false).await }
    });
    let waiting_for_the_holder = "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' \
         AND NOT granted AND transactionid::text = $1";
    eventually(WAIT, "the deactivation to wait for the row", || async {
        let waiting: i64 = sqlx::query_scalar(waiting_for_the_holder)
            .bind(&holder_xid)
            .fetch_one(pool)
            .await
            .unwrap();
        (waiting == 1).then_some(())
    })
    .await;
    let recording = tokio::spawn({
        let store = app.store.clone();
        let retry = hand_result(&claimed[0], 500, queue::Next::RetryAt(now + 60_000), now);
        async move { queue::record_results(&store, &[retry], 10).await }
    });
    eventually(
        WAIT,
        "the recorder to queue behind the deactivation",
        || async {
            let queued: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'tuple' AND NOT granted \
             AND relation = 'endpoints'::regclass",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            (queued == 1).then_some(())
        },
    )
    .await;
    holder.commit().await.unwrap();

    assert!(!deactivation.await.unwrap().unwrap().active);
    let recorded = recording.await.unwrap().unwrap();
    assert_eq!(recorded.written, 1, "{recorded:?}");
    let delivery = queue::get_delivery(&app.store, &app.tenant_id, &claimed[0].id)
        .await
        .unwrap();
    assert_eq!(delivery.status, "paused", "{delivery:?}");
    assert_eq!(delivery.attempt_count, 1);
    assert_eq!(
        deliveries_of(&app, &endpoint_id, "?status=paused")
            .await
            .len(),
        1,
        "listed as held"
    );
}

/// A burst of publishes leaves PostgreSQL without statistics of the queue (autovacuum looks once a
/// minute, or never): a worker analyses the queue table once it grew by 10,000 rows, and not
/// again until it has doubled again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_statistics_follow_a_burst_on_postgres() {
    let Some(backend) = Backend::postgres_or_skip().await else {
        return;
    };
    let app = outbound_app(backend, |config| config.role = hookline::config::Role::Api).await;
    let hookline::store::Store::Postgres(pool) = &app.store else {
        unreachable!("a PostgreSQL test")
    };
    create_type(&app, "invoice.paid").await;
    assert!(
        !queue::refresh_queue_statistics(&app.store).await.unwrap(),
        "nothing changed yet"
    );
    for _ in 0..20 {
        create_endpoint(&app, "http://127.0.0.1:9/", None).await;
    }
    for n in 0..510 {
        publish(
            &app,
            "invoice.paid",
            json!({"invoice_id": format!("in_{n}"), "amount": n}),
        )
        .await;
    }
    eventually(WAIT, "the burst's statistics to be taken", || async {
        queue::refresh_queue_statistics(&app.store)
            .await
            .unwrap()
            .then_some(())
    })
    .await;
    let analysed: Option<i64> = sqlx::query_scalar(
        "SELECT n_mod_since_analyze FROM pg_stat_user_tables \
         WHERE relid = 'delivery_queue'::regclass AND last_analyze IS NOT NULL",
    )
    .fetch_optional(pool)
    .await
    .unwrap();
    assert!(analysed.is_some(), "the queue was analysed");
    let columns: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stats WHERE schemaname = current_schema() \
         AND tablename = 'delivery_queue'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(columns > 0, "the planner has statistics of the queue");
    assert!(
        !queue::refresh_queue_statistics(&app.store).await.unwrap(),
        "not again while nothing changed"
    );
}

on_both_backends!(deliveries_left_pending_for_an_inactive_endpoint_are_paused);

/// A publish that read its endpoints just before a deactivation committed writes its deliveries
/// pending; the sweep every worker runs with its queue gauges pauses them, so they count as held
/// and go when held deliveries are discarded. Deliveries of active endpoints are left alone.
async fn deliveries_left_pending_for_an_inactive_endpoint_are_paused(backend: Backend) {
    let app = outbound_app(backend, |config| config.role = hookline::config::Role::Api).await;
    create_type(&app, "invoice.paid").await;
    let (raced, _) = create_endpoint(&app, "http://127.0.0.1:9/a", None).await;
    let (active, _) = create_endpoint(&app, "http://127.0.0.1:9/b", None).await;
    for n in 0..2 {
        publish(
            &app,
            "invoice.paid",
            json!({"invoice_id": format!("in_{n}"), "amount": n}),
        )
        .await;
    }
    // The race's outcome: the endpoint inactive, its deliveries still pending.
    let deactivate = "UPDATE endpoints SET active = false WHERE id = $1";
    let changed = match &app.store {
        hookline::store::Store::Sqlite(sqlite) => sqlx::query(deactivate)
            .bind(&raced)
            .execute(&sqlite.writer)
            .await
            .unwrap()
            .rows_affected(),
        hookline::store::Store::Postgres(pool) => sqlx::query(deactivate)
            .bind(&raced)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected(),
    };
    assert_eq!(changed, 1);
    assert_eq!(
        deliveries_of(&app, &raced, "?status=pending").await.len(),
        2
    );

    assert_eq!(
        queue::pause_for_inactive_endpoints(&app.store)
            .await
            .unwrap(),
        2
    );
    assert_eq!(deliveries_of(&app, &raced, "?status=paused").await.len(), 2);
    assert_eq!(endpoint(&app, &raced).await["held_deliveries"], 2);
    assert_eq!(
        deliveries_of(&app, &active, "?status=pending").await.len(),
        2,
        "an active endpoint's deliveries stay pending"
    );
    assert_eq!(
        queue::pause_for_inactive_endpoints(&app.store)
            .await
            .unwrap(),
        0
    );
}

on_both_backends!(a_rate_limit_spaces_deliveries_without_slowing_other_endpoints);

/// SPEC §3.4: at 5 per second, 50 queued deliveries take at least 9 s, none fails, and another
/// endpoint's 50 are not held up behind them.
async fn a_rate_limit_spaces_deliveries_without_slowing_other_endpoints(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    create_type(&app, "invoice.paid").await;
    let limited_receiver = Receiver::start().await;
    let free_receiver = Receiver::start().await;
    let (status, limited) = json_of(
        app.post_json(
            "/api/webhooks/endpoints",
            &json!({"url": limited_receiver.url("/slow"), "name": "limited", "rate_limit_per_second": 5}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{limited}");
    assert_eq!(limited["rate_limit_per_second"], 5);
    create_endpoint(&app, &free_receiver.url("/fast"), None).await;

    for n in 0..50 {
        publish(
            &app,
            "invoice.paid",
            json!({"invoice_id": format!("in_{n}"), "amount": n}),
        )
        .await;
    }
    let free = free_receiver.wait_for(50, WAIT).await;
    let limited_so_far = limited_receiver.received().len();
    assert!(
        limited_so_far < 25,
        "the unlimited endpoint got its 50 while the limited one had {limited_so_far}"
    );
    let limited = limited_receiver.wait_for(50, Duration::from_secs(60)).await;
    let span = limited[49].at - limited[0].at;
    assert!(
        span >= Duration::from_secs(9),
        "50 deliveries at 5/s took {span:?}"
    );
    // No burst anywhere: any 11 attempts in a row span about 10 intervals (2 s), give or take
    // how long each took to leave.
    let tightest = limited
        .windows(11)
        .map(|run| run[10].at - run[0].at)
        .min()
        .unwrap();
    assert!(
        tightest >= Duration::from_millis(1_400),
        "11 attempts within {tightest:?} at 5/s"
    );
    assert_eq!(free.len(), 50);
    let limited_id = limited[0].header("x-hookline-delivery").to_owned();
    let detail = delivery(&app, &limited_id).await;
    assert_eq!(detail["status"], "succeeded", "{detail}");
}

on_both_backends!(a_rate_limit_is_checked_changed_and_removed);

async fn a_rate_limit_is_checked_changed_and_removed(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    for bad in [json!(0), json!(-3), json!(100_001)] {
        let (status, body) = json_of(
            app.post_json(
                "/api/webhooks/endpoints",
                &json!({"url": receiver.url("/"), "name": "r", "rate_limit_per_second": bad}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with("rate_limit_per_second must be between 1 and 100000"),
            "{body}"
        );
    }
    let (id, _) = create_endpoint(&app, &receiver.url("/"), None).await;
    let path = format!("/api/webhooks/endpoints/{id}");
    let (status, body) = json_of(app.get(&path).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["rate_limit_per_second"],
        Value::Null,
        "no limit by default"
    );

    let patch = |value: Value| {
        let app = &app;
        let path = path.clone();
        async move {
            json_of(
                app.request(Method::PATCH, &path)
                    .json(&json!({"rate_limit_per_second": value}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let (status, body) = patch(json!(20)).await;
    assert_eq!((status, &body["rate_limit_per_second"]), (200, &json!(20)));
    let (status, body) = patch(json!(0)).await;
    assert_eq!(status, 422, "{body}");
    let (_, body) = json_of(app.get(&path).await).await;
    assert_eq!(
        body["rate_limit_per_second"], 20,
        "a refused change keeps the limit"
    );
    let (status, body) = patch(Value::Null).await;
    assert_eq!(
        (status, &body["rate_limit_per_second"]),
        (200, &Value::Null)
    );
}
