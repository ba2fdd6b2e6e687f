//! A PostgreSQL outage, from outside: a `hookline serve` process on a PostgreSQL the test started
//! itself is cut off from its database for a while. It says "unavailable" quickly (readiness
//! within about a second, API calls with 503 and Retry-After), loses no accepted event, and
//! recovers without a restart once the database is back.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::own_postgres::OwnPostgres;
use crate::support::process::{hookline, serve};
use crate::support::receiver::Receiver;
use crate::support::{eventually, http_client, json_of};

/// How long the database stays down; `HOOKLINE_TEST_OUTAGE_SECONDS` lengthens it for a manual run
/// (docs/operations.md quotes 10 s and 45 s).
fn outage() -> Duration {
    let seconds = std::env::var("HOOKLINE_TEST_OUTAGE_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(5);
    Duration::from_secs(seconds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_answers_503_quickly_and_recovers_without_a_restart() {
    let Some(postgres) = tokio::task::spawn_blocking(OwnPostgres::start)
        .await
        .unwrap()
    else {
        return;
    };
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = hookline(dir.path());
    command
        .args(["--database-url", &postgres.url()])
        .env("HOOKLINE_MASTER_KEY", hookline::crypto::generate_key())
        .env("HOOKLINE_DELIVERY__ALLOW_HTTP", "true")
        .env("HOOKLINE_SSRF__ALLOW", "[\"127.0.0.0/8\"]")
        .env(
            "HOOKLINE_DELIVERY__RETRY_SCHEDULE_MS",
            "[200, 400, 800, 1600, 3200]",
        )
        .env("HOOKLINE_DELIVERY__POLL_INTERVAL_MS", "200")
        .env("HOOKLINE_LOG__LEVEL", "error");
    let served = serve(command).await;
    let token = served
        .token
        .clone()
        .expect("the first start prints a token");
    let client = http_client();
    let base = served.base_url.clone();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    let publish = |n: usize| {
        call(
            reqwest::Method::POST,
            "/api/events",
            Some(json!({"type": "invoice.paid", "data": {"invoice_id": format!("in_{n}")}})),
        )
    };

    let (status, body) = json_of(
        call(
            reqwest::Method::POST,
            "/api/event-types",
            Some(json!({"name": "invoice.paid", "description": "d"})),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = json_of(
        call(
            reqwest::Method::POST,
            "/api/webhooks/endpoints",
            Some(json!({"url": receiver.url("/hook"), "name": "r"})),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for n in 0..10 {
        assert_eq!(publish(n).await.unwrap().status(), 202);
    }
    receiver.wait_for(10, Duration::from_secs(30)).await;

    postgres_stop(&postgres).await;
    let outage_began = Instant::now();

    let asked = Instant::now();
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    let readiness_took = asked.elapsed();
    let (status, body) = json_of(ready).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        readiness_took < Duration::from_millis(2_500),
        "/readyz answered in {readiness_took:?}"
    );

    let asked = Instant::now();
    let refused = publish(10).await.unwrap();
    let publish_took = asked.elapsed();
    assert_eq!(refused.status(), 503);
    assert!(
        refused.headers().contains_key("retry-after"),
        "{:?}",
        refused.headers()
    );
    let (_, body) = json_of(refused).await;
    assert_eq!(body["code"], "database_unavailable", "{body}");
    assert!(
        publish_took < Duration::from_secs(5),
        "a publish during the outage answered in {publish_took:?}"
    );

    // The outage lasts a while: the server stays up and keeps answering 503.
    tokio::time::sleep(outage().saturating_sub(outage_began.elapsed())).await;
    let during = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(during.status(), 503);

    postgres_start(&postgres).await;
    let back = Instant::now();
    let recovered_in = eventually(Duration::from_secs(60), "ready again", || async {
        let status = client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .ok()?
            .status();
        (status == 200).then(|| back.elapsed())
    })
    .await;
    for n in 11..21 {
        let published = publish(n).await.unwrap();
        assert_eq!(published.status(), 202, "publishes work again at once");
    }
    receiver.wait_for(20, Duration::from_secs(60)).await;
    let invoices = receiver.invoice_ids();
    assert_eq!(
        invoices.len(),
        20,
        "every accepted event delivered: {invoices:?}"
    );
    eprintln!(
        "readiness during the outage in {readiness_took:?}, publish refused in {publish_took:?}, \
         ready again {recovered_in:?} after the database came back"
    );
    let (clean, log) = served.terminate().await;
    assert!(
        clean,
        "the same process, never restarted, stops cleanly: {log}"
    );
}

async fn postgres_stop(postgres: &OwnPostgres) {
    tokio::task::block_in_place(|| postgres.stop());
}

async fn postgres_start(postgres: &OwnPostgres) {
    tokio::task::block_in_place(|| postgres.start_again());
}
