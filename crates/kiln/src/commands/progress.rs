//! What `kiln deploy` shows on a terminal while it uploads and the server
//! works: nothing for the first second, then one line refreshed twice a second.

use kiln_api::ByteCount;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// An upload body that counts the bytes read from it.
pub(crate) struct Counted<R> {
    inner: R,
    sent: Arc<AtomicU64>,
}

impl<R> Counted<R> {
    /// `inner`, counted; and the count.
    pub(crate) fn new(inner: R) -> (Counted<R>, Arc<AtomicU64>) {
        let sent = Arc::new(AtomicU64::new(0));
        (
            Counted {
                inner,
                sent: sent.clone(),
            },
            sent,
        )
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A line on stderr, refreshed twice a second after the first second: the
/// upload's progress, then how long the server has been at `after` (compiling,
/// checking) since the upload ended.
pub(crate) struct Progress {
    done: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<bool>,
}

impl Progress {
    pub(crate) fn start(sent: Arc<AtomicU64>, total: u64, after: &'static str) -> Progress {
        let (done, stop) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut uploaded_at = None;
            let mut shown = false;
            loop {
                let wait = if shown { 500 } else { 1000 };
                if stop.recv_timeout(Duration::from_millis(wait)).is_ok() {
                    return shown;
                }
                let bytes = sent.load(Ordering::Relaxed);
                let line = if bytes < total {
                    let percent = bytes * 100 / total.max(1);
                    format!("uploading {percent:3}% of {}", ByteCount(total))
                } else {
                    let since = *uploaded_at.get_or_insert_with(Instant::now);
                    format!(
                        "uploaded {} in {:.1} s; {after}... {:.0} s",
                        ByteCount(total),
                        since.duration_since(started).as_secs_f64(),
                        since.elapsed().as_secs_f64()
                    )
                };
                eprint!("\r{line:<60}");
                shown = true;
            }
        });
        Progress { done, thread }
    }

    /// Stops the line, leaving the terminal on a fresh one.
    pub(crate) fn stop(self) {
        let _ = self.done.send(());
        if self.thread.join().unwrap_or(false) {
            eprintln!();
        }
    }
}
