//! A loaded function: a compiled module pre-linked against Kiln's host functions,
//! ready to be instantiated once per request.

use crate::digest::Digest;
use crate::limiter::GuestLimiter;
use wasmtime::{Instance, InstancePre, ModuleExport, Store, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;

/// The per-instance host state: the guest's WASI context and its resource limiter.
pub(crate) struct Host {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: GuestLimiter,
}

/// A compiled, linked function. Cheap to clone (reference-counted) and safe to share
/// across threads; every [`crate::Runtime::invoke`] makes a fresh instance of it.
#[derive(Clone)]
pub struct Function {
    digest: Digest,
    pre: InstancePre<Host>,
    start: ModuleExport,
}

impl Function {
    pub(crate) fn new(digest: Digest, pre: InstancePre<Host>, start: ModuleExport) -> Function {
        Function { digest, pre, start }
    }

    /// The sha256 of the module this function was compiled from.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    pub(crate) fn pre(&self) -> &InstancePre<Host> {
        &self.pre
    }

    /// The instance's `_start`, found by its pre-resolved export index (no name lookup).
    pub(crate) fn start(
        &self,
        store: &mut Store<Host>,
        instance: &Instance,
    ) -> wasmtime::Result<TypedFunc<(), ()>> {
        let export = instance
            .get_module_export(&mut *store, &self.start)
            .and_then(|e| e.into_func())
            .ok_or_else(|| wasmtime::format_err!("`_start` is not a function"))?;
        export.typed::<(), ()>(&*store)
    }
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}
