//! `kiln-bench`: Kiln's benchmarks, each measured side by side with a peer in the
//! same run so that the ratio survives a noisy machine.
//!
//! `kiln-bench micro` measures the sandbox alone (no HTTP): the per-invocation cost
//! of the hello guest, warm (from a loaded function) and cold (loading the cached
//! artifact first), against a plain wasmtime embedding with default settings.

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
    /// Per-invocation cost of the sandbox, warm and cold, against plain wasmtime
    Micro(micro::MicroArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Micro(args) => micro::run(args),
    }
}
