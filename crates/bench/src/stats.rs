//! Summaries of latency samples.

use std::time::Duration;

/// Median and tail of a set of samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Summary {
    pub count: usize,
    pub median: Duration,
    pub p99: Duration,
}

impl Summary {
    pub(crate) fn of(mut samples: Vec<Duration>) -> Summary {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Summary {
            count: samples.len(),
            median: at(0.5),
            p99: at(0.99),
        }
    }
}

/// A duration in microseconds with one decimal.
pub(crate) fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p99() {
        let samples = (1..=100).map(Duration::from_micros).collect();
        let s = Summary::of(samples);
        assert_eq!(s.count, 100);
        assert_eq!(s.median, Duration::from_micros(51));
        assert_eq!(s.p99, Duration::from_micros(99));
    }
}
