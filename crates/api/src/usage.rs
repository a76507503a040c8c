//! Metered usage and what it costs: totals per tenant × function × hour (the
//! unit bills are made of), a tenant's quota, the price list, and the usage and
//! quota reports of `/v1/usage` and `/v1/quota`.

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
    /// Wall time of the invocations, in µs.
    pub wall_us: u64,
    /// CPU time spent running guests.
    pub cpu_us: u64,
    /// Time spent creating instances (metered, never billed).
    pub instantiation_us: u64,
    /// Σ peak linear memory (KiB) × wall time (µs): memory-time.
    pub memory_kib_us: u64,
    /// The largest peak linear memory of any invocation, in bytes.
    pub peak_memory_bytes: u64,
    /// Request body bytes the guests were given.
    pub bytes_in: u64,
    /// Response body bytes the guests wrote.
    pub bytes_out: u64,
    /// Key-value reads: each key read, each page of keys listed.
    #[serde(default)]
    pub kv_reads: u64,
    /// Key-value writes: each key set, deleted or incremented.
    #[serde(default)]
    pub kv_writes: u64,
    /// Key-value data kept: for each hour, the most bytes the tenant stored
    /// during it (sampled), × 1 hour. Recorded for the tenant, under the
    /// function name [`STORAGE`].
    #[serde(default)]
    pub kv_byte_hours: u64,
}

/// The function name under which a tenant's stored key-value data is
/// metered: no function has it (function names are never empty).
pub const STORAGE: &str = "";

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
        self.kv_reads = self.kv_reads.saturating_add(other.kv_reads);
        self.kv_writes = self.kv_writes.saturating_add(other.kv_writes);
        self.kv_byte_hours = self.kv_byte_hours.saturating_add(other.kv_byte_hours);
    }

    /// Memory-time in GB-s, counting a GB as 2³⁰ bytes (as AWS Lambda does).
    pub fn gb_seconds(&self) -> f64 {
        self.memory_kib_us as f64 / (1u64 << 20) as f64 / 1e6
    }
}

/// Prices in `currency`. Every field may be left out of the file for its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriceList {
    /// A label for amounts: `USD` by default.
    pub currency: String,
    /// Per million invocations. Default 0.15.
    pub per_million_requests: f64,
    /// Per million milliseconds of guest CPU time. Default 0.02.
    pub per_million_cpu_ms: f64,
    /// Per GB-second of memory-time (GB = 2³⁰ bytes). Default 0.000002.
    pub per_gb_second: f64,
    /// Per GB (2³⁰ bytes) of response bytes the guests wrote. Default 0.05.
    pub per_gb_out: f64,
    /// Per million key-value reads. Default 0.50.
    pub per_million_kv_reads: f64,
    /// Per million key-value writes. Default 5.00.
    pub per_million_kv_writes: f64,
    /// Per GB-month of key-value data stored (a month is 730 hours). Default 0.50.
    #[serde(default = "default_per_gb_month_kv")]
    pub per_gb_month_kv: f64,
}

fn default_per_gb_month_kv() -> f64 {
    0.50
}

/// Hours in the month of [`PriceList::per_gb_month_kv`] (365 × 24 / 12).
const HOURS_PER_MONTH: f64 = 730.0;

impl Default for PriceList {
    fn default() -> PriceList {
        PriceList {
            currency: "USD".into(),
            per_million_requests: 0.15,
            per_million_cpu_ms: 0.02,
            per_gb_second: 0.000_002,
            per_gb_out: 0.05,
            per_million_kv_reads: 0.50,
            per_million_kv_writes: 5.00,
            per_gb_month_kv: default_per_gb_month_kv(),
        }
    }
}

const GB: f64 = (1u64 << 30) as f64;

impl PriceList {
    /// Checks that every price is a finite number ≥ 0, naming the first that is not.
    pub fn check(&self) -> Result<(), String> {
        for (name, price) in [
            ("per_million_requests", self.per_million_requests),
            ("per_million_cpu_ms", self.per_million_cpu_ms),
            ("per_gb_second", self.per_gb_second),
            ("per_gb_out", self.per_gb_out),
            ("per_million_kv_reads", self.per_million_kv_reads),
            ("per_million_kv_writes", self.per_million_kv_writes),
            ("per_gb_month_kv", self.per_gb_month_kv),
        ] {
            if !price.is_finite() || price < 0.0 {
                return Err(format!("{name} must be a number ≥ 0, not {price}"));
            }
        }
        Ok(())
    }

