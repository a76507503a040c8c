//! Python and JavaScript on the runtimes Kiln provides: the same hello written
//! as a Python handler and a JavaScript `fetch` handler, deployed with the CLI
//! (`kiln deploy hello.py`), then measured: deploy time once the runtime is
//! compiled on the node, disk per function, first request after the deploy and
//! after a restart (at once, and once the node has loaded its functions again),
//! and wrk at 32 connections with the server's CPU time per
//! request. Peers in the same run: the same Python program on a user-supplied
//! CPython module on Kiln (the real-program lane's CPython 3.12, booting per
//! request), the same JavaScript on Node.js as a process per request, and the
//! wasi:http components componentize-py and componentize-js build
//! (`scripts/toolchains`) on Kiln and on `wasmtime serve` (when the wasmtime
//! CLI 48.0.8 is installed). Each function's optimized code is waited for
//! after its deploy (a module of 4 MiB or more first runs on baseline code),
//! so that deploys and load runs never share the CPU with a background compile.

use super::client::expect;
use super::kiln::Kiln;
use super::peer::CgiPeer;
use super::report::{Report, bytes, latency};
use super::wrk;
use anyhow::{Context, bail};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Deploys of each program after the first (which compiles the runtime).
const REDEPLOYS: usize = 3;
/// Connections of the load runs.
const CONNECTIONS: u32 = 32;
/// Connections of the Node.js peer's load run (a process per request).
const NODE_CONNECTIONS: u32 = 4;

const PYTHON: &str =
    "def handle(request):\n    return f\"Hello, {request.text() or 'world'}!\\n\"\n";
const JAVASCRIPT: &str = "export default {\n  async fetch(request) {\n    \
    return new Response(`Hello, ${(await request.text()) || \"world\"}!\\n`);\n  },\n};\n";
const PYTHON_CGI: &str = "import sys; print('Hello, ' + (sys.stdin.read() or 'world') + '!')";
const NODE_CGI: &str = "let b='';process.stdin.on('data',d=>b+=d);\
    process.stdin.on('end',()=>process.stdout.write(`Hello, ${b||'world'}!\\n`));";

