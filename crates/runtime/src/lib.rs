//! The Kiln sandbox: runs one invocation of a WASI function in a fresh wasmtime
//! instance, under limits, and reports what it did and what it cost.
//!
//! This crate knows nothing about tenants, databases or serving HTTP (it handles
//! requests and responses only as values, the way `wasi:http` hands them to a
//! component). Its nouns follow wasmtime's split between expensive, long-lived
//! things and cheap per-request ones:
//!
//! - [`Runtime`] (one per process): engine, linker, artifact cache, epoch thread.
//! - [`Runtime::compile`] (once per distinct module, at deploy): validate, compile,
//!   write the artifact to disk keyed by the module's [`Digest`](kiln_api::Digest).
//! - [`Function`] (once per module per process, from [`Runtime::load`]): the
//!   artifact mapped from disk and pre-linked.
//! - [`Runtime::invoke`] (once per request): a fresh instance of a [`Function`],
//!   fed a [`Request`], returning an [`Invocation`] with its [`Outcome`] and [`Stats`].
//! - [`Runtime::invoke_streaming`] (a command whose stdin and stdout stream) and
//!   [`Runtime::handle_http`] (a `wasi:http/proxy` component): the same, with the
//!   output as a streamed [`OutputBody`] and the [`Invocation`] from [`Finished`].
//!
//! ```no_run
//! # async fn demo(wasm: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! use kiln_runtime::{Request, Runtime, RuntimeConfig};
//! let runtime = Runtime::new(RuntimeConfig::new("/tmp/kiln-artifacts"))?;
//! let compiled = runtime.compile(wasm)?; // deploy time
//! let function = runtime.load(&compiled.digest)?; // first use after a start
//! let request = Request {
//!     stdin: "world".into(),
//!     args: ["hello".to_owned()].into(),
//!     ..Request::default()
//! };
//! let invocation = runtime.invoke(&function, request).await?; // every request
//! assert!(invocation.outcome.is_success());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod artifact;
mod background;
mod compile_cache;
mod copies;
mod cpu_share;
mod cpu_time;
mod disk_usage;
mod egress;
mod engine;
mod errors;
mod files;
mod function;
mod http;
mod invoke;
mod kv;
mod kv_component;
mod kv_core;
mod limiter;
mod limits;
mod loader;
mod outbound;
mod output;
mod overlay;
mod runtime;
mod snapshot;
mod streaming;
mod ticker;
mod tier;
mod validate;

pub use artifact::ArtifactCache;
pub use background::{BACKGROUND_NICE, CompilePriority};
pub use copies::WritableCopies;
pub use cpu_share::{CpuShare, CpuShares, TenantCpu};
pub use egress::{EgressPolicy, is_public};
pub use engine::{EngineConfig, SlotLimits};
pub use errors::{LoadError, RuntimeError};
pub use files::{Files, HostMount, ScratchConfig, ScratchLimitExceeded, ScratchLimits};
pub use function::{Function, FunctionKind};
pub use http::{HttpAnswer, HttpRequest};
pub use invoke::{Invocation, InvokeError, Outcome, Request, Stats};
pub use kiln_api::Tier;
pub use kv::{KeyValue, KvError, KvGrant};
pub use kv_core::MODULE as KV_CORE_MODULE;
pub use limiter::MemoryLimitExceeded;
pub use limits::Limits;
pub use outbound::{AllowedHosts, HostPattern, ParseHostError};
pub use output::OutputLimitExceeded;
pub use overlay::Overlays;
pub use runtime::{Compiled, LoadSource, Runtime, RuntimeConfig, default_artifact_dir};
pub use snapshot::{
    Snapshot, SnapshotError, SnapshotInit, WIZER_INITIALIZE, file_has_initializer, has_initializer,
};
pub use streaming::{BoxError, Finished, GuestFailed, OutputBody, StreamRequest, Streamed};
pub use validate::{ModuleInfo, ModuleKind, ValidationError};
