//! Metering: every invocation that ran becomes a usage record, added at once to
//! in-memory totals per tenant × function × hour; a background task writes those
//! totals to the store every flush interval (1 s by default) in one transaction.
//!
//! The invoke path only takes a short lock; it never waits on the database. A
//! flush that fails puts its totals back to be written next time. Shutdown
//! flushes everything after the last request has finished, so a SIGTERM loses
//! nothing; a `kill -9` loses at most what was recorded since the last flush.
//!
//! The same task meters stored key-value data: every storage interval (1 min
//! by default) it has the store keep, for the current hour, the most bytes each
//! tenant stores (`KvStore::kv_meter_storage`; idempotent, so every node of a
//! cluster doing it counts once).

use kiln_api::{TenantId, UsageTotals, hour_of};
use kiln_runtime::Stats;
use kiln_store::{KvStore, MetadataStore, UsageDelta, now};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The usage of one invocation.
pub(crate) fn totals_of(stats: &Stats, success: bool) -> UsageTotals {
    let wall_us = micros(stats.wall);
    UsageTotals {
        requests: 1,
        failures: u64::from(!success),
        wall_us,
        cpu_us: micros(stats.cpu),
        instantiation_us: micros(stats.instantiation),
        memory_kib_us: (stats.peak_memory_bytes / 1024).saturating_mul(wall_us),
        peak_memory_bytes: stats.peak_memory_bytes,
        bytes_in: stats.bytes_in,
        bytes_out: stats.bytes_out,
        kv_reads: stats.kv_reads,
        kv_writes: stats.kv_writes,
        kv_byte_hours: 0,
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Totals not yet written, by (function id, hour).
#[derive(Default)]
struct Pending {
    totals: HashMap<(i64, i64), UsageDelta>,
    /// When the oldest of them was recorded.
    since: Option<Instant>,
}

pub(crate) struct Meter {
    pending: Mutex<Pending>,
    flush_failures: AtomicU64,
}

impl Meter {
    /// Starts the flusher, writing every `interval`. Send `true` on the returned
    /// handle's channel, then await it, to flush the rest and stop.
    pub(crate) fn start(
        store: Arc<dyn MetadataStore>,
        kv: Arc<dyn KvStore>,
        interval: Duration,
        storage_interval: Duration,
    ) -> (Arc<Meter>, Flusher) {
        let meter = Arc::new(Meter {
            pending: Mutex::default(),
            flush_failures: AtomicU64::new(0),
        });
        let (stop, mut stopped) = watch::channel(false);
        let flushing = meter.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut storage_ticks = tokio::time::interval(storage_interval);
            storage_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => flushing.flush(&*store).await,
                    _ = storage_ticks.tick() => meter_storage(&*kv).await,
                    _ = stopped.changed() => break,
                }
            }
            flushing.flush(&*store).await;
        });
        (meter, Flusher { stop, task })
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds one invocation's usage to its tenant × function × hour.
    pub(crate) fn record(
        &self,
        tenant_id: TenantId,
        function_id: i64,
        function: &str,
        usage: &UsageTotals,
    ) {
        let hour = hour_of(now());
        let mut pending = self.lock();
        pending.since.get_or_insert_with(Instant::now);
        pending
            .totals
            .entry((function_id, hour))
            .or_insert_with(|| UsageDelta {
                tenant_id,
                function: function.to_owned(),
                hour,
                totals: UsageTotals::default(),
            })
            .totals
            .add(usage);
    }

    /// How long the oldest unwritten record has waited (zero when none waits).
    pub(crate) fn flush_lag(&self) -> Duration {
        self.lock().since.map(|t| t.elapsed()).unwrap_or_default()
    }

    pub(crate) fn flush_failures(&self) -> u64 {
        self.flush_failures.load(Ordering::Relaxed)
    }

    async fn flush(&self, store: &dyn MetadataStore) {
        let (batch, since) = {
            let mut pending = self.lock();
            (std::mem::take(&mut pending.totals), pending.since.take())
        };
        if batch.is_empty() {
            return;
        }
        let deltas: Vec<UsageDelta> = batch.values().cloned().collect();
        if let Err(e) = store.add_usage(deltas).await {
            self.flush_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "cannot write usage; keeping it for the next flush");
            let mut pending = self.lock();
            for (key, delta) in batch {
                match pending.totals.get_mut(&key) {
                    Some(newer) => newer.totals.add(&delta.totals),
                    None => {
                        pending.totals.insert(key, delta);
                    }
                }
            }
            pending.since = match (since, pending.since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
}

/// Records the data each tenant stores now against the current hour.
async fn meter_storage(kv: &dyn KvStore) {
    if let Err(e) = kv.kv_meter_storage(hour_of(now())).await {
        tracing::error!(error = %e, "cannot meter stored key-value data; trying again later");
    }
}

/// The flusher task of a [`Meter`].
pub(crate) struct Flusher {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Flusher {
    /// Writes everything recorded so far, then stops.
    pub(crate) async fn finish(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the usage flusher failed");
        }
    }
}
