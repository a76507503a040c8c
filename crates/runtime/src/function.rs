//! A loaded function: a compiled core module or component, pre-linked against
//! Kiln's host functions, ready to be instantiated once per request.

use crate::limiter::GuestLimiter;
use crate::outbound::OutboundHooks;
use kiln_api::Digest;
use kiln_api::Tier;
use std::time::{Duration, Instant};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{InstancePre, ModuleExport, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The per-instance host state: the guest's WASI context and its resource limiter.
pub(crate) struct Host<W> {
    pub(crate) wasi: W,
    pub(crate) limiter: GuestLimiter,
    /// The invocation's own directory (scratch, copies): removed when the
    /// store, and with it the instance, is gone.
    pub(crate) dir: Option<std::sync::Arc<crate::files::InvocationDir>>,
    /// The key-value buckets the invocation may reach.
    pub(crate) kv: crate::kv::KvGrant,
    /// A core module's open buckets ([`crate::kv_core`]).
    pub(crate) kv_core: crate::kv::CoreKv,
    /// Key-value operations made so far.
    pub(crate) kv_ops: crate::kv::KvOps,
    /// The tenant's share of CPU, charged and checked at epoch ticks.
    pub(crate) share: Option<crate::cpu_share::CpuShare>,
    /// Counted among the live guests while the store lives: the epoch ticker
    /// runs (and interrupts this guest on time) meanwhile.
    pub(crate) _live: crate::ticker::LiveGuest,
}

/// A core module's host state: WASI preview 1.
pub(crate) type CoreHost = Host<WasiP1Ctx>;
/// A component's host state: WASI 0.2, with `wasi:http` for proxies.
pub(crate) type ComponentHost = Host<ComponentCtx>;

/// What a component's WASI 0.2 and `wasi:http` imports work on.
pub(crate) struct ComponentCtx {
    pub(crate) ctx: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) outbound: OutboundHooks,
    /// What `kiln:runtime/loader` reads (host directory, guest path): a deploy-time
    /// snapshot's mounts; empty in a request.
    pub(crate) loader: Vec<(std::path::PathBuf, String)>,
    /// What `wasi:config/store` answers: the function's variables and secrets.
    pub(crate) config: wasmtime_wasi_config::WasiConfigVariables,
}

impl ComponentCtx {
    pub(crate) fn new(ctx: WasiCtx, outbound: OutboundHooks) -> ComponentCtx {
        ComponentCtx {
            ctx,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            outbound,
            loader: Vec::new(),
            config: wasmtime_wasi_config::WasiConfigVariables::new(),
        }
    }

    /// This context, with `vars` for `wasi:config/store`.
    pub(crate) fn with_config(mut self, vars: &[(String, String)]) -> ComponentCtx {
        self.config = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self
    }
}

impl WasiView for ComponentHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi.ctx,
            table: &mut self.wasi.table,
        }
    }
}

impl WasiHttpView for ComponentHost {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.wasi.http,
            table: &mut self.wasi.table,
            hooks: &mut self.wasi.outbound,
        }
    }
}

/// The kinds of function, by how they are invoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionKind {
    /// A preview 1 core module or a `wasi:cli/command` component: stdin in,
    /// stdout out ([`crate::Runtime::invoke`], [`crate::Runtime::invoke_streaming`]).
    Command,
    /// A `wasi:http/proxy` component: an HTTP request in, an HTTP response out
    /// ([`crate::Runtime::handle_http`]).
    Http,
}

/// How a function is entered.
#[derive(Clone)]
pub(crate) enum Entry {
    /// A preview 1 core module: instantiate, call `_start` (its export index
    /// resolved once, no name lookup per request).
    Core {
        pre: InstancePre<CoreHost>,
        start: ModuleExport,
    },
    /// A `wasi:cli/command` component: instantiate, call `wasi:cli/run.run`.
    Command(CommandPre<ComponentHost>),
    /// A `wasi:http/proxy` component: instantiate, call
    /// `wasi:http/incoming-handler.handle`.
    Http(ProxyPre<ComponentHost>),
}

