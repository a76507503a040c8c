//! `kiln tenants ...` and `kiln tokens ...`: accounts and their API tokens.

use crate::client::{Client, Role, ServerArgs};
use serde::Deserialize;
use std::process::ExitCode;

/// Manage tenants (needs the admin token)
#[derive(clap::Args, Debug)]
pub struct TenantsArgs {
    #[command(subcommand)]
    command: TenantsCommand,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Subcommand, Debug)]
enum TenantsCommand {
    /// List tenants
    List,
    /// Create a tenant and print its first token
    Create { name: String },
}

#[derive(Deserialize)]
struct Tenant {
    name: String,
    #[serde(default)]
    token: Option<String>,
}

pub fn tenants(args: TenantsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server, Role::Admin)?;
    match args.command {
        TenantsCommand::List => {
            let tenants: Vec<Tenant> = client.get("/v1/tenants")?;
            for t in tenants {
                println!("{}", t.name);
            }
        }
        TenantsCommand::Create { name } => {
            let t: Tenant = client.post_json("/v1/tenants", serde_json::json!({ "name": name }))?;
            eprintln!("created tenant {}; its token (shown once):", t.name);
            println!("{}", t.token.unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Manage API tokens of this tenant (or admin tokens, with the admin token)
#[derive(clap::Args, Debug)]
pub struct TokensArgs {
    #[command(subcommand)]
    command: TokensCommand,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Subcommand, Debug)]
enum TokensCommand {
    /// List tokens (never their secrets)
    List,
    /// Create a token and print it (shown once)
    Create { name: String },
    /// Revoke a token by id
    Revoke { id: i64 },
}

#[derive(Deserialize)]
struct Token {
    id: i64,
    name: String,
    revoked: bool,
    #[serde(default)]
    token: Option<String>,
}

pub fn tokens(args: TokensArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server, Role::Tenant)?;
    match args.command {
        TokensCommand::List => {
            let tokens: Vec<Token> = client.get("/v1/tokens")?;
            println!("{:>4}  {:<24} STATE", "ID", "NAME");
            for t in tokens {
                let state = if t.revoked { "revoked" } else { "active" };
                println!("{:>4}  {:<24} {state}", t.id, t.name);
            }
        }
        TokensCommand::Create { name } => {
            let t: Token = client.post_json("/v1/tokens", serde_json::json!({ "name": name }))?;
            eprintln!(
                "created token {} ({}); its secret (shown once):",
                t.id, t.name
            );
            println!("{}", t.token.unwrap_or_default());
        }
        TokensCommand::Revoke { id } => {
            client.delete(&format!("/v1/tokens/{id}"))?;
            println!("revoked token {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
