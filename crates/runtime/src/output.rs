//! Bounded capture of a guest's stdout and stderr.
//!
//! Stdout is the response, so overflowing it is an error: the write traps with
//! [`OutputLimitExceeded`] and the invocation ends as [`crate::Outcome::OutputLimit`].
//! Stderr only feeds the logs, so past its limit it is truncated and the guest goes on.

use bytes::{Bytes, BytesMut};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// How large a write the guest is told it may make at once. Any value works; a
/// large one lets `fd_write` of a big buffer finish in one host call.
const WRITE_PERMIT: usize = 1 << 20;

/// Raised (as a trap) when a guest writes more stdout than its limit allows.
#[derive(Debug, thiserror::Error)]
#[error("stdout exceeded the output limit of {limit} bytes")]
pub struct OutputLimitExceeded {
    /// The limit, in bytes.
    pub limit: u64,
}

/// What happens to the bytes past the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// Trap the guest with [`OutputLimitExceeded`].
    Trap,
    /// Keep the first `limit` bytes, drop the rest, let the guest continue.
    Truncate,
}

/// One captured stream. Clones share the buffer: the store holds one, the invoker
/// keeps another to read the bytes after the guest exits.
#[derive(Clone)]
pub(crate) struct CapturedOutput {
    shared: Arc<Mutex<Captured>>,
    limit: usize,
    overflow: Overflow,
}

#[derive(Default)]
struct Captured {
    bytes: BytesMut,
    overflowed: bool,
}

impl CapturedOutput {
    pub(crate) fn new(limit: u64, overflow: Overflow) -> CapturedOutput {
        CapturedOutput {
            shared: Arc::default(),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            overflow,
        }
    }

    /// The captured bytes, and whether any were refused or dropped.
    pub(crate) fn take(&self) -> (Bytes, bool) {
        let mut captured = self.lock();
        let bytes = std::mem::take(&mut captured.bytes).freeze();
        (bytes, captured.overflowed)
    }

    fn lock(&self) -> MutexGuard<'_, Captured> {
        // The lock is never held across a panic point that could poison it in a way
        // that matters: the buffer is plain bytes, so recover it either way.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `bytes`, applying the limit. Returns the number of bytes accepted
    /// (all of them, unless the guest trapped).
    fn append(&self, bytes: &[u8]) -> Result<usize, OutputLimitExceeded> {
        let mut captured = self.lock();
        let room = self.limit.saturating_sub(captured.bytes.len());
        if bytes.len() <= room {
            captured.bytes.extend_from_slice(bytes);
            return Ok(bytes.len());
        }
        captured.overflowed = true;
        match self.overflow {
            Overflow::Trap => Err(OutputLimitExceeded {
                limit: self.limit as u64,
            }),
            Overflow::Truncate => {
                captured.bytes.extend_from_slice(&bytes[..room]);
                Ok(bytes.len())
            }
        }
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes)
            .map(drop)
            .map_err(|e| StreamError::Trap(wasmtime::Error::new(e)))
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.append(buf).map_err(std::io::Error::other))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trap_mode_refuses_the_write_that_crosses_the_limit() {
        let out = CapturedOutput::new(5, Overflow::Trap);
        assert_eq!(out.append(b"abc").unwrap(), 3);
        assert!(out.append(b"def").is_err());
        assert_eq!(out.take(), (Bytes::from_static(b"abc"), true));
    }

    #[test]
    fn truncate_mode_keeps_the_prefix_and_goes_on() {
        let out = CapturedOutput::new(5, Overflow::Truncate);
        assert_eq!(out.append(b"abc").unwrap(), 3);
        assert_eq!(out.append(b"defgh").unwrap(), 5);
        assert_eq!(out.append(b"ijk").unwrap(), 3);
        assert_eq!(out.take(), (Bytes::from_static(b"abcde"), true));
    }
}
