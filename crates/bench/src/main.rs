//! `kiln-bench`: Kiln's benchmarks, each measured side by side with a peer in the
//! same run so that the ratio survives a noisy machine.
//!
//! `kiln-bench all` is the HTTP suite ([`http`]): a real `kiln up` on loopback under
//! load, cold starts, density and a big module, against their peers.
//!
//! `kiln-bench micro` measures the sandbox alone (no HTTP): the per-invocation cost
//! of the hello guest, warm (from a loaded function) and cold (loading the cached
//! artifact first), against a plain wasmtime embedding with default settings.
//!
//! `kiln-bench files` measures what mounts and scratch directories add to an
//! invocation, against the same function with no files, in the same run.

mod files;
mod http;
mod micro;
mod stats;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "kiln-bench", about = "Kiln's benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The HTTP suite: cold starts, warm throughput, density, a big module
    All(http::SuiteArgs),
    /// Per-invocation cost of the sandbox, warm and cold, against plain wasmtime
    Micro(micro::MicroArgs),
    /// What a read-only mount, a scratch directory and a writable copy add to
    /// an invocation
    Files(files::FilesArgs),
    /// The process-per-request peer server (started by `all`)
    #[command(hide = true)]
    CgiPeer(http::peer::CgiPeerArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::All(args) => http::run(args),
        Command::Micro(args) => micro::run(args),
        Command::Files(args) => files::run(args),
        Command::CgiPeer(args) => http::peer::serve(args),
    }
}
