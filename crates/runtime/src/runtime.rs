//! [`Runtime`]: the engine, the linker, the artifact cache, and the three things a
//! caller does with them: compile a binary, load a compiled function, invoke it.

use crate::artifact::ArtifactCache;
use crate::background::{BackgroundPool, CompilePriority};
use crate::compile_cache::DiskCacheStore;
use crate::cpu_share::{CpuShare, CpuShares};
use crate::engine::{EngineConfig, build_engine};
use crate::errors::{LoadError, RuntimeError};
use crate::files::{ScratchConfig, ScratchRoot};
use crate::function::{CoreHost, Function, Host};
use crate::http::{HttpAnswer, HttpRequest};
use crate::invoke::{Invocation, InvokeError, Invoker, Request};
use crate::limiter::GuestLimiter;
use crate::snapshot::{InstrumentedCache, Snapshot, SnapshotError, SnapshotHost, SnapshotInit};
use crate::streaming::{BoxError, StreamRequest, Streamed};
use crate::ticker::{Awake, EpochTicker};
use crate::tier::Compiler;
use crate::validate::{self, ModuleInfo, ProvidedImports, ValidationError};
use kiln_api::Digest;
use kiln_api::Tier;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::{Linker, Store};
use wasmtime_wasi::WasiCtxBuilder;

/// Everything needed to build a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled artifacts are kept (a subdirectory per engine configuration).
    pub artifact_dir: PathBuf,
    /// The engine: instance pool and its ceilings.
    pub engine: EngineConfig,
    /// Where invocations get their scratch directories and writable copies.
    pub scratch: ScratchConfig,
    /// Where compiled functions are cached one by one (wasmtime's incremental
    /// compilation cache), so that binaries sharing code compile it once; `None`
    /// compiles every binary whole.
    pub compile_cache: Option<PathBuf>,
    /// Where outbound requests may connect besides the public internet.
    pub egress: crate::egress::EgressPolicy,
}

impl RuntimeConfig {
    /// Default engine settings, artifacts under `artifact_dir`, scratch
    /// directories beside it (in `scratch`).
    pub fn new(artifact_dir: impl Into<PathBuf>) -> RuntimeConfig {
        let artifact_dir: PathBuf = artifact_dir.into();
        let beside = artifact_dir.parent().unwrap_or(&artifact_dir).to_owned();
        RuntimeConfig {
            artifact_dir,
            engine: EngineConfig::default(),
            scratch: ScratchConfig::new(beside.join("scratch")),
            compile_cache: Some(beside.join("compile-cache")),
            egress: Default::default(),
        }
    }
}

/// A binary that passed validation and was compiled: its artifact is in the
/// cache, its file written or being written behind.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The module's sha256.
    pub digest: Digest,
    /// What validation learned of it.
    pub info: ModuleInfo,
    /// Path of the artifact in the cache.
    pub artifact: PathBuf,
    /// How long compiling took, or `None` when the artifact was already cached.
    pub compile_time: Option<Duration>,
    /// The function, loaded from the artifact and ready to invoke.
    pub function: Function,
}

/// How [`Runtime::load_wasm`] obtained a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// The artifact was already in the cache: nothing was compiled.
    Cached,
    /// The binary was validated and compiled, taking this long.
    Compiled(Duration),
}

