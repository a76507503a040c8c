//! The Kiln server: a multi-tenant HTTP front for the sandbox.
//!
//! - `/fn/{tenant}/{function}[/{rest}]`: the invoke path ([`invoke`]).
//! - `/v1/...`: the control API ([`api`], [`deploy`]), documented in `docs/api.md`.
//!
//! [`Server::open`] opens the embedded store under a data directory (SQLite
//! metadata, content-addressed modules, compiled artifacts), bootstraps the first
//! tokens, makes sure every deployed module has a compiled artifact (so that no
//! request ever compiles), loads the quota book, and binds the listeners;
//! [`Server::run`] serves until the shutdown future resolves, then drains in-flight
//! requests and flushes usage and logs.

pub mod api;
mod artifacts;
mod auth;
pub mod cgi;
pub mod deploy;
mod drain;
mod error;
pub mod invoke;
pub mod listen;
mod logs;
pub mod metering;
pub mod metrics;
mod names;
pub mod pricing;
pub mod quota;
mod state;
mod streamed;
mod usage;

use anyhow::Context;
use axum::Router;
use axum::routing::{any, get};
use kiln_runtime::{EngineConfig, Limits, MIB, Runtime, RuntimeConfig};
pub use kiln_store::S3Config;
use kiln_store::{BlobStore, LocalBlobs, MetadataStore, PostgresStore, S3Blobs, SqliteStore};
pub use listen::ConnectionLimits;
use metering::{Flusher, Meter};
use metrics::Metrics;
pub use pricing::PriceList;
use quota::Quotas;
use state::{
    AppState, Counters, DEPLOYMENT_CACHE_ENTRIES, DeploymentCache, FunctionCache, Settings,
};
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Name of the tenant created on first start.
pub const DEFAULT_TENANT: &str = "default";

/// How a server is set up. Built from flags by `kiln up`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (`postgres://...`) holding the metadata instead of the
    /// data directory's SQLite file.
    pub database: Option<String>,
    /// An S3 bucket holding modules and shared artifacts instead of the data
    /// directory (whose `artifacts` stay this node's cache).
    pub s3: Option<S3Config>,
    /// Base URL for printed function URLs; default `http://<listen address>`.
    pub public_url: Option<String>,
    /// Largest module a deploy accepts (default 512 MiB).
    pub max_module_bytes: u64,
    pub default_limits: Limits,
    pub engine: EngineConfig,
    /// Functions kept loaded (artifact mapped, pre-linked) at once; the least
    /// recently used is evicted past it (default 1024).
    pub max_loaded_functions: NonZeroUsize,
    /// What metered units cost (default [`PriceList::default`]).
    pub prices: PriceList,
    /// Record usage of every invocation (default on). Off, there is no usage
    /// and only the concurrency quota applies.
    pub metering: bool,
    /// How often metered usage is written to the store: the most a `kill -9` can
    /// lose (default 1 s).
    pub usage_flush_interval: Duration,
    /// A separate address serving `GET /metrics` without a token. When `None`,
    /// the main listener serves it to admin tokens.
    pub metrics_listen: Option<SocketAddr>,
    /// The longest a deploy may spend compiling its module (default 60 s).
    pub compile_timeout: Duration,
    /// What one client connection may hold of the server.
    pub connections: ConnectionLimits,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            listen,
            data_dir: data_dir.into(),
            database: None,
            s3: None,
            public_url: None,
            max_module_bytes: 512 * MIB,
            default_limits: Limits::default(),
            engine: EngineConfig::default(),
            max_loaded_functions: NonZeroUsize::new(1024).expect("1024 is not zero"),
            prices: PriceList::default(),
            metering: true,
            usage_flush_interval: Duration::from_secs(1),
            metrics_listen: None,
            compile_timeout: Duration::from_secs(60),
            connections: ConnectionLimits::default(),
        }
    }
}

