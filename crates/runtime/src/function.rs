//! A loaded function: a compiled core module or component, pre-linked against
//! Kiln's host functions, ready to be instantiated once per request.

use crate::digest::Digest;
use crate::limiter::GuestLimiter;
use std::time::{Duration, Instant};
use wasmtime::{InstancePre, ModuleExport, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{I32Exit, WasiCtxView, WasiView};

/// The per-instance host state: the guest's WASI context and its resource limiter.
/// One context serves both preview 1 modules and WASI 0.2 components.
pub(crate) struct Host {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: GuestLimiter,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi.ctx()
    }
}

/// How a function is entered.
#[derive(Clone)]
enum Entry {
    /// A preview 1 core module: instantiate, call `_start` (its export index
    /// resolved once, no name lookup per request).
    Core {
        pre: InstancePre<Host>,
        start: ModuleExport,
    },
    /// A `wasi:cli/command` component: instantiate, call `wasi:cli/run.run`.
    Command(CommandPre<Host>),
}

/// A compiled, linked function. Cheap to clone (reference-counted) and safe to share
/// across threads; every [`crate::Runtime::invoke`] makes a fresh instance of it.
#[derive(Clone)]
pub struct Function {
    digest: Digest,
    entry: Entry,
}

impl Function {
    pub(crate) fn core(digest: Digest, pre: InstancePre<Host>, start: ModuleExport) -> Function {
        Function {
            digest,
            entry: Entry::Core { pre, start },
        }
    }

    pub(crate) fn command(digest: Digest, pre: CommandPre<Host>) -> Function {
        Function {
            digest,
            entry: Entry::Command(pre),
        }
    }

    /// The sha256 of the binary this function was compiled from.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Instantiates the function in `store` and runs it to its end. `instantiation`
    /// receives how long creating the instance took. A command component whose
    /// `run` returns an error ends as exit code 1, as `wasmtime run` reports it.
    pub(crate) async fn run(
        &self,
        store: &mut Store<Host>,
        instantiation: &mut Duration,
    ) -> wasmtime::Result<()> {
        let begin = Instant::now();
        match &self.entry {
            Entry::Core { pre, start } => {
                let instance = pre.instantiate_async(&mut *store).await;
                *instantiation = begin.elapsed();
                let instance = instance?;
                let start = instance
                    .get_module_export(&mut *store, start)
                    .and_then(|e| e.into_func())
                    .ok_or_else(|| wasmtime::format_err!("`_start` is not a function"))?
                    .typed::<(), ()>(&*store)?;
                start.call_async(&mut *store, ()).await
            }
            Entry::Command(pre) => {
                let command = pre.instantiate_async(&mut *store).await;
                *instantiation = begin.elapsed();
                command?
                    .wasi_cli_run()
                    .call_run(&mut *store)
                    .await?
                    .map_err(|()| wasmtime::Error::new(I32Exit(1)))
            }
        }
    }
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.entry {
            Entry::Core { .. } => "core module",
            Entry::Command(_) => "command component",
        };
        f.debug_struct("Function")
            .field("digest", &self.digest)
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}
