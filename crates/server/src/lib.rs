//! The Kiln server: a multi-tenant HTTP front for the sandbox.
//!
//! Two wings, each a folder:
//! - `invoke/`: `/fn/{tenant}/{function}[/{rest}]`, the invoke pipeline.
//! - `api/`: `/v1/...`, the control API, documented in `docs/api.md`.
//!
//! In front of both, `domains` routes a custom domain's requests to its
//! functions (`certificates` serves its own certificate by SNI); beside them,
//! `scheduler` runs scheduled functions, each tick once across the cluster.
//!
//! Around them: `functions` owns digest → runnable function
//! (cache, fetch, compile, share); `bundles` the file trees functions mount; `state` the shared state and the deployment
//! cache; `metering`, `quota`, `logs` what invocations cost and leave behind;
//! `listen` the accept loop and client limits.
//!
//! [`Server::open`] opens the store (SQLite metadata and local modules under a
//! data directory, or PostgreSQL and S3), bootstraps the first tokens, makes sure
//! every deployed module has a compiled artifact (so that no request compiles),
//! loads the quota book, and binds the listeners; [`Server::run`] serves until the
//! shutdown future resolves, then drains in-flight requests and flushes usage and
//! logs.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod auth;
mod body;
mod bundles;
mod certificates;
mod config;
mod console;
mod data_dir;
mod domains;
mod error;
mod functions;
mod gc;
mod invoke;
mod kv;
mod languages;
mod listen;
mod loaded;
mod logs;
mod metering;
mod metrics;
mod nodes;
mod pricing;
mod quota;
mod recovery;
mod renewal;
mod rewarm;
mod scheduler;
mod secrets;
mod signups;
mod state;
mod sync;
#[cfg(test)]
mod tests;
mod tls;

pub use config::{
    BundleLimits, ConsoleConfig, InitialCredentials, S3Config, ServerConfig, TlsFiles,
};
pub use listen::ConnectionLimits;
pub use pricing::read_price_list;
pub use recovery::{ResetToken, reset_admin_token};

use anyhow::Context;
use axum::Router;
use axum::routing::{any, get};
use bundles::Bundles;
use functions::{FunctionLimits, Functions};
use gc::Collector;
use kiln_runtime::{Runtime, RuntimeConfig, ScratchConfig};
use kiln_store::{
    BlobStore, KvStore, LocalBlobs, MetadataStore, PostgresStore, QuotaGrants, S3Blobs, SqliteStore,
};
use kv::KvService;
use languages::LanguageRuntimes;
use metering::{Flusher, Meter};
use quota::Quotas;
pub use secrets::SECRET_KEY_ENV;
use secrets::SecretKeys;
use state::{AppState, Counters, DEPLOYMENT_CACHE_ENTRIES, DeploymentCache, Settings};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Name of the tenant created on first start.
pub const DEFAULT_TENANT: &str = "default";

/// A bound, ready server: [`Server::open`] it, then [`Server::run`] it.
pub struct Server {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    /// Other nodes' deploys, rollbacks and deletes (a shared store only).
    changes: Option<tokio::sync::mpsc::UnboundedReceiver<kiln_store::Change>>,
    connections: ConnectionLimits,
    state: Arc<AppState>,
    log_writer: JoinHandle<()>,
    usage_flusher: Option<Flusher>,
    /// How often the blob collector runs on its own.
    gc_interval: Option<Duration>,
    /// Whether quotas are synchronised with the other nodes (a shared store).
    cluster_quotas: bool,
    /// HTTPS on the main listener.
    tls: Option<tls::Tls>,
    /// Plain HTTP that redirects to HTTPS.
    redirect_listener: Option<TcpListener>,
    url: String,
    /// Where the loaded functions are written down, and what it said at
    /// start (`rewarm.rs`).
    loaded_file: std::path::PathBuf,
    rewarm: Vec<kiln_api::Digest>,
}

