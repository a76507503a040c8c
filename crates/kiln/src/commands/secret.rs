//! `kiln secret ...`: the tenant's secrets. A value is read from stdin, never
//! from the command line (where `ps` and shell history would keep it), and is
//! never printed back.

use crate::client::{Client, Role, ServerArgs};
use anyhow::Context;
use kiln_api::{MAX_SECRET_BYTES, SecretInfo, check_secret_name};
use std::io::Read;
use std::process::ExitCode;

/// Manage this tenant's secrets (granted to functions with `kiln deploy --secret NAME`)
#[derive(clap::Args, Debug)]
pub(crate) struct SecretArgs {
    #[command(subcommand)]
    command: SecretCommand,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Subcommand, Debug)]
enum SecretCommand {
    /// Set NAME to what stdin holds (one trailing newline dropped): the
    /// functions granted it see the new value from their next request
    Set { name: String },
    /// List secrets by name (never their values)
    List,
    /// Delete a secret
    Rm { name: String },
}

pub(crate) fn run(args: SecretArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server, Role::Tenant)?;
    match args.command {
        SecretCommand::Set { name } => {
            check_secret_name(&name)?;
            let mut value = Vec::new();
            std::io::stdin()
                .take(MAX_SECRET_BYTES as u64 + 2)
                .read_to_end(&mut value)
                .context("cannot read the secret from stdin")?;
            if value.ends_with(b"\n") {
                value.pop();
                if value.ends_with(b"\r") {
                    value.pop();
                }
            }
            client.put_bytes(&format!("/v1/secrets/{name}"), &value)?;
            eprintln!("secret {name} set");
        }
        SecretCommand::List => {
            let secrets: Vec<SecretInfo> = client.get("/v1/secrets")?;
            for secret in secrets {
                println!("{}", secret.name);
            }
        }
        SecretCommand::Rm { name } => {
            check_secret_name(&name)?;
            client.delete(&format!("/v1/secrets/{name}"))?;
            eprintln!("secret {name} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}
