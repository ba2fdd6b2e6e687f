//! The HTTP/1 server loop under the router: at most `http.max_connections` connections at once
//! (more wait in the listen queue), a connection that does not send a whole request head within
//! `http.header_read_timeout_ms` is closed (a slow or silent client, or an idle kept-alive one),
//! a request body that stalls is cut off ([`super::body_timeout`]), and a graceful shutdown that
//! stops accepting, lets requests in flight finish and closes idle connections.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use tower::ServiceExt;

use super::body_timeout::TimedBody;
use crate::config::HttpConfig;

/// Serves `router` on `listener` until `shutdown` is cancelled and every connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    http: &HttpConfig,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(http.max_connections.max(1)));
    let header_timeout = Duration::from_millis(http.header_read_timeout_ms);
    let body_idle = Duration::from_millis(http.body_idle_timeout_ms);
    let body_total = Duration::from_millis(http.body_read_timeout_ms);
    let timed_bodies = move |request: hyper::Request<hyper::body::Incoming>| {
        request.map(|body| TimedBody::new(body, body_idle, body_total))
    };
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true)
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(router.clone().map_request(timed_bodies)),
            );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