impl Server {
    /// Opens the store, bootstraps it if new, compiles any deployed module whose
    /// artifact is missing, and binds the listener.
    pub async fn open(
        config: ServerConfig,
    ) -> anyhow::Result<(Server, Option<InitialCredentials>)> {
        let data = &config.data_dir;
        data_dir::prepare(data)?;
        // One store holds the metadata and the functions' key-value buckets;
        // a shared one, the counters of quotas that hold across the cluster.
        let grants: Option<Arc<dyn QuotaGrants>>;
        let (store, kv_store): (Arc<dyn MetadataStore>, Arc<dyn KvStore>) = match &config.database {
            Some(url) => {
                let store = Arc::new(
                    PostgresStore::connect(url)
                        .await
                        .context("cannot open the PostgreSQL metadata store")?,
                );
                grants = Some(store.clone());
                (store.clone(), store)
            }
            None => {
                let store =
                    Arc::new(SqliteStore::open(&data.join("kiln.db")).with_context(|| {
                        format!("cannot open {}", data.join("kiln.db").display())
                    })?);
                grants = None;
                (store.clone(), store)
            }
        };
        let blobs: Arc<dyn BlobStore> = match &config.s3 {
            Some(s3) => Arc::new(S3Blobs::open(s3, data.join("staging"))?),
            None => Arc::new(LocalBlobs::open(data.join("modules"))?),
        };
        let runtime = Arc::new(Runtime::new(RuntimeConfig {
            artifact_dir: data.join("artifacts"),
            engine: config.engine.clone(),
            scratch: ScratchConfig {
                total_bytes: config.scratch_total_bytes,
                overlays: config.overlays.clone(),
                copy_on_write: config.copy_on_write,
                ..ScratchConfig::new(
                    config
                        .scratch_dir
                        .clone()
                        .unwrap_or_else(|| data.join("scratch")),
                )
            },
            // Worth its disk writes where binaries share code: a server with
            // language runtimes (every snapshot holds the interpreter), or one
            // told where to keep it.
            compile_cache: config
                .compile_cache
                .clone()
                .or_else(|| config.runtimes.as_ref().map(|_| data.join("compile-cache"))),
            egress: config.egress.clone(),
        })?);
        let bundles = Bundles::open(data.join("bundles"), blobs.clone(), config.bundle_limits)
            .with_context(|| format!("cannot open {}", data.join("bundles").display()))?;
        let collector = Arc::new(Collector::new(
            store.clone(),
            blobs.clone(),
            runtime.clone(),
            data.join("bundles"),
            config.gc_grace,
        ));

        let initial = bootstrap(&*store).await?;
        let functions = Arc::new(Functions::new(
            runtime.clone(),
            blobs.clone(),
            store.clone(),
            FunctionLimits {
                loaded: config.max_loaded_functions,
                loaded_bytes: config.max_loaded_code_bytes,
                compile_slots: std::thread::available_parallelism().map_or(1, |n| n.get()),
                compile_timeout: config.compile_timeout,
                compile_time_per_mib: config.compile_time_per_mib,
                baseline_above: config.baseline_above,
            },
        ));
        // Every deployed module gets an artifact on this node now (a new copy of
        // the data directory, a wasmtime upgrade, a new node of a cluster), so
        // that the request path only ever loads.
        functions
            .ensure_all(store.referenced_digests().await?)
            .await;
        let cluster_quotas = grants.is_some();
        let quotas = Quotas::load(&*store, grants, config.prices.clone(), config.metering).await?;
        let secret_keys = SecretKeys::load(
            config.secret_key_file.as_deref(),
            config.secret_key.clone(),
            config
                .database
                .is_none()
                .then(|| data.join("secret.key"))
                .as_deref(),
        )?;
        let kv = Arc::new(KvService::new(
            kv_store.clone(),
            config.kv_limits,
            config.kv_caps,
            quotas.book(),
        ));

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
        let domains = domains::Domains::new();
        let tls = match config.tls.clone() {
            Some(files) => Some(
                tls::Tls::load(files, domains.certificates.clone())
                    .context("cannot serve HTTPS")?,
            ),
            None => None,
        };
        let redirect_listener = match config.http_redirect {
            Some(addr) if tls.is_some() => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (HTTP redirect)"))?,
            ),
            Some(_) => anyhow::bail!("an HTTP redirect needs HTTPS (a certificate and key)"),
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}"));
        let (logs, log_writer) = logs::LogSink::start(store.clone(), config.log_buffer);
        let (meter, usage_flusher) = match config.metering {
            true => {
                let (meter, flusher) = Meter::start(
                    store.clone(),
                    kv_store.clone(),
                    config.usage_flush_interval,
                    config.storage_meter_interval,
                );
                (Some(meter), Some(flusher))
            }
            false => (None, None),
        };
        let languages = LanguageRuntimes::new(config.runtimes.clone());
        let state = Arc::new(AppState {
            store,
            blobs,
            runtime: runtime.clone(),
            settings: Settings {
                public_url: url.trim_end_matches('/').to_owned(),
                max_module_bytes: config.max_module_bytes,
                metrics_on_main: metrics_listener.is_none(),
                schedule_min_interval: config.schedule_min_interval,
                session_ttl: config.session_ttl,
                https: tls.is_some(),
                console: config.console.enabled,
                open_signup: config.console.open_signup,
            },
            deployments: DeploymentCache::new(
                DEPLOYMENT_CACHE_ENTRIES,
                config.default_limits,
                config.scratch_files,
                languages.mounts(),
                kv.clone(),
                runtime,
            ),
            bundles,
            collector,
            languages,
            functions,
            logs,
            counters: Arc::new(Counters::default()),
            meter,
            quotas,
            kv,
            secret_keys,
            metrics: Arc::default(),
            settling: tokio_util::task::TaskTracker::new(),
            domains,
            domains_changed: tokio::sync::Notify::new(),
            schedules_changed: tokio::sync::Notify::new(),
            signups: signups::SignupLimiter::new(config.console.signups_per_hour),
        });
        state
            .domains
            .reload(&*state.store, &state.secret_keys)
            .await
            .context("cannot load the custom domains")?;
        let changes = state.store.watch().await?;
        let loaded_file = data.join(rewarm::FILE);
        let server = Server {
            listener,
            metrics_listener,
            changes,
            connections: config.connections,
            state,
            log_writer,
            usage_flusher,
            gc_interval: config.gc_interval,
            cluster_quotas,
            tls,
            redirect_listener,
            url,
            rewarm: rewarm::read(&loaded_file, config.max_loaded_functions.get()),
            loaded_file,
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
            gc_interval,
            cluster_quotas,
            tls,
            redirect_listener,
            loaded_file,
            rewarm,
            ..
        } = self;
        let https_port = listener.local_addr().map(|a| a.port()).unwrap_or(443);
        let redirect = redirect_listener.map(|listener| {
            tokio::spawn(listen::serve(
                listener,
                None,
                tls::redirect_app(https_port),
                connections,
                Arc::default(),
                Arc::default(),
                std::future::pending(),
            ))
        });
        let acceptor = tls.as_ref().map(|tls| tls.acceptor.clone());
        let reloader = tls.map(|tls| tokio::spawn(tls::watch(tls.current, tls.files)));
        let collector = gc_interval.map(|every| state.collector.clone().start(every));
        let domains = tokio::spawn(renewal::keep_loaded(state.clone()));
        // The node's name in the runs it claims and in the nodes it reports.
        let node = node_name(&listener);
        let started_at = kiln_store::now();
        let reporter = tokio::spawn(nodes::keep_reporting(
            state.clone(),
            node.clone(),
            started_at,
        ));
        let scheduler = tokio::spawn(scheduler::run(state.clone(), node.clone()));
        let functions = state.functions.clone();
        let rewarm_counters = state.counters.clone();
        let rewarming = tokio::spawn(rewarm::rewarm(
            functions.clone(),
            rewarm,
            rewarm_counters.clone(),
        ));
        let recorder = tokio::spawn(rewarm::keep_recording(
            functions.clone(),
            rewarm_counters.clone(),
            loaded_file.clone(),
        ));
        let quota_sync = cluster_quotas.then(|| tokio::spawn(sync_quotas(state.clone())));
        // The metrics address gets the same client limits as the main one, and
        // counters of its own (its scrapers are not clients of functions).
        let metrics_server = metrics_listener.map(|listener| {
            let app = Router::new()
                .route("/metrics", get(api::metrics::open_metrics))
                .with_state(state.clone());
            tokio::spawn(listen::serve(
                listener,
                None,
                app,
                connections,
                Arc::default(),
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
                            state.deployments.forget(&tenant, &function);
                            state.schedules_changed.notify_one();
                        }
                        kiln_store::Change::Domains => state.domains_changed.notify_one(),
                        kiln_store::Change::Everything => {
                            state.deployments.forget_all();
                            state.schedules_changed.notify_one();
                            state.domains_changed.notify_one();
                        }
                    }
                }
            })
        });
        let settling = state.settling.clone();
        let runtime = state.runtime.clone();
        let counters = state.counters.clone();
        let metrics = state.metrics.clone();
        let reporting = state.clone();
        let app = router(state);
        // The accept loop runs on a worker, not on the thread that called
        // `run`: a connection's task is then spawned on the worker that
        // accepted it and runs there next, instead of waking another thread
        // (one cross-thread wake-up less per new connection, the first
        // request of every client).
        let accepting = tokio::spawn(listen::serve(
            listener,
            acceptor,
            app,
            connections,
            counters,
            metrics,
            shutdown,
        ));
        if let Err(e) = accepting.await {
            tracing::error!("the accept loop ended abnormally: {e}");
        }
        for task in [redirect, reloader].into_iter().flatten() {
            task.abort();
        }
        // No new scheduled run; those running are tracked by `settling`.
        scheduler.abort();
        rewarming.abort();
        recorder.abort();
        reporter.abort();
        nodes::report(&reporting, &node, started_at, true).await;
        // The state holds a log sink: the log writer below ends once every
        // holder is gone.
        drop(reporting);
        domains.abort();
        if let Some(task) = metrics_server {
            task.abort();
        }
        if let Some(task) = watcher {
            task.abort();
        }
        if let Some(task) = collector {
            task.abort();
        }
        if let Some(task) = quota_sync {
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
        // What is loaded now is loaded again by the next start.
        rewarm::record(&functions, &rewarm_counters, &loaded_file).await;
        // A compile loads its code at once and writes its artifact behind:
        // what is being written is finished, or the next start compiles it again.
        let flushing = tokio::task::spawn_blocking(move || runtime.flush_artifacts());
        if tokio::time::timeout(Duration::from_secs(30), flushing)
            .await
            .is_err()
        {
            tracing::warn!("gave up waiting for compiled artifacts to be written");
        }
        Ok(())
    }
}

