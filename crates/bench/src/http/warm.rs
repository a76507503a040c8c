//! Warm throughput: the hello guest, a fresh instance per request, under wrk at 1
//! and 64 connections; then the same guest as a process per request (`wasmtime run`
//! of its precompiled `.cwasm`, classic CGI) under the same load, for the ratio.

use super::client::{self, expect};
use super::kiln::Kiln;
use super::peer::{self, CgiPeer};
use super::report::{Report, latency};
use super::wrk::{self, Load};
use std::path::Path;
use std::time::Duration;

pub fn run(
    kiln: &Kiln,
    hello_path: &Path,
    wasmtime: &Path,
    duration: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    let hello = std::fs::read(hello_path)?;
    client::deploy(&client::agent(), kiln.addr, &kiln.token, "hello", &hello)?;
    let path = "/fn/default/hello";
    expect(kiln.addr, path, b"world", b"Hello, world!\n")?;
    let url = kiln.url(path);
    let kiln_1 = wrk::run(&url, "world", 1, duration)?;
    let kiln_64 = wrk::run(&url, "world", 64, duration)?;

    let dir = tempfile::tempdir()?;
    let cwasm = dir.path().join("hello.cwasm");
    peer::compile(wasmtime, hello_path, &cwasm, &[])?;
    let cgi = CgiPeer::start(wasmtime, &cwasm)?;
    expect(cgi.addr, "/", b"world", b"Hello, world!\n")?;
    let peer_url = format!("http://{}/", cgi.addr);
    let peer_1 = wrk::run(&peer_url, "world", 1, duration)?;
    let peer_64 = wrk::run(&peer_url, "world", 64, duration)?;
    drop(cgi);

    let row = |report: &mut Report, who: &str, load: &Load| {
        report.add(
            "warm",
            format!(
                "{who}, {} connection(s): req/s | p50 | p99",
                load.connections
            ),
            format!(
                "{:.0} | {} | {}",
                load.requests_per_sec,
                latency(load.p50),
                latency(load.p99)
            ),
        );
    };
    row(report, "kiln", &kiln_1);
    row(report, "process per request (wasmtime run)", &peer_1);
    row(report, "process per request (wasmtime run)", &peer_64);
    report.target(
        "warm",
        "kiln, 64 connections: req/s",
        format!("{:.0}", kiln_64.requests_per_sec),
        "≥ 20,000",
        kiln_64.requests_per_sec >= 20_000.0,
    );
    report.target(
        "warm",
        "kiln, 64 connections: p99",
        latency(kiln_64.p99),
        "≤ 10 ms",
        kiln_64.p99 <= Duration::from_millis(10),
    );
    report.add("warm", "kiln, 64 connections: p50", latency(kiln_64.p50));
    let ratio = kiln_64.requests_per_sec / peer_64.requests_per_sec;
    report.target(
        "warm",
        "kiln ÷ process per request, req/s at 64 connections",
        format!("{ratio:.0}×"),
        "≥ 50×",
        ratio >= 50.0,
    );
    Ok(())
}
