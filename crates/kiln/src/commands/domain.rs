//! `kiln domain ...` (a tenant's custom domains: routes and certificates) and
//! `kiln admin domain ...` (an operator grants a domain to a tenant).

use crate::client::{Client, Role, ServerArgs};
use anyhow::Context;
use kiln_api::{
    CertificateUpload, DomainGrant, DomainInfo, NameKind, RouteRequest, check_domain, check_name,
    check_prefix, rfc3339,
};
use std::path::PathBuf;
use std::process::ExitCode;

/// Serve this tenant's functions on its own domains (granted by the operator)
#[derive(clap::Args, Debug)]
pub(crate) struct DomainArgs {
    #[command(subcommand)]
    command: DomainCommand,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Subcommand, Debug)]
enum DomainCommand {
    /// Serve DOMAIN (or the paths under --path of it) with FUNCTION: requests
    /// whose Host is DOMAIN run it with SCRIPT_NAME empty and the whole path
    /// as PATH_INFO; the longest matching prefix wins
    Add {
        domain: String,
        function: String,
        /// The path prefix routed, e.g. /api or /api/*
        #[arg(long, value_name = "PREFIX", default_value = "/")]
        path: String,
    },
    /// Remove the route of --path from DOMAIN
    Rm {
        domain: String,
        #[arg(long, value_name = "PREFIX", default_value = "/")]
        path: String,
    },
    /// Serve DOMAIN over HTTPS with its own certificate (PEM files), chosen
    /// by SNI on every node; --remove goes back to the server's certificate
    Cert {
        domain: String,
        /// The certificate chain, leaf first
        #[arg(long, value_name = "FILE", required_unless_present = "remove")]
        cert: Option<PathBuf>,
        /// Its private key
        #[arg(long, value_name = "FILE", required_unless_present = "remove")]
        key: Option<PathBuf>,
        #[arg(long, conflicts_with_all = ["cert", "key"])]
        remove: bool,
    },
    /// This tenant's domains (every domain, with the admin token)
    List,
}

pub(crate) fn run(args: DomainArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server, Role::Tenant)?;
    match args.command {
        DomainCommand::Add {
            domain,
            function,
            path,
        } => {
            let domain = check_domain(&domain)?;
            check_name(NameKind::Function, &function)?;
            let prefix = check_prefix(&path)?;
            let route = RouteRequest {
                prefix: prefix.clone(),
                function: function.clone(),
            };
            client.put_json::<()>(&format!("/v1/domains/{domain}/routes"), &route)?;
            eprintln!("{domain}{} -> {function}", prefix.trim_end_matches('/'));
        }
        DomainCommand::Rm { domain, path } => {
            let domain = check_domain(&domain)?;
            let prefix = check_prefix(&path)?;
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("prefix", &prefix)
                .finish();
            client.delete(&format!("/v1/domains/{domain}/routes?{query}"))?;
            eprintln!("route {prefix} of {domain} removed");
        }
        DomainCommand::Cert {
            domain,
            cert,
            key,
            remove,
        } => {
            let domain = check_domain(&domain)?;
            let path = format!("/v1/domains/{domain}/certificate");
            match (remove, cert, key) {
                (true, _, _) => {
                    client.delete(&path)?;
                    eprintln!("{domain} is served with the server's certificate");
                }
                (false, Some(cert), Some(key)) => {
                    let read = |p: &PathBuf| {
                        std::fs::read_to_string(p)
                            .with_context(|| format!("cannot read {}", p.display()))
                    };
                    let upload = CertificateUpload {
                        cert_pem: read(&cert)?,
                        key_pem: read(&key)?,
                    };
                    client.put_json::<()>(&path, &upload)?;
                    eprintln!("{domain} is served with its own certificate");
                }
                _ => anyhow::bail!("give --cert and --key, or --remove"),
            }
        }
        DomainCommand::List => {
            let domains: Vec<DomainInfo> = client.get("/v1/domains")?;
            for domain in domains {
                let certificate = match &domain.certificate {
                    Some(c) => format!("certificate until {} ({})", rfc3339(c.not_after), c.source),
                    None => "the server's certificate".into(),
                };
                println!("{}  tenant {}  {certificate}", domain.domain, domain.tenant);
                for route in &domain.routes {
                    println!("  {:<24} {}", route.prefix, route.function);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kiln admin domain ...`
#[derive(clap::Subcommand, Debug)]
pub(crate) enum AdminDomainCommand {
    /// Grant DOMAIN to TENANT (once you know the tenant controls it): its
    /// tenant may then route it and upload its certificate
    Grant { domain: String, tenant: String },
    /// Revoke DOMAIN, with its routes and certificate
    Revoke { domain: String },
}

pub(crate) fn admin(command: AdminDomainCommand, server: &ServerArgs) -> anyhow::Result<()> {
    let client = Client::new(server, Role::Admin)?;
    match command {
        AdminDomainCommand::Grant { domain, tenant } => {
            let domain = check_domain(&domain)?;
            check_name(NameKind::Tenant, &tenant)?;
            let grant = DomainGrant {
                tenant: tenant.clone(),
            };
            client.put_json::<()>(&format!("/v1/admin/domains/{domain}"), &grant)?;
            eprintln!("{domain} granted to {tenant}");
        }
        AdminDomainCommand::Revoke { domain } => {
            let domain = check_domain(&domain)?;
            client.delete(&format!("/v1/admin/domains/{domain}"))?;
            eprintln!("{domain} revoked");
        }
    }
    Ok(())
}
