//! The rate limit of open sign-ups (`--signups-per-hour`): sign-ups of the last
//! hour, counted by client address and for the whole node.
//!
//! Floods are held back by a rate limit, not a proof of work: a limit bounds
//! what one address can create whatever its hardware, costs a visitor on a
//! phone nothing, and is something an operator can reason about
//! (`--signups-per-hour` per client address, ten times that for the whole
//! node). IPv6 clients are counted by their /64, which one subscriber usually
//! holds whole. Behind a proxy every visitor has the proxy's address, so the
//! limit becomes one for the node; the counts are per node and forgotten on
//! restart. A created tenant costs nothing until it runs something, and its
//! quotas (the server's defaults) bound what it can run.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(3600);

/// Sign-ups of the last hour, by client address and for the whole node.
pub(crate) struct SignupLimiter {
    per_address: u32,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    by_address: HashMap<IpAddr, VecDeque<Instant>>,
    all: VecDeque<Instant>,
}

/// Drops the times that left the window; answers how long until the oldest
/// one leaves when `limit` are still in it.
fn wait_in(times: &mut VecDeque<Instant>, limit: usize, now: Instant) -> Option<Duration> {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        times.pop_front();
    }
    (times.len() >= limit).then(|| {
        let oldest = times.front().copied().unwrap_or(now);
        WINDOW.saturating_sub(now.saturating_duration_since(oldest))
    })
}

/// The address a client is counted by: an IPv4 address, or an IPv6 /64.
fn counted_as(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
        v4 => v4,
    }
}

impl SignupLimiter {
    pub(crate) fn new(per_address: u32) -> SignupLimiter {
        SignupLimiter {
            per_address,
            seen: Mutex::default(),
        }
    }

    /// Takes one of the client's sign-ups at `now`, in one step (two at once
    /// cannot both take the last one); `Err(wait)` when the client or the node
    /// has had its sign-ups for now. [`SignupLimiter::give_back`] returns it
    /// when the sign-up then fails.
    pub(crate) fn take(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let per_address = self.per_address as usize;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let all = wait_in(&mut seen.all, per_address.saturating_mul(10), now);
        let mine = match seen.by_address.get_mut(&counted_as(client)) {
            Some(times) => wait_in(times, per_address, now),
            None => (per_address == 0).then_some(WINDOW),
        };
        if let Some(wait) = all.max(mine) {
            return Err(wait);
        }
        seen.all.push_back(now);
        seen.by_address
            .entry(counted_as(client))
            .or_default()
            .push_back(now);
        // Addresses whose sign-ups have all left the window are forgotten.
        if seen.by_address.len() > 4096 {
            seen.by_address.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < WINDOW)
            });
        }
        Ok(())
    }

    /// Returns what [`SignupLimiter::take`] took at `at` for a sign-up that
    /// failed (a taken name, a store error): it does not count.
    pub(crate) fn give_back(&self, client: IpAddr, at: Instant) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let forget = |times: &mut VecDeque<Instant>| {
            if let Some(i) = times.iter().rposition(|t| *t == at) {
                times.remove(i);
            }
        };
        forget(&mut seen.all);
        if let Some(times) = seen.by_address.get_mut(&counted_as(client)) {
            forget(times);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_sign_ups_per_hour_and_the_node_ten_times_that() {
        let limiter = SignupLimiter::new(2);
        let start = Instant::now();
        let me: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..2 {
            assert_eq!(limiter.take(me, start), Ok(()));
        }
        let later = start + Duration::from_secs(600);
        let wait = limiter.take(me, later).unwrap_err();
        assert_eq!(wait, WINDOW - Duration::from_secs(600));
        // Others still can; the node stops at 20 in the hour.
        for i in 0..18u8 {
            let other = IpAddr::from([198, 51, 100, i]);
            assert_eq!(limiter.take(other, later), Ok(()));
        }
        let stranger = IpAddr::from([203, 0, 113, 1]);
        assert!(limiter.take(stranger, later).is_err());
        // A sign-up that failed is given back: the stranger gets its turn.
        limiter.give_back(IpAddr::from([198, 51, 100, 0]), later);
        assert_eq!(limiter.take(stranger, later), Ok(()));
        assert!(limiter.take(stranger, later).is_err());
        // An hour after its sign-ups, the address may sign up again.
        assert_eq!(limiter.take(me, start + WINDOW), Ok(()));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let limiter = SignupLimiter::new(1);
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(limiter.take(a, now).is_ok());
        assert!(limiter.take(b, now).is_err());
        assert!(
            limiter
                .take("2001:db8:1:3::1".parse().unwrap(), now)
                .is_ok()
        );
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(limiter.take(mapped, now).is_ok());
        assert!(limiter.take("192.0.2.1".parse().unwrap(), now).is_err());
    }

    #[test]
    fn no_sign_ups_at_all_when_the_limit_is_zero() {
        let limiter = SignupLimiter::new(0);
        assert!(
            limiter
                .take("192.0.2.1".parse().unwrap(), Instant::now())
                .is_err()
        );
    }
}
