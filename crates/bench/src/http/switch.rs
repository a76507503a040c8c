//! The cost of a feature that can be switched off (metering, the seccomp
//! filter): hello at 64 connections on two servers side by side, one with the
//! feature on (the default) and one with it off, their wrk runs interleaved
//! ([`ROUNDS`] each, alternating which goes first); the medians are compared.
//! Besides throughput, each run's server CPU time per request is measured
//! (`/proc/PID/stat`): on a shared machine it varies much less from run to run
//! than throughput, so it resolves smaller differences.

use super::client::{self, expect};
use super::kiln::Kiln;
use super::report::{Report, median, runs};
use super::wrk;
use std::time::Duration;

const ROUNDS: usize = 7;

/// What is switched: its scenario in the report, and its name in the rows.
pub(super) struct Feature {
    pub(super) scenario: &'static str,
    pub(super) name: &'static str,
}

pub(super) fn run(
    feature: Feature,
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
    // (req/s, server CPU µs per request) of each run.
    let measure = |kiln: &Kiln| -> anyhow::Result<(f64, f64)> {
        let cpu_before = kiln.cpu_time()?;
        let load = wrk::run(&kiln.url(path), "world", 64, duration)?;
        let cpu = kiln.cpu_time()? - cpu_before;
        let per_request = cpu.as_secs_f64() * 1e6 / load.requests.max(1) as f64;
        Ok((load.requests_per_sec, per_request))
    };
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let (mut cpu_with, mut cpu_without) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Alternate which server goes first, so that neither always follows the
        // other's run.
        let first_on = round % 2 == 0;
        let mut measured = [(0.0, 0.0); 2];
        for (i, measured) in measured.iter_mut().enumerate() {
            let with_feature = (i == 0) == first_on;
            *measured = measure(if with_feature { on } else { off })?;
        }
        let (on_run, off_run) = match first_on {
            true => (measured[0], measured[1]),
            false => (measured[1], measured[0]),
        };
        with.push(on_run.0);
        cpu_with.push(on_run.1);
        without.push(off_run.0);
        cpu_without.push(off_run.1);
    }
    let Feature { scenario, name } = feature;
    report.add(
        scenario,
        format!("{name} on: req/s of the runs"),
        runs(&with, 0),
    );
    report.add(
        scenario,
        format!("{name} off: req/s of the runs"),
        runs(&without, 0),
    );
    report.add(
        scenario,
        format!("{name} on: server CPU µs per request of the runs"),
        runs(&cpu_with, 1),
    );
    report.add(
        scenario,
        format!("{name} off: server CPU µs per request of the runs"),
        runs(&cpu_without, 1),
    );
    let (cpu_with, cpu_without) = (median(cpu_with), median(cpu_without));
    let cpu_change = (cpu_with - cpu_without) / cpu_without * 100.0;
    report.add(
        scenario,
        "server CPU per request, on vs off (medians)",
        format!("{cpu_with:.1} µs vs {cpu_without:.1} µs: {cpu_change:+.1}%"),
    );
    let (with, without) = (median(with), median(without));
    let change = (without - with) / without * 100.0;
    report.target(
        scenario,
        format!("throughput lost to {name} (medians, 64 connections)"),
        format!("{change:.1}%"),
        "< 3%",
        change < 3.0,
    );
    Ok(())
}