pub(super) fn run(
    kiln: &mut Kiln,
    binary: &Path,
    cpython: &Path,
    wasmtime: Option<&Path>,
    duration: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for (name, file, source, language) in [
        ("py", "hello.py", PYTHON, "Python"),
        ("js", "hello.js", JAVASCRIPT, "JavaScript"),
    ] {
        let scenario = format!("{language} hello (runtime Kiln provides)");
        let path = dir.path().join(file);
        let mut deploys = Vec::new();
        let mut first_requests = Vec::new();
        let mut size = 0;
        for round in 0..=REDEPLOYS {
            // A new comment each round: new code, a new snapshot, a new compile.
            let comment = if name == "py" { "#" } else { "//" };
            std::fs::write(&path, format!("{source}{comment} round {round}\n"))?;
            let begin = Instant::now();
            let deployed =
                cli_deploy(kiln, binary, &["--name", name, &path.display().to_string()])?;
            let elapsed = begin.elapsed();
            size = deployed["size"].as_u64().unwrap_or_default();
            let first = hello_request(kiln, name)?;
            eprintln!("{language}: deploy {round} in {elapsed:?}, first request {first:?}");
            // A snapshot of 4 MiB or more is served on baseline code while its
            // optimized code compiles in the background: waited for, so that
            // neither the next deploy nor the load run shares the CPU with it.
            super::tiers::optimized(kiln, name)?;
            if round == 0 {
                report.add(
                    &scenario,
                    "first deploy on the node (compiles the runtime)",
                    latency(elapsed),
                );
            } else {
                deploys.push(elapsed);
                first_requests.push(first);
            }
        }
        report.add(
            &scenario,
            format!("deploy, runtime compiled (median of {REDEPLOYS})"),
            latency(median(&mut deploys)),
        );
        report.add(
            &scenario,
            "snapshot (module) per function",
            bytes(size as f64),
        );
        report.add(
            &scenario,
            "first request after its deploy (median)",
            latency(median(&mut first_requests)),
        );
        load(
            kiln,
            &scenario,
            &format!("/fn/default/{name}"),
            duration,
            report,
        )?;
    }

    kiln.restart()?;
    first_requests(kiln, "first request after a restart", report)?;
    // Again, the request sent once the node has loaded again what it had
    // loaded before the restart (in the background, `rewarm.rs`).
    kiln.restart()?;
    let restarted = Instant::now();
    let agent = super::client::agent();
    loop {
        let status = super::client::status(&agent, kiln.addr, &kiln.admin_token)?;
        if status["rewarm_pending"] == 0 && status["loaded_functions"].as_u64() >= Some(2) {
            break;
        }
        if restarted.elapsed() > Duration::from_secs(60) {
            bail!("the restarted node did not load its functions again within 60 s: {status}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let figure = format!(
        "first request after a restart, once reloaded ({} after serving)",
        latency(restarted.elapsed())
    );
    first_requests(kiln, &figure, report)?;

    // Peer: the same Python as a user-supplied CPython module, booting per request.
    let scenario = "Python hello, user-supplied CPython 3.12 module (peer)";
    cli_deploy(
        kiln,
        binary,
        &[
            "--name",
            "cpython",
            "--arg",
            "-c",
            "--arg",
            PYTHON_CGI,
            &cpython.display().to_string(),
        ],
    )?;
    expect(
        kiln.addr,
        "/fn/default/cpython",
        b"world",
        b"Hello, world!\n",
    )?;
    super::tiers::optimized(kiln, "cpython")?;
    load(kiln, scenario, "/fn/default/cpython", duration, report)?;

    // Peer: the same JavaScript on Node.js, a process per request.
    let node = CgiPeer::command(&["node".as_ref(), "-e".as_ref(), NODE_CGI.as_ref()])?;
    expect(node.addr, "/", b"world", b"Hello, world!\n")?;
    // A process per request costs Node.js ~40 ms of start-up: at 32
    // connections on two cores its answers take longer than wrk waits (2 s).
    let load_node = wrk::run(
        &format!("http://{}/", node.addr),
        "world",
        NODE_CONNECTIONS,
        duration,
    )?;
    let scenario = "JavaScript hello, Node.js process per request (peer)";
    report.add(
        scenario,
        format!("{NODE_CONNECTIONS} connections: req/s"),
        format!("{:.0}", load_node.requests_per_sec),
    );
    report.add(scenario, "p50", latency(load_node.p50));
    report.add(scenario, "p99", latency(load_node.p99));
    toolchain_peers(kiln, wasmtime, duration, report)
}

/// The componentize-py and componentize-js wasi:http components (hello
/// handlers) on Kiln, and on `wasmtime serve` when there is one.
fn toolchain_peers(
    kiln: &Kiln,
    wasmtime: Option<&Path>,
    duration: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    let dir = kiln_guests::toolchains();
    let agent = super::client::agent();
    for (name, file, language) in [
        ("pyhttp", "py-http.wasm", "Python, componentize-py"),
        ("jshttp", "js-http.wasm", "JavaScript, componentize-js"),
    ] {
        let component = dir.join(file);
        let wasm = std::fs::read(&component)
            .with_context(|| format!("reading {}", component.display()))?;
        super::client::deploy(&agent, kiln.addr, &kiln.token, name, &wasm)?;
        super::tiers::optimized(kiln, name)?;
        let path = format!("/fn/default/{name}");
        load(
            kiln,
            &format!("{language} wasi:http component on Kiln (peer)"),
            &path,
            duration,
            report,
        )?;
        if let Some(cli) = wasmtime {
            let serve = super::proxy::WasmtimeServe::start(cli, &component)?;
            let run = wrk::run(
                &format!("http://{}/", serve.addr),
                "world",
                CONNECTIONS,
                duration,
            )?;
            rows(
                report,
                &format!("{language} wasi:http component on wasmtime serve (peer)"),
                &run,
            );
        }
    }
    Ok(())
}

/// A load run's throughput and latencies.
fn rows(report: &mut Report, scenario: &str, run: &wrk::Load) {
    report.add(
        scenario,
        format!("{CONNECTIONS} connections: req/s"),
        format!("{:.0}", run.requests_per_sec),
    );
    report.add(scenario, "p50", latency(run.p50));
    report.add(scenario, "p99", latency(run.p99));
}

/// wrk at [`CONNECTIONS`] against `path`, with the server's CPU per request.
fn load(
    kiln: &Kiln,
    scenario: &str,
    path: &str,
    duration: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    let cpu_before = kiln.cpu_time()?;
    let run = wrk::run(&kiln.url(path), "world", CONNECTIONS, duration)?;
    let cpu = kiln.cpu_time()?.saturating_sub(cpu_before);
    let per_request = cpu.checked_div(u32::try_from(run.requests.max(1)).unwrap_or(u32::MAX));
    rows(report, scenario, &run);
    report.add(
        scenario,
        "server CPU per request",
        latency(per_request.unwrap_or_default()),
    );
    Ok(())
}

/// `kiln deploy --json ARGS` against `kiln`; the server's answer.
fn cli_deploy(kiln: &Kiln, binary: &Path, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let output = Command::new(binary)
        .arg("deploy")
        .arg("--json")
        .args(args)
        .env("KILN_URL", format!("http://{}", kiln.addr))
        .env("KILN_TOKEN", &kiln.token)
        .output()
        .context("running kiln deploy")?;
    if !output.status.success() {
        bail!(
            "kiln deploy {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// One request to the hello deployed as `name`, checked: its latency.
fn hello_request(kiln: &Kiln, name: &str) -> anyhow::Result<Duration> {
    expect(
        kiln.addr,
        &format!("/fn/default/{name}"),
        b"world",
        b"Hello, world!\n",
    )
}

/// The first request of each hello, reported as `figure`.
fn first_requests(kiln: &Kiln, figure: &str, report: &mut Report) -> anyhow::Result<()> {
    for (name, language) in [("py", "Python"), ("js", "JavaScript")] {
        let first = hello_request(kiln, name)?;
        report.add(
            format!("{language} hello (runtime Kiln provides)"),
            figure,
            latency(first),
        );
    }
    Ok(())
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}
