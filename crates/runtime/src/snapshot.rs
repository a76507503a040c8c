//! Snapshots taken at deploy: a binary's initializer runs once, in a sandbox
//! like any invocation's, and wasmtime-wizer writes out a new binary whose
//! memory and globals start where the initializer left them. Every request then
//! starts from that state in a fresh instance: an interpreter that imported its
//! user's code at deploy never boots again.
//!
//! Both shapes are handled: a core module exporting a `[] -> []` initializer
//! (`wizer-initialize` by convention, the JavaScript runtime's), and a component
//! exporting one (the Python runtime's `init`, built by componentize-py).

use crate::function::{ComponentCtx, ComponentHost, CoreHost};
use crate::invoke::Invoker;
use crate::limits::Limits;
use crate::outbound::{AllowedHosts, OutboundHooks};
use crate::output::{CapturedOutput, Overflow};
use bytes::Bytes;
use kiln_api::Digest;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::Linker;
use wasmtime::component::{Component, Linker as ComponentLinker, Val};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// The conventional initializer of a core module (what wizer calls by default).
pub const WIZER_INITIALIZE: &str = "wizer-initialize";

/// Whether `wasm` is a core module exporting [`WIZER_INITIALIZE`]: a binary
/// that asks to be initialized at deploy (as Javy's and wizer's users build
/// them). Reads the export section only.
pub fn has_initializer(wasm: &[u8]) -> bool {
    if !wasmparser::Parser::is_core_wasm(wasm) {
        return false;
    }
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(wasmparser::Payload::ExportSection(exports)) => {
                return exports.into_iter().flatten().any(|export| {
                    export.name == WIZER_INITIALIZE && export.kind == wasmparser::ExternalKind::Func
                });
            }
            Ok(wasmparser::Payload::CodeSectionStart { .. }) | Err(_) => return false,
            Ok(_) => {}
        }
    }
    false
}

/// [`has_initializer`] of a file (an upload staged on disk), mapped rather
/// than read: a module of hundreds of MiB is not copied into memory to learn
/// that it asks for nothing.
///
/// # Errors
///
/// When the file cannot be opened or mapped.
pub fn file_has_initializer(path: &std::path::Path) -> std::io::Result<bool> {
    let file = std::fs::File::open(path)?;
    // SAFETY: the caller hands a private staging file that nothing writes to any
    // more (as `Runtime::compile_file` does); if it is removed meanwhile, the
    // mapping stays valid.
    let wasm = unsafe { memmap2::Mmap::map(&file) }?;
    Ok(has_initializer(&wasm))
}

/// What a snapshot runs the initializer with.
#[derive(Debug, Clone)]
pub struct SnapshotInit {
    /// The exported function to run once: `[] -> []`.
    pub init_func: String,
    /// Environment variables the initializer sees.
    pub env: Vec<(String, String)>,
    /// Host directories preopened read-only, with their guest paths.
    pub dirs: Vec<(PathBuf, String)>,
    /// Memory, wall time and output bounds, as for an invocation (stdin is empty).
    pub limits: Limits,
}

/// A binary with its initializer run, and what the initializer printed.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The new binary: same code, memory and globals as the initializer left them.
    pub wasm: Vec<u8>,
    /// The string a component's initializer returned (`result<string, string>`),
    /// if it returns one.
    pub answer: Option<String>,
    /// What the initializer wrote to stdout.
    pub stdout: Bytes,
    /// What it wrote to stderr (bounded like an invocation's).
    pub stderr: Bytes,
}

/// Why no snapshot was taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The binary cannot be snapshotted (no initializer, imported memory...).
    #[error("cannot snapshot this binary: {0}")]
    Unsupported(String),
    /// The initializer failed: it trapped, exited, or crossed a limit.
    #[error("the initializer failed: {reason}")]
    Failed {
        /// What stopped it, in one line.
        reason: String,
        /// What it wrote to stderr (an interpreter's traceback).
        stderr: Bytes,
        /// What it wrote to stdout.
        stdout: Bytes,
    },
    /// No instance slot came free.
    #[error("every instance slot is busy")]
    AtCapacity,
}

/// Instrumented binaries (the input with its state exported for wizer to read),
/// compiled once per process: a language runtime is instrumented identically for
/// every deploy, so only its first deploy on a node pays for this compile.
#[derive(Default)]
pub(crate) struct InstrumentedCache {
    compiled: Mutex<HashMap<Digest, Compiled>>,
}

