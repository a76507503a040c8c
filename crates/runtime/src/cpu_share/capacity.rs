//! The CPU the tenants' shares divide: not the machine's cores but what this
//! process used plus what the machine left idle (`/proc/stat`), sampled every
//! [`CAPACITY_PERIOD`] and smoothed, between [`CAPACITY_FLOOR`] of the
//! configured cores and all of them. The balancer ([`super::CpuShares`])
//! water-fills this capacity between the active tenants.

use crate::cpu_time::process_cpu_time;
use std::time::{Duration, Instant};

/// How often the balancer measures the CPU this process can have (its own CPU
/// time plus the machine's idle time).
const CAPACITY_PERIOD: Duration = Duration::from_millis(50);

/// The time constant of the measured capacity's smoothing (the kernel counts
/// idle time in 10 ms jiffies: a period's sample is coarse).
const CAPACITY_SMOOTHING: Duration = Duration::from_millis(250);

/// The measured capacity never falls below this part of the configured cores
/// (a machine whose other processes take nearly everything still leaves the
/// tenants something to divide).
const CAPACITY_FLOOR: f64 = 0.25;

/// The CPU the tenants actually divide, in cores: not the machine's cores but
/// what this process used plus what the machine left idle, smoothed. Other
/// processes on the machine (a load generator, a database, another server)
/// take their part first; dividing the nominal cores would hand a heavy tenant
/// the share those processes hold, out of its neighbours' part. A tenant held
/// back leaves idle time, which counts: capacity does not shrink because the
/// balancer limited someone.
pub(super) struct Capacity {
    /// The configured cores (the ceiling).
    cores: f64,
    /// The smoothed estimate.
    pub(super) now: f64,
    /// At the last sample: when, the process's CPU time, the machine's idle
    /// time (`None`: unreadable here, and the configured cores stand).
    at: Instant,
    process_cpu: Duration,
    idle: Option<Duration>,
}

impl Capacity {
    pub(super) fn new(cores: f64) -> Capacity {
        Capacity {
            cores,
            now: cores,
            at: Instant::now(),
            process_cpu: process_cpu_time(),
            idle: machine_idle_time(),
        }
    }

    /// Takes a sample when a period has passed since the last one.
    pub(super) fn sample(&mut self, now: Instant, process_cpu: Duration) {
        let elapsed = now.saturating_duration_since(self.at);
        if elapsed < CAPACITY_PERIOD {
            return;
        }
        let Some(idle_before) = self.idle else {
            return;
        };
        let Some(idle) = machine_idle_time() else {
            self.idle = None;
            self.now = self.cores;
            return;
        };
        let used = process_cpu.saturating_sub(self.process_cpu);
        (self.at, self.process_cpu, self.idle) = (now, process_cpu, Some(idle));
        self.update(elapsed, used + idle.saturating_sub(idle_before));
    }

    /// Over `elapsed`, the process used or could have used `available` CPU
    /// time.
    fn update(&mut self, elapsed: Duration, available: Duration) {
        let sample = (available.as_secs_f64() / elapsed.as_secs_f64())
            .clamp(self.cores * CAPACITY_FLOOR, self.cores);
        let elapsed_ns = elapsed.as_nanos() as f64;
        let alpha = elapsed_ns / (elapsed_ns + CAPACITY_SMOOTHING.as_nanos() as f64);
        self.now += alpha * (sample - self.now);
    }
}

/// The machine's idle time so far (all CPUs, I/O wait included), from the
/// first line of `/proc/stat`; `None` where it cannot be read.
fn machine_idle_time() -> Option<Duration> {
    use std::io::Read;
    let mut first = [0u8; 256];
    let read = std::fs::File::open("/proc/stat")
        .and_then(|mut file| file.read(&mut first))
        .ok()?;
    idle_of_proc_stat(std::str::from_utf8(&first[..read]).ok()?, clock_ticks())
}

/// The idle and I/O-wait time of `/proc/stat`'s aggregate `cpu` line (the
/// 4th and 5th numbers, in clock ticks of `hz` per second).
fn idle_of_proc_stat(text: &str, hz: u64) -> Option<Duration> {
    let line = text.lines().next()?;
    let mut fields = line.split_ascii_whitespace();
    if fields.next()? != "cpu" || hz == 0 {
        return None;
    }
    let mut numbers = fields.map(str::parse::<u64>);
    let idle = numbers.nth(3)?.ok()?;
    let iowait = numbers.next().and_then(Result::ok).unwrap_or(0);
    let ticks = idle.saturating_add(iowait);
    Some(Duration::from_secs(ticks / hz) + Duration::from_nanos(ticks % hz * 1_000_000_000 / hz))
}

/// The kernel's clock ticks per second (`USER_HZ`, in which `/proc/stat`
/// counts).
fn clock_ticks() -> u64 {
    // SAFETY: `sysconf` reads a configuration value; it has no preconditions
    // and touches no memory of ours.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_time_is_read_off_the_first_line_of_proc_stat() {
        let text = "cpu  2962905 141045 469959 823265 27176 0 40145 12288 0 0\n\
                    cpu0 1 2 3 4 5 6 7 8 9 10\n";
        assert_eq!(
            idle_of_proc_stat(text, 100),
            Some(Duration::from_millis((823_265 + 27_176) * 10))
        );
        assert_eq!(idle_of_proc_stat("cpu0 1 2 3 4 5\n", 100), None);
        assert_eq!(idle_of_proc_stat("cpu  1 2\n", 100), None);
        assert_eq!(idle_of_proc_stat(text, 0), None);
    }

    #[test]
    fn capacity_follows_what_the_process_used_or_left_idle_within_bounds() {
        let period = CAPACITY_PERIOD;
        let mut capacity = Capacity::new(2.0);
        // Another process takes half a core: the process used or left idle
        // 1.5 cores' worth of each period.
        for _ in 0..100 {
            capacity.update(period, period.mul_f64(1.5));
        }
        assert!((capacity.now - 1.5).abs() < 0.01, "{}", capacity.now);
        // More than the cores (clock granularity): never above them.
        for _ in 0..100 {
            capacity.update(period, period * 3);
        }
        assert!((capacity.now - 2.0).abs() < 0.01, "{}", capacity.now);
        // Nothing left: never below the floor.
        for _ in 0..100 {
            capacity.update(period, Duration::ZERO);
        }
        assert!(
            (capacity.now - 2.0 * CAPACITY_FLOOR).abs() < 0.01,
            "{}",
            capacity.now
        );
    }
}
