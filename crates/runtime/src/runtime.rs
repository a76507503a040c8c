//! [`Runtime`]: the engine, the linker, the artifact cache, and the three things a
//! caller does with them: compile a binary, load a compiled function, invoke it.

use crate::artifact::ArtifactCache;
use crate::compile_cache::DiskCacheStore;
use crate::cpu_share::{CpuShare, CpuShares};
use crate::engine::{EngineConfig, EpochTicker, build_engine};
use crate::files::{ScratchConfig, ScratchRoot};
use crate::function::{ComponentHost, CoreHost, Entry, Function, Host};
use crate::http::{HttpAnswer, HttpRequest};
use crate::invoke::{Invocation, InvokeError, Invoker, Request};
use crate::limiter::GuestLimiter;
use crate::snapshot::{InstrumentedCache, Snapshot, SnapshotError, SnapshotHost, SnapshotInit};
use crate::streaming::{BoxError, StreamRequest, Streamed};
use crate::validate::{self, ModuleInfo, ModuleKind, ProvidedImports, ValidationError};
use kiln_api::Digest;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::Component;
use wasmtime::{ExternType, Linker, Module, Precompiled, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

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

/// Why a [`Runtime`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// wasmtime refused the configuration (its reason is the source).
    #[error("cannot configure the WebAssembly engine")]
    Engine(#[source] BoxError),
    /// The artifact directory cannot be created or opened.
    #[error("cannot open the artifact cache at {path}")]
    ArtifactDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The thread that ticks epochs could not be started.
    #[error("cannot start the epoch ticker thread")]
    Ticker(#[source] std::io::Error),
    /// The scratch root cannot be created or cleaned.
    #[error("cannot open the scratch directory {path}")]
    ScratchDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Why a binary could not be compiled or a compiled function loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The binary is not one Kiln can run.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Cranelift could not compile it (the reason is the source).
    #[error("compilation failed")]
    Compile(#[source] BoxError),
    /// The caller stopped waiting; the result was thrown away.
    #[error("compilation was abandoned by its caller")]
    Abandoned,
    /// The module compiled, but an instance of it would not fit in a pooled slot
    /// (a table, or globals and functions, larger than the engine reserves).
    #[error("the module does not fit Kiln's instance limits: {0}")]
    Unfit(String),
    /// No artifact of this module in the cache.
    #[error("module {0} has no compiled artifact; compile it first")]
    NotCompiled(Digest),
    /// The artifact is there but the engine refuses it.
    #[error("compiled artifact {path} cannot be loaded: {message}")]
    BadArtifact {
        /// The artifact file.
        path: PathBuf,
        /// wasmtime's whole explanation.
        message: String,
        /// The innermost error, without the file it was read from.
        cause: String,
    },
    /// The artifact could not be written to the cache.
    #[error("cannot write the compiled artifact to {path}")]
    WriteArtifact {
        /// Where it was going.
        path: PathBuf,
        /// Why it could not.
        source: std::io::Error,
    },
    /// The binary to compile could not be read.
    #[error("cannot read {path}")]
    ReadModule {
        /// The file.
        path: PathBuf,
        /// Why it could not be read or mapped.
        source: std::io::Error,
    },
}

/// A binary that passed validation and has a compiled artifact on disk.
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
    engine: wasmtime::Engine,
    linker: Linker<CoreHost>,
    /// WASI 0.2 for components.
    component_linker: wasmtime::component::Linker<ComponentHost>,
    provided: ProvidedImports,
    artifacts: ArtifactCache,
    invoker: Invoker,
    /// Instrumented copies of binaries snapshotted at deploy, compiled once.
    instrumented: InstrumentedCache,
    /// The tenants' shares of CPU, balanced by the epoch thread.
    shares: Arc<CpuShares>,
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
        let engine = build_engine(&config.engine, compile_cache)
            .map_err(|e| RuntimeError::Engine(e.into()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |host: &mut CoreHost| &mut host.wasi)
            .and_then(|()| crate::kv_core::add_to_linker(&mut linker))
            .map_err(|e| RuntimeError::Engine(e.into()))?;
        let provided = provided_imports(&engine, &linker);
        let mut component_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker)
            .and_then(|()| {
                wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut component_linker)
            })
            .and_then(|()| crate::loader::add_to_linker(&mut component_linker))
            .and_then(|()| crate::kv_component::add_to_linker(&mut component_linker))
            .and_then(|()| {
                wasmtime_wasi_config::add_to_linker(
                    &mut component_linker,
                    |host: &mut ComponentHost| {
                        wasmtime_wasi_config::WasiConfig::from(&host.wasi.config)
                    },
                )
            })
            .map_err(|e| RuntimeError::Engine(e.into()))?;
        let artifacts = ArtifactCache::open(&config.artifact_dir, &engine).map_err(|source| {
            RuntimeError::ArtifactDir {
                path: config.artifact_dir.clone(),
                source,
            }
        })?;
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
        let ticker = EpochTicker::start(engine.clone(), config.engine.epoch_tick, shares.clone())
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
            },
            engine,
            linker,
            component_linker,
            provided,
            artifacts,
            instrumented: InstrumentedCache::default(),
            shares,
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

    /// The artifact cache this runtime reads and writes.
    pub fn artifacts(&self) -> &ArtifactCache {
        &self.artifacts
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
            engine: &self.engine,
            invoker: &self.invoker,
            instrumented: &self.instrumented,
            linker: &self.linker,
            component_linker: &self.component_linker,
        }
        .take(wasm, init)
        .await
    }

    /// Checks that `wasm` is a function Kiln can run, without compiling it.
    pub fn validate(&self, wasm: &[u8]) -> Result<ModuleInfo, ValidationError> {
        validate::validate(&self.engine, wasm, |module, name| {
            self.provided
                .contains(&(module.to_owned(), name.to_owned()))
        })
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
        let info = self.validate(wasm)?;
        let artifact = self.artifacts.path(&digest);
        if self.artifacts.contains(&digest)
            && let Ok(function) = self.load(&digest)
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
        let bytes = match info.kind {
            ModuleKind::CoreCommand => self.engine.precompile_module(wasm),
            ModuleKind::ComponentCommand | ModuleKind::HttpComponent => {
                self.engine.precompile_component(wasm)
            }
        }
        .map_err(|e| match validate::proposals_off(wasm) {
            // A component's code is validated as it compiles.
            Some(proposals) => ValidationError::ProposalOff(proposals).into(),
            None => LoadError::Compile(e.into()),
        })?;
        let compile_time = begin.elapsed();
        if abandoned.load(Ordering::Acquire) {
            return Err(LoadError::Abandoned);
        }
        let artifact =
            self.artifacts
                .write(&digest, &bytes)
                .map_err(|source| LoadError::WriteArtifact {
                    path: artifact,
                    source,
                })?;
        drop(bytes);
        // Load and link now, so that a module too large for an instance slot, or
        // whose imports have the wrong types, is refused at deploy time rather than
        // on its first request. Code just compiled by this engine that it cannot
        // load is such a module, not a damaged file.
        let function = self.load(&digest).map_err(|e| {
            let _ = self.artifacts.remove(&digest);
            match e {
                LoadError::BadArtifact { cause, .. } => LoadError::Unfit(cause),
                other => other,
            }
        })?;
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
        self.compile_digested(digest, &wasm, abandoned)
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
    pub fn import_artifact(&self, digest: &Digest, artifact: &[u8]) -> Result<(), LoadError> {
        self.artifacts
            .write(digest, artifact)
            .map(drop)
            .map_err(|source| LoadError::WriteArtifact {
                path: self.artifacts.path(digest),
                source,
            })
    }

    /// This node's artifact of `digest`, to share with the others: its bytes and
    /// its name relative to the cache root (the same on every node with the same
    /// engine).
    pub fn export_artifact(&self, digest: &Digest) -> std::io::Result<(String, Vec<u8>)> {
        let bytes = std::fs::read(self.artifacts.path(digest))?;
        Ok((self.artifacts.key(digest), bytes))
    }

    /// The name an artifact of `digest` is shared under (see
    /// [`Runtime::export_artifact`]).
    pub fn artifact_key(&self, digest: &Digest) -> String {
        self.artifacts.key(digest)
    }

    /// Whether the artifact of `digest` is in this node's cache.
    pub fn has_artifact(&self, digest: &Digest) -> bool {
        self.artifacts.contains(digest)
    }

    /// Loads the compiled function for `digest` from the artifact cache: reads
    /// the file, registers its code and pre-links it. Never compiles.
    ///
    /// The file is read, not mapped: wasmtime copies the code into memory of
    /// its own, so an artifact truncated or rewritten on disk while its
    /// function runs cannot fault the process (a mapped file cut short raises
    /// SIGBUS on the next touch of a page past its new end). The cost is one
    /// read and one copy per load (BENCHMARKS.md), paid when a function enters
    /// the cache, never per request.
    pub fn load(&self, digest: &Digest) -> Result<Function, LoadError> {
        let path = self.artifacts.path(digest);
        if !path.is_file() {
            return Err(LoadError::NotCompiled(*digest));
        }
        let bad = |e: wasmtime::Error| LoadError::BadArtifact {
            path: path.clone(),
            message: format!("{e:#}"),
            cause: e.root_cause().to_string(),
        };
        // Both deserializations below rely on this: the artifact cache only holds files
        // written whole (atomic rename) by `Runtime::compile_digested` through
        // `precompile_module`/`precompile_component`, or by
        // `Runtime::import_artifact` with the output of that same function on
        // another Kiln node (its `# Trust` section: the shared bucket is writable
        // by Kiln nodes only), under a directory keyed by this engine's
        // compatibility hash; wasmtime checks the header, the kind and the version
        // again before using it.
        let bytes = std::fs::read(&path).map_err(|e| LoadError::BadArtifact {
            path: path.clone(),
            message: format!("cannot read it: {e}"),
            cause: e.to_string(),
        })?;
        match wasmtime::Engine::detect_precompiled(&bytes) {
            Some(Precompiled::Component) => {
                // SAFETY: the bytes of a file of the artifact cache, trusted as
                // said above.
                let component =
                    unsafe { Component::deserialize(&self.engine, &bytes) }.map_err(bad)?;
                self.link_component(*digest, &component)
            }
            _ => {
                // SAFETY: as above.
                let module = unsafe { Module::deserialize(&self.engine, &bytes) }.map_err(bad)?;
                self.link(*digest, &module)
            }
        }
    }

    /// [`Runtime::load`] if `wasm` is already compiled, else [`Runtime::compile`] then
    /// load. What `kiln run` does.
    pub fn load_wasm(&self, wasm: &[u8]) -> Result<(Function, LoadSource), LoadError> {
        let digest = Digest::of(wasm);
        if self.artifacts.contains(&digest) {
            match self.load(&digest) {
                Ok(function) => return Ok((function, LoadSource::Cached)),
                // An artifact the engine refuses (damaged, foreign) is replaced.
                Err(LoadError::BadArtifact { .. }) => {
                    let _ = self.artifacts.remove(&digest);
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

    fn link(&self, digest: Digest, module: &Module) -> Result<Function, LoadError> {
        let start = match module.get_export("_start") {
            Some(ExternType::Func(ty)) if ty.params().len() == 0 && ty.results().len() == 0 => {
                module
                    .get_export_index("_start")
                    .ok_or(ValidationError::MissingStart)?
            }
            Some(ExternType::Func(ty)) => {
                let list = |types: Vec<String>| types.join(", ");
                let signature = format!(
                    "({}) -> ({})",
                    list(ty.params().map(|t| t.to_string()).collect()),
                    list(ty.results().map(|t| t.to_string()).collect()),
                );
                return Err(ValidationError::BadStartType(signature).into());
            }
            _ => return Err(ValidationError::MissingStart.into()),
        };
        let pre = self
            .linker
            .instantiate_pre(module)
            .map_err(|e| ValidationError::Invalid(format!("{e:#}")))?;
        Ok(Function::new(digest, Entry::Core { pre, start }))
    }

    fn link_component(&self, digest: Digest, component: &Component) -> Result<Function, LoadError> {
        let pre = self
            .component_linker
            .instantiate_pre(component)
            .map_err(|e| ValidationError::Invalid(format!("{e:#}")))?;
        // A component exporting `wasi:http/incoming-handler` is served as a proxy,
        // even if it also exports `wasi:cli/run`.
        if let Ok(proxy) = ProxyPre::new(pre.clone()) {
            return Ok(Function::new(digest, Entry::Http(proxy)));
        }
        let command = CommandPre::new(pre).map_err(|e| {
            ValidationError::Unsupported(format!(
                "neither a wasi:cli/command nor a wasi:http/proxy component: {e:#}"
            ))
        })?;
        Ok(Function::new(digest, Entry::Command(command)))
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
            .field("artifacts", &self.artifacts.dir())
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