#[derive(Clone)]
enum Compiled {
    Module(wasmtime::Module),
    Component(Component),
}

/// A snapshot and its initializer's answer, or the error its initializer returned.
type Taken = Result<(Vec<u8>, Option<String>), String>;

/// Distinct instrumented binaries kept; past it the cache starts again (a node
/// has a handful of runtimes, and user binaries with initializers are rarer).
const INSTRUMENTED_KEPT: usize = 8;

impl InstrumentedCache {
    fn get_or_compile(
        &self,
        engine: &wasmtime::Engine,
        instrumented: &[u8],
        component: bool,
    ) -> wasmtime::Result<Compiled> {
        let digest = Digest::of(instrumented);
        if let Some(found) = lock(&self.compiled).get(&digest) {
            return Ok(found.clone());
        }
        let compiled = if component {
            Compiled::Component(Component::new(engine, instrumented)?)
        } else {
            Compiled::Module(wasmtime::Module::new(engine, instrumented)?)
        };
        let mut map = lock(&self.compiled);
        if map.len() >= INSTRUMENTED_KEPT {
            map.clear();
        }
        map.insert(digest, compiled.clone());
        Ok(compiled)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The engine and linkers a snapshot instantiates with: the runtime's own, so
/// that an initializer sees exactly the imports a request would.
pub(crate) struct SnapshotHost<'a> {
    pub(crate) engine: &'a wasmtime::Engine,
    pub(crate) invoker: &'a Invoker,
    pub(crate) linker: &'a Linker<CoreHost>,
    pub(crate) component_linker: &'a ComponentLinker<ComponentHost>,
    pub(crate) instrumented: &'a InstrumentedCache,
}

impl SnapshotHost<'_> {
    /// Runs `init.init_func` of `wasm` once and returns the snapshot. Compiles
    /// (an instrumented copy of the binary, once per process) and runs guest
    /// code: call it from a blocking thread inside a tokio runtime.
    pub(crate) async fn take(
        &self,
        wasm: &[u8],
        init: &SnapshotInit,
    ) -> Result<Snapshot, SnapshotError> {
        let _slot = self
            .invoker
            .admit(&init.limits)
            .await
            .map_err(|_| SnapshotError::AtCapacity)?;
        let stdout = CapturedOutput::new(init.limits.stdout_bytes, Overflow::Trap);
        let stderr = CapturedOutput::new(init.limits.stderr_bytes, Overflow::Truncate);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(MemoryInputPipe::new(Bytes::new()))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .envs(&init.env);
        for (host, guest) in &init.dirs {
            wasi.preopened_dir(host, guest, FsPerms::ReadOnly)
                .map_err(|e| {
                    SnapshotError::Unsupported(format!("cannot open {}: {e}", host.display()))
                })?;
        }
        let result = if wasmparser::Parser::is_component(wasm) {
            let mut ctx = ComponentCtx::new(
                wasi.build(),
                // Nothing goes out while a snapshot is taken.
                OutboundHooks::new(Arc::new(AllowedHosts(Vec::new())), Arc::default()),
            );
            ctx.loader = init.dirs.clone();
            self.take_component(wasm, ctx, init).await
        } else {
            self.take_module(wasm, wasi.build_p1(), init).await
        };
        let (stdout, _) = stdout.take();
        let (stderr, _) = stderr.take();
        match result {
            Ok(Ok((wasm, answer))) => Ok(Snapshot {
                wasm,
                answer,
                stdout,
                stderr,
            }),
            // The initializer answered an error (a component's `result`).
            Ok(Err(message)) => Err(SnapshotError::Failed {
                reason: "its initializer returned an error".into(),
                stderr: Bytes::from(message),
                stdout,
            }),
            Err(e) => Err(classify(e, init.limits.wall_time, stdout, stderr)),
        }
    }

