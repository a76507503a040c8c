//! Request bodies as every handler reads them: their declared length, the stall
//! timeout that cuts off a client that stops sending, and reading past a refusal.
//!
//! An HTTP/1.1 client that is still sending its body when the server answers and
//! closes sees a broken pipe instead of the answer; so before answering an early
//! refusal the server reads (and discards) what remains of the body, up to a
//! bound, like most servers do.

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Sleep;

/// The most a refused request body is read to deliver the refusal. A larger body
/// is cut off: its client gets the connection closed.
pub(crate) const DRAIN_LIMIT: u64 = 64 << 20;
/// How long draining may take.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Reads and discards the rest of `body`, up to [`DRAIN_LIMIT`] bytes.
pub(crate) async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let read = async {
        let mut seen = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len() as u64;
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read).await;
}

/// The request's `Content-Length`, if it has a valid one.
pub(crate) fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Whether a body whose declared length is `declared` is worth draining.
pub(crate) fn worth_draining(declared: Option<u64>) -> bool {
    declared.is_none_or(|len| len <= DRAIN_LIMIT)
}

/// A request body stopped arriving for longer than the body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no request body data for {}", humantime::format_duration(*.0))]
pub(crate) struct BodyStalled(Duration);

/// If `error` (from reading a request body) is a stall, the stall.
pub(crate) fn stalled<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyStalled> {
    std::iter::successors(Some(error), |e| e.source()).find_map(|e| e.downcast_ref())
}

/// A request body that fails with [`BodyStalled`] when its reader waits longer
/// than `timeout` for the next frame. The clock runs only while someone waits:
/// a body nobody reads does not time out.
pub(crate) struct StallTimeout {
    inner: Incoming,
    timeout: Duration,
    waiting: Option<Pin<Box<Sleep>>>,
}

impl StallTimeout {
    pub(crate) fn new(inner: Incoming, timeout: Duration) -> Self {
        StallTimeout {
            inner,
            timeout,
            waiting: None,
        }
    }
}

impl http_body::Body for StallTimeout {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            self.waiting = None;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let timeout = self.timeout;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(waiting.as_mut().poll(cx));
        Poll::Ready(Some(Err(BodyStalled(timeout).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
