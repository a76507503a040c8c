//! Invocation logs, written off the request path: the invoke handler hands each
//! entry to a bounded channel and a background task writes them to the store in
//! batches (at most [`FLUSH_INTERVAL`] after they were queued). A full channel drops
//! the entry (counted) rather than slow a request. Usage is metered separately
//! ([`crate::metering`]) and is never dropped.

use kiln_store::{MetadataStore, NewLogEntry};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Entries buffered between the invoke path and the writer.
const CAPACITY: usize = 16_384;
/// Most entries written in one transaction.
const BATCH: usize = 512;
/// How long the writer gathers entries before writing a partial batch: under load
/// this turns thousands of small transactions (each an fsync) into a few.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub(crate) struct LogSink {
    tx: mpsc::Sender<NewLogEntry>,
    dropped: Arc<AtomicU64>,
}

impl LogSink {
    /// Starts the writer. It ends, after writing everything queued, once every
    /// `LogSink` clone is dropped; await the handle to flush on shutdown.
    pub(crate) fn start(store: Arc<dyn MetadataStore>) -> (LogSink, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel(CAPACITY);
        let writer = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let deadline = tokio::time::Instant::now() + FLUSH_INTERVAL;
                while batch.len() < BATCH {
                    let room = BATCH - batch.len();
                    let more = rx.recv_many(&mut batch, room);
                    match tokio::time::timeout_at(deadline, more).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                if let Err(e) = store.append_logs(std::mem::take(&mut batch)).await {
                    tracing::error!(error = %e, "cannot write invocation logs");
                }
            }
        });
        let sink = LogSink {
            tx,
            dropped: Arc::default(),
        };
        (sink, writer)
    }

    /// Entries dropped so far because the writer was behind.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues an entry without waiting.
    pub(crate) fn record(&self, entry: NewLogEntry) {
        if self.tx.try_send(entry).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "log writer is behind; dropping invocation logs"
                );
            }
        }
    }
}