    async fn take_module(
        &self,
        wasm: &[u8],
        wasi: WasiP1Ctx,
        init: &SnapshotInit,
    ) -> wasmtime::Result<Taken> {
        let init_func = init.init_func.as_str();
        let mut wizer = wasmtime_wizer::Wizer::new();
        wizer.init_func(init_func);
        let (cx, instrumented) = wizer.instrument(wasm)?;
        let Compiled::Module(module) =
            self.instrumented
                .get_or_compile(self.engine, &instrumented, false)?
        else {
            wasmtime::bail!("a core module compiled as a component");
        };
        // The store (and with it the wall-time limit) starts once the code is
        // compiled: the limit is the initializer's, as a request's is its own.
        let mut store = self
            .invoker
            .store(self.engine, wasi, &init.limits, None, None, None);
        let instance = self.linker.instantiate_async(&mut store, &module).await?;
        if let Some(initialize) = instance.get_func(&mut store, "_initialize") {
            initialize
                .typed::<(), ()>(&store)?
                .call_async(&mut store, ())
                .await?;
        }
        let Some(init) = instance.get_func(&mut store, init_func) else {
            wasmtime::bail!("the module does not have a `{init_func}` export");
        };
        init.typed::<(), ()>(&store)
            .map_err(|_| wasmtime::format_err!("`{init_func}` does not have type [] -> []"))?
            .call_async(&mut store, ())
            .await?;
        let snapshot = wizer
            .snapshot(
                &cx,
                &mut wasmtime_wizer::WasmtimeWizer {
                    store: &mut store,
                    instance,
                },
            )
            .await?;
        Ok(Ok((snapshot, None)))
    }

    /// A component's initializer is `[] -> []` or `[] -> result<string, string>`
    /// (what the Python runtime answers: its style, or the traceback).
    async fn take_component(
        &self,
        wasm: &[u8],
        ctx: ComponentCtx,
        init: &SnapshotInit,
    ) -> wasmtime::Result<Taken> {
        let init_func = init.init_func.as_str();
        let mut wizer = wasmtime_wizer::Wizer::new();
        wizer.init_func(init_func);
        // wizer 48 drops a component's initializer from the core module but not
        // from the component's exports: keep it (it is never called again).
        wizer.keep_init_func(true);
        let (cx, instrumented) = wizer.instrument_component(wasm)?;
        let Compiled::Component(component) =
            self.instrumented
                .get_or_compile(self.engine, &instrumented, true)?
        else {
            wasmtime::bail!("a component compiled as a core module");
        };
        let mut store = self
            .invoker
            .store(self.engine, ctx, &init.limits, None, None, None);
        let instance = self
            .component_linker
            .instantiate_async(&mut store, &component)
            .await?;
        let Some(init) = instance.get_func(&mut store, init_func) else {
            wasmtime::bail!("the component does not have a `{init_func}` export");
        };
        let mut results = vec![Val::Bool(false); init.ty(&store).results().len()];
        init.call_async(&mut store, &[], &mut results).await?;
        let answer = match results.first() {
            Some(Val::Result(Err(error))) => {
                let message = match error.as_deref() {
                    Some(Val::String(text)) => text.clone(),
                    other => format!("{other:?}"),
                };
                return Ok(Err(message));
            }
            Some(Val::Result(Ok(Some(value)))) => match value.as_ref() {
                Val::String(text) => Some(text.clone()),
                _ => None,
            },
            _ => None,
        };
        let mut wasm = wizer
            .snapshot_component(
                &cx,
                &mut wasmtime_wizer::WasmtimeWizerComponent {
                    store: &mut store,
                    instance,
                },
            )
            .await?;
        wasm.shrink_to_fit();
        Ok(Ok((wasm, answer)))
    }
}
/// An initializer's failure, in words a deploy can answer with.
fn classify(
    error: wasmtime::Error,
    wall_time: Duration,
    stdout: Bytes,
    stderr: Bytes,
) -> SnapshotError {
    let chain = format!("{error:#}");
    let reason = if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        format!("it exited with status {}", exit.0)
    } else if error.is::<crate::invoke::WallTimeExceeded>() {
        format!("it ran longer than {}", humantime_secs(wall_time))
    } else if error.is::<crate::limiter::MemoryLimitExceeded>() {
        "it grew its memory past the function's memory limit".to_owned()
    } else if chain.contains("does not have a `")
        || chain.contains("not supported")
        || chain.contains("does not have type")
    {
        return SnapshotError::Unsupported(chain);
    } else {
        chain
    };
    SnapshotError::Failed {
        reason,
        stderr,
        stdout,
    }
}

fn humantime_secs(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}
