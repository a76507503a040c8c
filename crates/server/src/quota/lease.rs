//! A node's lease of requests from one of the cluster's shared counters
//! (`kiln_store::QuotaGrants`): how many it may still admit in one period (a
//! calendar month, or a second), and whether the counter said the period's cap
//! is reached.

/// Requests granted to this node for one period.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Lease {
    /// The period the grants are for (a month's or a second's start).
    period: i64,
    /// Granted and not yet admitted.
    left: u64,
    /// The counter granted nothing: the cap is reached for the period.
    exhausted: bool,
}

/// What a lease can do for one more request in `period`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Leased {
    /// A granted request is left.
    Granted,
    /// The cap is reached for the period.
    Exhausted,
    /// More must be asked of the counter.
    Ask,
}

impl Lease {
    pub(super) fn check(&self, period: i64) -> Leased {
        match (self.period == period, self.left, self.exhausted) {
            (true, 1.., _) => Leased::Granted,
            (true, 0, true) => Leased::Exhausted,
            _ => Leased::Ask,
        }
    }

    /// Spends one granted request (after [`Lease::check`] said `Granted`).
    pub(super) fn take(&mut self) {
        self.left = self.left.saturating_sub(1);
    }

    /// Adds what the counter granted for `period` (a new period starts over).
    pub(super) fn add(&mut self, period: i64, granted: u64) {
        if self.period != period {
            *self = Lease {
                period,
                ..Lease::default()
            };
        }
        self.left += granted;
        self.exhausted = granted == 0;
    }

    /// The cap changed: ask the counter again rather than trust "reached".
    pub(super) fn reopen(&mut self) {
        self.exhausted = false;
    }
}

/// How many requests to ask for at once: a slice of the cap, so that a node
/// rarely waits for the counter and idle nodes hold few (at least 1, at most
/// 100).
pub(super) fn chunk(cap: u64) -> u64 {
    (cap / 50).clamp(1, 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_spent_then_asked_for_again_and_a_new_period_starts_over() {
        let mut lease = Lease::default();
        assert_eq!(lease.check(10), Leased::Ask);
        lease.add(10, 2);
        assert_eq!(lease.check(10), Leased::Granted);
        lease.take();
        lease.take();
        assert_eq!(lease.check(10), Leased::Ask);
        lease.add(10, 0);
        assert_eq!(lease.check(10), Leased::Exhausted);
        assert_eq!(lease.check(11), Leased::Ask);
        lease.reopen();
        assert_eq!(lease.check(10), Leased::Ask);
        lease.add(11, 1);
        assert_eq!(lease.check(10), Leased::Ask);
        assert_eq!(lease.check(11), Leased::Granted);
        assert_eq!((chunk(30), chunk(5000), chunk(1_000_000)), (1, 100, 100));
    }
}
