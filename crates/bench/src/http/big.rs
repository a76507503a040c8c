//! A big module: a generated WASI command of 20+ MiB. Deploying it (upload, checks,
//! compile, artifact written) against `wasmtime compile` of the same file, then its
//! first request after a restart, which maps the artifact and compiles nothing.

use super::client::{self, expect};
use super::kiln::Kiln;
use super::modules::{BIG_OUTPUT, big};
use super::peer;
use super::report::{Report, latency};
use std::path::Path;
use std::time::Duration;

pub fn run(
    kiln: &mut Kiln,
    wasmtime: &Path,
    min_bytes: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let wasm = big(min_bytes);
    let wasm_path = dir.path().join("big.wasm");
    std::fs::write(&wasm_path, &wasm)?;
    let size_mib = wasm.len() as f64 / (1 << 20) as f64;

    let deployed = client::deploy(&client::agent(), kiln.addr, &kiln.token, "big", &wasm)?;
    drop(wasm);
    let peer_time = peer::compile(wasmtime, &wasm_path, &dir.path().join("big.cwasm"), &[])?;

    kiln.restart()?;
    let first = expect(kiln.addr, "/fn/default/big", b"", BIG_OUTPUT)?;
    let second = expect(kiln.addr, "/fn/default/big", b"", BIG_OUTPUT)?;

    let compile = deployed.compile.unwrap_or_default();
    report.add(
        "big module",
        format!("deploy of a {size_mib:.1} MiB module: whole request | compiling alone"),
        format!("{} | {}", latency(deployed.elapsed), latency(compile)),
    );
    report.add(
        "big module",
        "`wasmtime compile` of the same file",
        latency(peer_time),
    );
    let ratio = deployed.elapsed.as_secs_f64() / peer_time.as_secs_f64();
    report.target(
        "big module",
        "kiln deploy ÷ wasmtime compile",
        format!("{ratio:.2}"),
        "≤ 1.1",
        ratio <= 1.1,
    );
    report.target(
        "big module",
        "first request after a restart",
        latency(first),
        "≤ 20 ms",
        first <= Duration::from_millis(20),
    );
    report.add("big module", "second request", latency(second));
    Ok(())
}
