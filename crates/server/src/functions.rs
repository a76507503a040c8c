//! The one owner of "digest → runnable function". Every way a node gets a
//! compiled, pre-linked function goes through [`Functions`]:
//!
//! 1. the cache of loaded functions (LRU, bounded in count and bytes: `loaded.rs`);
//! 2. the node's artifact cache on disk (a load: an `mmap`, never a compile);
//! 3. the cluster's bucket, where another node shared the artifact;
//! 4. a compile of the module's blob, which is then shared.
//!
//! Steps 3–4 run once per digest however many requests find it missing
//! (single-flight, per instance), and every compile (a deploy's, a start-up's, a
//! request's) waits for one of the same compiler slots and obeys the same time
//! limit ([`Functions::compile`]); a background one only waits for its slot
//! within it, then runs to its end.
//!
//! **Tiers.** A module of at least `--baseline-above` bytes is first compiled
//! with Winch (baseline code, in seconds), served at once, and compiled with
//! Cranelift in the background ([`Functions::optimize_later`]); the optimized
//! function then replaces the baseline one in the cache, so new requests run
//! it while requests under way finish on the code they started with. Both
//! artifacts are shared through the bucket; a node loads the best one present,
//! and one that finds only baseline code optimizes it. A module Winch cannot
//! compile is compiled with Cranelift at deploy, and the deploy says why.

use crate::loaded::{Loaded, PushedOut};
use crate::sync::lock;
use kiln_api::{Digest, Tier};
use kiln_runtime::{CompilePriority, Compiled, Function, LoadError, Runtime};
use kiln_store::{BlobKind, BlobStore, LocalBlob, MetadataStore, StoreError};
use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// Artifacts up to this size are loaded on the requesting thread: copying one
/// (in the kernel), mapping and linking it takes about as long as a round trip
/// through the blocking pool or less (a hello's 160 KiB: well under 100 µs),
/// and that round trip was the largest step of a cold start after a restart.
/// Bigger ones go to the blocking pool, so that no executor thread stalls.
const LOAD_INLINE_MAX_BYTES: u64 = 1 << 20;

/// How many functions stay loaded, and how compiles are bounded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FunctionLimits {
    /// Functions kept loaded at once; the least recently used goes first.
    pub(crate) loaded: NonZeroUsize,
    /// Bytes of artifacts the loaded functions may keep mapped; past them, the
    /// least recently used goes first too.
    pub(crate) loaded_bytes: u64,
    /// Compilations that may run at once.
    pub(crate) compile_slots: usize,
    /// The longest a compilation may take, waiting for a slot included...
    pub(crate) compile_timeout: Duration,
    /// ...plus this much for each MiB of the module.
    pub(crate) compile_time_per_mib: Duration,
    /// Modules of at least this many bytes get baseline code first (`None`:
    /// every module is compiled optimized at once).
    pub(crate) baseline_above: Option<u64>,
}

impl FunctionLimits {
    /// The compile-time limit of a module of `bytes`: the base limit plus its
    /// share per whole MiB (a module under 1 MiB gets the base limit).
    pub(crate) fn compile_limit(&self, bytes: u64) -> Duration {
        let mib = u32::try_from(bytes / kiln_api::MIB).unwrap_or(u32::MAX);
        self.compile_timeout
            .saturating_add(self.compile_time_per_mib.saturating_mul(mib))
    }
}

/// Why a function could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FunctionError {
    /// No compiler slot came free within the compile-time limit.
    #[error("every compiler is busy; try again later")]
    Busy,
    /// The compilation took longer than the compile-time limit.
    #[error(
        "module is too expensive to compile: it took longer than the compile-time limit of {}",
        humantime::format_duration(*.0)
    )]
    TooSlow(Duration),
    /// Validating, compiling or loading failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The module's blob or the shared artifact could not be read.
    #[error("cannot fetch the module or its shared artifact")]
    Store(#[from] StoreError),
    /// A blocking task died.
    #[error("a compiler or loader task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// What the function owner has done since start (for `/v1/status` and `/metrics`).
#[derive(Default)]
pub(crate) struct FunctionStats {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) evictions: AtomicU64,
    /// Modules compiled here (deploys of new bytes, and compiles at start-up or
    /// on the request path of modules with no artifact).
    pub(crate) compiles: AtomicU64,
    /// Nanoseconds spent compiling.
    pub(crate) compile_ns: AtomicU64,
    /// Artifacts downloaded from the cluster's bucket instead of compiled.
    pub(crate) downloads: AtomicU64,
    /// Modules compiled with the baseline compiler.
    pub(crate) baseline_compiles: AtomicU64,
    /// Functions whose optimized code replaced their baseline code.
    pub(crate) tier_switches: AtomicU64,
}

