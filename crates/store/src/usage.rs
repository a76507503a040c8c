//! Metered usage as the store keeps it: totals per tenant × function × hour, the
//! unit that bills are made of, and per-tenant quotas.

use serde::{Deserialize, Serialize};

/// Seconds in the aggregation period.
pub const HOUR: i64 = 3600;

/// The start of the hour `at` (seconds since the Unix epoch) falls in.
pub fn hour_of(at: i64) -> i64 {
    at.div_euclid(HOUR) * HOUR
}

/// Sums of what invocations cost. Adding two totals is how records aggregate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotals {
    /// Invocations that ran (whatever their outcome).
    pub requests: u64,
    /// Of which did not end successfully.
    pub failures: u64,
    pub wall_us: u64,
    /// CPU time spent running guests.
    pub cpu_us: u64,
    /// Time spent creating instances (metered, never billed).
    pub instantiation_us: u64,
    /// Σ peak linear memory (KiB) × wall time (µs): memory-time.
    pub memory_kib_us: u64,
    /// The largest peak linear memory of any invocation, in bytes.
    pub peak_memory_bytes: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl UsageTotals {
    /// Adds `other` in (sums; the peak is a maximum). Saturates instead of wrapping.
    pub fn add(&mut self, other: &UsageTotals) {
        self.requests = self.requests.saturating_add(other.requests);
        self.failures = self.failures.saturating_add(other.failures);
        self.wall_us = self.wall_us.saturating_add(other.wall_us);
        self.cpu_us = self.cpu_us.saturating_add(other.cpu_us);
        self.instantiation_us = self.instantiation_us.saturating_add(other.instantiation_us);
        self.memory_kib_us = self.memory_kib_us.saturating_add(other.memory_kib_us);
        self.peak_memory_bytes = self.peak_memory_bytes.max(other.peak_memory_bytes);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
    }

    /// Memory-time in GB-s, counting a GB as 2³⁰ bytes (as AWS Lambda does).
    pub fn gb_seconds(&self) -> f64 {
        self.memory_kib_us as f64 / (1u64 << 20) as f64 / 1e6
    }
}

/// Usage to add to one tenant × function × hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    pub tenant_id: crate::TenantId,
    pub function: String,
    /// Start of the hour, seconds since the Unix epoch.
    pub hour: i64,
    pub totals: UsageTotals,
}

/// One stored tenant × function × hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    pub tenant: String,
    pub function: String,
    pub hour: i64,
    pub totals: UsageTotals,
}

/// Which usage to read: hours in `[since, until)`, of one tenant (all when
/// `None`, for admins), of one function name (all when `None`).
#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    pub tenant: Option<crate::TenantId>,
    pub function: Option<String>,
    pub since: i64,
    pub until: i64,
}

/// A tenant's limits. `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Quota {
    /// Invocations per calendar month (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_month: Option<u64>,
    /// Spending per calendar month (UTC), in the price list's currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_per_month: Option<f64>,
    /// Instances of the tenant's functions running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// Invocations per second, in bursts of at most this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_and_keep_the_peak() {
        let mut a = UsageTotals {
            requests: 1,
            peak_memory_bytes: 10,
            bytes_in: u64::MAX - 1,
            ..Default::default()
        };
        a.add(&UsageTotals {
            requests: 2,
            peak_memory_bytes: 5,
            bytes_in: 5,
            ..Default::default()
        });
        assert_eq!(a.requests, 3);
        assert_eq!(a.peak_memory_bytes, 10);
        assert_eq!(a.bytes_in, u64::MAX);
    }

    #[test]
    fn hours_and_gb_seconds() {
        assert_eq!(hour_of(7199), 3600);
        assert_eq!(hour_of(-1), -3600);
        let one_gib_second = UsageTotals {
            memory_kib_us: (1 << 20) * 1_000_000,
            ..Default::default()
        };
        assert_eq!(one_gib_second.gb_seconds(), 1.0);
    }
}