/// A compiled, linked function. Cheap to clone (reference-counted) and safe to share
/// across threads; every invocation makes a fresh instance of it.
#[derive(Clone)]
pub struct Function {
    digest: Digest,
    tier: Tier,
    pub(crate) entry: Entry,
}

impl Function {
    pub(crate) fn new(digest: Digest, tier: Tier, entry: Entry) -> Function {
        Function {
            digest,
            tier,
            entry,
        }
    }

    /// The sha256 of the binary this function was compiled from.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Which compiler made its code.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// The engine its code was compiled for: its instances' stores are made
    /// on it.
    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        match &self.entry {
            Entry::Core { pre, .. } => pre.module().engine(),
            Entry::Command(pre) => pre.engine(),
            Entry::Http(pre) => pre.engine(),
        }
    }

    /// Bytes of its loaded artifact (compiled code, and the data of its
    /// memory images) this function keeps mapped while it is loaded: a private
    /// copy (`ArtifactCache::sealed_copy`), so memory the process holds, not
    /// page cache the kernel may drop.
    pub fn code_bytes(&self) -> u64 {
        let image = match &self.entry {
            Entry::Core { pre, .. } => pre.module().image_range(),
            Entry::Command(pre) => pre.instance_pre().component().image_range(),
            Entry::Http(pre) => pre.instance_pre().component().image_range(),
        };
        (image.end.addr() - image.start.addr()) as u64
    }

    /// How this function is invoked.
    pub fn kind(&self) -> FunctionKind {
        match self.entry {
            Entry::Core { .. } | Entry::Command(_) => FunctionKind::Command,
            Entry::Http(_) => FunctionKind::Http,
        }
    }
}

/// Instantiates a core module in `store` and runs `_start` to its end.
/// `instantiation` receives how long creating the instance took.
pub(crate) async fn run_core(
    pre: &InstancePre<CoreHost>,
    start: &ModuleExport,
    store: &mut Store<CoreHost>,
    instantiation: &mut Duration,
) -> wasmtime::Result<()> {
    let begin = Instant::now();
    let instance = pre.instantiate_async(&mut *store).await;
    *instantiation = begin.elapsed();
    let start = instance?
        .get_module_export(&mut *store, start)
        .and_then(|e| e.into_func())
        .ok_or_else(|| wasmtime::format_err!("`_start` is not a function"))?
        .typed::<(), ()>(&*store)?;
    start.call_async(&mut *store, ()).await
}

/// Instantiates a command component and runs `wasi:cli/run.run`. A `run` that
/// returns an error ends as exit code 1, as `wasmtime run` reports it.
pub(crate) async fn run_command(
    pre: &CommandPre<ComponentHost>,
    store: &mut Store<ComponentHost>,
    instantiation: &mut Duration,
) -> wasmtime::Result<()> {
    let begin = Instant::now();
    let command = pre.instantiate_async(&mut *store).await;
    *instantiation = begin.elapsed();
    command?
        .wasi_cli_run()
        .call_run(&mut *store)
        .await?
        .map_err(|()| wasmtime::Error::new(I32Exit(1)))
}

/// Instantiates a proxy component and hands it the request; returns when its
/// `handle` returns (the response may have been sent long before).
pub(crate) async fn run_http(
    pre: &ProxyPre<ComponentHost>,
    store: &mut Store<ComponentHost>,
    request: Resource<HostIncomingRequest>,
    response: Resource<HostResponseOutparam>,
    instantiation: &mut Duration,
) -> wasmtime::Result<()> {
    let begin = Instant::now();
    let proxy = pre.instantiate_async(&mut *store).await;
    *instantiation = begin.elapsed();
    proxy?
        .wasi_http_incoming_handler()
        .call_handle(&mut *store, request, response)
        .await
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.entry {
            Entry::Core { .. } => "core module",
            Entry::Command(_) => "command component",
            Entry::Http(_) => "wasi:http component",
        };
        f.debug_struct("Function")
            .field("digest", &self.digest)
            .field("tier", &self.tier)
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}
