//! Request bodies that stall: a body that sends nothing for `http.body_idle_timeout_ms`, or
//! takes longer than `http.body_read_timeout_ms` in all, ends in an error that handlers answer
//! with 408, and the connection is closed (its body was not read to the end).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Why a body was cut off.
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled: nothing arrived for too long")]
pub struct BodyTimedOut;

/// A request body under an idle timeout and an overall deadline.
pub struct TimedBody<B> {
    inner: B,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    deadline: Pin<Box<Sleep>>,
    timed_out: bool,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, idle: Duration, total: Duration) -> TimedBody<B> {
        let now = Instant::now();
        TimedBody {
            inner,
            idle,
            idle_timer: Box::pin(tokio::time::sleep_until(now + idle)),
            deadline: Box::pin(tokio::time::sleep_until(now + total)),
            timed_out: false,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            let next = Instant::now() + this.idle;
            this.idle_timer.as_mut().reset(next);
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if this.idle_timer.as_mut().poll(cx).is_ready()
            || this.deadline.as_mut().poll(cx).is_ready()
        {
            this.timed_out = true;
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `error` (or one of its causes) is a stalled body.
pub fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<BodyTimedOut>() {
            return true;
        }
        cause = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    /// A body fed chunk by chunk from a channel; it ends when the sender is dropped.
    struct Fed(mpsc::Receiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
        }
    }

    fn fed_every(gap: Duration, chunks: usize) -> Fed {
        let (sender, receiver) = mpsc::channel(1);
        tokio::spawn(async move {
            for _ in 0..chunks {
                tokio::time::sleep(gap).await;
                if sender.send(Bytes::from_static(b"ab")).await.is_err() {
                    return;
                }
            }
        });
        Fed(receiver)
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_sends_nothing_times_out() {
        let (_sender, receiver) = mpsc::channel(1);
        let timed = TimedBody::new(
            Fed(receiver),
            Duration::from_secs(1),
            Duration::from_secs(60),
        );
        let error = timed.collect().await.expect_err("timed out");
        assert!(timed_out(error.as_ref()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_sending_is_read_whole() {
        let body = fed_every(Duration::from_millis(800), 5);
        let timed = TimedBody::new(body, Duration::from_secs(1), Duration::from_secs(60));
        let bytes = timed.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_past_its_deadline_times_out() {
        let body = fed_every(Duration::from_millis(500), 1_000);
        let timed = TimedBody::new(body, Duration::from_secs(1), Duration::from_secs(3));
        let error = timed.collect().await.expect_err("timed out");
        assert!(timed_out(error.as_ref()));
    }
}
