//! The price list an operator gives with `kiln up --prices FILE` (TOML), read
//! and checked at start-up. The list itself and the cost of usage totals are
//! `kiln_api::PriceList`'s.

use kiln_api::PriceList;
use std::path::Path;

/// Reads a price list; every price must be a finite number ≥ 0, and every field
/// may be left out for its default.
pub fn read_price_list(path: &Path) -> anyhow::Result<PriceList> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the price list {}: {e}", path.display()))?;
    let prices: PriceList = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("invalid price list {}: {e}", path.display()))?;
    prices
        .check()
        .map_err(|e| anyhow::anyhow!("invalid price list {}: {e}", path.display()))?;
    Ok(prices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_some_prices_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.toml");
        std::fs::write(&path, "per_million_requests = 0.3\n").unwrap();
        let prices = read_price_list(&path).unwrap();
        assert_eq!(prices.per_million_requests, 0.3);
        assert_eq!(prices.per_gb_out, PriceList::default().per_gb_out);

        std::fs::write(&path, "per_gb_out = -1.0\n").unwrap();
        let err = read_price_list(&path).unwrap_err().to_string();
        assert!(err.contains("per_gb_out must be a number ≥ 0"), "{err}");
        std::fs::write(&path, "per_request = 1.0\n").unwrap();
        let err = read_price_list(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
    }
}
