//! Fair shares of CPU between tenants: when the machine is saturated, each
//! tenant with work gets its weighted share of the cores, enforced where guests
//! yield (the epoch ticks); a tenant alone gets the whole machine.
//!
//! The server hands every invocation its tenant's [`CpuShare`] (one per tenant,
//! from [`CpuShares::share`]). Guests charge it the CPU time of each poll
//! (measured by `cpu_time::MeasureCpu`) and count their calls. The **balancer**
//! runs on the epoch thread at every tick:
//!
//! 1. Each tracked tenant's usage over the tick is its guests' CPU time plus a
//!    part of the server's own work (the process's CPU time not spent in guests:
//!    parsing, answering, metering), divided by the calls each made, refused
//!    ones included ([`TenantCpu::refused`]). A smoothed rate, in cores,
//!    follows ([`SMOOTHING`]).
//! 2. A tenant is *active* if it used CPU, started a call or had a guest
//!    waiting within [`ACTIVE_WINDOW`]. With one active tenant or none, nobody is
//!    limited: a tenant alone gets the whole machine.
//! 3. What a tenant wants is its *reserve*: [`GROWTH`] times its usage while
//!    it uses at least half of the reserve (a tenant of short requests held
//!    back by a neighbour never waits at a tick, so its usage is only what the
//!    neighbour leaves it), else sinking to [`HEADROOM`] times its usage over
//!    [`RELEASE`].
//! 4. With several active tenants the *capacity* (the process's CPU time plus
//!    the machine's idle time, at most the configured cores: what other
//!    processes leave) is water-filled by weight: tenants whose reserve fits
//!    in their weighted share of what is left keep it; the rest split the
//!    remainder by weight and are *limited* to that allowance, which, less the
//!    server's work for their refused calls, refills a budget of CPU time at
//!    every tick (at most [`BURST_TICKS`] ticks' worth banked).
//!
//! At an epoch tick, a guest of a limited tenant whose budget is spent *waits*
//! (its instance suspended, its thread free for others) until the next refill;
//! it is delayed, never failed (its wall-time limit still runs). Guests that
//! end before a tick (most requests) are never delayed, only counted. The
//! per-request cost is three relaxed atomic additions; the balancer's is a
//! read of the process CPU clock and a pass over the tenants seen lately, and
//! every 50 ms a read of `/proc/stat`'s first line.

mod capacity;

use crate::cpu_time::{ChargeCpu, process_cpu_time};
use capacity::Capacity;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// How long a tenant counts as having work after its last sign of it.
pub(crate) const ACTIVE_WINDOW: Duration = Duration::from_millis(20);

/// How quickly the usage rate follows a change (the time constant of its
/// exponential smoothing).
pub(crate) const SMOOTHING: Duration = Duration::from_millis(20);

/// A tenant that uses less than its share is set aside this much more than it
/// used (times its usage), so that it can grow before it is limited.
pub(crate) const HEADROOM: f64 = 1.25;

/// A tenant that uses at least half of what is set aside for it may be held
/// back by its neighbours (a tenant of short requests never waits at a tick,
/// but its requests queue behind theirs): what is set aside for it grows to
/// this many times its usage, up to its share.
pub(crate) const GROWTH: f64 = 2.0;

/// What is set aside for a tenant shrinks towards what it uses with this
/// time constant (it grows at once).
pub(crate) const RELEASE: Duration = Duration::from_millis(500);

/// A limited tenant banks at most this many ticks of its allowance.
pub(crate) const BURST_TICKS: u32 = 2;

/// A limited tenant's guests may run at least this part of its allowance,
/// whatever the server's work for its refused calls takes of the rest.
const GUEST_FLOOR: f64 = 0.1;

/// How long a tenant with no activity stays tracked.
const FORGET_AFTER: Duration = Duration::from_secs(2);

/// One tenant's handle: what its guests charge and check.
pub type CpuShare = Arc<TenantCpu>;

/// The shares of one process: the registry of tenants and the balancer.
pub struct CpuShares {
    cores: f64,
    tick: Duration,
    registry: Mutex<HashMap<u64, Weak<TenantCpu>>>,
    /// Tenants that became active since the balancer last looked.
    arrivals: Arc<Mutex<Vec<CpuShare>>>,
    balancer: Mutex<Balancer>,
    delays: Arc<AtomicU64>,
}