/// A deploy's compile: the function, and why it did not get baseline code
/// when it should have.
pub(crate) struct Made {
    pub(crate) compiled: Compiled,
    pub(crate) tier_note: Option<String>,
}

/// Digest → loaded function, and everything it takes to get one.
pub(crate) struct Functions {
    runtime: Arc<Runtime>,
    blobs: Arc<dyn BlobStore>,
    /// Where the sha256 of each shared artifact is recorded.
    store: Arc<dyn MetadataStore>,
    cache: Mutex<Loaded>,
    /// Digests being fetched or compiled now: the requests that find one missing
    /// at once wait for one fetch instead of each doing its own.
    fetching: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    /// A compilation past its time limit keeps its slot until it really ends.
    compile_slots: Arc<Semaphore>,
    /// Digests whose optimized code is being made in the background.
    optimizing: Mutex<HashSet<Digest>>,
    /// Notified when a function is put in `cache`.
    loaded_changed: Notify,
    limits: FunctionLimits,
    stats: FunctionStats,
}

/// The bytes to compile, always a file (mapped, never read into memory): a
/// staged upload, or the stored blob (downloaded first from a bucket).
enum Source {
    File(PathBuf),
    Blob(Box<LocalBlob>),
}

impl Source {
    fn path(&self) -> &std::path::Path {
        match self {
            Source::File(path) => path,
            Source::Blob(blob) => blob.path(),
        }
    }
}

