//! The cost of metering: hello at 64 connections on two servers side by side, one
//! metering every invocation (the default) and one with `--metering off`, their wrk
//! runs interleaved ([`ROUNDS`] each); the medians are compared.

use super::client::{self, expect};
use super::kiln::Kiln;
use super::report::Report;
use super::wrk;
use std::time::Duration;

const ROUNDS: usize = 5;

pub fn run(
    on: &Kiln,
    off: &Kiln,
    hello: &[u8],
    duration: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    let path = "/fn/default/hello";
    for kiln in [on, off] {
        client::deploy(&client::agent(), kiln.addr, &kiln.token, "hello", hello)?;
        expect(kiln.addr, path, b"world", b"Hello, world!\n")?;
    }
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        with.push(wrk::run(&on.url(path), "world", 64, duration)?.requests_per_sec);
        without.push(wrk::run(&off.url(path), "world", 64, duration)?.requests_per_sec);
    }
    let median = |mut runs: Vec<f64>| {
        runs.sort_by(f64::total_cmp);
        runs[ROUNDS / 2]
    };
    let list = |runs: &[f64]| {
        runs.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    report.add("metering", "metering on: req/s of the runs", list(&with));
    report.add(
        "metering",
        "metering off: req/s of the runs",
        list(&without),
    );
    let (with, without) = (median(with), median(without));
    let change = (without - with) / without * 100.0;
    report.target(
        "metering",
        "throughput lost to metering (medians, 64 connections)",
        format!("{change:.1}%"),
        "< 3%",
        change < 3.0,
    );
    Ok(())
}