/// One tenant's CPU account.
pub struct TenantCpu {
    key: u64,
    weight: AtomicU32,
    /// Guest CPU time charged so far, in nanoseconds.
    used_ns: AtomicU64,
    /// Invocations started so far, and calls refused.
    calls: AtomicU64,
    /// Calls refused so far.
    refusals: AtomicU64,
    /// What a limited tenant may still run before the next refill.
    budget_ns: AtomicI64,
    limited: AtomicBool,
    /// The balancer tracks it (else its next call lists it).
    listed: AtomicBool,
    /// Guests running now (waiting ones included).
    in_flight: AtomicU32,
    /// Guests waiting for their turn now.
    waiting: AtomicU32,
    delays: AtomicU64,
    turn: tokio::sync::Notify,
    arrivals: Arc<Mutex<Vec<CpuShare>>>,
    all_delays: Arc<AtomicU64>,
}

impl std::fmt::Debug for TenantCpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantCpu")
            .field("key", &self.key)
            .field("weight", &self.weight.load(Ordering::Relaxed))
            .field("limited", &self.limited.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What the balancer keeps of one tenant between ticks.
struct Tracked {
    share: CpuShare,
    used_ns: u64,
    calls: u64,
    /// Smoothed usage, in cores.
    usage: f64,
    /// Refused calls counted so far (a part of `calls`).
    refusals: u64,
    /// The part of its usage that is the server's work for calls it was
    /// refused: no tick holds that back (the work for admitted calls waits
    /// with their guests), so it comes off a limited tenant's guest budget.
    refused_usage: f64,
    /// What is set aside for it when others want more, in cores.
    reserve: f64,
    /// Its allowance when limited, in cores.
    allowance: f64,
    last_active: Instant,
}

struct Balancer {
    tracked: HashMap<u64, Tracked>,
    at: Instant,
    process_cpu: Duration,
    capacity: Capacity,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl CpuShares {
    /// Shares of at most `cores` cores (fewer when other processes take
    /// part of them: the capacity, measured), balanced every `tick`.
    pub fn new(cores: usize, tick: Duration) -> CpuShares {
        let cores = cores.max(1) as f64;
        CpuShares {
            cores,
            tick,
            registry: Mutex::default(),
            arrivals: Arc::default(),
            balancer: Mutex::new(Balancer {
                tracked: HashMap::new(),
                at: Instant::now(),
                process_cpu: process_cpu_time(),
                capacity: Capacity::new(cores),
            }),
            delays: Arc::default(),
        }
    }

    /// The account of tenant `key` (the same one for every caller while any
    /// holds it).
    pub fn share(&self, key: u64) -> CpuShare {
        let mut registry = lock(&self.registry);
        if let Some(share) = registry.get(&key).and_then(Weak::upgrade) {
            return share;
        }
        registry.retain(|_, share| share.strong_count() > 0);
        let share = Arc::new(TenantCpu {
            key,
            weight: AtomicU32::new(kiln_api::DEFAULT_CPU_WEIGHT),
            used_ns: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            budget_ns: AtomicI64::new(0),
            limited: AtomicBool::new(false),
            listed: AtomicBool::new(false),
            in_flight: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            delays: AtomicU64::new(0),
            turn: tokio::sync::Notify::new(),
            arrivals: self.arrivals.clone(),
            all_delays: self.delays.clone(),
        });
        registry.insert(key, Arc::downgrade(&share));
        share
    }

    /// Times any guest waited for its tenant's turn.
    pub fn delays(&self) -> u64 {
        self.delays.load(Ordering::Relaxed)
    }

    /// Tenants limited to their share now.
    pub fn limited(&self) -> usize {
        lock(&self.balancer)
            .tracked
            .values()
            .filter(|t| t.share.limited.load(Ordering::Relaxed))
            .count()
    }

    /// The cores the shares divide now (measured: this process's CPU time
    /// plus the machine's idle time, at most the configured cores).
    pub fn capacity(&self) -> f64 {
        lock(&self.balancer).capacity.now
    }

    /// One round of the balancer (the epoch thread calls it at every tick).
    pub(crate) fn balance(&self) {
        let now = Instant::now();
        let mut balancer = lock(&self.balancer);
        let arrived: Vec<CpuShare> = std::mem::take(&mut *lock(&self.arrivals));
        for share in arrived {
            if let Entry::Vacant(slot) = balancer.tracked.entry(share.key) {
                // Counted from now: its counters hold all it did since it was
                // created, and a tenant tracked again after a pause would
                // otherwise start with all of that as one tick's usage.
                slot.insert(Tracked {
                    used_ns: share.used_ns.load(Ordering::Relaxed),
                    calls: share.calls.load(Ordering::Relaxed),
                    usage: 0.0,
                    refusals: share.refusals.load(Ordering::Relaxed),
                    refused_usage: 0.0,
                    reserve: 0.0,
                    allowance: self.cores,
                    last_active: now,
                    share,
                });
            }
        }
        let elapsed = now.saturating_duration_since(balancer.at);
        if elapsed.is_zero() {
            return;
        }
        balancer.at = now;
        let process_cpu = process_cpu_time();
        let process_ns = process_cpu.saturating_sub(balancer.process_cpu).as_nanos() as f64;
        balancer.process_cpu = process_cpu;
        balancer.capacity.sample(now, process_cpu);

        // What each used since the last round, and the server's own work.
        let mut deltas: Vec<(u64, f64, f64, f64)> = Vec::with_capacity(balancer.tracked.len());
        for (key, tracked) in &mut balancer.tracked {
            let used = tracked.share.used_ns.load(Ordering::Relaxed);
            let calls = tracked.share.calls.load(Ordering::Relaxed);
            let refusals = tracked.share.refusals.load(Ordering::Relaxed);
            let used_delta = used.saturating_sub(tracked.used_ns) as f64;
            let calls_delta = calls.saturating_sub(tracked.calls) as f64;
            let refusals_delta = refusals.saturating_sub(tracked.refusals) as f64;
            (tracked.used_ns, tracked.calls, tracked.refusals) = (used, calls, refusals);
            if used_delta > 0.0
                || calls_delta > 0.0
                || tracked.share.waiting.load(Ordering::Relaxed) > 0
            {
                tracked.last_active = now;
            }
            deltas.push((*key, used_delta, calls_delta, refusals_delta));
        }
        let guests_ns: f64 = deltas.iter().map(|d| d.1).sum();
        let all_calls: f64 = deltas.iter().map(|d| d.2).sum();
        let server_ns = (process_ns - guests_ns).max(0.0);
        let elapsed_ns = elapsed.as_nanos() as f64;
        let alpha = elapsed_ns / (elapsed_ns + SMOOTHING.as_nanos() as f64);
        let release = elapsed_ns / (elapsed_ns + RELEASE.as_nanos() as f64);
        let per_call_ns = match all_calls > 0.0 {
            true => server_ns / all_calls,
            false => 0.0,
        };
        for (key, used, calls, refusals) in deltas {
            if let Some(tracked) = balancer.tracked.get_mut(&key) {
                let rate = (used + per_call_ns * calls) / elapsed_ns;
                tracked.usage += alpha * (rate - tracked.usage);
                let refused_rate = per_call_ns * refusals / elapsed_ns;
                tracked.refused_usage += alpha * (refused_rate - tracked.refused_usage);
                let usage = tracked.usage;
                let target = match usage >= 0.5 * tracked.reserve {
                    true => usage * GROWTH,
                    false => usage * HEADROOM,
                };
                if target > tracked.reserve {
                    tracked.reserve = target;
                } else {
                    tracked.reserve += release * (target - tracked.reserve);
                }
            }
        }
        balancer.tracked.retain(|_, tracked| {
            let keep = now.saturating_duration_since(tracked.last_active) < FORGET_AFTER;
            if !keep {
                tracked.share.listed.store(false, Ordering::Release);
                tracked.share.unlimit();
            }
            keep
        });

        let active: Vec<u64> = balancer
            .tracked
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(t.last_active) < ACTIVE_WINDOW)
            .map(|(key, _)| *key)
            .collect();
        let allowances = match active.len() {
            0 | 1 => HashMap::new(),
            _ => water_fill(&balancer.tracked, &active, balancer.capacity.now),
        };
        let tick_ns = elapsed_ns.min(self.tick.as_nanos() as f64 * f64::from(BURST_TICKS));
        for (key, tracked) in &mut balancer.tracked {
            match allowances.get(key) {
                Some(&allowance) => {
                    tracked.allowance = allowance;
                    // Its guests charge their own time to the budget; the
                    // server's work for its refused calls is taken off the
                    // allowance first, at its smoothed rate.
                    let guests = (allowance - tracked.refused_usage).max(allowance * GUEST_FLOOR);
                    tracked.share.refill(guests, tick_ns, self.tick);
                }
                None => {
                    tracked.allowance = self.cores;
                    tracked.share.unlimit();
                }
            }
        }
    }
}

/// The allowances (in cores) of the active tenants that must be limited: those
/// that want more than their weighted share of what the others leave of
/// `capacity` cores.
fn water_fill(tracked: &HashMap<u64, Tracked>, active: &[u64], capacity: f64) -> HashMap<u64, f64> {
    let mut open: Vec<(u64, f64, f64)> = active
        .iter()
        .filter_map(|key| tracked.get(key).map(|t| (*key, t)))
        .map(|(key, t)| {
            let weight = f64::from(t.share.weight.load(Ordering::Relaxed).max(1));
            // A limited tenant that still uses (nearly) all it is allowed,
            // or has guests waiting, wants more than it gets.
            let starved = t.share.limited.load(Ordering::Relaxed)
                && (t.share.waiting.load(Ordering::Relaxed) > 0 || t.usage >= 0.9 * t.allowance);
            let wants = match starved {
                true => f64::INFINITY,
                false => t.reserve,
            };
            (key, weight, wants)
        })
        .collect();
    let mut left = capacity;
    loop {
        let weights: f64 = open.iter().map(|o| o.1).sum();
        let before = open.len();
        let mut given = 0.0;
        open.retain(|&(_, weight, wants)| {
            let fits = wants <= left * weight / weights;
            if fits {
                given += wants;
            }
            !fits
        });
        left = (left - given).max(0.0);
        if open.len() == before || open.is_empty() {
            break;
        }
    }
    let weights: f64 = open.iter().map(|o| o.1).sum();
    open.into_iter()
        .map(|(key, weight, _)| (key, left * weight / weights))
        .collect()
}

impl TenantCpu {
    /// Sets the tenant's weight (its share relative to the others'; at least 1).
    pub fn set_weight(&self, weight: u32) {
        self.weight.store(weight.max(1), Ordering::Relaxed);
    }

    /// Times this tenant's guests waited for their turn.
    pub fn delays(&self) -> u64 {
        self.delays.load(Ordering::Relaxed)
    }

    /// An invocation starts: counted, and the tenant tracked if it was not.
    /// It ends when the returned guard drops: whatever way the invocation
    /// ends (an answer, its deadline, a client gone), it stops counting as in
    /// flight.
    pub(crate) fn called(self: &Arc<Self>) -> InFlightCall<'_> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.list();
        InFlightCall(self)
    }

    /// The server refused one of the tenant's calls (a quota, its concurrency
    /// limit): no guest ran, but the server worked for it (a connection, a
    /// parse, an answer, a log line). It counts as a call, so that the
    /// tenant's part of the server's own CPU time includes it: a tenant that
    /// floods its limit pays for the flood out of its share, not its
    /// neighbours.
    pub fn refused(self: &Arc<Self>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.refusals.fetch_add(1, Ordering::Relaxed);
        self.list();
    }

    fn list(self: &Arc<Self>) {
        if !self.listed.load(Ordering::Acquire) && !self.listed.swap(true, Ordering::AcqRel) {
            lock(&self.arrivals).push(self.clone());
        }
    }

    /// At an epoch tick: the guest must wait for its turn.
    pub(crate) fn must_wait(&self) -> bool {
        self.limited.load(Ordering::Relaxed) && self.budget_ns.load(Ordering::Relaxed) <= 0
    }

    /// Waits until the tenant may run again.
    pub(crate) async fn wait_turn(self: Arc<Self>) {
        self.delays.fetch_add(1, Ordering::Relaxed);
        self.all_delays.fetch_add(1, Ordering::Relaxed);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        // Counted as waiting until this future ends or is dropped (its
        // invocation's deadline passed, or its client left): a count left
        // behind would keep the tenant active, and its neighbours limited,
        // for ever.
        let _waiting = Waiting(&self);
        loop {
            let notified = self.turn.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.must_wait() {
                break;
            }
            notified.await;
        }
    }

    /// Adds a tick's allowance to a limited tenant's budget and, once there is
    /// some, lets as many waiting guests go as the allowance has cores for
    /// besides those still running (all at once would run them all for a
    /// tick, then park them all: the neighbours would see the whole machine
    /// taken every other tick).
    fn refill(&self, allowance: f64, elapsed_ns: f64, tick: Duration) {
        let cap = (allowance * tick.as_nanos() as f64 * f64::from(BURST_TICKS)) as i64;
        let add = (allowance * elapsed_ns) as i64;
        if !self.limited.swap(true, Ordering::Relaxed) {
            self.budget_ns.store(add.min(cap), Ordering::Relaxed);
        } else {
            let budget = self.budget_ns.load(Ordering::Relaxed);
            let refilled = budget.saturating_add(add).min(cap);
            // Charges between the load and the store are few and small; a
            // tick's accuracy is all the budget needs.
            self.budget_ns.store(refilled, Ordering::Relaxed);
        }
        let waiting = self.waiting.load(Ordering::Relaxed);
        if self.budget_ns.load(Ordering::Relaxed) > 0 && waiting > 0 {
            let running = self
                .in_flight
                .load(Ordering::Relaxed)
                .saturating_sub(waiting);
            let cores = allowance.ceil().max(1.0) as u32;
            // At least one: a guest counted as running may be waiting on I/O,
            // and a budget left unused would stall the tenant until it ends.
            for _ in 0..cores.saturating_sub(running).max(1).min(waiting) {
                self.turn.notify_one();
            }
        }
    }

    fn unlimit(&self) {
        self.limited.store(false, Ordering::Relaxed);
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.turn.notify_waiters();
        }
    }
}

