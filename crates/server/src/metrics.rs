//! The invoke path's metrics, as data: responses by outcome [`Kind`] and their
//! latency. Rendered for Prometheus by `api/metrics.rs`, with the counters of
//! the other owners (connections, functions, metering, logs).

use kiln_api::Kind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram's buckets.
pub(crate) const BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];

/// Invoke-path responses: how many of each kind, and how long they took.
pub(crate) struct Metrics {
    /// One counter per [`Kind::ALL`] entry, in that order.
    requests: Vec<AtomicU64>,
    /// Per bucket (not cumulative), plus one for +Inf.
    latency_buckets: Vec<AtomicU64>,
    latency_sum_ns: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: Kind::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            latency_buckets: (0..=BUCKETS.len()).map(|_| AtomicU64::new(0)).collect(),
            latency_sum_ns: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one invoke-path response with its outcome and how long it took.
    pub(crate) fn observe(&self, kind: Kind, took: Duration) {
        if let Some(index) = Kind::ALL.iter().position(|k| *k == kind) {
            self.requests[index].fetch_add(1, Ordering::Relaxed);
        }
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(BUCKETS.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Responses of each kind so far, in [`Kind::ALL`] order.
    pub(crate) fn requests(&self) -> impl Iterator<Item = (Kind, u64)> + '_ {
        Kind::ALL
            .iter()
            .zip(&self.requests)
            .map(|(kind, count)| (*kind, count.load(Ordering::Relaxed)))
    }

    /// Per latency bucket (not cumulative, the last one +Inf), and the sum.
    pub(crate) fn latency(&self) -> (Vec<u64>, Duration) {
        let buckets = self
            .latency_buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let sum = Duration::from_nanos(self.latency_sum_ns.load(Ordering::Relaxed));
        (buckets, sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `Kiln-Outcome` column of the invoke-path table in `docs/api.md`.
    fn documented_kinds() -> Vec<String> {
        let doc = include_str!("../../../docs/api.md");
        let table = doc
            .split("| what happened | status | `Kiln-Outcome` | body |")
            .nth(1)
            .expect("docs/api.md has the invoke-path table");
        table
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .filter_map(|line| line.split('|').nth(3))
            .filter_map(|cell| cell.trim().strip_prefix('`')?.strip_suffix('`'))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_documented_kind_is_counted_under_its_name() {
        let documented = documented_kinds();
        assert!(documented.len() >= 10, "{documented:?}");
        for name in &documented {
            let kind: Kind = name.parse().expect("a documented kind is a Kind");
            let metrics = Metrics::default();
            metrics.observe(kind, Duration::from_millis(1));
            let counted: Vec<(String, u64)> = metrics
                .requests()
                .filter(|(_, count)| *count > 0)
                .map(|(kind, count)| (kind.to_string(), count))
                .collect();
            assert_eq!(counted, vec![(name.clone(), 1)]);
        }
        for kind in Kind::ALL {
            assert!(
                documented.iter().any(|name| name == kind.as_str()),
                "{kind} is missing from docs/api.md"
            );
        }
    }
}
