//! `kiln logs NAME [--follow]`: the recent invocations of a function and their stderr.

use super::function_name;
use crate::client::{Client, Role, ServerArgs};
use kiln_api::{ByteCount, LogEntry};
use std::process::ExitCode;
use std::time::Duration;

/// Show recent invocations of a function and what they wrote to stderr
#[derive(clap::Args, Debug)]
pub(crate) struct LogsArgs {
    name: String,
    /// How many recent invocations to show
    #[arg(short = 'n', long, default_value_t = 20)]
    lines: u32,
    /// Keep printing new invocations as they happen
    #[arg(short, long)]
    follow: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub(crate) fn run(args: LogsArgs) -> anyhow::Result<ExitCode> {
    function_name(&args.name)?;
    let client = Client::new(&args.server, Role::Tenant)?;
    let base = format!("/v1/functions/{}/logs", args.name);
    let mut last = None;
    let mut entries: Vec<LogEntry> = client.get(&format!("{base}?limit={}", args.lines))?;
    loop {
        for e in &entries {
            print(e);
            last = Some(e.id);
        }
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(500));
        entries = match last {
            Some(id) => client.get(&format!("{base}?after={id}&limit=1000"))?,
            None => client.get(&format!("{base}?limit={}", args.lines))?,
        };
    }
}

fn print(e: &LogEntry) {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(e.at.max(0) as u64);
    let usage = match e.status {
        // Refused by a quota (nothing ran), or the count of dropped entries.
        429 | 0 => String::new(),
        _ => format!(
            " ({:.1} ms, {:.1} ms CPU, {} memory)",
            e.wall_us as f64 / 1000.0,
            e.cpu_us as f64 / 1000.0,
            ByteCount(e.peak_memory_bytes)
        ),
    };
    println!(
        "{} v{} {} {}{usage}",
        humantime::format_rfc3339_seconds(at),
        e.version,
        e.status,
        e.outcome,
    );
    for line in e.stderr.lines() {
        println!("    {line}");
    }
    if !e.stdout.is_empty() {
        println!("    stdout:");
        for line in e.stdout.lines() {
            println!("    | {line}");
        }
    }
}