    /// What `totals` cost, per unit and in all. Instantiation is never billed.
    pub fn cost(&self, totals: &UsageTotals) -> Cost {
        let requests = totals.requests as f64 / 1e6 * self.per_million_requests;
        let cpu = totals.cpu_us as f64 / 1e3 / 1e6 * self.per_million_cpu_ms;
        let memory = totals.gb_seconds() * self.per_gb_second;
        let egress = totals.bytes_out as f64 / GB * self.per_gb_out;
        let kv = totals.kv_reads as f64 / 1e6 * self.per_million_kv_reads
            + totals.kv_writes as f64 / 1e6 * self.per_million_kv_writes
            + totals.kv_byte_hours as f64 / GB / HOURS_PER_MONTH * self.per_gb_month_kv;
        Cost {
            requests,
            cpu,
            memory,
            egress,
            kv,
            total: requests + cpu + memory + egress + kv,
        }
    }
}

/// What a set of totals costs, per unit and in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// For the invocations.
    pub requests: f64,
    /// For guest CPU time.
    pub cpu: f64,
    /// For memory-time.
    pub memory: f64,
    /// For response bytes.
    pub egress: f64,
    /// For key-value reads, writes and stored data.
    #[serde(default)]
    pub kv: f64,
    /// The sum.
    pub total: f64,
}

/// The CPU weight of a tenant whose quota gives none.
pub const DEFAULT_CPU_WEIGHT: u32 = 1;

/// The largest CPU weight a tenant's quota may give it.
pub const MAX_CPU_WEIGHT: u32 = 1000;

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
    /// Keys in all the tenant's key-value buckets (default: the server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_keys: Option<u64>,
    /// Bytes of keys and values in all its buckets (default: the server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_bytes: Option<u64>,
    /// Its weight in the sharing of CPU when the machine is saturated (default
    /// 1: every tenant with work gets an equal share; 2 gets twice as much).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<u32>,
}

/// How `/v1/usage` groups its lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageGrouping {
    /// One line per hour.
    Hour,
    /// One line per day (UTC).
    Day,
    /// One line per function (the default).
    #[default]
    Function,
}

impl UsageGrouping {
    /// The name in the query string.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageGrouping::Hour => "hour",
            UsageGrouping::Day => "day",
            UsageGrouping::Function => "function",
        }
    }
}

/// Metered units: the stored totals (times in µs, bytes) and memory-time in GB-s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Units {
    /// The totals as stored.
    #[serde(flatten)]
    pub totals: UsageTotals,
    /// Memory-time in GB-s (derived from `totals.memory_kib_us`).
    pub gb_seconds: f64,
}

impl From<UsageTotals> for Units {
    fn from(totals: UsageTotals) -> Units {
        Units {
            totals,
            gb_seconds: totals.gb_seconds(),
        }
    }
}

/// One line of a usage report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageLine {
    /// The tenant (`None` on the total).
    pub tenant: Option<String>,
    /// The function, when grouped by function or filtered to one.
    pub function: Option<String>,
    /// The hour (`2026-11-25T09:00:00Z`) or day (`2026-11-25`) of the line.
    pub period: Option<String>,
    /// What was used.
    pub units: Units,
    /// What it cost.
    pub cost: Cost,
}

/// `GET /v1/usage`: usage in a range of time, grouped, priced, with a total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    /// Start of the range (RFC 3339).
    pub since: String,
    /// End of the range, exclusive (RFC 3339).
    pub until: String,
    /// How the lines are grouped.
    pub by: UsageGrouping,
    /// The prices the costs were computed with.
    pub prices: PriceList,
    /// One line per group.
    pub rows: Vec<UsageLine>,
    /// Everything in the range.
    pub total: UsageLine,
}

/// `GET /v1/quota`: a tenant's limits and where it stands this month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaStatus {
    /// The tenant's name.
    pub tenant: String,
    /// Its limits.
    pub quota: Quota,
    /// Start of the calendar month (UTC, RFC 3339).
    pub month_start: String,
    /// Used since then.
    pub used: Units,
    /// What that cost.
    pub cost: Cost,
    /// The price list's currency.
    pub currency: String,
}

