//! What every handler shares: the stores, the sandbox runtime, the settings, the
//! counters, and the cache of deployments that keeps the invoke path off the
//! database (compiled functions have their own owner, [`crate::functions`]).

use crate::bundles::Bundles;
use crate::domains::Domains;
use crate::functions::Functions;
use crate::gc::Collector;
use crate::kv::KvService;
use crate::languages::{LanguageMounts, LanguageRuntimes};
use crate::logs::LogSink;
use crate::metering::Meter;
use crate::metrics::Metrics;
use crate::quota::Quotas;
use crate::secrets::SecretKeys;
use crate::sync::lock;
use kiln_api::MountMode;
use kiln_runtime::{
    AllowedHosts, CpuShare, Files, HostMount, KvGrant, Limits, Runtime, ScratchLimits,
};
use kiln_store::{BlobStore, Deployment, MetadataStore, StoreResult};
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Server settings the handlers read.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Base URL printed in deploy answers, e.g. `http://127.0.0.1:8080`.
    pub public_url: String,
    /// Largest module a deploy accepts.
    pub max_module_bytes: u64,
    /// Whether `GET /metrics` is served on the main listener (to admin tokens).
    /// Off when it has a listener of its own.
    pub metrics_on_main: bool,
    /// The shortest interval between two ticks of a schedule.
    pub schedule_min_interval: Duration,
    /// How long a console session lasts.
    pub session_ttl: Duration,
    /// Whether the main listener speaks HTTPS (session cookies are `Secure`).
    pub https: bool,
    /// Whether the console is served (and `/fn` answers sandboxed).
    pub console: bool,
    /// Whether visitors may create a tenant from the console.
    pub open_signup: bool,
}

impl Settings {
    /// The host name of the public URL: never a custom domain.
    pub(crate) fn public_host(&self) -> Option<&str> {
        let rest = self
            .public_url
            .split_once("://")
            .map_or(&*self.public_url, |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or(rest);
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        };
        (!host.is_empty()).then_some(host)
    }
}

/// Counters an operator (and the tests) can read at `GET /v1/status`.
#[derive(Default)]
pub(crate) struct Counters {
    /// Invocations running now.
    pub in_flight: AtomicU64,
    /// Client connections open now.
    pub connections: AtomicU64,
    /// Functions a restart has still to load again (`rewarm.rs`).
    pub rewarm_pending: AtomicUsize,
}

/// The server's state, one per process, shared by every handler.
pub(crate) struct AppState {
    pub store: Arc<dyn MetadataStore>,
    /// Module blobs (deploys stage and commit them here).
    pub blobs: Arc<dyn BlobStore>,
    pub runtime: Arc<Runtime>,
    pub settings: Settings,
    pub deployments: DeploymentCache,
    /// Digest → runnable function: cache, fetch, compile, share.
    pub functions: Arc<Functions>,
    /// The file bundles unpacked on this node.
    pub bundles: Bundles,
    /// The blob collector, which deploys and uploads pin blobs through.
    pub collector: Arc<Collector>,
    /// The runtimes script functions are snapshotted from at deploy.
    pub languages: LanguageRuntimes,
    pub logs: LogSink,
    pub counters: Arc<Counters>,
    /// `None` when metering is off (`kiln up --metering off`).
    pub meter: Option<Arc<Meter>>,
    pub quotas: Quotas,
    /// The functions' key-value buckets.
    pub kv: Arc<KvService>,
    /// The key that seals secrets, if this node has one.
    pub secret_keys: SecretKeys,
    pub metrics: Arc<Metrics>,
    /// Tasks settling streamed invocations after their response was sent; the
    /// server waits for them before its final usage flush.
    pub settling: tokio_util::task::TaskTracker,
    /// The custom domains and their certificates on this node.
    pub domains: Domains,
    /// Told when domains change (through this node or, by the store, another).
    pub domains_changed: tokio::sync::Notify,
    /// Told when what a function runs changes, so the scheduler reads its
    /// schedules again at once.
    pub schedules_changed: tokio::sync::Notify,
    /// Open sign-ups seen lately, by client address.
    pub signups: crate::signups::SignupLimiter,
}

