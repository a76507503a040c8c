//! `kiln`: the command-line face of Kiln. Each subcommand lives in its own module
//! under `commands/` and only wires the library crates together; `client` and
//! `credentials` are how the client subcommands reach a server.

mod client;
mod commands;
mod credentials;
mod privileges;
mod seccomp;

use clap::{Parser, Subcommand};
use commands::*;
use std::process::ExitCode;

/// jemalloc rather than glibc's malloc: the request path and the compilers
/// allocate and free small objects at a high rate, from many threads.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Kiln runs WASI WebAssembly binaries as functions: the request body is stdin,
/// stdout is the response.
#[derive(Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Up(Box<up::UpArgs>),
    Deploy(Box<deploy::DeployArgs>),
    List(functions::ListArgs),
    Info(functions::InfoArgs),
    Rm(functions::RmArgs),
    Rollback(functions::RollbackArgs),
    Invoke(invoke::InvokeArgs),
    Logs(logs::LogsArgs),
    Tenants(admin::TenantsArgs),
    Tokens(admin::TokensArgs),
    Admin(admin::AdminArgs),
    Usage(usage::UsageArgs),
    Quota(usage::QuotaArgs),
    Kv(kv::KvArgs),
    Secret(secret::SecretArgs),
    Domain(domain::DomainArgs),
    Schedules(schedules::SchedulesArgs),
    Run(run::RunArgs),
    Compile(compile::CompileArgs),
}

/// Client commands end quietly when their reader goes away (`kiln logs f | head`),
/// as Unix tools do, instead of failing on a broken pipe. The server keeps Rust's
/// default (SIGPIPE ignored): a client hanging up must never stop it.
fn quit_on_broken_pipe() {
    // SAFETY: restoring a signal's default disposition at start-up, before any
    // thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let command = Cli::parse().command;
    if !matches!(command, Command::Up(_)) {
        quit_on_broken_pipe();
    }
    let result = match command {
        Command::Up(args) => up::run(*args),
        Command::Deploy(args) => deploy::run(*args),
        Command::List(args) => functions::list(args),
        Command::Info(args) => functions::info(args),
        Command::Rm(args) => functions::rm(args),
        Command::Rollback(args) => functions::rollback(args),
        Command::Invoke(args) => invoke::run(args),
        Command::Logs(args) => logs::run(args),
        Command::Tenants(args) => admin::tenants(args),
        Command::Tokens(args) => admin::tokens(args),
        Command::Admin(args) => admin::admin(args),
        Command::Usage(args) => usage::usage(args),
        Command::Quota(args) => usage::quota(args),
        Command::Kv(args) => kv::run(args),
        Command::Secret(args) => secret::run(args),
        Command::Domain(args) => domain::run(args),
        Command::Schedules(args) => schedules::run(args),
        Command::Run(args) => run::run(args),
        Command::Compile(args) => compile::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("kiln: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
