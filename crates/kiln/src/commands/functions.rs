//! `kiln list`, `kiln info`, `kiln rm`, `kiln rollback`: manage deployed functions.

use crate::client::{Client, Role, ServerArgs};
use crate::human_size;
use serde::Deserialize;
use std::process::ExitCode;

#[derive(Deserialize, serde::Serialize)]
struct Version {
    number: u32,
    digest: String,
    size: u64,
    created_at: i64,
}

#[derive(Deserialize, serde::Serialize)]
struct Summary {
    name: String,
    current: Version,
    versions: u32,
    updated_at: i64,
}

#[derive(Deserialize, serde::Serialize)]
struct Detail {
    name: String,
    current_version: u32,
    versions: Vec<Version>,
}

fn when(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// List this tenant's functions
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Print JSON
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server, Role::Tenant)?;
    let functions: Vec<Summary> = client.get("/v1/functions")?;
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
            human_size(f.current.size),
            when(f.updated_at),
            client.url,
            f.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Show a function and its versions
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    name: String,
    /// Print JSON
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn info(args: InfoArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server, Role::Tenant)?;
    let detail: Detail = client.get(&format!("/v1/functions/{}", args.name))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&detail)?);
        return Ok(ExitCode::SUCCESS);
    }
    let tenant = client.tenant()?;
    println!(
        "{}  {}/fn/{tenant}/{}",
        detail.name, client.url, detail.name
    );
    for v in &detail.versions {
        let mark = if v.number == detail.current_version {
            "*"
        } else {
            " "
        };
        println!(
            "{mark} v{:<4} {:>10}  {}  sha256:{}",
            v.number,
            human_size(v.size),
            when(v.created_at),
            v.digest
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Delete a function and all its versions
#[derive(clap::Args, Debug)]
pub struct RmArgs {
    name: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn rm(args: RmArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server, Role::Tenant)?;
    client.delete(&format!("/v1/functions/{}", args.name))?;
    println!("deleted {}", args.name);
    Ok(ExitCode::SUCCESS)
}

/// Serve an earlier version again (default: the one before the current one)
#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    name: String,
    /// The version to serve
    #[arg(value_name = "VERSION")]
    to: Option<u32>,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server, Role::Tenant)?;
    let body = match args.to {
        Some(v) => serde_json::json!({ "version": v }),
        None => serde_json::json!({}),
    };
    let version: Version =
        client.post_json(&format!("/v1/functions/{}/rollback", args.name), body)?;
    println!("{} now serves v{}", args.name, version.number);
    Ok(ExitCode::SUCCESS)
}
