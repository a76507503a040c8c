//! wasi:http throughput: the same `hello-http` component served by Kiln and by
//! `wasmtime serve` (the same wasmtime version, its default settings plus
//! `-S cli=y`, which a Rust std component needs), under the same wrk load (64
//! connections), their runs interleaved ([`ROUNDS`] each); medians compared.

use super::client::{self, expect};
use super::kiln::Kiln;
use super::report::{Report, latency};
use super::wrk::{self, Load};
use anyhow::{Context, bail};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;

/// `wasmtime serve` of a component, as a child process.
pub(super) struct WasmtimeServe {
    child: Child,
    pub addr: SocketAddr,
}

impl WasmtimeServe {
    pub(super) fn start(cli: &Path, component: &Path) -> anyhow::Result<WasmtimeServe> {
        // A free loopback port (wasmtime serve does not report the one it got).
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new(cli)
            .args(["serve", "-S", "cli=y", "--addr", &addr.to_string()])
            .arg(component)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting wasmtime serve")?;
        let mut serve = WasmtimeServe { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = serve.child.try_wait()? {
                bail!("wasmtime serve exited with {status}");
            }
            if Instant::now() > deadline {
                bail!("wasmtime serve did not listen on {addr} within a minute");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(serve)
    }
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn run(
    kiln: &Kiln,
    component: &Path,
    wasmtime: &Path,
    duration: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    let wasm = std::fs::read(component)?;
    client::deploy(
        &client::agent(),
        kiln.addr,
        &kiln.token,
        "hello-http",
        &wasm,
    )?;
    let path = "/fn/default/hello-http";
    expect(kiln.addr, path, b"world", b"Hello, world!\n")?;
    let serve = WasmtimeServe::start(wasmtime, component)?;
    expect(serve.addr, "/", b"world", b"Hello, world!\n")?;

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(wrk::run(&kiln.url(path), "world", 64, duration)?);
        theirs.push(wrk::run(
            &format!("http://{}/", serve.addr),
            "world",
            64,
            duration,
        )?);
    }
    drop(serve);
    let list = |runs: &[Load]| {
        runs.iter()
            .map(|r| format!("{:.0}", r.requests_per_sec))
            .collect::<Vec<_>>()
            .join(", ")
    };
    report.add("wasi-http", "kiln: req/s of the runs", list(&ours));
    report.add(
        "wasi-http",
        "wasmtime serve: req/s of the runs",
        list(&theirs),
    );
    let median = |mut runs: Vec<Load>| {
        runs.sort_by(|a, b| a.requests_per_sec.total_cmp(&b.requests_per_sec));
        runs.swap_remove(ROUNDS / 2)
    };
    let (ours, theirs) = (median(ours), median(theirs));
    for (who, load) in [("kiln", &ours), ("wasmtime serve", &theirs)] {
        report.add(
            "wasi-http",
            format!("{who}, 64 connections: median req/s"),
            format!("{:.0}", load.requests_per_sec),
        );
        report.add("wasi-http", format!("{who}: p50"), latency(load.p50));
        report.add("wasi-http", format!("{who}: p99"), latency(load.p99));
    }
    let ratio = ours.requests_per_sec / theirs.requests_per_sec;
    report.target(
        "wasi-http",
        "kiln ÷ wasmtime serve, req/s (medians)",
        format!("{ratio:.2}×"),
        "≥ 1.0×",
        ratio >= 1.0,
    );
    Ok(())
}
