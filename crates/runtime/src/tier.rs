//! The two tiers of compiled code. A [`Compiler`] is one engine (Cranelift's,
//! optimizing; or Winch's, the baseline compiler: an order of magnitude faster
//! to compile, slower code), the linkers of Kiln's host functions for it, and
//! its directory of the artifact cache (keyed by the engine's compatibility
//! hash, so the tiers never mix). A [`Function`] remembers its tier and runs on
//! its own engine.

use crate::artifact::ArtifactCache;
use crate::errors::{LoadError, RuntimeError};
use crate::function::{ComponentHost, CoreHost, Entry, Function};
use crate::validate::{ModuleKind, ValidationError};
use kiln_api::{Digest, Tier};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use wasmtime::component::Component;
use wasmtime::{ExternType, Linker, Module, Precompiled};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// One tier: its engine, linkers and artifacts.
pub(crate) struct Compiler {
    pub(crate) tier: Tier,
    pub(crate) engine: wasmtime::Engine,
    pub(crate) linker: Linker<CoreHost>,
    /// WASI 0.2 for components.
    pub(crate) component_linker: wasmtime::component::Linker<ComponentHost>,
    pub(crate) artifacts: ArtifactCache,
}

impl Compiler {
    /// Links Kiln's host functions for `engine` and opens its artifact
    /// directory under `artifact_root`.
    pub(crate) fn new(
        tier: Tier,
        engine: wasmtime::Engine,
        artifact_root: &Path,
    ) -> Result<Compiler, RuntimeError> {
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |host: &mut CoreHost| &mut host.wasi)
            .and_then(|()| crate::kv_core::add_to_linker(&mut linker))
            .map_err(|e| RuntimeError::Engine(e.into()))?;
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
        let artifacts = ArtifactCache::open(artifact_root, &engine).map_err(|source| {
            RuntimeError::ArtifactDir {
                path: artifact_root.to_owned(),
                source,
            }
        })?;
        Ok(Compiler {
            tier,
            engine,
            linker,
            component_linker,
            artifacts,
        })
    }

    /// Compiles `wasm` (of `kind`) to an artifact's bytes.
    pub(crate) fn precompile(&self, wasm: &[u8], kind: ModuleKind) -> wasmtime::Result<Vec<u8>> {
        match kind {
            ModuleKind::CoreCommand => self.engine.precompile_module(wasm),
            ModuleKind::ComponentCommand | ModuleKind::HttpComponent => {
                self.engine.precompile_component(wasm)
            }
        }
    }

    /// Loads this tier's artifact of `digest` (see [`crate::Runtime::load`]).
    pub(crate) fn load(&self, digest: &Digest) -> Result<Function, LoadError> {
        self.artifacts.settle(digest);
        let path = self.artifacts.path(digest);
        if !path.is_file() {
            return Err(LoadError::NotCompiled(*digest));
        }
        let bad = |e| bad_artifact(&path, e);
        let unreadable = |e| unreadable_artifact(&path, e);
        let kind = wasmtime::Engine::detect_precompiled_file(&path).map_err(bad)?;
        let copy = self.artifacts.sealed_copy(digest).map_err(unreadable)?;
        self.load_sealed(digest, kind, copy)
    }

    /// Loads `copy`, a sealed in-memory artifact of `digest` of `kind`: a
    /// [`ArtifactCache::sealed_copy`] of its file, or the output of a compile
    /// ([`ArtifactCache::seal`]).
    pub(crate) fn load_sealed(
        &self,
        digest: &Digest,
        kind: Option<Precompiled>,
        copy: File,
    ) -> Result<Function, LoadError> {
        // Both deserializations below rely on this: `copy` holds the output of
        // this engine's `precompile_module`/`precompile_component`, either just
        // returned by `Runtime::compile_tier` in this process, or a file of the
        // artifact cache, which only holds files written whole (atomic rename)
        // by `Runtime::compile_tier` or by `Runtime::import_artifact` with the
        // output of that same function on another Kiln node (its `# Trust`
        // section: the shared bucket is writable by Kiln nodes only), under a
        // directory keyed by this engine's compatibility hash; wasmtime checks
        // the header, the kind and the version again before using it. What is
        // mapped is sealed and private, never the file: nothing done to the file
        // later changes or truncates the code in use.
        let path = self.artifacts.path(digest);
        let bad = |e| bad_artifact(&path, e);
        let unreadable = |e| unreadable_artifact(&path, e);
        match kind {
            Some(Precompiled::Component) => {
                // wasmtime 48 takes a component's file by path only: the copy's
                // own, through /proc (the same sealed file, opened again).
                let copy_path = format!("/proc/self/fd/{}", copy.as_raw_fd());
                let component = if Path::new(&copy_path).exists() {
                    // SAFETY: a sealed copy of a file of the artifact cache,
                    // trusted as said above; it cannot change while mapped.
                    unsafe { Component::deserialize_file(&self.engine, &copy_path) }
                } else {
                    // No /proc here: the copy's bytes, copied by wasmtime.
                    let mut bytes = Vec::new();
                    std::io::Read::read_to_end(&mut &copy, &mut bytes).map_err(unreadable)?;
                    // SAFETY: as above.
                    unsafe { Component::deserialize(&self.engine, &bytes) }
                }
                .map_err(bad)?;
                drop(copy);
                self.link_component(*digest, &component)
            }
            _ => {
                // SAFETY: as above.
                let module =
                    unsafe { Module::deserialize_open_file(&self.engine, copy) }.map_err(bad)?;
                self.link(*digest, &module)
            }
        }
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
        Ok(Function::new(digest, self.tier, Entry::Core { pre, start }))
    }

    fn link_component(&self, digest: Digest, component: &Component) -> Result<Function, LoadError> {
        let pre = self
            .component_linker
            .instantiate_pre(component)
            .map_err(|e| ValidationError::Invalid(format!("{e:#}")))?;
        // A component exporting `wasi:http/incoming-handler` is served as a proxy,
        // even if it also exports `wasi:cli/run`.
        if let Ok(proxy) = ProxyPre::new(pre.clone()) {
            return Ok(Function::new(digest, self.tier, Entry::Http(proxy)));
        }
        let command = CommandPre::new(pre).map_err(|e| {
            ValidationError::Unsupported(format!(
                "neither a wasi:cli/command nor a wasi:http/proxy component: {e:#}"
            ))
        })?;
        Ok(Function::new(digest, self.tier, Entry::Command(command)))
    }
}

/// An artifact at `path` that wasmtime refused.
fn bad_artifact(path: &Path, e: wasmtime::Error) -> LoadError {
    LoadError::BadArtifact {
        path: path.to_owned(),
        message: format!("{e:#}"),
        cause: e.root_cause().to_string(),
    }
}

/// An artifact at `path` that could not be read.
fn unreadable_artifact(path: &Path, e: std::io::Error) -> LoadError {
    LoadError::BadArtifact {
        path: path.to_owned(),
        message: format!("cannot read it: {e}"),
        cause: e.to_string(),
    }
}
