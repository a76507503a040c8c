//! Density: thousands of distinct functions on one server. Deploy them all (the
//! deploy rate), invoke each once in random order (first-request latency, with the
//! loaded-function cache evicting as it goes), then measure what stays: server RSS
//! and disk per function, and the cost of a cache miss (reloading an evicted
//! function) against a hit; then a restart with all of them deployed (nothing
//! is compiled or loaded at start: time to serving, and to a first answer).
//! Last, the blob collector over all of them: a pass that finds nothing to
//! delete, then one that deletes a tenth of them.

use super::client::{self, expect};
use super::kiln::Kiln;
use super::modules::{tiny, tiny_output};
use super::report::{Report, bytes, latency};
use crate::stats::Summary;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Concurrent deploy clients.
const DEPLOYERS: usize = 4;
/// What a deployed function may add to the server's resident memory.
const RSS_PER_FUNCTION: f64 = 8.0 * 1024.0;
/// How soon a restarted server must serve, all functions deployed.
const RESTART_BOUND: Duration = Duration::from_secs(2);

pub(super) fn run(kiln: &mut Kiln, functions: usize, report: &mut Report) -> anyhow::Result<()> {
    let agent = client::agent();
    let rss_before = kiln.rss()?;
    let disk_before = disk_usage(&kiln.data_dir())?;

    let next = AtomicUsize::new(0);
    let begin = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..DEPLOYERS)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= functions {
                            return Ok(());
                        }
                        client::deploy(&agent, kiln.addr, &kiln.token, &name(n), &tiny(n as u64))?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("deploy thread panicked"))
    })?;
    let deploy_rate = functions as f64 / begin.elapsed().as_secs_f64();
    let rss_deployed = kiln.rss()?;

    let mut order: Vec<usize> = (0..functions).collect();
    shuffle(&mut order, 0x5eed);
    let mut first = Vec::with_capacity(functions);
    for &n in &order {
        let path = format!("/fn/default/{}", name(n));
        first.push(expect(kiln.addr, &path, b"", &tiny_output(n as u64))?);
    }
    let rss_after = kiln.rss()?;
    let disk_after = disk_usage(&kiln.data_dir())?;
    let status = client::status(&agent, kiln.addr, &kiln.admin_token)?;
    let loaded = status["loaded_functions"].as_u64().unwrap_or(0) as usize;

    // The most recently invoked `loaded` functions are in the cache; the ones
    // invoked first were evicted long ago.
    let sample = loaded.min(functions / 2).min(1000);
    let time = |ns: &[usize]| -> anyhow::Result<Summary> {
        let mut samples = Vec::with_capacity(ns.len());
        for &n in ns {
            let path = format!("/fn/default/{}", name(n));
            samples.push(expect(kiln.addr, &path, b"", &tiny_output(n as u64))?);
        }
        Ok(Summary::of(samples))
    };
    let hits = time(&order[functions - sample..])?;
    let reloads = time(&order[..sample])?;

    let first = Summary::of(first);
    let n = functions as f64;
    report.add(
        "density",
        format!("deploy rate ({functions} distinct modules, {DEPLOYERS} clients)"),
        format!("{deploy_rate:.0} deploys/s"),
    );
    report.add(
        "density",
        "first request of each, random order: median",
        latency(first.median),
    );
    report.target(
        "density",
        "first request of each, random order: p99",
        latency(first.p99),
        "≤ 5 ms",
        first.p99 <= Duration::from_millis(5),
    );
    let idle = rss_after.saturating_sub(rss_before) as f64 / n;
    report.add(
        "density",
        "server RSS: before deploys → after deploys → after invoking all",
        format!(
            "{} → {} → {}",
            bytes(rss_before as f64),
            bytes(rss_deployed as f64),
            bytes(rss_after as f64)
        ),
    );
    report.target(
        "density",
        "server RSS per deployed function",
        bytes(idle),
        format!("≤ {}", bytes(RSS_PER_FUNCTION)),
        idle <= RSS_PER_FUNCTION,
    );
    report.add(
        "density",
        "disk per function (module, artifact, metadata)",
        bytes(disk_after.saturating_sub(disk_before) as f64 / n),
    );
    report.add(
        "density",
        format!(
            "loaded-function cache: {loaded} loaded; request to a loaded one (median of {sample})"
        ),
        latency(hits.median),
    );
    report.add(
        "density",
        format!("request to an evicted one: reload + run (median of {sample})"),
        latency(reloads.median),
    );
    restart(kiln, functions, &order, report)?;
    collect(kiln, &agent, functions, report)
}

/// Stops the server, starts it again on the same data, and times how soon it
/// serves and answers a function it has not loaded since.
fn restart(
    kiln: &mut Kiln,
    functions: usize,
    order: &[usize],
    report: &mut Report,
) -> anyhow::Result<()> {
    kiln.stop()?;
    let begin = Instant::now();
    kiln.start_again()?;
    let serving = begin.elapsed();
    let n = order[functions / 2];
    let path = format!("/fn/default/{}", name(n));
    expect(kiln.addr, &path, b"", &tiny_output(n as u64))?;
    let answered = begin.elapsed();
    report.target(
        "density",
        format!("restart with {functions} functions deployed: start to serving"),
        latency(serving),
        format!("≤ {}", latency(RESTART_BOUND)),
        serving <= RESTART_BOUND,
    );
    report.add(
        "density",
        "restart: start to a first answer from one of them",
        latency(answered),
    );
    Ok(())
}

/// Times a collector pass over every function with nothing to delete, then
/// one after a tenth of them were deleted (the server runs with no grace).
fn collect(
    kiln: &Kiln,
    agent: &ureq::Agent,
    functions: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (idle, _) = client::collect_garbage(agent, kiln.addr, &kiln.admin_token)?;
    report.add(
        "density",
        format!("blob collector pass over {functions} functions, nothing to delete"),
        latency(idle),
    );
    let doomed = functions / 10;
    for n in 0..doomed {
        client::delete_function(agent, kiln.addr, &kiln.token, &name(n))?;
    }
    let (busy, deleted) = client::collect_garbage(agent, kiln.addr, &kiln.admin_token)?;
    report.add(
        "density",
        format!(
            "blob collector pass deleting {doomed} functions' modules and artifacts ({})",
            bytes(deleted as f64)
        ),
        latency(busy),
    );
    Ok(())
}

fn name(n: usize) -> String {
    format!("f{n:06}")
}

/// Fisher–Yates with a fixed xorshift seed: the same "random" order every run.
fn shuffle(items: &mut [usize], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

/// Bytes allocated on disk under `dir`.
fn disk_usage(dir: &Path) -> anyhow::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            disk_usage(&entry.path())?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}
