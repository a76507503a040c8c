//! `kiln`: the command-line face of Kiln. Each subcommand lives in its own module
//! under `commands/` and only wires the library crates together.

mod commands;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Kiln runs WASI WebAssembly binaries as functions: stdin is the request body,
/// stdout is the response.
#[derive(Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Run(commands::run::RunArgs),
    Compile(commands::compile::CompileArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => commands::run::run(args),
        Command::Compile(args) => commands::compile::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("kiln: {error:#}");
            ExitCode::FAILURE
        }
    }
}