/// The sandbox. One per process: create it once (it builds the engine, reserves the
/// instance pool and starts the epoch thread), then share it. Compiling is expensive
/// and happens once per distinct module; loading a cached artifact costs an `mmap`;
/// invoking costs a fresh instance.
pub struct Runtime {
    /// Cranelift: the code every function ends up with.
    optimized: Compiler,
    /// Winch, when enabled: code for a big module in seconds, until the
    /// optimized code is in.
    baseline: Option<Compiler>,
    provided: ProvidedImports,
    invoker: Invoker,
    /// Instrumented copies of binaries snapshotted at deploy, compiled once.
    instrumented: InstrumentedCache,
    /// The tenants' shares of CPU, balanced by the epoch thread.
    shares: Arc<CpuShares>,
    /// Threads for compiles nobody waits for, at the lowest priority.
    background: BackgroundPool,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Builds the engine, reserves the instance pool, opens the artifact cache
    /// and starts the epoch thread: once per process.
    ///
    /// # Errors
    ///
    /// [`RuntimeError`] when wasmtime refuses the configuration, the artifact
    /// directory cannot be opened, or the thread cannot start.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let compile_cache = match &config.compile_cache {
            Some(dir) => Some(DiskCacheStore::open(dir.clone()).map_err(|source| {
                RuntimeError::ArtifactDir {
                    path: dir.clone(),
                    source,
                }
            })?),
            None => None,
        };
        let engine = build_engine(&config.engine, compile_cache, Tier::Optimized)
            .map_err(|e| RuntimeError::Engine(e.into()))?;
        let optimized = Compiler::new(Tier::Optimized, engine.clone(), &config.artifact_dir)?;
        let baseline = match config.engine.baseline {
            true => {
                let engine = build_engine(&config.engine, None, Tier::Baseline)
                    .map_err(|e| RuntimeError::Engine(e.into()))?;
                Some(Compiler::new(Tier::Baseline, engine, &config.artifact_dir)?)
            }
            false => None,
        };
        let provided = provided_imports(&engine, &optimized.linker);
        let scratch = ScratchRoot::open(config.scratch.clone()).map_err(|source| {
            RuntimeError::ScratchDir {
                path: config.scratch.dir.clone(),
                source,
            }
        })?;
        let shares = Arc::new(CpuShares::new(
            config.engine.cpu_cores,
            config.engine.epoch_tick,
        ));
        let engines = std::iter::once(&optimized)
            .chain(&baseline)
            .map(|compiler| compiler.engine.clone())
            .collect();
        let awake = Arc::new(Awake::default());
        let ticker = EpochTicker::start(
            engines,
            config.engine.epoch_tick,
            shares.clone(),
            awake.clone(),
        )
        .map_err(RuntimeError::Ticker)?;
        Ok(Runtime {
            invoker: Invoker {
                engine: engine.clone(),
                max_memory_bytes: config.engine.max_memory_bytes,
                max_instances: config.engine.max_instances,
                slots: std::sync::Arc::new(tokio::sync::Semaphore::new(
                    config.engine.max_instances as usize,
                )),
                instance_wait: config.engine.instance_wait,
                scratch: std::sync::Arc::new(scratch),
                epoch_tick: config.engine.epoch_tick,
                egress: std::sync::Arc::new(config.egress.clone()),
                awake,
            },
            optimized,
            baseline,
            provided,
            instrumented: InstrumentedCache::default(),
            shares,
            background: BackgroundPool::default(),
            _ticker: ticker,
        })
    }

    /// The CPU account of the tenant numbered `key`, to hand its invocations.
    pub fn cpu_share(&self, key: u64) -> CpuShare {
        self.shares.share(key)
    }

    /// The tenants' shares of CPU.
    pub fn cpu_shares(&self) -> &CpuShares {
        &self.shares
    }

    /// The largest memory limit a function may be given (the pool's slot size).
    pub fn max_memory_bytes(&self) -> u64 {
        self.invoker.max_memory_bytes
    }

    /// Instance slots in use now (running invocations), out of `max_instances`.
    pub fn active_instances(&self) -> u32 {
        let free = self.invoker.slots.available_permits();
        self.invoker
            .max_instances
            .saturating_sub(u32::try_from(free).unwrap_or(u32::MAX))
    }

    /// The artifact cache of the optimized tier.
    pub fn artifacts(&self) -> &ArtifactCache {
        &self.optimized.artifacts
    }

    /// The artifact cache of the baseline tier, when it is enabled.
    pub fn baseline_artifacts(&self) -> Option<&ArtifactCache> {
        self.baseline.as_ref().map(|baseline| &baseline.artifacts)
    }

    /// Whether a baseline compiler is kept.
    pub fn has_baseline(&self) -> bool {
        self.baseline.is_some()
    }

    fn compiler(&self, tier: Tier) -> Result<&Compiler, LoadError> {
        match tier {
            Tier::Optimized => Ok(&self.optimized),
            Tier::Baseline => self.baseline.as_ref().ok_or(LoadError::NoBaseline),
        }
    }

    /// Runs the initializer of `wasm` (a core module or a component) once, in a
    /// sandbox with this runtime's imports and `init`'s limits, and returns the
    /// binary wasmtime-wizer writes from the state it left: the deploy-time
    /// snapshot of a language runtime, or of any binary with an initializer.
    ///
    /// Compiles an instrumented copy of `wasm` and runs guest code: call it on a
    /// blocking thread (e.g. `Handle::block_on` inside `spawn_blocking`).
    ///
    /// # Errors
    ///
    /// [`SnapshotError`]: the binary has no such initializer, or it failed (with
    /// what it wrote to stderr), or no instance slot came free.
    pub async fn snapshot(
        &self,
        wasm: &[u8],
        init: &SnapshotInit,
    ) -> Result<Snapshot, SnapshotError> {
        SnapshotHost {
            engine: &self.optimized.engine,
            invoker: &self.invoker,
            instrumented: &self.instrumented,
            linker: &self.optimized.linker,
            component_linker: &self.optimized.component_linker,
        }
        .take(wasm, init)
        .await
    }

    /// Checks that `wasm` is a function Kiln can run, without compiling it.
    pub fn validate(&self, wasm: &[u8]) -> Result<ModuleInfo, ValidationError> {
        validate::validate(&self.optimized.engine, wasm, |module, name| {
            self.provides(module, name)
        })
    }

    /// Whether the host defines the import `module`::`name`.
    fn provides(&self, module: &str, name: &str) -> bool {
        self.provided
            .contains(&(module.to_owned(), name.to_owned()))
    }

    /// Validates and compiles `wasm` into the artifact cache, unless its artifact is
    /// already there, and loads the result. This is the deploy-time step: after it,
    /// [`Runtime::load`] of the digest never compiles.
    ///
    /// `wasm` may be a memory map of the uploaded file: nothing here copies it. The
    /// compiled code is written to the cache, dropped, and mapped back from the file,
    /// so it is never held twice either.
    pub fn compile(&self, wasm: &[u8]) -> Result<Compiled, LoadError> {
        self.compile_digested(Digest::of(wasm), wasm, &AtomicBool::new(false))
    }

    /// [`Runtime::compile`] for a caller that already knows `digest`, the sha256 of
    /// `wasm` (hashed while it was received), saving a second pass over the bytes.
    ///
    /// Compilation cannot be interrupted: a caller that stops waiting for it (a
    /// deploy past its compile-time limit) sets `abandoned`, and the result is
    /// then thrown away instead of being written to the cache.
    pub fn compile_digested(
        &self,
        digest: Digest,
        wasm: &[u8],
        abandoned: &AtomicBool,
    ) -> Result<Compiled, LoadError> {
        self.compile_tier(
            digest,
            wasm,
            Tier::Optimized,
            CompilePriority::Waited,
            abandoned,
        )
    }

    /// [`Runtime::compile_digested`] with the compiler of `tier`. A module the
    /// baseline compiler cannot compile (a proposal Winch lacks, such as
    /// exceptions or GC) is a [`LoadError::Compile`]: compile it optimized.
    /// A [`CompilePriority::Background`] compile runs at the lowest CPU
    /// priority, on threads of its own.
    ///
    /// # Errors
    ///
    /// Those of [`Runtime::compile_digested`], and [`LoadError::NoBaseline`]
    /// for the baseline tier of a runtime without one.
    pub fn compile_tier(
        &self,
        digest: Digest,
        wasm: &[u8],
        tier: Tier,
        priority: CompilePriority,
        abandoned: &AtomicBool,
    ) -> Result<Compiled, LoadError> {
        let compiler = self.compiler(tier)?;
        // The compile validates the code (in parallel); a full validation of
        // its own first would pass over every function body twice.
        let info = validate::inspect(wasm, |module, name| self.provides(module, name))?;
        let artifact = compiler.artifacts.path(&digest);
        if compiler.artifacts.contains(&digest)
            && let Ok(function) = compiler.load(&digest)
        {
            return Ok(Compiled {
                digest,
                info,
                artifact,
                compile_time: None,
                function,
            });
        }

        let begin = Instant::now();
        let bytes = self
            .background
            .run(priority, || compiler.precompile(wasm, info.kind))
            .map_err(|e| {
                // Refused as `validate` would have refused it, if it would.
                if let Err(invalid) = self.validate(wasm) {
                    return invalid.into();
                }
                match validate::proposals_off(wasm) {
                    // A component's code is validated as it compiles.
                    Some(proposals) => ValidationError::ProposalOff(proposals).into(),
                    None => LoadError::Compile(e.into()),
                }
            })?;
        let compile_time = begin.elapsed();
        if abandoned.load(Ordering::Acquire) {
            return Err(LoadError::Abandoned);
        }
        // Loaded from memory at once; the file is written behind.
        let kind = wasmtime::Engine::detect_precompiled(&bytes);
        let write_failed = |source: std::io::Error| LoadError::WriteArtifact {
            path: artifact.clone(),
            source,
        };
        let sealed = ArtifactCache::seal(&bytes).map_err(write_failed)?;
        drop(bytes);
        // Load and link now, so that a module too large for an instance slot, or
        // whose imports have the wrong types, is refused at deploy time rather than
        // on its first request. Code just compiled by this engine that it cannot
        // load is such a module, not a damaged artifact.
        let loaded = sealed
            .try_clone()
            .map_err(write_failed)
            .and_then(|copy| compiler.load_sealed(&digest, kind, copy));
        let function = loaded.map_err(|e| match e {
            LoadError::BadArtifact { cause, .. } => LoadError::Unfit(cause),
            other => other,
        })?;
        compiler
            .artifacts
            .write_behind(&digest, &sealed)
            .map_err(write_failed)?;
        Ok(Compiled {
            digest,
            info,
            artifact,
            compile_time: Some(compile_time),
            function,
        })
    }

    /// [`Runtime::compile_digested`] of a file (an upload staged on disk), mapped
    /// rather than read: a module of hundreds of MiB is never copied into memory.
    ///
    /// The file must not change while it is compiled: it is a private staging
    /// file nothing writes to any more.
    ///
    /// # Errors
    ///
    /// [`LoadError::ReadModule`] if the file cannot be opened or mapped, else
    /// those of [`Runtime::compile_digested`].
    pub fn compile_file(
        &self,
        path: &Path,
        digest: Digest,
        tier: Tier,
        priority: CompilePriority,
        abandoned: &AtomicBool,
    ) -> Result<Compiled, LoadError> {
        let unreadable = |source| LoadError::ReadModule {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(unreadable)?;
        // SAFETY: the caller hands a file that nothing writes to any more (a
        // deploy's private staging file, a fresh name in the store's staging
        // directory); if it is removed meanwhile, the mapping stays valid.
        let wasm = unsafe { memmap2::Mmap::map(&file) }.map_err(unreadable)?;
        self.compile_tier(digest, &wasm, tier, priority, abandoned)
    }

    /// Puts an artifact compiled elsewhere (another node of the cluster, with an
    /// engine of the same compatibility key) into this runtime's cache, so that
    /// [`Runtime::load`] finds it. The only way bytes that this process did not
    /// compile enter the cache.
    ///
    /// # Trust
    ///
    /// Loading an artifact runs its machine code: `artifact` must be the output
    /// of `Runtime::compile` on a Kiln node. Kiln shares artifacts through the
    /// cluster's bucket, so that bucket must be writable by Kiln nodes only
    /// (SECURITY.md). wasmtime checks the header, kind and engine version when it
    /// loads the file, which catches damage, not malice.
    pub fn import_artifact(
        &self,
        digest: &Digest,
        tier: Tier,
        artifact: &[u8],
    ) -> Result<(), LoadError> {
        let artifacts = &self.compiler(tier)?.artifacts;
        artifacts
            .write(digest, artifact)
            .map(drop)
            .map_err(|source| LoadError::WriteArtifact {
                path: artifacts.path(digest),
                source,
            })
    }

    /// This node's artifact of `digest` for `tier`, to share with the others:
    /// its bytes and its name relative to the cache root (the same on every
    /// node with the same engine).
    pub fn export_artifact(
        &self,
        digest: &Digest,
        tier: Tier,
    ) -> std::io::Result<(String, Vec<u8>)> {
        let artifacts = &self
            .compiler(tier)
            .map_err(std::io::Error::other)?
            .artifacts;
        let bytes = artifacts.read(digest)?;
        Ok((artifacts.key(digest), bytes))
    }

    /// The name an artifact of `digest` for `tier` is shared under (see
    /// [`Runtime::export_artifact`]); `None` for a tier this runtime lacks.
    pub fn artifact_key(&self, digest: &Digest, tier: Tier) -> Option<String> {
        Some(self.compiler(tier).ok()?.artifacts.key(digest))
    }

    /// Whether an artifact of `digest` of any tier is in this node's cache.
    pub fn has_artifact(&self, digest: &Digest) -> bool {
        self.best_tier(digest).is_some()
    }

    /// The best tier of `digest` in this node's cache.
    pub fn best_tier(&self, digest: &Digest) -> Option<Tier> {
        [Tier::Optimized, Tier::Baseline]
            .into_iter()
            .find(|tier| self.has_tier(digest, *tier))
    }

    /// Whether this node's cache holds the artifact of `digest` for `tier`.
    pub fn has_tier(&self, digest: &Digest, tier: Tier) -> bool {
        self.compiler(tier)
            .is_ok_and(|compiler| compiler.artifacts.contains(digest))
    }

    /// The size in bytes of the artifact [`Runtime::load`] would read for
    /// `digest` (its best tier), if this node's cache holds its file (not
    /// while it is written behind: this never waits).
    pub fn artifact_len(&self, digest: &Digest) -> Option<u64> {
        let compiler = self.compiler(self.best_tier(digest)?).ok()?;
        compiler.artifacts.file_len(digest)
    }

    /// Waits until every artifact compiled here is written to the cache (a
    /// compile loads its code at once and writes its file behind): what a
    /// server shutting down does last.
    pub fn flush_artifacts(&self) {
        self.optimized.artifacts.flush();
        if let Some(baseline) = &self.baseline {
            baseline.artifacts.flush();
        }
    }

    /// Deletes this node's artifacts of `digest`, of every tier.
    pub fn remove_artifacts(&self, digest: &Digest) -> std::io::Result<()> {
        self.optimized.artifacts.remove(digest)?;
        match &self.baseline {
            Some(baseline) => baseline.artifacts.remove(digest),
            None => Ok(()),
        }
    }

    /// Loads the compiled function for `digest` from the artifact cache, the
    /// best tier present (optimized, else baseline): maps a copy of the file,
    /// registers its code and pre-links it. Never compiles.
    ///
    /// What is mapped is a sealed private copy of the file (a memfd the
    /// kernel fills with `sendfile`), never the file itself: an artifact
    /// truncated or rewritten on disk while its function runs cannot change
    /// its code or fault the process (a mapped file cut short raises SIGBUS
    /// on the next touch of a page past its new end). The copy is paged in
    /// lazily and serves the module's copy-on-write memory image directly.
    pub fn load(&self, digest: &Digest) -> Result<Function, LoadError> {
        match (&self.baseline, self.optimized.artifacts.contains(digest)) {
            (Some(baseline), false) if baseline.artifacts.contains(digest) => baseline.load(digest),
            _ => self.optimized.load(digest),
        }
    }

    /// Loads the artifact of `digest` compiled for `tier`.
    pub fn load_tier(&self, digest: &Digest, tier: Tier) -> Result<Function, LoadError> {
        self.compiler(tier)?.load(digest)
    }

    /// [`Runtime::load`] if `wasm` is already compiled, else [`Runtime::compile`] then
    /// load. What `kiln run` does.
    pub fn load_wasm(&self, wasm: &[u8]) -> Result<(Function, LoadSource), LoadError> {
        let digest = Digest::of(wasm);
        if self.optimized.artifacts.contains(&digest) {
            match self.optimized.load(&digest) {
                Ok(function) => return Ok((function, LoadSource::Cached)),
                // An artifact the engine refuses (damaged, foreign) is replaced.
                Err(LoadError::BadArtifact { .. }) => {
                    let _ = self.optimized.artifacts.remove(&digest);
                }
                Err(e) => return Err(e),
            }
        }
        let compiled = self.compile(wasm)?;
        let source = match compiled.compile_time {
            Some(time) => LoadSource::Compiled(time),
            None => LoadSource::Cached,
        };
        let function = compiled.function;
        Ok((function, source))
    }

    /// Runs `function` once, in a fresh instance, with `request` as its input.
    ///
    /// Must be called within a tokio runtime with the time driver enabled. The
    /// guest yields to the executor once per epoch tick, so a long-running guest
    /// shares its thread fairly; it never occupies more than one thread at a time.
    pub async fn invoke(
        &self,
        function: &Function,
        request: Request,
    ) -> Result<Invocation, InvokeError> {
        self.invoker.invoke(function, request).await
    }

    /// Has a writable copy of `tree` (a `HostMount::host` mounted with `copy`)
    /// made in the background, for the next invocation that mounts it: at
    /// deploy, so that the first request finds one ready. Nothing is made if
    /// a copy of it is ready or being made.
    pub fn make_copy_ahead(&self, tree: &std::path::Path) {
        self.invoker.scratch.make_copy_ahead(tree);
    }

    /// Writable copies of mounted trees (`HostMount::copy`): made so far, how
    /// many times one was handed to an invocation ready-made instead (left
    /// unchanged by the last, or made ahead), and how many are ready now.
    pub fn writable_copies(&self) -> crate::WritableCopies {
        self.invoker.scratch.copy_counts()
    }

    /// Scratch directories (`Files::scratch`): made so far, how many times
    /// one was handed to an invocation ready-made instead (left untouched by
    /// the last, or made ahead), and how many are ready now (same counts as
    /// [`Runtime::writable_copies`]).
    pub fn scratch_directories(&self) -> crate::WritableCopies {
        self.invoker.scratch.scratch_counts()
    }

    /// Starts a command whose stdin is `request.body`, read as it arrives, and
    /// whose stdout is the returned body, sent as it is written. Waits only for
    /// an instance slot; [`Streamed::finished`] resolves when the guest has ended
    /// and the body is done.
    pub async fn invoke_streaming<B>(
        &self,
        function: &Function,
        request: StreamRequest<B>,
    ) -> Result<Streamed, InvokeError>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.invoker.invoke_streaming(function, request).await
    }

    /// Hands an HTTP request to a wasi:http component; returns when it has set
    /// its response (whose body then streams) or has ended without one.
    pub async fn handle_http<B>(
        &self,
        function: &Function,
        request: HttpRequest<B>,
    ) -> Result<HttpAnswer, InvokeError>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.invoker.handle_http(function, request).await
    }
}

/// Every `(module, name)` the linker defines, to name unknown imports at validation.
fn provided_imports(engine: &wasmtime::Engine, linker: &Linker<CoreHost>) -> ProvidedImports {
    let host = Host {
        wasi: WasiCtxBuilder::new().build_p1(),
        limiter: GuestLimiter::new(0),
        dir: None,
        kv: None,
        kv_core: Default::default(),
        kv_ops: Default::default(),
        share: None,
        // No guest runs in this store: counted on an account no ticker reads.
        _live: Arc::new(Awake::default()).guest(),
    };
    let mut store = Store::new(engine, host);
    linker
        .iter(&mut store)
        .map(|(module, name, _)| (module.to_owned(), name.to_owned()))
        .collect()
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("artifacts", &self.optimized.artifacts.dir())
            .finish_non_exhaustive()
    }
}

/// Used by the tests and by `kiln run` to locate an artifact directory.
pub fn default_artifact_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("kiln").join("artifacts")
}
