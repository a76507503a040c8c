//! `kiln up`: serve Kiln on this machine with the embedded store.

use crate::credentials::{self, Credentials};
use anyhow::Context;
use kiln_runtime::parse_size;
use kiln_server::{Server, ServerConfig};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Serve Kiln: the HTTP endpoint of every function, and the control API
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Address to listen on
    #[arg(long, env = "KILN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Data directory: metadata, modules, compiled artifacts
    /// [default: $XDG_DATA_HOME/kiln, else ~/.local/share/kiln]
    #[arg(long, env = "KILN_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
    /// Base URL printed for functions [default: http://<listen address>]
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Largest module a deploy accepts
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "512MiB")]
    max_module_size: u64,
}

fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir)
        .join("kiln")
}

pub fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let data = args.data.unwrap_or_else(default_data_dir);
    let mut config = ServerConfig::new(args.listen, &data);
    config.public_url = args.public_url;
    config.max_module_bytes = args.max_module_size;

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    tokio.block_on(async {
        let (server, initial) = Server::open(config).await?;
        let url = server.url().to_owned();
        if let Some(initial) = initial {
            let path = credentials::save(&Credentials {
                url: url.clone(),
                tenant: initial.tenant.clone(),
                token: initial.tenant_token,
                admin_token: initial.admin_token,
            })?;
            eprintln!(
                "kiln: new data directory {}: created tenant {:?} and its token, and an admin token",
                data.display(),
                initial.tenant
            );
            eprintln!("kiln: credentials written to {} (the CLI uses them)", path.display());
        }
        println!("kiln listening on {url} (data in {})", data.display());
        server.run(shutdown_signal()).await
    })?;
    eprintln!("kiln: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for shutdown signals");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
