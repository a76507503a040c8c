//! Invocation logs, written off the request path: the invoke handler hands each
//! entry to a bounded queue and a background task writes them to the store in
//! batches (at most [`FLUSH_INTERVAL`] after they were queued). Usage is metered
//! separately ([`crate::metering`]) and is never dropped.
//!
//! Under overload the logs are *sampled*, not silently lost: an entry that
//! finds the queue full (`--log-buffer`) is dropped rather than slow a
//! request, and counted against its function; with its next batch the writer
//! appends, for each such function, one entry of outcome [`DROPPED`] that says
//! how many went (entries kept plus entries counted are the invocations).
//! Reading a function's logs first has the writer flush what is queued, so an
//! entry is there as soon as its request has answered.

use kiln_store::{MetadataStore, NewLogEntry};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

/// Entries buffered between the invoke path and the writer, by default.
pub(crate) const DEFAULT_CAPACITY: usize = 16_384;
/// Most entries written in one transaction.
const BATCH: usize = 512;
/// How long the writer gathers entries before writing a partial batch: under load
/// this turns thousands of small transactions (each an fsync) into a few.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// The outcome of the entry that counts a function's dropped entries.
pub(crate) const DROPPED: &str = "logs dropped";

enum Message {
    Entry(NewLogEntry),
    /// Write what is queued now, then answer.
    Flush(oneshot::Sender<()>),
}

/// Entries dropped since the writer last reported them: (version, count) by
/// function id.
type Dropped = Arc<Mutex<HashMap<i64, (u32, u64)>>>;

#[derive(Clone)]
pub(crate) struct LogSink {
    tx: mpsc::Sender<Message>,
    /// Wakes a writer gathering a batch: a flush waits in the queue.
    flush_wanted: Arc<Notify>,
    dropped: Arc<AtomicU64>,
    unreported: Dropped,
}

impl LogSink {
    /// Starts the writer with room for `capacity` queued entries. It ends,
    /// after writing everything queued, once every `LogSink` clone is
    /// dropped; await the handle to flush on shutdown.
    pub(crate) fn start(
        store: Arc<dyn MetadataStore>,
        capacity: usize,
    ) -> (LogSink, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let unreported = Dropped::default();
        let flush_wanted = Arc::new(Notify::new());
        let writer = tokio::spawn(write(store, rx, unreported.clone(), flush_wanted.clone()));
        let sink = LogSink {
            tx,
            flush_wanted,
            dropped: Arc::default(),
            unreported,
        };
        (sink, writer)
    }

    /// Entries dropped so far because the writer was behind.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues an entry without waiting; counts it against its function if the
    /// queue is full.
    pub(crate) fn record(&self, entry: NewLogEntry) {
        let Err(full) = self.tx.try_send(Message::Entry(entry)) else {
            return;
        };
        let (mpsc::error::TrySendError::Full(Message::Entry(entry))
        | mpsc::error::TrySendError::Closed(Message::Entry(entry))) = full
        else {
            return;
        };
        {
            let mut unreported = self.unreported.lock().unwrap_or_else(|p| p.into_inner());
            let counted = unreported.entry(entry.function_id).or_insert((0, 0));
            *counted = (entry.version, counted.1 + 1);
        }
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(
                dropped = n,
                "log writer is behind; dropping invocation logs (counted per function)"
            );
        }
    }

    /// Has the writer write every entry queued so far; gives up waiting after
    /// `within` (the entries are written later all the same).
    pub(crate) async fn flush(&self, within: Duration) {
        let (done, written) = oneshot::channel();
        let flushed = async {
            if self.tx.send(Message::Flush(done)).await.is_ok() {
                self.flush_wanted.notify_one();
                let _ = written.await;
            }
        };
        if tokio::time::timeout(within, flushed).await.is_err() {
            tracing::debug!("the log writer did not flush in time");
        }
    }
}

/// The writer task: batches entries, writes them with the dropped counts.
///
/// The first entry of a batch wakes it; then it sleeps until the batch's
/// deadline (or a flush) and takes what queued meanwhile, instead of being
/// woken by every entry: a wake-up per request would cost the request path.
async fn write(
    store: Arc<dyn MetadataStore>,
    mut rx: mpsc::Receiver<Message>,
    unreported: Dropped,
    flush_wanted: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut waiting = Vec::new();
    let mut messages = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut messages, BATCH).await > 0 {
        let deadline = tokio::time::Instant::now() + FLUSH_INTERVAL;
        loop {
            for message in messages.drain(..) {
                match message {
                    Message::Entry(entry) => batch.push(entry),
                    Message::Flush(done) => waiting.push(done),
                }
            }
            if batch.len() >= BATCH || !waiting.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = flush_wanted.notified() => {}
            }
            let room = BATCH - batch.len();
            while messages.len() < room
                && let Ok(message) = rx.try_recv()
            {
                messages.push(message);
            }
        }
        batch.extend(dropped_entries(&unreported));
        if !batch.is_empty()
            && let Err(e) = store.append_logs(std::mem::take(&mut batch)).await
        {
            tracing::error!(error = %e, "cannot write invocation logs");
        }
        batch.clear();
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

/// One entry per function whose entries were dropped since the last batch.
fn dropped_entries(unreported: &Dropped) -> Vec<NewLogEntry> {
    let counts = std::mem::take(&mut *unreported.lock().unwrap_or_else(|p| p.into_inner()));
    let at = kiln_store::now();
    counts
        .into_iter()
        .map(|(function_id, (version, count))| NewLogEntry {
            function_id,
            version,
            at,
            outcome: DROPPED.to_owned(),
            status: 0,
            stderr: format!(
                "{count} invocation log entries dropped: the log writer was behind \
                 (their usage is metered all the same)"
            ),
            ..Default::default()
        })
        .collect()
}
