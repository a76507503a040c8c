//! Schedule: a function scheduled every minute on three nodes sharing a
//! PostgreSQL and an S3 bucket, watched for ten minutes. Each tick must run
//! exactly once: the runs the store recorded and the runs the function counted
//! itself (a key-value counter) are both ten. Also how late after its tick
//! each run started, and how the runs spread over the nodes.

use super::client;
use super::cluster::Cluster;
use super::report::{Report, median};
use anyhow::{Context, bail};
use kiln_api::{FunctionConfig, Schedule, ScheduledRun};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// Ticks watched.
const TICKS: i64 = 10;

pub(super) fn run(binary: &Path, report: &mut Report) -> anyhow::Result<()> {
    let cluster = Cluster::start(binary, "kiln_bench_schedule")?;
    let first = &cluster.nodes[0];
    let counter = std::fs::read(kiln_guests::path("counter")).context("reading the counter")?;
    let config = FunctionConfig {
        kv: vec!["counter".into()],
        schedule: Some(Schedule::parse("* * * * *")?),
        ..FunctionConfig::default()
    };
    let agent = client::agent();
    client::deploy_with(
        &agent,
        first.addr,
        &first.token,
        "tick",
        &config.to_query(),
        &counter,
    )?;
    let deployed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    // The first tick after the deploy, and the tenth.
    let start = (deployed / 60 + 1) * 60;
    let last = start + (TICKS - 1) * 60;
    let runs_url = format!("http://{}/v1/schedules/tick?limit=200", first.addr);
    let deadline = Instant::now() + Duration::from_secs((last - deployed + 120) as u64);
    let runs: Vec<ScheduledRun> = loop {
        let runs: Vec<ScheduledRun> = agent
            .get(&runs_url)
            .header("Authorization", &format!("Bearer {}", first.token))
            .call()?
            .body_mut()
            .read_json()?;
        if runs
            .iter()
            .any(|r| r.tick >= last && r.finished_at.is_some())
        {
            break runs;
        }
        if Instant::now() > deadline {
            bail!(
                "the tick of {} did not end in time: {runs:?}",
                kiln_api::rfc3339(last)
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let window: Vec<&ScheduledRun> = runs
        .iter()
        .filter(|r| (start..=last).contains(&r.tick))
        .collect();
    let ok = window
        .iter()
        .filter(|r| r.outcome.as_deref() == Some("success"))
        .count();
    let hits: u64 = agent
        .get(&format!("http://{}/v1/kv/counter/hits", first.addr))
        .header("Authorization", &format!("Bearer {}", first.token))
        .call()?
        .body_mut()
        .read_to_string()?
        .trim()
        .parse()
        .context("reading the counter")?;
    let nodes: BTreeSet<&str> = window.iter().map(|r| r.node.as_str()).collect();
    let late: Vec<f64> = window
        .iter()
        .map(|r| (r.started_at - r.tick) as f64)
        .collect();
    let max_late = late.iter().copied().fold(0.0, f64::max);
    let exact = window.len() as i64 == TICKS && ok as i64 == TICKS && hits == TICKS as u64;
    report.target(
        "schedule",
        format!("runs of an every-minute schedule over {TICKS} minutes on 3 nodes (recorded / counted by the function)"),
        format!("{} / {hits}", window.len()),
        format!("exactly {TICKS}"),
        exact,
    );
    report.add(
        "schedule",
        "start after the tick, median / max",
        format!("{:.0} s / {max_late:.0} s", median(late)),
    );
    report.add("schedule", "nodes that ran a tick", nodes.len().to_string());
    Ok(())
}