/// Tokens created on the first start of a data directory. They are stored only as
/// hashes, so this is the one time they can be shown.
#[derive(Debug, Clone)]
pub struct InitialCredentials {
    pub admin_token: String,
    pub tenant: String,
    pub tenant_token: String,
}

pub struct Server {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    /// Other nodes' deploys, rollbacks and deletes (a shared store only).
    changes: Option<tokio::sync::mpsc::UnboundedReceiver<kiln_store::Change>>,
    connections: ConnectionLimits,
    state: Arc<AppState>,
    log_writer: JoinHandle<()>,
    usage_flusher: Option<Flusher>,
    url: String,
}

impl Server {
    /// Opens the store, bootstraps it if new, compiles any deployed module whose
    /// artifact is missing, and binds the listener.
    pub async fn open(
        config: ServerConfig,
    ) -> anyhow::Result<(Server, Option<InitialCredentials>)> {
        let data = &config.data_dir;
        std::fs::create_dir_all(data)
            .with_context(|| format!("cannot create the data directory {}", data.display()))?;
        let store: Arc<dyn MetadataStore> = match &config.database {
            Some(url) => Arc::new(
                PostgresStore::connect(url)
                    .await
                    .context("cannot open the PostgreSQL metadata store")?,
            ),
            None => Arc::new(
                SqliteStore::open(&data.join("kiln.db"))
                    .with_context(|| format!("cannot open {}", data.join("kiln.db").display()))?,
            ),
        };
        let blobs: Arc<dyn BlobStore> = match &config.s3 {
            Some(s3) => Arc::new(S3Blobs::open(s3, data.join("staging"))?),
            None => Arc::new(LocalBlobs::open(data.join("modules"))?),
        };
        let runtime = Arc::new(Runtime::new(RuntimeConfig {
            artifact_dir: data.join("artifacts"),
            engine: config.engine.clone(),
        })?);

        let initial = bootstrap(&*store).await?;
        let counters = Arc::new(Counters::default());
        let metrics = Metrics::default();
        ensure_compiled(&*store, &*blobs, &runtime, &counters, &metrics).await?;
        let quotas = Quotas::load(&*store, config.prices.clone(), config.metering).await?;

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (metrics)"))?,
            ),
            None => None,
        };
        let addr = listener.local_addr()?;
        let url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let (logs, log_writer) = logs::LogSink::start(store.clone());
        let (meter, usage_flusher) = match config.metering {
            true => {
                let (meter, flusher) = Meter::start(store.clone(), config.usage_flush_interval);
                (Some(meter), Some(flusher))
            }
            false => (None, None),
        };
        let state = Arc::new(AppState {
            store,
            blobs,
            runtime,
            settings: Settings {
                public_url: url.trim_end_matches('/').to_owned(),
                max_module_bytes: config.max_module_bytes,
                default_limits: config.default_limits,
                metrics_on_main: metrics_listener.is_none(),
                compile_timeout: config.compile_timeout,
            },
            deployments: DeploymentCache::new(DEPLOYMENT_CACHE_ENTRIES),
            functions: FunctionCache::new(config.max_loaded_functions),
            logs,
            counters,
            meter,
            quotas,
            metrics,
            settling: tokio_util::task::TaskTracker::new(),
            compile_slots: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
        });
        let changes = state.store.watch().await?;
        let server = Server {
            listener,
            metrics_listener,
            changes,
            connections: config.connections,
            state,
            log_writer,
            usage_flusher,
            url,
        };
        Ok((server, initial))
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The address serving `/metrics` without a token, if one was configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The base URL functions are served under.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets every request in
    /// flight finish, and writes the remaining usage and logs.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Server {
            listener,
            metrics_listener,
            changes,
            connections,
            state,
            log_writer,
            usage_flusher,
            ..
        } = self;
        // The metrics address gets the same client limits as the main one, and
        // counters of its own (its scrapers are not clients of functions).
        let metrics_server = metrics_listener.map(|listener| {
            let app = Router::new()
                .route("/metrics", get(metrics::open_metrics))
                .with_state(state.clone());
            tokio::spawn(listen::serve(
                listener,
                app,
                connections,
                Arc::default(),
                std::future::pending(),
            ))
        });
        // A change made through another node drops what this one cached of it:
        // the next request reads the store again.
        let watcher = changes.map(|mut changes| {
            let state = state.clone();
            tokio::spawn(async move {
                while let Some(change) = changes.recv().await {
                    match change {
                        kiln_store::Change::Function { tenant, function } => {
                            state.deployments.forget(&tenant, &function)
                        }
                        kiln_store::Change::Everything => state.deployments.forget_all(),
                    }
                }
            })
        });
        let settling = state.settling.clone();
        let counters = state.counters.clone();
        let app = Router::new()
            .merge(api::routes())
            .route("/fn/{tenant}/{function}", any(invoke::invoke))
            .route("/fn/{tenant}/{function}/", any(invoke::invoke))
            .route("/fn/{tenant}/{function}/{*rest}", any(invoke::invoke))
            .with_state(state);
        listen::serve(listener, app, connections, counters, shutdown).await;
        if let Some(task) = metrics_server {
            task.abort();
        }
        if let Some(task) = watcher {
            task.abort();
        }
        // Every connection is closed; streamed invocations settle right after
        // their body ends.
        settling.close();
        if tokio::time::timeout(Duration::from_secs(30), settling.wait())
            .await
            .is_err()
        {
            tracing::warn!("gave up waiting for streamed invocations to settle");
        }
        // Every invocation has finished: write the usage they recorded.
        if let Some(flusher) = usage_flusher {
            flusher.finish().await;
        }
        // Every connection is closed, so every handler and its log sink clone is
        // gone; the writer drains what is queued and stops.
        if tokio::time::timeout(Duration::from_secs(30), log_writer)
            .await
            .is_err()
        {
            tracing::warn!("gave up waiting for the log writer");
        }
        Ok(())
    }
}

