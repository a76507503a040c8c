//! `kiln run FILE.wasm`: one invocation on this machine, through exactly the code
//! path the server uses (`Runtime::load_wasm`, then `Runtime::invoke`).

use super::{ArtifactArgs, LimitArgs, read_module};
use anyhow::Context;
use kiln_api::ByteCount;
use kiln_runtime::{Invocation, Limits, LoadSource, Outcome, Request};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Exit status of `kiln run` when Kiln stopped the guest, following shell custom.
mod status {
    /// A trap: like a process killed by SIGABRT.
    pub(super) const TRAP: u8 = 134;
    /// The wall-time limit: like coreutils' `timeout`.
    pub(super) const WALL_TIME: u8 = 124;
    /// The memory limit: like a process killed by the OOM killer (SIGKILL).
    pub(super) const MEMORY: u8 = 137;
    /// The output limit: like a process killed by SIGPIPE.
    pub(super) const OUTPUT: u8 = 141;
}

/// Run a WASI module once: stdin is its input, its stdout and stderr pass through,
/// its exit code becomes kiln's
#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// The WebAssembly module (a wasm32-wasip1 command)
    file: PathBuf,
    /// Set an environment variable for the guest (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Append an argument after the function name (repeatable)
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    args: Vec<String>,
    #[command(flatten)]
    limits: LimitArgs,
    /// Print the invocation's measurements on stderr
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    artifacts: ArtifactArgs,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

pub(crate) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let defaults = Limits::default();
    let limits = Limits {
        memory_bytes: args.limits.memory.unwrap_or(defaults.memory_bytes),
        wall_time: args.limits.timeout.unwrap_or(defaults.wall_time),
        stdout_bytes: args.limits.max_output.unwrap_or(defaults.stdout_bytes),
        stdin_bytes: args.limits.max_input.unwrap_or(defaults.stdin_bytes),
        ..defaults
    };
    let wasm = read_module(&args.file)?;
    let runtime = args.artifacts.runtime()?;
    let file = args.file.display().to_string();
    let (function, source) = runtime
        .load_wasm(&wasm)
        .map_err(|e| anyhow::Error::new(e).context(file.clone()))?;

    let stdin = read_stdin(limits.stdin_bytes)?;
    let mut argv = vec![function_name(&args.file)];
    argv.extend(args.args);
    let request = Request {
        stdin: stdin.into(),
        args: argv.into(),
        env: args.env,
        limits,
        ..Default::default()
    };
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("cannot start the async runtime")?;
    let invocation = tokio.block_on(runtime.invoke(&function, request))?;
    // A module compiled now has its artifact written behind: kept for the
    // next run before this one exits.
    runtime.flush_artifacts();

    // Pass the guest's output through before saying anything of our own.
    std::io::stdout().write_all(&invocation.stdout)?;
    std::io::stdout().flush()?;
    std::io::stderr().write_all(&invocation.stderr)?;
    if args.stats {
        print_stats(
            &file,
            source,
            &runtime.artifacts().path(&function.digest()),
            &invocation,
        );
    }
    let code = match &invocation.outcome {
        Outcome::Success => 0,
        Outcome::Exit(code) => match (*code & 0xff) as u8 {
            0 => 1,
            low => low,
        },
        other => {
            eprintln!("kiln: {file} {other}");
            match other {
                Outcome::WallTimeLimit { .. } => status::WALL_TIME,
                Outcome::MemoryLimit { .. } => status::MEMORY,
                Outcome::OutputLimit { .. } => status::OUTPUT,
                _ => status::TRAP,
            }
        }
    };
    Ok(ExitCode::from(code))
}

/// The function's name, its first argument: the file name without `.wasm`.
fn function_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "function".into())
}

/// All of stdin, refusing more than `limit` bytes.
fn read_stdin(limit: u64) -> anyhow::Result<Vec<u8>> {
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .take(limit.saturating_add(1))
        .read_to_end(&mut input)
        .context("cannot read stdin")?;
    if input.len() as u64 > limit {
        anyhow::bail!(
            "stdin is over the input limit of {} (raise it with --max-input)",
            ByteCount(limit)
        );
    }
    Ok(input)
}

fn print_stats(file: &str, source: LoadSource, artifact: &Path, invocation: &Invocation) {
    let micros = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6);
    let stats = &invocation.stats;
    let loaded = match source {
        LoadSource::Cached => format!("cached ({})", artifact.display()),
        LoadSource::Compiled(time) => format!(
            "compiled in {:.1} ms ({})",
            time.as_secs_f64() * 1e3,
            artifact.display()
        ),
    };
    eprintln!("kiln: {file} {}", invocation.outcome);
    eprintln!("  artifact      {loaded}");
    eprintln!("  instantiate   {}", micros(stats.instantiation));
    eprintln!("  wall          {}", micros(stats.wall));
    eprintln!("  cpu           {}", micros(stats.cpu));
    eprintln!(
        "  peak memory   {} ({} bytes)",
        ByteCount(stats.peak_memory_bytes),
        stats.peak_memory_bytes
    );
    eprintln!("  bytes in      {}", stats.bytes_in);
    eprintln!("  bytes out     {}", stats.bytes_out);
    if invocation.stderr_truncated {
        eprintln!("  stderr        truncated at its limit");
    }
}
