//! The price list: what each metered unit costs, read from an operator's TOML file
//! (`kiln up --prices FILE`), and the cost of a set of usage totals.
//!
//! Instantiation is never billed: only requests, the CPU time guests actually
//! used, memory-time (peak linear memory × wall time) and bytes sent.

use kiln_store::UsageTotals;
use serde::{Deserialize, Serialize};
use std::path::Path;

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
}

impl Default for PriceList {
    fn default() -> PriceList {
        PriceList {
            currency: "USD".into(),
            per_million_requests: 0.15,
            per_million_cpu_ms: 0.02,
            per_gb_second: 0.000_002,
            per_gb_out: 0.05,
        }
    }
}

/// What a set of totals costs, per unit and in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Cost {
    pub requests: f64,
    pub cpu: f64,
    pub memory: f64,
    pub egress: f64,
    pub total: f64,
}

const GB: f64 = (1u64 << 30) as f64;

impl PriceList {
    /// Reads a price list; every price must be a finite number ≥ 0.
    pub fn read(path: &Path) -> anyhow::Result<PriceList> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the price list {}: {e}", path.display()))?;
        let prices: PriceList = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid price list {}: {e}", path.display()))?;
        prices
            .check()
            .map_err(|e| anyhow::anyhow!("invalid price list {}: {e}", path.display()))?;
        Ok(prices)
    }

    fn check(&self) -> Result<(), String> {
        for (name, price) in [
            ("per_million_requests", self.per_million_requests),
            ("per_million_cpu_ms", self.per_million_cpu_ms),
            ("per_gb_second", self.per_gb_second),
            ("per_gb_out", self.per_gb_out),
        ] {
            if !price.is_finite() || price < 0.0 {
                return Err(format!("{name} must be a number ≥ 0, not {price}"));
            }
        }
        Ok(())
    }

    pub fn cost(&self, totals: &UsageTotals) -> Cost {
        let requests = totals.requests as f64 / 1e6 * self.per_million_requests;
        let cpu = totals.cpu_us as f64 / 1e3 / 1e6 * self.per_million_cpu_ms;
        let memory = totals.gb_seconds() * self.per_gb_second;
        let egress = totals.bytes_out as f64 / GB * self.per_gb_out;
        Cost {
            requests,
            cpu,
            memory,
            egress,
            total: requests + cpu + memory + egress,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_add_up_per_unit() {
        let prices = PriceList {
            currency: "EUR".into(),
            per_million_requests: 1.0,
            per_million_cpu_ms: 2.0,
            per_gb_second: 3.0,
            per_gb_out: 4.0,
        };
        let totals = UsageTotals {
            requests: 500_000,
            cpu_us: 1_000_000_000,                // 1e6 ms
            memory_kib_us: (1 << 20) * 2_000_000, // 2 GiB-s
            bytes_out: 1 << 29,                   // half a GiB
            instantiation_us: 123_456_789,        // never billed
            ..Default::default()
        };
        let cost = prices.cost(&totals);
        assert_eq!(
            (cost.requests, cost.cpu, cost.memory, cost.egress),
            (0.5, 2.0, 6.0, 2.0)
        );
        assert_eq!(cost.total, 10.5);
    }

    #[test]
    fn a_file_overrides_some_prices_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.toml");
        std::fs::write(&path, "per_million_requests = 0.3\n").unwrap();
        let prices = PriceList::read(&path).unwrap();
        assert_eq!(prices.per_million_requests, 0.3);
        assert_eq!(prices.per_gb_out, PriceList::default().per_gb_out);

        std::fs::write(&path, "per_gb_out = -1.0\n").unwrap();
        let err = PriceList::read(&path).unwrap_err().to_string();
        assert!(err.contains("per_gb_out must be a number ≥ 0"), "{err}");
        std::fs::write(&path, "per_request = 1.0\n").unwrap();
        let err = PriceList::read(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
    }
}
