//! The epoch ticker: a thread that advances every engine's epoch once a tick
//! (the pace of wall-time limits, of scratch-directory checks and of the CPU
//! shares, whose balancer it also runs) — while a guest lives. With no store
//! alive there is nothing to interrupt and nothing to balance, so it parks
//! instead of waking 500 times a second (about 1.2% of a core, idle, on the
//! benchmark machine); the first store made wakes it ([`Awake::guest`]).
//!
//! No store is missed: a store counts itself in (`live`, sequentially
//! consistent) and then reads `parked`; the ticker sets `parked` and then reads
//! `live` before it parks. Whichever comes second in that total order sees the
//! other: either the ticker sees the store and keeps ticking, or the store sees
//! the ticker parked and unparks it (an unpark before the park makes the park
//! return at once). A store made while the ticker slept gets its first tick
//! within one tick of the wake-up, as one made while it ran does.

use crate::cpu_share::CpuShares;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;
use wasmtime::Engine;

/// Whether the ticker must run: the guest stores alive, and whether it sleeps.
#[derive(Default)]
pub(crate) struct Awake {
    live: AtomicUsize,
    parked: AtomicBool,
    thread: OnceLock<Thread>,
}

/// A guest store's place in [`Awake`]: counted while it lives (the store's
/// host holds it), so that the ticker runs.
pub(crate) struct LiveGuest(Arc<Awake>);

impl Awake {
    /// Counts a new guest store in, waking the ticker if it sleeps.
    pub(crate) fn guest(self: &Arc<Self>) -> LiveGuest {
        self.live.fetch_add(1, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst)
            && let Some(thread) = self.thread.get()
        {
            thread.unpark();
        }
        LiveGuest(self.clone())
    }

    /// Guest stores alive now.
    #[cfg(test)]
    fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

impl Drop for LiveGuest {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Advances the engines' epochs every tick while a guest lives, and balances
/// the tenants' shares of CPU, until dropped. The thread holds the engines
/// alive; dropping the ticker stops it within one tick.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    awake: Arc<Awake>,
}

impl EpochTicker {
    pub(crate) fn start(
        engines: Vec<Engine>,
        tick: Duration,
        shares: Arc<CpuShares>,
        awake: Arc<Awake>,
    ) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let state = awake.clone();
        std::thread::Builder::new()
            .name("kiln-epoch".into())
            .spawn(move || {
                // Known before this thread first parks: whoever sees it parked
                // can wake it.
                state.thread.get_or_init(std::thread::current);
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                    shares.balance();
                    if state.live.load(Ordering::SeqCst) == 0 {
                        state.parked.store(true, Ordering::SeqCst);
                        // Parks only if still nothing lives; a wake-up for
                        // another reason (or none) just goes round again.
                        if state.live.load(Ordering::SeqCst) == 0
                            && !stopped.load(Ordering::Relaxed)
                        {
                            std::thread::park();
                        }
                        state.parked.store(false, Ordering::SeqCst);
                    }
                }
            })?;
        Ok(EpochTicker { stop, awake })
    }

    /// Whether the ticker sleeps now (nothing to tick for).
    #[cfg(test)]
    fn parked(&self) -> bool {
        self.awake.parked.load(Ordering::SeqCst)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.awake.thread.get() {
            thread.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Waits until `condition` holds, for at most 5 s.
    fn eventually(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !condition() {
            assert!(Instant::now() < deadline, "never: {what}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn the_ticker_sleeps_while_no_guest_lives_and_ticks_for_one() {
        let engine = Engine::new(wasmtime::Config::new().epoch_interruption(true)).expect("engine");
        let awake = Arc::new(Awake::default());
        let shares = Arc::new(CpuShares::new(1, Duration::from_millis(1)));
        let ticker = EpochTicker::start(
            vec![engine.clone()],
            Duration::from_millis(1),
            shares,
            awake.clone(),
        )
        .expect("ticker");
        eventually("the idle ticker parks", || ticker.parked());

        // A store whose deadline is one tick away: it traps only if the
        // epoch advances, that is if the store woke the ticker.
        let guest = awake.guest();
        assert_eq!(awake.live(), 1);
        let module =
            wasmtime::Module::new(&engine, "(module (func (export \"spin\") (loop (br 0))))")
                .expect("module");
        let mut store = wasmtime::Store::new(&engine, ());
        store.set_epoch_deadline(1);
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).expect("instance");
        let spin = instance
            .get_typed_func::<(), ()>(&mut store, "spin")
            .expect("spin");
        let trap = spin.call(&mut store, ()).expect_err("interrupted");
        assert_eq!(
            trap.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::Interrupt)
        );

        drop(guest);
        assert_eq!(awake.live(), 0);
        eventually("the ticker parks again", || ticker.parked());
    }
}
