//! Guest CPU time: the thread CPU clock read around every poll of the guest's future.
//!
//! Summing per-poll deltas counts exactly the CPU spent running the guest (and the
//! synchronous host work it asks for), on whichever executor thread polls it, and
//! nothing while it is parked waiting (a WASI sleep, an exhausted epoch slice).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// CPU time consumed so far by the calling thread.
pub(crate) fn thread_cpu_time() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time consumed so far by the whole process (all its threads).
pub(crate) fn process_cpu_time() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and both CPU-time clocks are
    // supported on every Linux kernel Kiln targets; the call only writes `ts`.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What measured CPU time is charged to (a tenant's share).
pub(crate) trait ChargeCpu: Sync {
    /// Adds `cpu` to what was used.
    fn charge(&self, cpu: Duration);
}

/// Wraps a future and adds the thread CPU time of each of its polls to `spent`
/// (and charges it to the tenant's share, when there is one).
pub(crate) struct MeasureCpu<'a, F> {
    inner: Pin<&'a mut F>,
    spent: &'a mut Duration,
    share: Option<&'a dyn ChargeCpu>,
}

impl<'a, F> MeasureCpu<'a, F> {
    pub(crate) fn new(
        inner: Pin<&'a mut F>,
        spent: &'a mut Duration,
        share: Option<&'a dyn ChargeCpu>,
    ) -> Self {
        MeasureCpu {
            inner,
            spent,
            share,
        }
    }
}

impl<F: Future> Future for MeasureCpu<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let start = thread_cpu_time();
        let result = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_time().saturating_sub(start);
        *self.spent += spent;
        if let Some(share) = self.share {
            share.charge(spent);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_busy_time_not_sleep() {
        let start = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(30));
        let slept = thread_cpu_time() - start;
        assert!(
            slept < Duration::from_millis(10),
            "sleep counted as CPU: {slept:?}"
        );

        let start = thread_cpu_time();
        let wall = std::time::Instant::now();
        let mut x = 0u64;
        while wall.elapsed() < Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let busy = thread_cpu_time() - start;
        assert!(
            busy >= Duration::from_millis(1),
            "busy loop not counted: {busy:?}"
        );
    }
}
