//! The suite's result table: one row per measured figure, with its target.

use std::time::Duration;

pub(super) struct Row {
    pub scenario: String,
    pub metric: String,
    pub value: String,
    /// The target and whether it was met, when the figure has one.
    pub target: Option<(String, bool)>,
}

#[derive(Default)]
pub(super) struct Report {
    rows: Vec<Row>,
}

impl Report {
    pub(super) fn add(
        &mut self,
        scenario: impl Into<String>,
        metric: impl Into<String>,
        value: impl Into<String>,
    ) {
        self.rows.push(Row {
            scenario: scenario.into(),
            metric: metric.into(),
            value: value.into(),
            target: None,
        });
    }

    pub(super) fn target(
        &mut self,
        scenario: impl Into<String>,
        metric: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        met: bool,
    ) {
        self.rows.push(Row {
            scenario: scenario.into(),
            metric: metric.into(),
            value: value.into(),
            target: Some((target.into(), met)),
        });
    }

    /// The table, as Markdown.
    pub(super) fn markdown(&self) -> String {
        let mut out = String::from("| scenario | figure | value | target |\n|---|---|---:|---|\n");
        for row in &self.rows {
            let target = match &row.target {
                Some((text, true)) => format!("{text} ✅"),
                Some((text, false)) => format!("{text} ❌ missed"),
                None => String::new(),
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                row.scenario, row.metric, row.value, target
            ));
        }
        out
    }
}

/// The median of an odd number of runs (the upper middle one of an even number).
pub(super) fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs.get(runs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Every run, comma-separated, with `decimals` decimals.
pub(super) fn runs(values: &[f64], decimals: usize) -> String {
    values
        .iter()
        .map(|v| format!("{v:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `1.23 ms`, or `812 µs` below a millisecond.
pub(super) fn latency(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1e3)
    }
}

pub(super) fn bytes(n: f64) -> String {
    if n >= (1 << 20) as f64 {
        format!("{:.1} MiB", n / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", n / 1024.0)
    }
}
