//! A local HTTP receiver that records every request it gets and answers as told: a fixed status,
//! a script of answers (status and headers) consumed in order, and an optional delay.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::IntoResponse;

/// One request as the receiver got it, bytes untouched.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_else(|| panic!("no header {name} in {:?}", self.headers))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// An answer: status and extra headers.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: Vec::new(),
            body: "ok".to_owned(),
        }
    }

    pub fn with_body(mut self, body: &str) -> Answer {
        self.body = body.to_owned();
        self
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Answer {
        self.headers.push((name, value.to_owned()));
        self
    }
}

#[derive(Default)]
struct Inner {
    received: Mutex<Vec<Received>>,
    default: Mutex<Option<Answer>>,
    script: Mutex<VecDeque<Answer>>,
    delay: Mutex<Duration>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A receiver on a random loopback port; it stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .fallback(record)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, inner, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answer every request with `status` from now on (200 by default).
    pub fn respond_with(&self, status: StatusCode) {
        *self.inner.default.lock().unwrap() = Some(Answer {
            status,
            headers: Vec::new(),
            body: "ok".to_owned(),
        });
    }

    /// Answer every request with this answer from now on.
    pub fn answer_with(&self, answer: Answer) {
        *self.inner.default.lock().unwrap() = Some(answer);
    }

    /// Answer the next requests with these, in order, then go back to the default.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.inner.script.lock().unwrap().extend(answers);
    }

    /// Hold every request this long before answering.
    pub fn delay(&self, delay: Duration) {
        *self.inner.delay.lock().unwrap() = delay;
    }

    /// The most requests this receiver was handling at once.
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }

    /// The `data.invoice_id` of every event received so far (the test events carry one).
    pub fn invoice_ids(&self) -> std::collections::BTreeSet<String> {
        self.received()
            .iter()
            .map(|request| {
                request.json()["data"]["invoice_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests arrived, or panics after `deadline`.
    pub async fn wait_for(&self, count: usize, deadline: Duration) -> Vec<Received> {
        super::eventually(
            deadline,
            &format!("{count} request(s) at the receiver"),
            || {
                let received = self.received();
                async move { (received.len() >= count).then_some(received) }
            },
        )
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let now_in_flight = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    inner
        .max_in_flight
        .fetch_max(now_in_flight, Ordering::SeqCst);
    inner.received.lock().unwrap().push(Received {
        method,
        path: uri.path().to_owned(),
        headers,
        body,
        at: Instant::now(),
    });
    let delay = *inner.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let answer = inner
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| inner.default.lock().unwrap().clone())
        .unwrap_or_else(|| Answer::status(200));
    inner.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut response_headers = HeaderMap::new();
    for (name, value) in answer.headers {
        response_headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    (answer.status, response_headers, answer.body)
}