impl Functions {
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        blobs: Arc<dyn BlobStore>,
        store: Arc<dyn MetadataStore>,
        limits: FunctionLimits,
    ) -> Functions {
        Functions {
            runtime,
            blobs,
            store,
            cache: Mutex::new(Loaded::new(limits.loaded, limits.loaded_bytes)),
            fetching: Mutex::default(),
            optimizing: Mutex::default(),
            loaded_changed: Notify::new(),
            compile_slots: Arc::new(Semaphore::new(limits.compile_slots)),
            limits,
            stats: FunctionStats::default(),
        }
    }

    /// The function of `digest`, for the invoke path: from the cache, else loaded
    /// from this node's artifact, else fetched or compiled ([`Functions::ensure_local`]).
    pub(crate) async fn get(self: &Arc<Self>, digest: Digest) -> Result<Function, FunctionError> {
        if let Some(hit) = lock(&self.cache).get(&digest) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit.clone());
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        // One load (or fetch, or compile) of a digest at a time: the requests
        // that find it missing at once, and a restart's rewarm, wait for the
        // one under way instead of each making their own.
        let flight = self.flight(digest);
        let _flight = flight.lock().await;
        if let Some(loaded) = lock(&self.cache).get(&digest) {
            return Ok(loaded.clone());
        }
        let loaded = self.load_or_make(digest).await;
        // Baseline code loaded (its optimizing failed earlier, or was cut
        // short by a stop): optimized now.
        if let Ok(function) = &loaded
            && function.tier() == Tier::Baseline
        {
            self.optimize_later(digest);
        }
        loaded
    }

    /// Loads `digest`'s function from this node's artifact, else makes one
    /// there ([`Functions::ensure_local`]) first. The caller holds the
    /// digest's flight lock.
    async fn load_or_make(self: &Arc<Self>, digest: Digest) -> Result<Function, FunctionError> {
        match self.load(digest).await {
            Err(FunctionError::Load(LoadError::NotCompiled(_))) => {}
            Err(FunctionError::Load(LoadError::BadArtifact { path, message, .. })) => {
                // Damaged on disk (truncated, rewritten, another engine's):
                // made again, as if it had never been.
                tracing::warn!(%digest, path = %path.display(), %message, "discarding an artifact that does not load");
                self.discard_artifact(digest).await;
            }
            loaded => return loaded,
        }
        self.ensure_local(digest).await?;
        self.load(digest).await
    }

    /// Loads `digest`'s function if it is not loaded and this node has an
    /// artifact of it (a restart's rewarm, `rewarm.rs`): nothing is fetched
    /// or compiled for it. Whether it loaded it.
    pub(crate) async fn warm(&self, digest: Digest) -> Result<bool, FunctionError> {
        if self.runtime.best_tier(&digest).is_none() {
            return Ok(false);
        }
        let flight = self.flight(digest);
        let _flight = flight.lock().await;
        if lock(&self.cache).contains(&digest) {
            return Ok(false);
        }
        self.load(digest).await?;
        Ok(true)
    }

    /// The size of this node's artifact of `digest` (its best tier), if it
    /// has one on disk.
    pub(crate) fn artifact_len(&self, digest: &Digest) -> Option<u64> {
        self.runtime.artifact_len(digest)
    }

    /// Makes `digest`'s function, if loaded, the most recently used.
    pub(crate) fn touch(&self, digest: &Digest) {
        lock(&self.cache).get(digest);
    }

    /// The digests of the loaded functions, the most recently used first.
    pub(crate) fn loaded_digests(&self) -> Vec<Digest> {
        lock(&self.cache).digests()
    }

    /// Notified whenever a function is loaded (`rewarm.rs` writes the set down).
    pub(crate) fn loaded_changed(&self) -> &Notify {
        &self.loaded_changed
    }

    /// Deletes this node's artifact of `digest` (one that does not load).
    async fn discard_artifact(&self, digest: Digest) {
        let runtime = self.runtime.clone();
        let removed = tokio::task::spawn_blocking(move || runtime.remove_artifacts(&digest)).await;
        if let Ok(Err(e)) | Err(e) = removed.map_err(std::io::Error::other) {
            tracing::warn!(%digest, error = %e, "cannot remove a damaged artifact");
        }
    }

    /// Makes sure this node's artifact cache holds an artifact of `digest`:
    /// downloaded if another node shared it, else compiled from the blob
    /// (within the compile slots and limit) and shared. Baseline code found or
    /// made here is optimized in the background.
    pub(crate) async fn ensure_local(
        self: &Arc<Self>,
        digest: Digest,
    ) -> Result<(), FunctionError> {
        if self.runtime.has_tier(&digest, Tier::Optimized) {
            return Ok(());
        }
        if self.runtime.has_tier(&digest, Tier::Baseline) {
            self.optimize_later(digest);
            return Ok(());
        }
        if self.fetch_shared(digest, Tier::Optimized).await? {
            return Ok(());
        }
        if self.fetch_shared(digest, Tier::Baseline).await? {
            self.optimize_later(digest);
            return Ok(());
        }
        tracing::info!(%digest, "compiling a deployed module with no artifact");
        let blob = self.blobs.local(BlobKind::Module, &digest).await?;
        let made = self
            .compile_tiered(digest, Arc::new(Source::Blob(Box::new(blob))))
            .await?;
        if made.compiled.function.tier() == Tier::Baseline {
            self.optimize_later(digest);
        }
        Ok(())
    }

    /// Imports the artifact of `digest` for `tier` another node shared, if
    /// there is one and it is the one recorded; whether it did.
    async fn fetch_shared(&self, digest: Digest, tier: Tier) -> Result<bool, FunctionError> {
        let Some(key) = self.runtime.artifact_key(&digest, tier) else {
            return Ok(false);
        };
        let Some(artifact) = self.blobs.shared_artifact(&key).await? else {
            return Ok(false);
        };
        // Machine code is loaded only as the node that compiled it recorded
        // it: a changed or swapped object in the bucket is not.
        let recorded = self.store.artifact_sha256(&key).await?;
        let found = Digest::of(&artifact);
        if recorded != Some(found) {
            tracing::error!(
                %digest, %key, %found,
                recorded = ?recorded.map(|d| d.to_string()),
                "the shared artifact in the bucket is not the one recorded; compiling here instead"
            );
            return Ok(false);
        }
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || runtime.import_artifact(&digest, tier, &artifact))
            .await??;
        self.stats.downloads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%digest, %tier, "downloaded a compiled artifact shared by another node");
        Ok(true)
    }

    /// Start-up: makes sure every deployed module has an artifact here, so that
    /// the request path only loads. A module that cannot be had now (its compile
    /// is over the limit, the bucket is down) is logged and left to the request
    /// path, which tries again and answers 503 meanwhile.
    pub(crate) async fn ensure_all(self: &Arc<Self>, digests: Vec<Digest>) {
        for digest in digests {
            if let Err(e) = self.ensure_local(digest).await {
                let cause = crate::error::FailureCause::of(&e);
                tracing::warn!(%digest, %cause, "no compiled artifact at start-up");
            }
        }
    }

    /// A deploy's compile of its staged upload, within the compile slots and
    /// limit: baseline code for a big module, else optimized; a new artifact is
    /// shared with the cluster before the deploy commits, so that a node that
    /// sees the version finds it. The deploy calls [`Functions::optimize_later`]
    /// for baseline code once its blob is stored.
    pub(crate) async fn compile_upload(
        &self,
        digest: Digest,
        staged: PathBuf,
    ) -> Result<Made, FunctionError> {
        self.compile_tiered(digest, Arc::new(Source::File(staged)))
            .await
    }

    /// Baseline code if the module is big enough and Winch can compile it,
    /// else optimized code.
    async fn compile_tiered(
        &self,
        digest: Digest,
        source: Arc<Source>,
    ) -> Result<Made, FunctionError> {
        let size = tokio::fs::metadata(source.path())
            .await
            .map_or(0, |m| m.len());
        let baseline = self.runtime.has_baseline()
            && self.limits.baseline_above.is_some_and(|min| size >= min)
            && !self.runtime.has_tier(&digest, Tier::Optimized);
        if baseline {
            match self
                .compile(
                    digest,
                    source.clone(),
                    Tier::Baseline,
                    CompilePriority::Waited,
                )
                .await
            {
                Ok(compiled) => {
                    return Ok(Made {
                        compiled,
                        tier_note: None,
                    });
                }
                Err(FunctionError::Load(LoadError::Compile(cause))) => {
                    // The innermost cause names the proposal ("exceptions
                    // proposal not enabled").
                    let mut root: &dyn std::error::Error = &*cause;
                    while let Some(source) = root.source() {
                        root = source;
                    }
                    let why = root.to_string();
                    tracing::info!(%digest, %why, "the baseline compiler cannot compile it: compiling optimized code");
                    let compiled = self
                        .compile(digest, source, Tier::Optimized, CompilePriority::Waited)
                        .await?;
                    return Ok(Made {
                        compiled,
                        tier_note: Some(format!(
                            "the baseline compiler (Winch) cannot compile this module ({why}); \
                             it was compiled optimized (Cranelift) instead"
                        )),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Made {
            compiled: self
                .compile(digest, source, Tier::Optimized, CompilePriority::Waited)
                .await?,
            tier_note: None,
        })
    }

    /// Makes `digest`'s optimized code in the background (once, however many
    /// ask), then switches the cache to it: new requests run it, requests under
    /// way finish on the baseline code they started with.
    pub(crate) fn optimize_later(self: &Arc<Self>, digest: Digest) {
        if !lock(&self.optimizing).insert(digest) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.optimize(digest).await;
            lock(&this.optimizing).remove(&digest);
            match result {
                Ok(()) => tracing::info!(%digest, "optimized code in: new requests run it"),
                Err(e) => {
                    let cause = crate::error::FailureCause::of(&e);
                    tracing::warn!(%digest, %cause, "cannot make optimized code; serving baseline code");
                }
            }
        });
    }

    async fn optimize(&self, digest: Digest) -> Result<(), FunctionError> {
        if !self.runtime.has_tier(&digest, Tier::Optimized)
            && !self.fetch_shared(digest, Tier::Optimized).await?
        {
            let blob = self.blobs.local(BlobKind::Module, &digest).await?;
            self.compile(
                digest,
                Arc::new(Source::Blob(Box::new(blob))),
                Tier::Optimized,
                CompilePriority::Background,
            )
            .await?;
        }
        let runtime = self.runtime.clone();
        let function =
            tokio::task::spawn_blocking(move || runtime.load_tier(&digest, Tier::Optimized))
                .await??;
        {
            // Only a function still cached is switched: an evicted one loads
            // the best tier when next asked for.
            let mut cache = lock(&self.cache);
            let pushed_out = cache.contains(&digest).then(|| cache.put(function));
            drop(cache);
            if let Some(pushed_out) = pushed_out {
                self.count_evictions(&pushed_out);
            }
        }
        self.stats.tier_switches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Caches a function loaded elsewhere (a deploy warms the cache this way, so
    /// that its first request does not load anything).
    pub(crate) fn insert(&self, function: Function) {
        let pushed_out = lock(&self.cache).put(function);
        self.loaded_changed.notify_one();
        // What was pushed out is dropped here, outside the lock (unmapping is a
        // system call).
        self.count_evictions(&pushed_out);
    }

    fn count_evictions(&self, pushed_out: &PushedOut) {
        let evicted = pushed_out.evicted.len() as u64;
        self.stats.evictions.fetch_add(evicted, Ordering::Relaxed);
    }

    /// Which compiler made the code `digest` is served with on this node: the
    /// loaded function's, else the best artifact's.
    pub(crate) fn tier_of(&self, digest: Digest) -> Option<Tier> {
        if let Some(loaded) = lock(&self.cache).peek(&digest) {
            return Some(loaded.tier());
        }
        self.runtime.best_tier(&digest)
    }

    /// Functions loaded now.
    pub(crate) fn loaded(&self) -> usize {
        lock(&self.cache).len()
    }

    /// Bytes of artifacts the loaded functions keep mapped now.
    pub(crate) fn loaded_bytes(&self) -> u64 {
        lock(&self.cache).bytes()
    }

    pub(crate) fn stats(&self) -> &FunctionStats {
        &self.stats
    }

    /// Maps the artifact and pre-links it, then caches the function.
    async fn load(&self, digest: Digest) -> Result<Function, FunctionError> {
        let small = self
            .runtime
            .artifact_len(&digest)
            .is_some_and(|len| len <= LOAD_INLINE_MAX_BYTES);
        let function = match small {
            true => self.runtime.load(&digest)?,
            false => {
                let runtime = self.runtime.clone();
                tokio::task::spawn_blocking(move || runtime.load(&digest)).await??
            }
        };
        self.insert(function.clone());
        Ok(function)
    }

    /// The single-flight lock of `digest`.
    fn flight(&self, digest: Digest) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = lock(&self.fetching);
        // Entries nobody waits on any more are dropped on the way.
        map.retain(|_, flight| Arc::strong_count(flight) > 1);
        map.entry(digest).or_default().clone()
    }

    /// Validates and compiles at `priority`, waiting for a compiler slot first
    /// (the wait counts against the limit; a background compile, once it has
    /// its slot, runs to its end whatever it takes); then shares a new artifact.
    async fn compile(
        &self,
        digest: Digest,
        source: Arc<Source>,
        tier: Tier,
        priority: CompilePriority,
    ) -> Result<Compiled, FunctionError> {
        let size = tokio::fs::metadata(source.path())
            .await
            .map_or(0, |m| m.len());
        let limit = self.limits.compile_limit(size);
        let deadline = tokio::time::Instant::now() + limit;
        let slot = tokio::time::timeout_at(deadline, self.compile_slots.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(FunctionError::Busy)?;
        let runtime = self.runtime.clone();
        let abandoned = Arc::new(AtomicBool::new(false));
        let job = tokio::task::spawn_blocking({
            let abandoned = abandoned.clone();
            move || {
                let _slot = slot;
                runtime.compile_file(source.path(), digest, tier, priority, &abandoned)
            }
        });
        let joined = match priority {
            CompilePriority::Waited => match tokio::time::timeout_at(deadline, job).await {
                Ok(joined) => joined,
                Err(_) => {
                    abandoned.store(true, Ordering::Release);
                    return Err(FunctionError::TooSlow(limit));
                }
            },
            // Nobody waits for it, and a compile cannot be stopped: the limit
            // would only throw away a result that is on its way (at the lowest
            // priority, a busy machine makes it slow, not wrong).
            CompilePriority::Background => job.await,
        };
        let compiled = joined??;
        if let Some(took) = compiled.compile_time {
            self.stats.compiles.fetch_add(1, Ordering::Relaxed);
            if tier == Tier::Baseline {
                self.stats.baseline_compiles.fetch_add(1, Ordering::Relaxed);
            }
            let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            self.stats.compile_ns.fetch_add(ns, Ordering::Relaxed);
            self.share(digest, tier).await;
        }
        Ok(compiled)
    }

    /// Offers this node's artifact of `digest` to the others. A failure costs the
    /// others a compilation, nothing else: it is logged, not returned.
    async fn share(&self, digest: Digest, tier: Tier) {
        if !self.blobs.shares_artifacts() {
            return;
        }
        let runtime = self.runtime.clone();
        let exported =
            tokio::task::spawn_blocking(move || runtime.export_artifact(&digest, tier)).await;
        let shared = match exported {
            Ok(Ok((key, artifact))) => {
                let sha256 = Digest::of(&artifact);
                match self.blobs.share_artifact(&key, artifact).await {
                    Ok(()) => self.store.record_artifact(&key, sha256).await,
                    Err(e) => Err(e),
                }
                .map_err(|e| crate::error::FailureCause::of(&e))
            }
            Ok(Err(e)) => Err(crate::error::FailureCause::of(&e)),
            Err(e) => Err(crate::error::FailureCause::of(&e)),
        };
        if let Err(cause) = shared {
            tracing::warn!(%digest, %cause, "cannot share a compiled artifact");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kiln_runtime::{EngineConfig, RuntimeConfig};
    use kiln_store::LocalBlobs;

    /// A runtime, a blob store holding one module with no artifact, and its digest.
    pub(crate) async fn setup(dir: &std::path::Path) -> (Arc<Runtime>, Arc<dyn BlobStore>, Digest) {
        setup_with(dir, r#"(module (func (export "_start")))"#).await
    }

    /// [`setup`] with the module written in `wat`.
    async fn setup_with(
        dir: &std::path::Path,
        wat: &str,
    ) -> (Arc<Runtime>, Arc<dyn BlobStore>, Digest) {
        let runtime = Arc::new(
            Runtime::new(RuntimeConfig {
                engine: EngineConfig {
                    max_instances: 4,
                    ..EngineConfig::default()
                },
                ..RuntimeConfig::new(dir.join("artifacts"))
            })
            .expect("runtime"),
        );
        let blobs: Arc<dyn BlobStore> =
            Arc::new(LocalBlobs::open(dir.join("modules")).expect("blobs"));
        let digest = add_module(&blobs, wat).await;
        (runtime, blobs, digest)
    }

    /// Stores the module written in `wat`; its digest.
    pub(crate) async fn add_module(blobs: &Arc<dyn BlobStore>, wat: &str) -> Digest {
        let wasm = wat::parse_str(wat).expect("wat");
        let mut staged = blobs.stage().await.expect("stage");
        staged.write(&wasm).await.expect("write");
        let digest = staged.finish().await.expect("finish");
        blobs
            .commit(BlobKind::Module, staged)
            .await
            .expect("commit");
        digest
    }

    pub(crate) fn functions(
        runtime: &Arc<Runtime>,
        blobs: &Arc<dyn BlobStore>,
        slots: usize,
    ) -> Arc<Functions> {
        functions_holding(runtime, blobs, slots, NonZeroUsize::MIN)
    }

    /// [`functions`] with room for `loaded` functions.
    pub(crate) fn functions_holding(
        runtime: &Arc<Runtime>,
        blobs: &Arc<dyn BlobStore>,
        slots: usize,
        loaded: NonZeroUsize,
    ) -> Arc<Functions> {
        let dir = runtime.artifacts().dir().join("store");
        std::fs::create_dir_all(&dir).expect("store dir");
        let store = kiln_store::SqliteStore::open(&dir.join("kiln.db")).expect("store");
        Arc::new(Functions::new(
            runtime.clone(),
            blobs.clone(),
            Arc::new(store),
            FunctionLimits {
                loaded,
                loaded_bytes: u64::MAX,
                compile_slots: slots,
                compile_timeout: Duration::from_millis(200),
                compile_time_per_mib: Duration::ZERO,
                baseline_above: None,
            },
        ))
    }

    #[test]
    fn the_compile_limit_grows_with_each_whole_mib() {
        let limits = FunctionLimits {
            loaded: NonZeroUsize::MIN,
            loaded_bytes: u64::MAX,
            compile_slots: 1,
            compile_timeout: Duration::from_secs(60),
            compile_time_per_mib: Duration::from_secs(1),
            baseline_above: None,
        };
        assert_eq!(limits.compile_limit(0), Duration::from_secs(60));
        assert_eq!(
            limits.compile_limit(kiln_api::MIB - 1),
            Duration::from_secs(60)
        );
        assert_eq!(
            limits.compile_limit(66 * kiln_api::MIB + 5),
            Duration::from_secs(126)
        );
        assert!(limits.compile_limit(u64::MAX) >= Duration::from_secs(u64::from(u32::MAX)));
    }

    #[tokio::test]
    async fn request_path_and_start_up_compiles_wait_for_a_compiler_slot_within_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (runtime, blobs, digest) = setup(dir.path()).await;

        // No slot ever frees: the request path gives up at the limit, compiling nothing.
        let busy = functions(&runtime, &blobs, 0);
        let refused = busy.get(digest).await.expect_err("no compiler slot");
        assert!(matches!(refused, FunctionError::Busy), "{refused:?}");
        busy.ensure_all(vec![digest]).await;
        assert_eq!(busy.stats().compiles.load(Ordering::Relaxed), 0);
        assert!(!runtime.has_artifact(&digest), "nothing was compiled");

        // With a slot, the same request compiles once, then loads.
        let free = functions(&runtime, &blobs, 1);
        free.get(digest)
            .await
            .expect("compiled on the request path");
        free.get(digest).await.expect("cached");
        let stats = free.stats();
        assert_eq!(stats.compiles.load(Ordering::Relaxed), 1);
        assert_eq!(stats.hits.load(Ordering::Relaxed), 1);
        assert!(runtime.has_artifact(&digest));
    }

    #[tokio::test]
    async fn a_background_compile_runs_past_the_compile_limit_a_waited_one_stops_at() {
        // Thousands of functions with loops: far more than the 200 ms limit to compile.
        let body = "(func (param i32) (result i32) (local i32) \
            (loop (local.set 1 (i32.add (local.get 1) (i32.mul (local.get 0) (i32.const 3)))) \
            (br_if 0 (i32.lt_u (local.get 1) (i32.const 1000)))) (local.get 1))";
        let wat = format!(
            r#"(module {} (func (export "_start")))"#,
            body.repeat(20_000)
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let (runtime, blobs, digest) = setup_with(dir.path(), &wat).await;
        let functions = functions(&runtime, &blobs, 2);
        let source = || async {
            let blob = blobs.local(BlobKind::Module, &digest).await.expect("blob");
            Arc::new(Source::Blob(Box::new(blob)))
        };
        let waited = functions
            .compile(
                digest,
                source().await,
                Tier::Optimized,
                CompilePriority::Waited,
            )
            .await
            .expect_err("past the limit");
        assert!(matches!(waited, FunctionError::TooSlow(_)), "{waited:?}");
        assert!(!runtime.has_artifact(&digest), "its result is thrown away");

        let background = functions
            .compile(
                digest,
                source().await,
                Tier::Optimized,
                CompilePriority::Background,
            )
            .await
            .expect("compiled in the background, however long it took");
        assert_eq!(background.function.tier(), Tier::Optimized);
        assert!(runtime.has_artifact(&digest));
    }
}
