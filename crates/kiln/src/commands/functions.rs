//! `kiln list`, `kiln info`, `kiln rm`, `kiln rollback`: manage deployed functions.

use super::function_name;
use crate::client::{Client, Role, ServerArgs};
use kiln_api::{
    ByteCount, FunctionDetail, FunctionSummary, MountMode, RollbackRequest, Tier, Version,
};
use std::process::ExitCode;

fn when(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// List this tenant's functions
#[derive(clap::Args, Debug)]
pub(crate) struct ListArgs {
    /// Print JSON
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub(crate) fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server, Role::Tenant)?;
    let functions: Vec<FunctionSummary> = client.get("/v1/functions")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&functions)?);
        return Ok(ExitCode::SUCCESS);
    }
    if functions.is_empty() {
        eprintln!("no functions yet: deploy one with `kiln deploy FILE.wasm`");
        return Ok(ExitCode::SUCCESS);
    }
    let tenant = client.tenant()?;
    println!(
        "{:<24} {:>8} {:>10}  {:<20}  URL",
        "NAME", "VERSION", "SIZE", "UPDATED"
    );
    for f in functions {
        println!(
            "{:<24} {:>8} {:>10}  {:<20}  {}/fn/{tenant}/{}",
            f.name,
            format!("v{}", f.current.number),
            ByteCount(f.current.size).to_string(),
            when(f.updated_at),
            client.url,
            f.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Show a function and its versions
#[derive(clap::Args, Debug)]
pub(crate) struct InfoArgs {
    name: String,
    /// Print JSON
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub(crate) fn info(args: InfoArgs) -> anyhow::Result<ExitCode> {
    function_name(&args.name)?;
    let client = Client::new(&args.server, Role::Tenant)?;
    let detail: FunctionDetail = client.get(&format!("/v1/functions/{}", args.name))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&detail)?);
        return Ok(ExitCode::SUCCESS);
    }
    let tenant = client.tenant()?;
    println!(
        "{}  {}/fn/{tenant}/{}",
        detail.name, client.url, detail.name
    );
    match detail.tier {
        Some(Tier::Baseline) => {
            println!("code: baseline (Winch); the optimized code is compiling in the background")
        }
        Some(Tier::Optimized) => println!("code: optimized (Cranelift)"),
        None => println!("code: not compiled on this node yet"),
    }
    for v in &detail.versions {
        let mark = if v.number == detail.current_version {
            "*"
        } else {
            " "
        };
        println!(
            "{mark} v{:<4} {:>10}  {}  sha256:{}",
            v.number,
            ByteCount(v.size).to_string(),
            when(v.created_at),
            v.digest
        );
        if let Some(script) = &v.config.script {
            println!(
                "         {} code, entry {}: the runtime's snapshot, taken at deploy",
                script.language,
                script.guest_entry()
            );
        }
        for mount in &v.config.mounts {
            let how = match mount.mode {
                MountMode::ReadOnly => "read-only",
                MountMode::Copy => "writable copy",
            };
            println!(
                "         {}  <- bundle sha256:{} ({how})",
                mount.guest, mount.bundle
            );
        }
        if let Some(tmp) = &v.config.tmp {
            println!(
                "         {}  <- scratch, {} per invocation",
                tmp.guest,
                ByteCount(tmp.bytes)
            );
        }
        if !v.config.kv.is_empty() {
            println!("         key-value buckets: {}", v.config.kv.join(", "));
        }
        if let Some(schedule) = &v.config.schedule {
            println!("         schedule: {schedule} (UTC)");
        }
        if !v.config.secrets.is_empty() {
            println!("         secrets: {}", v.config.secrets.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Delete a function and all its versions
#[derive(clap::Args, Debug)]
pub(crate) struct RmArgs {
    name: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub(crate) fn rm(args: RmArgs) -> anyhow::Result<ExitCode> {
    function_name(&args.name)?;
    let client = Client::new(&args.server, Role::Tenant)?;
    client.delete(&format!("/v1/functions/{}", args.name))?;
    println!("deleted {}", args.name);
    Ok(ExitCode::SUCCESS)
}

/// Serve an earlier version again (default: the one before the current one)
#[derive(clap::Args, Debug)]
pub(crate) struct RollbackArgs {
    name: String,
    /// The version to serve
    #[arg(value_name = "VERSION")]
    to: Option<u32>,
    #[command(flatten)]
    server: ServerArgs,
}

pub(crate) fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    function_name(&args.name)?;
    let client = Client::new(&args.server, Role::Tenant)?;
    let body = RollbackRequest { version: args.to };
    let version: Version =
        client.post_json(&format!("/v1/functions/{}/rollback", args.name), &body)?;
    println!("{} now serves v{}", args.name, version.number);
    Ok(ExitCode::SUCCESS)
}
