//! `kiln tenants ...` and `kiln tokens ...`: accounts and their API tokens;
//! `kiln admin ...`: what an operator does on the machine itself, and the blob
//! collector (`kiln admin gc`).

use super::tenant_name;
use crate::client::{Client, Role, ServerArgs};
use kiln_api::{ByteCount, CreatedTenant, CreatedToken, GcReport, NewNamed, Tenant, TokenInfo};
use std::process::ExitCode;

/// Manage tenants (needs the admin token)
#[derive(clap::Args, Debug)]
pub(crate) struct TenantsArgs {
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
    /// Delete a tenant and everything it owns: functions, versions, logs,
    /// tokens, key-value buckets, secrets, usage and quota
    Delete {
        name: String,
        /// Confirm: nothing of the tenant can be recovered
        #[arg(long)]
        yes: bool,
    },
}

pub(crate) fn tenants(args: TenantsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server, Role::Admin)?;
    match args.command {
        TenantsCommand::List => {
            let tenants: Vec<Tenant> = client.get("/v1/tenants")?;
            for t in tenants {
                println!("{}", t.name);
            }
        }
        TenantsCommand::Create { name } => {
            tenant_name(&name)?;
            let t: CreatedTenant = client.post_json("/v1/tenants", &NewNamed { name })?;
            eprintln!("created tenant {}; its token (shown once):", t.tenant.name);
            println!("{}", t.token);
        }
        TenantsCommand::Delete { name, yes } => {
            tenant_name(&name)?;
            if !yes {
                anyhow::bail!(
                    "deleting tenant {name:?} deletes its functions, tokens, key-value buckets, \
                     secrets and usage for good; run again with --yes to do it"
                );
            }
            client.delete(&format!("/v1/tenants/{name}"))?;
            println!("deleted tenant {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Manage API tokens of this tenant (or admin tokens, with the admin token)
#[derive(clap::Args, Debug)]
pub(crate) struct TokensArgs {
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

pub(crate) fn tokens(args: TokensArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server, Role::Tenant)?;
    match args.command {
        TokensCommand::List => {
            let tokens: Vec<TokenInfo> = client.get("/v1/tokens")?;
            println!("{:>4}  {:<24} STATE", "ID", "NAME");
            for t in tokens {
                let state = if t.revoked { "revoked" } else { "active" };
                println!("{:>4}  {:<24} {state}", t.id, t.name);
            }
        }
        TokensCommand::Create { name } => {
            let t: CreatedToken = client.post_json("/v1/tokens", &NewNamed { name })?;
            eprintln!(
                "created token {} ({}); its secret (shown once):",
                t.info.id, t.info.name
            );
            println!("{}", t.token);
        }
        TokensCommand::Revoke { id } => {
            client.delete(&format!("/v1/tokens/{id}"))?;
            println!("revoked token {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Operator tasks run on the server's machine, against its store
#[derive(clap::Args, Debug)]
pub(crate) struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(clap::Subcommand, Debug)]
enum AdminCommand {
    /// Mint a new admin token straight in the store (the credentials file was
    /// lost); prints it
    ResetToken {
        /// The data directory of `kiln up` [default: as `kiln up`]
        #[arg(long, env = "KILN_DATA", value_name = "DIR")]
        data: Option<std::path::PathBuf>,
        /// The PostgreSQL store of a cluster, instead of the data directory's
        #[arg(long, env = "KILN_DATABASE", value_name = "URL")]
        database: Option<String>,
        /// Revoke every other admin token
        #[arg(long)]
        revoke_others: bool,
    },
    /// Delete the modules, bundles and compiled artifacts no version of any
    /// function refers to any more, once unreferenced for the server's grace
    /// period (`kiln up --gc-grace`); the server also does it on its own
    Gc {
        /// Only show what would be deleted
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Grant custom domains to tenants, or revoke them
    Domain {
        #[command(subcommand)]
        command: crate::commands::domain::AdminDomainCommand,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub(crate) fn admin(args: AdminArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AdminCommand::Domain { command, server } => {
            crate::commands::domain::admin(command, &server)?;
        }
        AdminCommand::Gc { dry_run, server } => {
            let client = Client::new(&server, Role::Admin)?;
            let path = format!("/v1/admin/gc?dry_run={dry_run}");
            print_gc(&client.post_json(&path, &())?);
        }
        AdminCommand::ResetToken {
            data,
            database,
            revoke_others,
        } => {
            // Whatever SQLite creates beside the database stays private.
            crate::privileges::private_files();
            let data = data.unwrap_or_else(super::up::default_data_dir);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let reset = runtime.block_on(kiln_server::reset_admin_token(
                &data,
                database.as_deref(),
                revoke_others,
            ))?;
            eprintln!(
                "new admin token (shown once){}:",
                match reset.revoked {
                    0 => String::new(),
                    n => format!("; {n} other admin token(s) revoked"),
                }
            );
            println!("{}", reset.token);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per unreferenced thing, then the totals.
fn print_gc(report: &GcReport) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (done, kept) = match report.dry_run {
        true => ("would delete", "would keep"),
        false => ("deleted", "kept"),
    };
    for item in &report.items {
        let since = match item.unreferenced_since {
            Some(at) => format!("unreferenced for {}s", (now - at).max(0)),
            None => "its blob is gone".to_owned(),
        };
        println!(
            "{:<12} {:<15} {}  {:>10}  {since}",
            if item.deleted { done } else { kept },
            item.kind.name(),
            item.digest,
            ByteCount(item.bytes).to_string(),
        );
    }
    let left = match report.dry_run {
        true => report.summary.reclaimable_bytes - report.summary.deleted_bytes,
        false => report.summary.reclaimable_bytes,
    };
    println!(
        "{done} {}; {} left, unreferenced for less than the grace period ({}s)",
        ByteCount(report.summary.deleted_bytes),
        ByteCount(left),
        report.grace_seconds
    );
}