/// The columns of [`UsageReport::to_csv`], in order.
pub const USAGE_CSV_HEADER: [&str; 22] = [
    "tenant",
    "function",
    "period",
    "requests",
    "failures",
    "wall_us",
    "cpu_us",
    "instantiation_us",
    "gb_seconds",
    "peak_memory_bytes",
    "bytes_in",
    "bytes_out",
    "cost_requests",
    "cost_cpu",
    "cost_memory",
    "cost_egress",
    "cost_total",
    "currency",
    "kv_reads",
    "kv_writes",
    "cost_kv",
    "kv_byte_hours",
];

impl UsageReport {
    /// The report as CSV ([`USAGE_CSV_HEADER`], one record per row, then the
    /// total with `TOTAL` as its tenant): what `kiln usage --csv` prints and
    /// `GET /v1/usage?format=csv` answers.
    pub fn to_csv(&self) -> String {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let mut records = vec![USAGE_CSV_HEADER.map(str::to_owned).to_vec()];
        let record = |l: &UsageLine, tenant: &str| {
            let u = &l.units.totals;
            let c = &l.cost;
            vec![
                tenant.to_owned(),
                l.function.clone().unwrap_or_default(),
                l.period.clone().unwrap_or_default(),
                u.requests.to_string(),
                u.failures.to_string(),
                u.wall_us.to_string(),
                u.cpu_us.to_string(),
                u.instantiation_us.to_string(),
                l.units.gb_seconds.to_string(),
                u.peak_memory_bytes.to_string(),
                u.bytes_in.to_string(),
                u.bytes_out.to_string(),
                c.requests.to_string(),
                c.cpu.to_string(),
                c.memory.to_string(),
                c.egress.to_string(),
                c.total.to_string(),
                self.prices.currency.clone(),
                u.kv_reads.to_string(),
                u.kv_writes.to_string(),
                c.kv.to_string(),
                u.kv_byte_hours.to_string(),
            ]
        };
        for l in &self.rows {
            records.push(record(l, l.tenant.as_deref().unwrap_or("")));
        }
        records.push(record(&self.total, "TOTAL"));
        for r in records {
            // Writing to a `Vec` cannot fail.
            let _ = writer.write_record(&r);
        }
        let bytes = writer.into_inner().unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }
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

    #[test]
    fn costs_add_up_per_unit() {
        let prices = PriceList {
            currency: "EUR".into(),
            per_million_requests: 1.0,
            per_million_cpu_ms: 2.0,
            per_gb_second: 3.0,
            per_gb_out: 4.0,
            per_million_kv_reads: 0.5,
            per_million_kv_writes: 5.0,
            per_gb_month_kv: 2.0,
        };
        let totals = UsageTotals {
            requests: 500_000,
            cpu_us: 1_000_000_000,                // 1e6 ms
            memory_kib_us: (1 << 20) * 2_000_000, // 2 GiB-s
            bytes_out: 1 << 29,                   // half a GiB
            instantiation_us: 123_456_789,        // never billed
            kv_reads: 2_000_000,                  // 1.0
            kv_writes: 100_000,                   // 0.5
            kv_byte_hours: 730 << 29,             // half a GiB for a month: 1.0
            ..Default::default()
        };
        let cost = prices.cost(&totals);
        assert_eq!(
            (cost.requests, cost.cpu, cost.memory, cost.egress, cost.kv),
            (0.5, 2.0, 6.0, 2.0, 2.5)
        );
        assert_eq!(cost.total, 13.0);
    }

    #[test]
    fn usage_csv_quotes_what_needs_quoting_and_ends_with_the_total() {
        let prices = PriceList::default();
        let totals = UsageTotals {
            requests: 3,
            ..Default::default()
        };
        let line = |tenant: Option<&str>, function: Option<&str>| UsageLine {
            tenant: tenant.map(str::to_owned),
            function: function.map(str::to_owned),
            period: None,
            units: totals.into(),
            cost: prices.cost(&totals),
        };
        let report = UsageReport {
            since: "2026-12-01T00:00:00Z".into(),
            until: "2026-12-02T00:00:00Z".into(),
            by: UsageGrouping::Function,
            prices: prices.clone(),
            rows: vec![line(Some("acme"), Some("say \"hi\", twice"))],
            total: line(None, None),
        };
        let csv = report.to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], USAGE_CSV_HEADER.join(","));
        assert!(
            lines[1].starts_with("acme,\"say \"\"hi\"\", twice\",,3,"),
            "{}",
            lines[1]
        );
        assert!(lines[2].starts_with("TOTAL,,,3,"), "{}", lines[2]);
    }
}