/// Deployments (a route and its configuration, a few hundred bytes each) kept in
/// memory: enough for every function of a dense node; past it, a request costs one
/// indexed store read.
pub(crate) const DEPLOYMENT_CACHE_ENTRIES: NonZeroUsize = NonZeroUsize::new(65_536).unwrap();

/// `(tenant, function)` → the deployment the invoke path runs. Filled on first
/// use, dropped by this node's deploys, rollbacks and deletes (and, with a shared
/// store, by other nodes' as they are notified), and bounded: the least recently
/// used entry goes first.
pub(crate) struct DeploymentCache {
    map: Mutex<LruCache<(String, String), Arc<CachedDeployment>>>,
    /// The limits of a function that does not override them.
    default_limits: Limits,
    /// Entries a scratch directory may hold.
    scratch_files: u64,
    /// What each language's functions see besides their own code (Python's
    /// standard library at `/python`).
    language_mounts: LanguageMounts,
    /// What grants of key-value buckets are made from.
    kv: Arc<KvService>,
    /// Whose tenants' CPU accounts entries hold.
    runtime: Arc<Runtime>,
    /// Bumped by every `forget`: a lookup that raced with a change (read the old
    /// row, then the change forgot the entry) must not cache what it read.
    generation: AtomicU64,
}

/// A deployment as the invoke path uses it: the stored row, plus everything
/// that depends only on it, worked out once when it enters the cache rather
/// than on every request.
pub(crate) struct CachedDeployment {
    /// The stored row.
    pub row: Deployment,
    /// The function's limits, its overrides applied to the server's defaults.
    pub limits: Limits,
    /// `argv`: the function's name, then its configured arguments.
    pub args: Arc<[String]>,
    /// The parsed `allow_hosts` (validated at deploy).
    pub allowed_hosts: Arc<AllowedHosts>,
    /// `ok_exit`, shared with every streamed invocation.
    pub ok_exit: Arc<[i32]>,
    /// The directories its invocations see (mounts at this node's bundle paths).
    pub files: Arc<Files>,
    /// Its bundles are unpacked on this node (checked on its first request).
    pub files_ready: AtomicBool,
    /// The key-value buckets its invocations may open.
    pub kv: KvGrant,
    /// Its own variables (the environment before the request's, and a
    /// component's `wasi:config`), before any secrets are added.
    pub config_vars: Arc<[(String, String)]>,
    /// Its tenant's share of CPU, charged by its invocations.
    pub cpu: CpuShare,
}

/// The limits of a function configured with `config` on a server whose defaults
/// are `defaults`.
pub(crate) fn limits_of(config: &kiln_api::FunctionConfig, defaults: &Limits) -> Limits {
    Limits {
        memory_bytes: config.memory_bytes.unwrap_or(defaults.memory_bytes),
        wall_time: config
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(defaults.wall_time),
        stdin_bytes: config.max_input.unwrap_or(defaults.stdin_bytes),
        stdout_bytes: config.max_output.unwrap_or(defaults.stdout_bytes),
        ..*defaults
    }
}

