//! A big module: a generated WASI command of 20+ MiB. Deploying it (upload, checks,
//! compile, artifact written) against `wasmtime compile` of the same file with the
//! same code-generation setting Kiln uses (epoch interruption), [`ROUNDS`] times each,
//! interleaved, medians compared; then its first request after a restart, which maps
//! the artifact and compiles nothing.

use super::client::{self, expect};
use super::kiln::Kiln;
use super::modules::{BIG_OUTPUT, big};
use super::peer;
use super::report::{Report, latency};
use crate::stats::Summary;
use std::path::Path;
use std::time::Duration;
use wasm_encoder::Encode;

/// Deploys of the big module, each followed by a `wasmtime compile` of the same bytes.
const ROUNDS: usize = 3;
/// Kiln compiles with epoch interruption on (its wall-time limits); so does the peer.
const PEER_FLAGS: &[&str] = &["-W", "epoch-interruption=y"];

pub(super) fn run(
    kiln: &mut Kiln,
    wasmtime: &Path,
    min_bytes: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let base = big(min_bytes);
    let size_mib = base.len() as f64 / (1 << 20) as f64;
    let Rounds {
        requests,
        compiles,
        peers,
    } = deploy_against_compile(kiln, wasmtime, &base, "big", ROUNDS, PEER_FLAGS)?;
    drop(base);

    kiln.restart()?;
    let first = expect(kiln.addr, "/fn/default/big0", b"", BIG_OUTPUT)?;
    let second = expect(kiln.addr, "/fn/default/big0", b"", BIG_OUTPUT)?;

    let median = |samples: Vec<Duration>| Summary::of(samples).median;
    let (request, compile, peer_time) = (median(requests), median(compiles), median(peers));
    report.add(
        "big module",
        format!("deploy of a {size_mib:.1} MiB module, whole request (median of {ROUNDS})"),
        latency(request),
    );
    report.add("big module", "of which compiling", latency(compile));
    report.add(
        "big module",
        "`wasmtime compile -W epoch-interruption=y` of the same file (median)",
        latency(peer_time),
    );
    let ratio = request.as_secs_f64() / peer_time.as_secs_f64();
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

/// Times of the rounds of [`deploy_against_compile`].
pub(super) struct Rounds {
    /// Each deploy, the whole request.
    pub requests: Vec<Duration>,
    /// Of which the server compiled.
    pub compiles: Vec<Duration>,
    /// Each `wasmtime compile` of the same bytes.
    pub peers: Vec<Duration>,
}

/// Deploys `base` `rounds` times as functions `{prefix}0`, `{prefix}1`...,
/// each followed by `wasmtime compile` (with `peer_flags`) of the same bytes.
/// Each round's module differs only in a custom section: new bytes (so Kiln
/// compiles again), the same code.
pub(super) fn deploy_against_compile(
    kiln: &Kiln,
    wasmtime: &Path,
    base: &[u8],
    prefix: &str,
    rounds: usize,
    peer_flags: &[&str],
) -> anyhow::Result<Rounds> {
    let dir = tempfile::tempdir()?;
    let agent = client::agent();
    let mut times = Rounds {
        requests: vec![],
        compiles: vec![],
        peers: vec![],
    };
    for round in 0..rounds {
        let wasm = with_round_section(base, round);
        let name = format!("{prefix}{round}");
        let deployed = client::deploy(&agent, kiln.addr, &kiln.token, &name, &wasm)?;
        times.requests.push(deployed.elapsed);
        times.compiles.push(deployed.compile.unwrap_or_default());
        let wasm_path = dir.path().join(format!("{name}.wasm"));
        std::fs::write(&wasm_path, &wasm)?;
        drop(wasm);
        let cwasm = dir.path().join(format!("{name}.cwasm"));
        times
            .peers
            .push(peer::compile(wasmtime, &wasm_path, &cwasm, peer_flags)?);
    }
    Ok(times)
}

/// `wasm` with a custom section naming `round` appended.
fn with_round_section(wasm: &[u8], round: usize) -> Vec<u8> {
    let name = "kiln-bench-round";
    let mut content = Vec::new();
    name.encode(&mut content);
    content.extend_from_slice(round.to_string().as_bytes());
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    content.len().encode(&mut out);
    out.extend_from_slice(&content);
    out
}