/// Creates the admin token and the default tenant on a new store.
async fn bootstrap(store: &dyn MetadataStore) -> anyhow::Result<Option<InitialCredentials>> {
    if store.has_admin().await? {
        return Ok(None);
    }
    let (admin_token, admin_hash) = auth::generate()?;
    // Nodes of a cluster starting together on a new database may all get here:
    // the one that loses the race to create the tenant uses it. Each then has
    // tokens of its own, all valid.
    let tenant = match store.tenant(DEFAULT_TENANT).await? {
        Some(t) => t,
        None => match store.create_tenant(DEFAULT_TENANT).await {
            Err(kiln_store::StoreError::Conflict(_)) => store
                .tenant(DEFAULT_TENANT)
                .await?
                .context("the default tenant vanished while bootstrapping")?,
            created => created?,
        },
    };
    let (tenant_token, tenant_hash) = auth::generate()?;
    store
        .create_token(Some(tenant.id), "initial", tenant_hash)
        .await?;
    // The admin token last: its existence marks the store as bootstrapped.
    store.create_token(None, "admin", admin_hash).await?;
    Ok(Some(InitialCredentials {
        admin_token,
        tenant: tenant.name,
        tenant_token,
    }))
}

/// Makes sure every deployed module has an artifact for this engine on this node
/// (a new data directory copy, a wasmtime upgrade, a new node of a cluster):
/// downloaded when another node shared it, else compiled; so that the request
/// path only ever loads.
async fn ensure_compiled(
    store: &dyn MetadataStore,
    blobs: &dyn BlobStore,
    runtime: &Arc<Runtime>,
    counters: &Counters,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    for digest in store.referenced_digests().await? {
        artifacts::ensure_local(runtime, blobs, counters, metrics, digest).await?;
    }
    Ok(())
}
