//! The outbound HTTP client and one delivery attempt: connection reuse, a hard timeout, no proxy,
//! no redirects, the SSRF-guarded resolver, and a bounded read of the answer.

use std::error::Error as StdError;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use url::Url;

use super::retry::parse_retry_after;
use super::ssrf::{Blocked, DnsFailure, GuardedResolver, Policy};
use crate::config::DeliveryConfig;

/// The most of a response body kept in an attempt's history.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Dns,
    Connect,
    Tls,
    Timeout,
    SsrfBlocked,
    HttpStatus,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Dns => "dns",
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::SsrfBlocked => "ssrf_blocked",
            ErrorKind::HttpStatus => "http_status",
        }
    }
}

/// What one attempt found out.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub error: Option<(ErrorKind, String)>,
    pub duration: Duration,
    /// The receiver's `Retry-After`, on 429 and 503.
    pub retry_after: Option<Duration>,
}

impl AttemptOutcome {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }

    pub fn gone(&self) -> bool {
        self.status == Some(410)
    }

    fn failed(kind: ErrorKind, message: String, started: Instant) -> AttemptOutcome {
        AttemptOutcome {
            status: None,
            response_headers: Vec::new(),
            body: None,
            error: Some((kind, message)),
            duration: started.elapsed(),
            retry_after: None,
        }
    }
}

/// Installs the TLS crypto provider (ring) for this process; every HTTP client needs it first.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only when the embedding program installed a provider first; that one is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The client every outbound attempt uses.
pub fn build(config: &DeliveryConfig, policy: Arc<Policy>) -> anyhow::Result<reqwest::Client> {
    install_crypto_provider();
    let timeout = Duration::from_millis(config.timeout_ms);
    Ok(reqwest::Client::builder()
        .user_agent(format!("Hookline/{}", env!("CARGO_PKG_VERSION")))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(usize::try_from(config.endpoint_concurrency).unwrap_or(8) * 2)
        .tcp_nodelay(true)
        .dns_resolver(Arc::new(GuardedResolver { policy }))
        .build()?)
}

fn find_in_chain<'e, T: StdError + 'static>(error: &'e (dyn StdError + 'static)) -> Option<&'e T> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

fn classify(error: &reqwest::Error) -> (ErrorKind, String) {
    if let Some(blocked) = find_in_chain::<Blocked>(error) {
        return (ErrorKind::SsrfBlocked, blocked.to_string());
    }
    if let Some(failure) = find_in_chain::<DnsFailure>(error) {
        return (ErrorKind::Dns, failure.to_string());
    }
    if error.is_timeout() {
        return (
            ErrorKind::Timeout,
            "the receiver did not answer in time".to_owned(),
        );
    }
    if let Some(tls) = find_in_chain::<rustls::Error>(error) {
        return (ErrorKind::Tls, format!("TLS: {tls}"));
    }
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    (ErrorKind::Connect, message)
}

/// Bytes as text that every backend can store: invalid UTF-8 and NUL become U+FFFD.
pub fn storable_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\u{fffd}")
}

/// Sends one attempt: checks the URL's host first (IP literals never reach the resolver), then
/// posts `body` with `headers` and reads at most [`MAX_RESPONSE_BODY`] of the answer.
pub async fn attempt(
    client: &reqwest::Client,
    policy: &Policy,
    url: &Url,
    headers: HeaderMap,
    body: Bytes,
) -> AttemptOutcome {
    let started = Instant::now();
    if let Err(blocked) = policy.check_url_host(url) {
        return AttemptOutcome::failed(ErrorKind::SsrfBlocked, blocked.to_string(), started);
    }
    let mut response = match client
        .post(url.clone())
        .headers(headers)
        .body(body)
        .send()
        .await
    {
        Ok(response) => response,
        Err(error) => {
            let (kind, message) = classify(&error);
            return AttemptOutcome::failed(kind, message, started);
        }
    };
    let status = response.status();
    let response_headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), storable_text(value.as_bytes())))
        .collect();
    let retry_after = matches!(status.as_u16(), 429 | 503)
        .then(|| response.headers().get(RETRY_AFTER))
        .flatten()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, SystemTime::now()));
    // The status decides the outcome; a body that breaks off mid-way only shortens what is kept.
    let mut kept = Vec::new();
    while kept.len() < MAX_RESPONSE_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BODY - kept.len();
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let error = (!status.is_success()).then(|| {
        (
            ErrorKind::HttpStatus,
            format!("the receiver answered {status}"),
        )
    });
    AttemptOutcome {
        status: Some(status.as_u16()),
        response_headers,
        body: Some(storable_text(&kept)),
        error,
        duration: started.elapsed(),
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_answers_become_storable_text() {
        assert_eq!(storable_text(b"ok\x00\xff!"), "ok\u{fffd}\u{fffd}!");
    }
}
