//! `kiln invoke NAME`: call a function over HTTP with stdin as the body.

use crate::client::{Client, Role, ServerArgs};
use anyhow::Context;
use std::io::{Read, Write};
use std::process::ExitCode;

/// Call a function: stdin is the request body, the response body goes to stdout
#[derive(clap::Args, Debug)]
pub(crate) struct InvokeArgs {
    name: String,
    /// The tenant owning the function [default: this token's tenant]
    #[arg(long)]
    tenant: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

pub(crate) fn run(args: InvokeArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server, Role::Tenant)?;
    let tenant = match args.tenant {
        Some(t) => t,
        None => client.tenant()?,
    };
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .context("cannot read stdin")?;
    let response = client.post_raw(&format!("/fn/{tenant}/{}", args.name), &body)?;
    let status = response.status();
    let mut out = Vec::new();
    response
        .into_body()
        .into_reader()
        .read_to_end(&mut out)
        .context("cannot read the response")?;
    if status.is_success() {
        std::io::stdout().write_all(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "kiln: {} answered {}: {}",
        args.name,
        status.as_u16(),
        String::from_utf8_lossy(&out).trim()
    );
    Ok(ExitCode::FAILURE)
}
