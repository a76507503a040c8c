//! What every handler shares: the stores, the sandbox runtime, the settings, and
//! the two in-memory caches that keep the invoke path off the database.

use crate::logs::LogSink;
use crate::metering::Meter;
use crate::metrics::Metrics;
use crate::quota::Quotas;
use kiln_runtime::{AllowedHosts, Digest, Function, Limits, LoadError, Runtime};
use kiln_store::{BlobStore, Deployment, MetadataStore, StoreResult};
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Server settings the handlers read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL printed in deploy answers, e.g. `http://127.0.0.1:8080`.
    pub public_url: String,
    /// Largest module a deploy accepts.
    pub max_module_bytes: u64,
    /// Limits of a function that does not override them.
    pub default_limits: Limits,
    /// Whether `GET /metrics` is served on the main listener (to admin tokens).
    /// Off when it has a listener of its own.
    pub metrics_on_main: bool,
    /// The longest a deploy may compile.
    pub compile_timeout: std::time::Duration,
}

/// Counters an operator (and the tests) can read at `GET /v1/status`.
#[derive(Default)]
pub struct Counters {
    /// Invocations running now.
    pub in_flight: AtomicU64,
    /// Client connections open now.
    pub connections: AtomicU64,
    /// Modules compiled since this process started (deploys of new bytes, and
    /// start-up compiles of modules with no artifact).
    pub compiles: AtomicU64,
    /// Compiled artifacts downloaded from the cluster's object store instead of
    /// compiled here.
    pub artifact_downloads: AtomicU64,
}

pub struct AppState {
    pub store: Arc<dyn MetadataStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub runtime: Arc<Runtime>,
    pub settings: Settings,
    pub deployments: DeploymentCache,
    pub functions: FunctionCache,
    pub logs: LogSink,
    pub counters: Arc<Counters>,
    /// `None` when metering is off (`kiln up --metering off`).
    pub meter: Option<Arc<Meter>>,
    pub quotas: Quotas,
    pub metrics: Metrics,
    /// Tasks settling streamed invocations after their response was sent; the
    /// server waits for them before its final usage flush.
    pub settling: tokio_util::task::TaskTracker,
    /// Compilations that may run at once (one per core): a compilation past its
    /// deploy's time limit keeps its slot until it really ends.
    pub compile_slots: Arc<tokio::sync::Semaphore>,
}

/// Deployments (a route and its configuration, a few hundred bytes each) kept in
/// memory: enough for every function of a dense node; past it, a request costs one
/// indexed store read.
pub const DEPLOYMENT_CACHE_ENTRIES: NonZeroUsize = NonZeroUsize::new(65_536).unwrap();

/// `(tenant, function)` → the deployment the invoke path runs. Filled on first
/// use, dropped by this node's deploys, rollbacks and deletes (and, with a shared
/// store, by other nodes' as they are notified), and bounded: the least recently
/// used entry goes first.
pub struct DeploymentCache {
    map: Mutex<LruCache<(String, String), Arc<Served>>>,
    /// Bumped by every `forget`: a lookup that raced with a change (read the old
    /// row, then the change forgot the entry) must not cache what it read.
    generation: AtomicU64,
}

/// A deployment as the invoke path uses it: the stored row, plus what is worked
/// out from its configuration once, when it enters the cache, not per request.
pub struct Served {
    pub deployment: Deployment,
    /// The parsed `allow_hosts` (validated at deploy).
    pub allowed_hosts: Arc<AllowedHosts>,
}

impl Served {
    fn new(deployment: Deployment) -> Served {
        let patterns = deployment
            .config
            .allow_hosts
            .iter()
            .filter_map(|host| host.parse().ok())
            .collect();
        Served {
            deployment,
            allowed_hosts: Arc::new(AllowedHosts(patterns)),
        }
    }
}

impl std::ops::Deref for Served {
    type Target = Deployment;

    fn deref(&self) -> &Deployment {
        &self.deployment
    }
}

impl DeploymentCache {
    pub fn new(capacity: NonZeroUsize) -> DeploymentCache {
        DeploymentCache {
            map: Mutex::new(LruCache::new(capacity)),
            generation: AtomicU64::new(0),
        }
    }

    pub async fn get(
        &self,
        store: &dyn MetadataStore,
        tenant: &str,
        function: &str,
    ) -> StoreResult<Option<Arc<Served>>> {
        let key = (tenant.to_owned(), function.to_owned());
        if let Some(hit) = lock(&self.map).get(&key) {
            return Ok(Some(hit.clone()));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let Some(found) = store.resolve(tenant, function).await? else {
            return Ok(None);
        };
        let found = Arc::new(Served::new(found));
        let mut map = lock(&self.map);
        if self.generation.load(Ordering::Acquire) == generation {
            map.put(key, found.clone());
        }
        Ok(Some(found))
    }

    /// Drops every entry (changes may have been missed).
    pub fn forget_all(&self) {
        let mut map = lock(&self.map);
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.clear();
    }

    pub fn forget(&self, tenant: &str, function: &str) {
        let mut map = lock(&self.map);
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.pop(&(tenant.to_owned(), function.to_owned()));
    }
}

/// Module digest → loaded, pre-linked function, for at most `capacity` modules:
/// the least recently invoked is evicted first (dropping its mapping of the
/// artifact), and loaded again from the artifact on its next request. Loading
/// maps the compiled artifact from disk; it never compiles.
pub struct FunctionCache {
    map: Mutex<LruCache<Digest, Function>>,
    stats: FunctionCacheStats,
}

/// What the function cache has done since start, for `GET /v1/status`.
#[derive(Default)]
pub struct FunctionCacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub evictions: AtomicU64,
}

impl FunctionCache {
    pub fn new(capacity: NonZeroUsize) -> FunctionCache {
        FunctionCache {
            map: Mutex::new(LruCache::new(capacity)),
            stats: FunctionCacheStats::default(),
        }
    }

    pub async fn get(&self, runtime: &Arc<Runtime>, digest: Digest) -> Result<Function, LoadError> {
        if let Some(hit) = lock(&self.map).get(&digest) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit.clone());
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let runtime = runtime.clone();
        let function = tokio::task::spawn_blocking(move || runtime.load(&digest))
            .await
            .map_err(|e| LoadError::Compile(format!("loader task failed: {e}")))??;
        self.insert(function.clone());
        Ok(function)
    }

    /// Caches a function loaded elsewhere (a deploy warms the cache this way, so
    /// that its first request does not load anything).
    pub fn insert(&self, function: Function) {
        // The evicted function is dropped outside the lock: unmapping takes a syscall.
        let digest = function.digest();
        let displaced = lock(&self.map).push(digest, function);
        // `push` also hands back the entry it replaced for the same digest.
        if displaced.is_some_and(|(old, _)| old != digest) {
            self.stats.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Functions loaded now.
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    pub fn stats(&self) -> &FunctionCacheStats {
        &self.stats
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
