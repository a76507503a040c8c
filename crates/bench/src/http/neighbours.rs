//! Noisy neighbours: hello (tenant `default`) under wrk at 8 connections, alone
//! and while tenant `hog` keeps its whole concurrency limit busy with guests that
//! burn CPU (more hog clients than its limit, so it is always at the limit, and
//! its refused calls are 429s); and the hog alone, with the share of the
//! machine's CPU its server used. Runs alternate [`ROUNDS`] times; the medians
//! of hello's p99 and throughput are compared. wrk fails on any non-2xx answer,
//! so every hello request of every run was also served.

use super::client;
use super::kiln::Kiln;
use super::report::{Report, latency};
use super::wrk::{self, Load};
use anyhow::Context;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const ROUNDS: usize = 3;
/// The hog's concurrency limit: two CPU-bound guests per core of this machine.
const HOG_LIMIT_PER_CORE: usize = 2;
/// Millions of rounds each hog invocation burns (about 50 ms of CPU).
const HOG_WORK: &[u8] = b"50";
/// The bound hello's p99 must stay within while the hog runs.
const P99_BOUND: Duration = Duration::from_millis(10);
/// Hello's throughput beside the hog, at least, as a part of its throughput alone.
const SHARE_BOUND: f64 = 0.45;
/// The hog alone: the part of the machine's CPU its server uses, at least.
const ALONE_BOUND: f64 = 0.90;

/// Clients calling the hog's burner in a loop until dropped.
struct Hog {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    served: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
}

impl Hog {
    fn start(kiln: &Kiln, clients: usize) -> Hog {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|_| {
                let (stop, served, refused) = (stop.clone(), served.clone(), refused.clone());
                let addr = kiln.addr;
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match client::post(addr, "/fn/hog/burn", HOG_WORK).map(|t| t.status) {
                            Ok(200) => served.fetch_add(1, Ordering::Relaxed),
                            _ => refused.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        Hog {
            stop,
            threads,
            served,
            refused,
        }
    }

    /// Stops the clients; (invocations served, refused).
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
        (
            self.served.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

pub(super) fn run(
    kiln: &Kiln,
    hello: &[u8],
    burn: &[u8],
    duration: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    let agent = client::agent();
    client::deploy(&agent, kiln.addr, &kiln.token, "hello", hello)?;
    let created: serde_json::Value = agent
        .post(&kiln.url("/v1/tenants"))
        .header("Authorization", &format!("Bearer {}", kiln.admin_token))
        .send_json(serde_json::json!({"name": "hog"}))
        .context("creating the hog tenant")?
        .body_mut()
        .read_json()?;
    let hog_token = created["token"].as_str().context("hog token")?.to_owned();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let limit = cores * HOG_LIMIT_PER_CORE;
    agent
        .put(&kiln.url("/v1/tenants/hog/quota"))
        .header("Authorization", &format!("Bearer {}", kiln.admin_token))
        .send_json(serde_json::json!({"max_concurrent": limit}))
        .context("setting the hog's quota")?;
    client::deploy(&agent, kiln.addr, &hog_token, "burn", burn)?;
    client::expect(kiln.addr, "/fn/default/hello", b"n", b"Hello, n!\n")?;

    let url = kiln.url("/fn/default/hello");
    let (mut alone, mut hogged, mut hog_alone) = (Vec::new(), Vec::new(), Vec::new());
    let (mut served, mut refused) = (0, 0);
    for _ in 0..ROUNDS {
        alone.push(wrk::run(&url, "n", 8, duration)?);
        let hog = Hog::start(kiln, limit + cores);
        let load = wrk::run(&url, "n", 8, duration);
        // The hog alone, as long: the server's CPU time over the wall time.
        let (cpu, wall) = (kiln.cpu_time()?, std::time::Instant::now());
        std::thread::sleep(duration);
        let used = kiln.cpu_time()?.saturating_sub(cpu).as_secs_f64();
        hog_alone.push(used / wall.elapsed().as_secs_f64() / cores as f64);
        let (s, r) = hog.stop();
        hogged.push(load?);
        served += s;
        refused += r;
    }
    let median = |runs: &mut Vec<Load>, key: fn(&Load) -> f64| {
        runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
        key(&runs[ROUNDS / 2])
    };
    let p99 = |l: &Load| l.p99.as_secs_f64();
    let rate = |l: &Load| l.requests_per_sec;
    let (p99_alone, p99_hogged) = (median(&mut alone, p99), median(&mut hogged, p99));
    let (rate_alone, rate_hogged) = (median(&mut alone, rate), median(&mut hogged, rate));
    report.add(
        "neighbours",
        format!(
            "hog: {limit} burning guests at once ({} clients)",
            limit + cores
        ),
        format!("{served} served, {refused} refused (429)"),
    );
    report.add(
        "neighbours",
        "hello alone: p99, req/s (medians, 8 connections)",
        format!(
            "{}, {rate_alone:.0}",
            latency(Duration::from_secs_f64(p99_alone))
        ),
    );
    let part = rate_hogged / rate_alone;
    report.target(
        "neighbours",
        "hello beside the hog: req/s (median), part of alone",
        format!("{rate_hogged:.0} ({:.0}%)", part * 100.0),
        format!("≥ {:.0}%", SHARE_BOUND * 100.0),
        part >= SHARE_BOUND,
    );
    hog_alone.sort_by(f64::total_cmp);
    let hog_cpu = hog_alone[ROUNDS / 2];
    report.target(
        "neighbours",
        "hog alone: the server's CPU, part of the machine (median)",
        format!(
            "{:.0}% (runs: {})",
            hog_cpu * 100.0,
            hog_alone
                .iter()
                .map(|v| format!("{:.0}%", v * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!("≥ {:.0}%", ALONE_BOUND * 100.0),
        hog_cpu >= ALONE_BOUND,
    );
    let p99_hogged = Duration::from_secs_f64(p99_hogged);
    report.target(
        "neighbours",
        "hello beside the hog: p99 (median), every request served",
        latency(p99_hogged),
        format!("≤ {}", latency(P99_BOUND)),
        p99_hogged <= P99_BOUND,
    );
    Ok(())
}
