//! Cold starts: the first request of a function just deployed, and of a function
//! not yet touched since the server restarted (its artifact on disk, never
//! recompiled). Every function is a distinct copy of the hello guest, so every
//! deploy really compiles and every first request really loads.

use super::client::{self, expect};
use super::kiln::Kiln;
use super::modules::variant;
use super::report::{Report, latency};
use crate::stats::Summary;
use std::time::Duration;

const TARGET: Duration = Duration::from_millis(1);

pub(super) fn after_deploy(
    kiln: &Kiln,
    hello: &[u8],
    samples: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let agent = client::agent();
    let mut first = Vec::with_capacity(samples);
    let mut deploys = Vec::with_capacity(samples);
    for n in 0..samples {
        let name = format!("fresh-{n}");
        let deployed = client::deploy(
            &agent,
            kiln.addr,
            &kiln.token,
            &name,
            &variant(hello, n as u64),
        )?;
        // The very next thing after the deploy answered: its first request.
        first.push(expect(
            kiln.addr,
            &format!("/fn/default/{name}"),
            b"world",
            b"Hello, world!\n",
        )?);
        deploys.push(deployed.elapsed);
    }
    let first = Summary::of(first);
    let deploys = Summary::of(deploys);
    report.add(
        "cold-after-deploy",
        format!("deploy of hello, compile included (median of {samples})"),
        latency(deploys.median),
    );
    report.target(
        "cold-after-deploy",
        "deploy answered → first response (median)",
        latency(first.median),
        "≤ 1 ms",
        first.median <= TARGET,
    );
    report.add("cold-after-deploy", "same, p99", latency(first.p99));
    Ok(())
}

pub(super) fn after_restart(
    kiln: &mut Kiln,
    hello: &[u8],
    functions: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let agent = client::agent();
    for n in 0..functions {
        let wasm = variant(hello, 1_000_000 + n as u64);
        client::deploy(
            &agent,
            kiln.addr,
            &kiln.token,
            &format!("restart-{n}"),
            &wasm,
        )?;
    }
    // Cold means not loaded: without the list of what was loaded, the
    // restarted node loads nothing until asked (a node loads that list again
    // in the background after a restart, `rewarm.rs`).
    kiln.stop()?;
    let loaded_list = kiln.data_dir().join("loaded-functions");
    if loaded_list.exists() {
        std::fs::remove_file(&loaded_list)?;
    }
    kiln.start_again()?;
    let mut first = Vec::with_capacity(functions);
    for n in 0..functions {
        let path = format!("/fn/default/restart-{n}");
        first.push(expect(kiln.addr, &path, b"world", b"Hello, world!\n")?);
    }
    let very_first = first[0];
    let compiles = client::status(&agent, kiln.addr, &kiln.admin_token)?["compiles"].clone();
    let first = Summary::of(first);
    report.target(
        "cold-after-restart",
        format!("first request of each of {functions} untouched functions (median)"),
        latency(first.median),
        "≤ 1 ms",
        first.median <= TARGET,
    );
    report.add("cold-after-restart", "same, p99", latency(first.p99));
    report.add(
        "cold-after-restart",
        "the very first request the restarted server answered",
        latency(very_first),
    );
    report.add(
        "cold-after-restart",
        "modules compiled by the restart",
        compiles.to_string(),
    );
    Ok(())
}