impl CachedDeployment {
    pub(crate) fn new(
        deployment: Deployment,
        defaults: &Limits,
        bundles: &Bundles,
        scratch_files: u64,
        language_mounts: &LanguageMounts,
        kv: &Arc<KvService>,
        runtime: &Runtime,
    ) -> CachedDeployment {
        let config = &deployment.config;
        let runtime_mounts = config
            .script
            .as_ref()
            .and_then(|script| language_mounts.get(&script.language))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let patterns = config
            .allow_hosts
            .iter()
            .filter_map(|host| host.parse().ok())
            .collect();
        let limits = limits_of(config, defaults);
        let args = std::iter::once(deployment.function.clone())
            .chain(config.args.iter().cloned())
            .collect();
        CachedDeployment {
            limits,
            args,
            allowed_hosts: Arc::new(AllowedHosts(patterns)),
            ok_exit: config.ok_exit.as_slice().into(),
            files: Arc::new(Files {
                mounts: config
                    .mounts
                    .iter()
                    .map(|mount| HostMount {
                        host: bundles.path(&mount.bundle),
                        guest: mount.guest.clone(),
                        copy: mount.mode == MountMode::Copy,
                    })
                    .chain(runtime_mounts.iter().cloned())
                    .collect(),
                scratch: config.tmp.as_ref().map(|tmp| ScratchLimits {
                    bytes: tmp.bytes,
                    entries: scratch_files,
                    guest: tmp.guest.clone(),
                }),
            }),
            files_ready: AtomicBool::new(config.mounts.is_empty()),
            kv: kv.grant(deployment.tenant_id, &config.kv),
            config_vars: config.env.as_slice().into(),
            cpu: runtime.cpu_share(deployment.tenant_id.cast_unsigned()),
            row: deployment,
        }
    }
}

impl DeploymentCache {
    pub(crate) fn new(
        capacity: NonZeroUsize,
        default_limits: Limits,
        scratch_files: u64,
        language_mounts: LanguageMounts,
        kv: Arc<KvService>,
        runtime: Arc<Runtime>,
    ) -> DeploymentCache {
        DeploymentCache {
            map: Mutex::new(LruCache::new(capacity)),
            default_limits,
            scratch_files,
            language_mounts,
            kv,
            runtime,
            generation: AtomicU64::new(0),
        }
    }

    pub(crate) async fn get(
        &self,
        store: &dyn MetadataStore,
        bundles: &Bundles,
        tenant: &str,
        function: &str,
    ) -> StoreResult<Option<Arc<CachedDeployment>>> {
        let key = (tenant.to_owned(), function.to_owned());
        if let Some(hit) = lock(&self.map).get(&key) {
            return Ok(Some(hit.clone()));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let Some(found) = store.resolve(tenant, function).await? else {
            return Ok(None);
        };
        let found = Arc::new(CachedDeployment::new(
            found,
            &self.default_limits,
            bundles,
            self.scratch_files,
            &self.language_mounts,
            &self.kv,
            &self.runtime,
        ));
        let mut map = lock(&self.map);
        if self.generation.load(Ordering::Acquire) == generation {
            map.put(key, found.clone());
        }
        Ok(Some(found))
    }

    /// The limits of a function that does not override them.
    pub(crate) fn default_limits(&self) -> &Limits {
        &self.default_limits
    }

    /// Drops every entry (changes may have been missed).
    pub(crate) fn forget_all(&self) {
        let mut map = lock(&self.map);
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.clear();
    }

    pub(crate) fn forget(&self, tenant: &str, function: &str) {
        let mut map = lock(&self.map);
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.pop(&(tenant.to_owned(), function.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::Settings;
    use std::time::Duration;

    #[test]
    fn the_public_host_is_the_public_urls_host_without_its_port() {
        let settings = |url: &str| Settings {
            public_url: url.into(),
            max_module_bytes: 0,
            metrics_on_main: false,
            schedule_min_interval: Duration::ZERO,
            session_ttl: Duration::ZERO,
            https: false,
            console: true,
            open_signup: false,
        };
        for (url, host) in [
            ("https://kiln.example.com", Some("kiln.example.com")),
            (
                "http://kiln.example.com:8080/base",
                Some("kiln.example.com"),
            ),
            ("http://127.0.0.1:8080", Some("127.0.0.1")),
            ("http://", None),
        ] {
            assert_eq!(settings(url).public_host(), host, "{url}");
        }
    }
}