/// In a cluster, every second: the quotas set and the usage recorded through
/// any node, into this node's book; every minute, past quota counters dropped.
async fn sync_quotas(state: Arc<AppState>) {
    let mut ticks = tokio::time::interval(QUOTA_SYNC);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for round in 0u64.. {
        ticks.tick().await;
        if let Err(e) = state.quotas.sync(&*state.store).await {
            tracing::warn!(error = %e, "cannot read the cluster's quotas and usage");
        }
        if round % 60 == 0 {
            state.quotas.forget_past_grants().await;
        }
    }
}

/// How often a node of a cluster reads the quotas and usage of the others.
const QUOTA_SYNC: Duration = Duration::from_secs(1);

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

/// A node's name: the address it serves on, or, when that is every address
/// (`0.0.0.0`, `::`), its host name and port, which tell the nodes of a
/// cluster apart.
fn node_name(listener: &TcpListener) -> String {
    match listener.local_addr() {
        Ok(addr) if addr.ip().is_unspecified() => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default();
            match host.is_empty() {
                true => addr.to_string(),
                false => format!("{host}:{}", addr.port()),
            }
        }
        Ok(addr) => addr.to_string(),
        Err(_) => "unknown".to_owned(),
    }
}

/// Both wings: the control API, whose failures are logged with their causes by a
/// layer of its own, and the invoke path, which logs its own (no layer on the
/// hot path).
fn router(state: Arc<AppState>) -> Router {
    let console = match state.settings.console {
        true => console::routes(),
        false => Router::new(),
    };
    Router::new()
        .merge(
            api::routes()
                .layer(axum::middleware::from_fn(console::same_origin_only))
                .layer(axum::middleware::map_response(error::log_failures)),
        )
        .merge(console)
        .route("/fn/{tenant}/{function}", any(invoke::invoke))
        .route("/fn/{tenant}/{function}/", any(invoke::invoke))
        .route("/fn/{tenant}/{function}/{*rest}", any(invoke::invoke))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            invoke::by_host,
        ))
        .with_state(state)
}
