//! The peers Kiln is measured against in the same run, both from the wasmtime CLI
//! (`cargo install wasmtime-cli --version 48.0.8 --locked`):
//!
//! - process per request, i.e. classic CGI: an HTTP server (this binary's hidden
//!   `cgi-peer` command, run as its own process) that answers each request by
//!   running `wasmtime run --allow-precompiled` of the precompiled `.cwasm`, with the
//!   body on stdin and stdout as the response;
//! - `wasmtime compile` of the same module, for deploy-time compilation.

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

const WASMTIME_VERSION: &str = "48.0.8";

/// The wasmtime CLI of the same version Kiln embeds.
pub(crate) fn wasmtime_cli() -> anyhow::Result<PathBuf> {
    let candidates = [
        PathBuf::from("wasmtime"),
        std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
            .unwrap_or_default()
            .join("bin/wasmtime"),
    ];
    for candidate in candidates {
        if let Ok(output) = Command::new(&candidate).arg("--version").output() {
            let version = String::from_utf8_lossy(&output.stdout);
            if version.contains(WASMTIME_VERSION) {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "wasmtime {WASMTIME_VERSION} is not installed: \
         `cargo install wasmtime-cli --version {WASMTIME_VERSION} --locked` (scripts/bench does it)"
    )
}

/// Runs `wasmtime compile` of `wasm` into `out` with `flags`, timing the whole command.
pub(crate) fn compile(
    cli: &Path,
    wasm: &Path,
    out: &Path,
    flags: &[&str],
) -> anyhow::Result<Duration> {
    let begin = Instant::now();
    let output = Command::new(cli)
        .arg("compile")
        .args(flags)
        .arg(wasm)
        .arg("-o")
        .arg(out)
        .output()
        .context("running wasmtime compile")?;
    let elapsed = begin.elapsed();
    if !output.status.success() {
        bail!(
            "wasmtime compile failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(elapsed)
}

/// The process-per-request server, running as a child process.
pub(crate) struct CgiPeer {
    child: Child,
    pub addr: SocketAddr,
}

impl CgiPeer {
    /// `wasmtime run` of `cwasm` per request.
    pub(crate) fn start(cli: &Path, cwasm: &Path) -> anyhow::Result<CgiPeer> {
        CgiPeer::command(&[
            cli.as_os_str(),
            "run".as_ref(),
            "--allow-precompiled".as_ref(),
            cwasm.as_os_str(),
        ])
    }

    /// `command` (a program and its arguments) run per request.
    pub(crate) fn command(command: &[&std::ffi::OsStr]) -> anyhow::Result<CgiPeer> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("cgi-peer")
            .arg("--")
            .args(command)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the cgi-peer server")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("cgi-peer listening on ")
            .with_context(|| format!("unexpected first line from cgi-peer: {line}"))?
            .parse()?;
        Ok(CgiPeer { child, addr })
    }
}

impl Drop for CgiPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(clap::Args)]
pub(crate) struct CgiPeerArgs {
    /// The command run per request (e.g. `wasmtime run --allow-precompiled
    /// hello.cwasm`, `node hello.js`): the body on its stdin, its stdout answered
    #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
    command: Vec<std::ffi::OsString>,
}

struct Program {
    program: std::ffi::OsString,
    args: Vec<std::ffi::OsString>,
}

/// `kiln-bench cgi-peer`: serve every request with a new process.
pub(crate) fn serve(args: CgiPeerArgs) -> anyhow::Result<()> {
    let (program, rest) = args.command.split_first().context("no command")?;
    let program = Arc::new(Program {
        program: program.clone(),
        args: rest.to_vec(),
    });
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("cgi-peer listening on {}", listener.local_addr()?);
        let app = axum::Router::new()
            .fallback(axum::routing::any(run_process))
            .with_state(program);
        axum::serve(listener, app).await?;
        Ok(())
    })
}

async fn run_process(State(program): State<Arc<Program>>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let spawned = tokio::process::Command::new(&program.program)
        .args(&program.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string().into_bytes(),
            );
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body).await;
    }
    match child.wait_with_output().await {
        Ok(output) if output.status.success() => (StatusCode::OK, output.stdout),
        Ok(output) => (StatusCode::BAD_GATEWAY, output.stdout),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string().into_bytes(),
        ),
    }
}