/// An invocation in flight ([`TenantCpu::called`]); it ends when dropped.
pub(crate) struct InFlightCall<'a>(&'a TenantCpu);

impl Drop for InFlightCall<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A guest waiting for its tenant's turn ([`TenantCpu::wait_turn`]).
struct Waiting<'a>(&'a TenantCpu);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ChargeCpu for TenantCpu {
    fn charge(&self, cpu: Duration) {
        let ns = u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX);
        self.used_ns.fetch_add(ns, Ordering::Relaxed);
        if self.limited.load(Ordering::Relaxed) {
            self.budget_ns
                .fetch_sub(i64::try_from(ns).unwrap_or(i64::MAX), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(share: CpuShare, usage: f64) -> Tracked {
        Tracked {
            share,
            used_ns: 0,
            calls: 0,
            usage,
            refusals: 0,
            refused_usage: 0.0,
            reserve: usage * HEADROOM,
            allowance: 2.0,
            last_active: Instant::now(),
        }
    }

    #[test]
    fn a_light_tenant_keeps_what_it_uses_and_the_heavy_get_the_rest() {
        let shares = CpuShares::new(2, Duration::from_millis(2));
        let (light, heavy) = (shares.share(1), shares.share(2));
        let map: HashMap<u64, Tracked> = [(1, tracked(light, 0.2)), (2, tracked(heavy, 2.0))]
            .into_iter()
            .collect();
        let allowances = water_fill(&map, &[1, 2], shares.cores);
        assert_eq!(allowances.len(), 1, "{allowances:?}");
        assert!((allowances[&2] - 1.75).abs() < 1e-9, "{allowances:?}");
    }

    #[test]
    fn two_heavy_tenants_split_by_weight() {
        let shares = CpuShares::new(2, Duration::from_millis(2));
        let (a, b) = (shares.share(1), shares.share(2));
        b.set_weight(3);
        let map: HashMap<u64, Tracked> = [(1, tracked(a, 2.0)), (2, tracked(b, 2.0))]
            .into_iter()
            .collect();
        let allowances = water_fill(&map, &[1, 2], shares.cores);
        assert!((allowances[&1] - 0.5).abs() < 1e-9, "{allowances:?}");
        assert!((allowances[&2] - 1.5).abs() < 1e-9, "{allowances:?}");
    }

    #[test]
    fn refused_calls_are_charged_their_part_of_the_servers_work() {
        let shares = CpuShares::new(2, Duration::from_millis(2));
        let (flooder, idle) = (shares.share(1), shares.share(2));
        flooder.refused();
        shares.balance();
        for _ in 0..10 {
            flooder.refused();
        }
        // The server's own work: CPU time no guest charged.
        let start = process_cpu_time();
        while process_cpu_time().saturating_sub(start) < Duration::from_millis(5) {
            std::hint::black_box((0..1000u64).sum::<u64>());
        }
        shares.balance();
        let balancer = lock(&shares.balancer);
        let flooder = balancer
            .tracked
            .get(&1)
            .expect("tracked after its refusals");
        assert!(flooder.usage > 0.0, "usage {}", flooder.usage);
        assert!(
            (flooder.refused_usage - flooder.usage).abs() < 1e-9,
            "all its usage was refused calls: {} of {}",
            flooder.refused_usage,
            flooder.usage
        );
        assert!(
            !balancer.tracked.contains_key(&2),
            "a tenant with no call is not tracked"
        );
        drop(idle);
    }

    #[test]
    fn the_capacity_divided_is_what_other_processes_leave() {
        let shares = CpuShares::new(2, Duration::from_millis(2));
        let (a, b) = (shares.share(1), shares.share(2));
        let map: HashMap<u64, Tracked> = [(1, tracked(a, 2.0)), (2, tracked(b, 2.0))]
            .into_iter()
            .collect();
        // A load generator holds half a core: 1.5 cores are left to divide.
        let allowances = water_fill(&map, &[1, 2], 1.5);
        assert!((allowances[&1] - 0.75).abs() < 1e-9, "{allowances:?}");
        assert!((allowances[&2] - 0.75).abs() < 1e-9, "{allowances:?}");
    }

    #[test]
    fn a_tenant_tracked_again_starts_from_what_it_does_now() {
        let shares = CpuShares::new(2, Duration::from_millis(2));
        let returning = shares.share(1);
        // All it used before it was tracked (or before it was forgotten).
        returning.charge(Duration::from_secs(100));
        returning.called();
        shares.balance();
        let balancer = lock(&shares.balancer);
        let tracked = balancer.tracked.get(&1).expect("tracked after its call");
        assert!(tracked.usage < shares.cores, "usage {}", tracked.usage);
        assert!(
            tracked.reserve < shares.cores * GROWTH,
            "reserve {}",
            tracked.reserve
        );
    }

    #[test]
    fn one_account_per_tenant_while_held() {
        let shares = CpuShares::new(2, Duration::from_millis(2));
        let first = shares.share(7);
        assert!(Arc::ptr_eq(&first, &shares.share(7)));
        assert!(!Arc::ptr_eq(&first, &shares.share(8)));
    }

    #[tokio::test]
    async fn a_guest_dropped_while_waiting_or_running_no_longer_counts() {
        let shares = CpuShares::new(1, Duration::from_millis(2));
        let share = shares.share(1);
        let call = share.called();
        share.limited.store(true, Ordering::Relaxed);
        share.budget_ns.store(0, Ordering::Relaxed);
        let waiter = tokio::spawn(share.clone().wait_turn());
        while share.waiting.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        // Its deadline passed, or its client left: the future is dropped.
        waiter.abort();
        assert!(waiter.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(share.waiting.load(Ordering::Relaxed), 0);
        assert_eq!(share.in_flight.load(Ordering::Relaxed), 1);
        drop(call);
        assert_eq!(share.in_flight.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_waiting_guest_goes_on_when_its_tenant_is_refilled() {
        let shares = CpuShares::new(1, Duration::from_millis(2));
        let share = shares.share(1);
        share.limited.store(true, Ordering::Relaxed);
        share.budget_ns.store(0, Ordering::Relaxed);
        assert!(share.must_wait());
        let waiter = tokio::spawn(share.clone().wait_turn());
        // The refill comes once the guest is seen waiting.
        while share.waiting.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        share.in_flight.store(1, Ordering::Relaxed);
        share.refill(0.5, 2e6, Duration::from_millis(2));
        waiter.await.expect("the waiter ends");
        assert_eq!(share.delays(), 1);
        assert_eq!(shares.delays(), 1);
    }
}
