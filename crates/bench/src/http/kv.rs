//! Key-value state on one node (the embedded SQLite store): what a `get` and a
//! durable `set` of a 100-byte value add to a request — median latency at one
//! connection against the same module making no key-value call, in the same
//! run — and the throughput of a counter (one increment per request) at 32
//! connections, with its count checked against the answers afterwards. The
//! guests are core modules importing `kiln_kv`, written here in WAT.

use super::kiln::Kiln;
use super::report::{Report, latency};
use super::wrk;
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const SCENARIO: &str = "key-value (embedded store)";
const CLUSTER: &str = "key-value (3 nodes, PostgreSQL)";

/// A core module that opens bucket `bench`, does `op`, and prints `ok`.
fn module(op: &str) -> String {
    let value = "v".repeat(100);
    format!(
        r#"(module
  (import "kiln_kv" "open" (func $open (param i32 i32) (result i32)))
  (import "kiln_kv" "get" (func $get (param i32 i32 i32 i32 i32) (result i64)))
  (import "kiln_kv" "set" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (import "kiln_kv" "increment" (func $inc (param i32 i32 i32 i64) (result i64)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "bench")
  (data (i32.const 16) "key")
  (data (i32.const 32) "hits")
  (data (i32.const 64) "{value}")
  (data (i32.const 256) "ok\n")
  (func (export "_start") (local $b i32)
    {op}
    (i32.store (i32.const 512) (i32.const 256))
    (i32.store (i32.const 516) (i32.const 3))
    (drop (call $write (i32.const 1) (i32.const 512) (i32.const 1) (i32.const 520)))))"#
    )
}

const OPEN: &str = "(local.set $b (call $open (i32.const 0) (i32.const 5)))";

fn ops() -> [(&'static str, String); 4] {
    [
        ("none", String::new()),
        (
            "get",
            format!(
                "{OPEN} (if (i64.ne (call $get (local.get $b) (i32.const 16) (i32.const 3) \
                 (i32.const 1024) (i32.const 128)) (i64.const 100)) (then (call $exit (i32.const 1))))"
            ),
        ),
        (
            "set",
            format!(
                "{OPEN} (if (i32.ne (call $set (local.get $b) (i32.const 16) (i32.const 3) \
                 (i32.const 64) (i32.const 100)) (i32.const 0)) (then (call $exit (i32.const 1))))"
            ),
        ),
        (
            "counter",
            format!(
                "{OPEN} (if (i64.lt_s (call $inc (local.get $b) (i32.const 32) (i32.const 4) \
                 (i64.const 1)) (i64.const 1)) (then (call $exit (i32.const 1))))"
            ),
        ),
    ]
}

/// Deploys the four guests on the node at `addr`, each granted bucket `bench`.
fn deploy_guests(addr: SocketAddr, token: &str) -> anyhow::Result<()> {
    let agent = super::client::agent();
    for (name, op) in ops() {
        let wasm = wat::parse_str(module(&op)).context("assembling a key-value guest")?;
        let mut answer = agent
            .post(&format!(
                "http://{addr}/v1/functions/{name}/versions?kv=bench"
            ))
            .header("Authorization", &format!("Bearer {token}"))
            .send(&wasm[..])
            .with_context(|| format!("deploying {name}"))?;
        let deployed: serde_json::Value = answer.body_mut().read_json()?;
        if deployed.get("version").is_none() {
            bail!("deploy of {name} answered {deployed}");
        }
    }
    Ok(())
}

pub(super) fn run(kiln: &Kiln, duration: Duration, report: &mut Report) -> anyhow::Result<()> {
    deploy_guests(kiln.addr, &kiln.token)?;
    // The value `get` reads, set once by a request of `set`.
    super::client::expect(kiln.addr, "/fn/default/set", b"", b"ok\n")?;

    let mut medians = Vec::new();
    for name in ["none", "get", "set"] {
        let run = wrk::run(&kiln.url(&format!("/fn/default/{name}")), "", 1, duration)?;
        eprintln!("kv {name}: p50 {:?}, p99 {:?}", run.p50, run.p99);
        medians.push(run.p50);
        report.add(
            SCENARIO,
            format!("`{name}`, 1 connection: p50"),
            latency(run.p50),
        );
        report.add(
            SCENARIO,
            format!("`{name}`, 1 connection: p99"),
            latency(run.p99),
        );
    }
    let added_get = medians[1].saturating_sub(medians[0]);
    let added_set = medians[2].saturating_sub(medians[0]);
    report.target(
        SCENARIO,
        "added by a `get` of 100 bytes (p50 - p50 of `none`)",
        latency(added_get),
        "≤ 50 µs",
        added_get <= Duration::from_micros(50),
    );
    report.target(
        SCENARIO,
        "added by a durable `set` of 100 bytes",
        latency(added_set),
        "≤ 1 ms",
        added_set <= Duration::from_millis(1),
    );

    let run = wrk::run(&kiln.url("/fn/default/counter"), "", 32, duration)?;
    report.target(
        SCENARIO,
        "counter (increment per request), 32 connections: req/s",
        format!("{:.0}", run.requests_per_sec),
        "≥ 5,000",
        run.requests_per_sec >= 5000.0,
    );
    report.add(SCENARIO, "counter p99", latency(run.p99));
    // Every answered increment is stored: the count is at least wrk's, and
    // at most that plus the requests in flight when wrk stopped.
    let count = read_counter(kiln.addr, &kiln.token)?;
    let exact = count >= run.requests && count <= run.requests + 32;
    report.add(
        SCENARIO,
        "counter after the run (wrk counted)",
        format!(
            "{count} ({}){}",
            run.requests,
            if exact { "" } else { " — MISMATCH" }
        ),
    );
    if !exact {
        bail!(
            "the counter holds {count} after {} answered increments",
            run.requests
        );
    }
    Ok(())
}

/// The counter's value, through the API.
fn read_counter(addr: SocketAddr, token: &str) -> anyhow::Result<u64> {
    let text = super::client::agent()
        .get(&format!("http://{addr}/v1/kv/bench/hits"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()?
        .body_mut()
        .read_to_string()?;
    text.trim()
        .parse()
        .with_context(|| format!("the counter holds {text:?}"))
}

/// Three nodes on PostgreSQL behind nginx: `get` and `none` at 8 connections
/// spread over the nodes (p50 and p99), then the counter at 64, its count
/// checked as on one node. The value `get` reads is set through node 0's API
/// and read back through every node first (read-your-writes across nodes).
pub(super) fn run_cluster(
    binary: &Path,
    duration: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    const READERS: u32 = 8;
    const INCREMENTERS: u32 = 64;
    let cluster = super::cluster::Cluster::start(binary, "kiln_bench_kv")?;
    let first = &cluster.nodes[0];
    deploy_guests(first.addr, &first.token)?;
    super::client::agent()
        .put(&format!("http://{}/v1/kv/bench/key", first.addr))
        .header("Authorization", &format!("Bearer {}", first.token))
        .send("v".repeat(100))
        .context("setting the value `get` reads")?;
    for node in &cluster.nodes {
        super::client::expect(node.addr, "/fn/default/get", b"", b"ok\n")?;
    }
    let mut p50s = Vec::new();
    for name in ["none", "get"] {
        let run = wrk::run(
            &cluster.url(&format!("/fn/default/{name}")),
            "",
            READERS,
            duration,
        )?;
        eprintln!("kv cluster {name}: p50 {:?}, p99 {:?}", run.p50, run.p99);
        p50s.push(run.p50);
        report.add(
            CLUSTER,
            format!("`{name}`, {READERS} connections over 3 nodes: p50 / p99"),
            format!("{} / {}", latency(run.p50), latency(run.p99)),
        );
    }
    report.add(
        CLUSTER,
        "added by a `get` (p50 - p50 of `none`)",
        latency(p50s[1].saturating_sub(p50s[0])),
    );
    let run = wrk::run(
        &cluster.url("/fn/default/counter"),
        "",
        INCREMENTERS,
        duration,
    )?;
    report.add(
        CLUSTER,
        format!("counter, {INCREMENTERS} connections over 3 nodes: req/s, p99"),
        format!("{:.0}, {}", run.requests_per_sec, latency(run.p99)),
    );
    let count = read_counter(first.addr, &first.token)?;
    let exact = count >= run.requests && count <= run.requests + u64::from(INCREMENTERS);
    report.target(
        CLUSTER,
        "counter after the run (wrk counted)",
        format!("{count} ({})", run.requests),
        "exact",
        exact,
    );
    if !exact {
        bail!(
            "the counter holds {count} after {} answered increments",
            run.requests
        );
    }
    Ok(())
}
