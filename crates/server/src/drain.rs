//! Reading past a refusal. An HTTP/1.1 client that is still sending its body when
//! the server answers and closes sees a broken pipe instead of the answer; so
//! before answering an early refusal the server reads (and discards) what remains
//! of the body, up to a bound, like most servers do.

use axum::body::Body;
use futures_util::StreamExt;
use std::time::Duration;

/// The most a refused request body is read to deliver the refusal. A larger body
/// is cut off: its client gets the connection closed.
pub const DRAIN_LIMIT: u64 = 64 << 20;
/// How long draining may take.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Reads and discards the rest of `body`, up to [`DRAIN_LIMIT`] bytes.
pub async fn drain(body: Body) {
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
pub fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Whether a body whose declared length is `declared` is worth draining.
pub fn worth_draining(declared: Option<u64>) -> bool {
    declared.is_none_or(|len| len <= DRAIN_LIMIT)
}
