//! Slow and silent clients: a connection that does not send a whole request head in time, stays
//! idle after its last request, or stalls in the middle of its body, is closed, while other
//! requests keep being served.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Backend, TestApp};

const HEADER_TIMEOUT_MS: u64 = 600;

/// Reads until the server closes the connection; returns how long that took and what it sent.
async fn until_closed(stream: &mut TcpStream) -> (Duration, Vec<u8>) {
    let started = tokio::time::Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buffer))
            .await
            .expect("the server closed the connection within 20 s");
        match read {
            Ok(0) | Err(_) => return (started.elapsed(), received),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_silent_and_idle_connections_are_closed() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.http.header_read_timeout_ms = HEADER_TIMEOUT_MS;
    })
    .await;
    let address = app.base_url.trim_start_matches("http://").to_owned();

    // Silent: connects and sends nothing.
    let mut silent = TcpStream::connect(&address).await.unwrap();
    // Slow: half a request head, then nothing.
    let mut slow = TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Idle: one whole request, then nothing on the kept-alive connection.
    let mut idle = TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    // Meanwhile the server answers everyone else.
    let healthy = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);

    for (what, stream) in [
        ("silent", &mut silent),
        ("slow", &mut slow),
        ("idle", &mut idle),
    ] {
        let (after, received) = until_closed(stream).await;
        assert!(
            after < Duration::from_secs(15),
            "the {what} connection stayed open {after:?}"
        );
        if what == "idle" {
            let text = String::from_utf8_lossy(&received);
            assert!(
                text.starts_with("HTTP/1.1 200"),
                "its request was answered: {text}"
            );
        }
    }
    // A new client: the first one's pooled connection has been idle as long as the others, and
    // the server may be closing it just as a request reuses it.
    let healthy = crate::support::http_client()
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthy.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_answered_408_and_its_connection_closed() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.http.body_idle_timeout_ms = 700;
    })
    .await;
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let token = app.token.clone();
    let mut stalled = Vec::new();
    // The API and a webhook receiver alike: 1,000 bytes promised, 2 sent.
    for path in [
        "/api/events",
        "/webhooks/github/svc_0000000000000000000000000000",
    ] {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\""
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stalled.push((path, stream));
    }
    let healthy = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
    for (path, mut stream) in stalled {
        let (after, received) = until_closed(&mut stream).await;
        let text = String::from_utf8_lossy(&received);
        assert!(
            after < Duration::from_secs(10),
            "{path}: the stalled connection stayed open {after:?}"
        );
        if path == "/api/events" {
            assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
            assert!(
                text.contains("\"code\":\"request_timeout\""),
                "{path}: {text}"
            );
        }
    }
}
