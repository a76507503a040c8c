//! Deploy-time checks of a WebAssembly binary, before anything is compiled or run.
//!
//! Each way a binary can be unfit gets its own [`ValidationError`] variant with a
//! message that names the problem and what to do about it.

use crate::engine::KEPT_OFF;
use std::collections::BTreeSet;
use wasmparser::{
    ComponentExternalKind, ExternalKind, Parser, Payload, TypeRef, Validator, WasmFeatures,
};

const MAGIC: &[u8; 4] = b"\0asm";
const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
/// Components share the magic; their version field is 0x0d and their layer 1.
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0, 1, 0];

/// What kind of function a binary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// A core module importing `wasi_snapshot_preview1` and exporting `_start`.
    CoreCommand,
    /// A WASI 0.2 component exporting `wasi:cli/run` (e.g. a `wasm32-wasip2`
    /// program): same invoke contract as a core command.
    ComponentCommand,
    /// A WASI 0.2 component exporting `wasi:http/incoming-handler` (the
    /// `wasi:http/proxy` world): an HTTP request in, an HTTP response out.
    HttpComponent,
}

/// The WASI 0.2 interfaces Kiln gives a component (as `wasmtime-wasi` provides
/// them; any `0.2.x` version). Without preopens or socket permissions, the
/// filesystem and network ones refuse every access.
const WASI_P2_INTERFACES: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];

/// `wasi:config`, as `wasmtime-wasi-config` serves it.
const CONFIG_INTERFACE: &str = "wasi:config/store@0.2.0-rc.1";

/// Whether `name` (`wasi:cli/stdout@0.2.3`) is an interface Kiln provides.
fn provided_p2(name: &str) -> bool {
    match name.split_once('@') {
        Some((interface, version)) => {
            version.starts_with("0.2.") && WASI_P2_INTERFACES.contains(&interface)
        }
        None => false,
    }
}

/// Whether `name` is `interface` at some `0.2.x` version.
fn is_p2(name: &str, interface: &str) -> bool {
    name.strip_prefix(interface)
        .and_then(|rest| rest.strip_prefix("@0.2."))
        .is_some()
}

/// What validation learned about an acceptable binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// What kind of WASI binary it is.
    pub kind: ModuleKind,
    /// Size of the binary in bytes.
    pub size: u64,
    /// Every import, as `module::name`.
    pub imports: Vec<String>,
}

/// Why a binary cannot be a Kiln function.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly binary: {0}")]
    NotWasm(String),
    /// The binary ends in the middle of its contents.
    #[error(
        "truncated WebAssembly binary: it ends after {size} bytes, in the middle of its contents \
         (was the upload or copy cut short?)"
    )]
    Truncated {
        /// Where it ends.
        size: u64,
    },
    /// It does not validate (wasmparser's reason).
    #[error("invalid WebAssembly: {0}")]
    Invalid(String),
    /// It is valid, but uses WebAssembly proposals Kiln keeps off (their names).
    #[error(
        "the binary uses WebAssembly proposals Kiln does not enable: {}",
        .0.join("; ")
    )]
    ProposalOff(Vec<String>),
    /// A kind of binary Kiln does not run (a library component, a 0.3 component...).
    #[error("unsupported kind of WebAssembly binary: {0}")]
    Unsupported(String),
    /// A core module without `_start`.
    #[error(
        "not a WASI command: the module exports no `_start` function \
         (build a program with a `main`, e.g. for wasm32-wasip1, not a library)"
    )]
    MissingStart,
    /// `_start` has the wrong signature.
    #[error("`_start` must take no parameters and return nothing, but its type is {0}")]
    BadStartType(String),
    /// A core module that does not export its memory.
    #[error(
        "the module exports no `memory`: a WASI command must export its linear memory as `memory`"
    )]
    MissingMemory,
    /// It imports what Kiln does not link (every such import, as `module::name`,
    /// or a component's interface name). Shown grouped by module, with counts.
    #[error("the module imports what Kiln does not provide: {}", grouped(.0))]
    UnknownImports(Vec<String>),
}

/// Checks `wasm` against the engine's validator and against what Kiln can run.
///
/// `provided` answers whether an import (`module`, `name`) is something the host
/// defines. Costs one parse of the binary; nothing is compiled.
pub(crate) fn validate(
    engine: &wasmtime::Engine,
    wasm: &[u8],
    provided: impl Fn(&str, &str) -> bool,
) -> Result<ModuleInfo, ValidationError> {
    if check_header(wasm)? == Layer::Core
        && let Err(e) = wasmtime::Module::validate(engine, wasm)
    {
        return Err(match classify_parse_error(wasm.len() as u64, &e) {
            ValidationError::Invalid(cause) => proposals_off(wasm)
                .map(ValidationError::ProposalOff)
                .unwrap_or(ValidationError::Invalid(cause)),
            other => other,
        });
    }
    inspect(wasm, provided)
}

/// [`validate`] but for the engine's validation of the code: what Kiln needs
/// of a binary (its kind, its imports, a memory for WASI), read in one parse
/// with no function body looked at. A compile validates the code itself, in
/// parallel, so the deploy path calls this and [`validate`] only when the
/// compile fails, to say why in the same words.
pub(crate) fn inspect(
    wasm: &[u8],
    provided: impl Fn(&str, &str) -> bool,
) -> Result<ModuleInfo, ValidationError> {
    let size = wasm.len() as u64;
    if check_header(wasm)? == Layer::Component {
        return validate_component(wasm);
    }
    let malformed = |e: wasmparser::BinaryReaderError| {
        classify_parse_error(size, &wasmtime::Error::msg(e.to_string()))
    };

    let mut imports = Vec::new();
    let mut unknown = Vec::new();
    let mut has_start = false;
    let mut has_initialize = false;
    let mut has_memory = false;
    let mut imported_memory = false;
    let mut shared_memory = false;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(malformed)?;
        match payload {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(malformed)?;
                    let name = format!("{}::{}", import.module, import.name);
                    if let TypeRef::Memory(memory) = import.ty {
                        imported_memory = true;
                        shared_memory |= memory.shared;
                    }
                    if !provided(import.module, import.name) {
                        unknown.push(name.clone());
                    }
                    imports.push(name);
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(malformed)?;
                    shared_memory |= memory.shared;
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(malformed)?;
                    match (export.name, export.kind) {
                        ("_start", ExternalKind::Func) => has_start = true,
                        ("_initialize", ExternalKind::Func) => has_initialize = true,
                        ("memory", ExternalKind::Memory) => has_memory = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    if shared_memory {
        return Err(ValidationError::ProposalOff(vec![SHARED_MEMORY.to_owned()]));
    }
    // What kind of binary it is comes first: a reactor's imports do not matter.
    if !has_start {
        if has_initialize {
            return Err(ValidationError::Unsupported(
                "this is a WASI reactor (it exports `_initialize`, not `_start`); \
                 Kiln runs commands: build a program with a `main`"
                    .into(),
            ));
        }
        return Err(ValidationError::MissingStart);
    }
    if !unknown.is_empty() {
        return Err(ValidationError::UnknownImports(unknown));
    }
    let uses_wasi = imports
        .iter()
        .any(|i| i.starts_with("wasi_snapshot_preview1::"));
    if uses_wasi && !has_memory && !imported_memory {
        return Err(ValidationError::MissingMemory);
    }
    Ok(ModuleInfo {
        kind: ModuleKind::CoreCommand,
        size,
        imports,
    })
}

/// A component's imports and what it exports decide its kind. The rest of its
/// validation happens as it compiles.
fn validate_component(wasm: &[u8]) -> Result<ModuleInfo, ValidationError> {
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    // Nested modules and components have their own imports and exports: only the
    // outermost ones (depth 0) face the host.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| match e.message().contains("unexpected end") {
            true => ValidationError::Truncated {
                size: wasm.len() as u64,
            },
            false => ValidationError::Invalid(e.to_string()),
        })?;
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(|e| ValidationError::Invalid(e.to_string()))?;
                    imports.push(import.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    let export = export.map_err(|e| ValidationError::Invalid(e.to_string()))?;
                    if export.kind == ComponentExternalKind::Instance {
                        exports.push(export.name.name.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    let kind = if exports
        .iter()
        .any(|e| is_p2(e, "wasi:http/incoming-handler"))
    {
        Some(ModuleKind::HttpComponent)
    } else if exports.iter().any(|e| is_p2(e, "wasi:cli/run")) {
        Some(ModuleKind::ComponentCommand)
    } else {
        None
    };
    let unknown: Vec<String> = imports
        .iter()
        .filter(|i| {
            !provided_p2(i)
                && i.as_str() != crate::loader::INTERFACE
                && !crate::kv_component::INTERFACES.contains(&i.as_str())
                && i.as_str() != CONFIG_INTERFACE
        })
        .cloned()
        .collect();
    if kind.is_some() && !unknown.is_empty() {
        return Err(ValidationError::UnknownImports(unknown));
    }
    if let Some(kind) = kind {
        return Ok(ModuleInfo {
            kind,
            size: wasm.len() as u64,
            imports,
        });
    }
    Err(ValidationError::Unsupported(format!(
        "this is a library component: it exports neither `wasi:cli/run@0.2` (a command, e.g. \
         a wasm32-wasip2 program with a `main`) nor `wasi:http/incoming-handler@0.2`; it \
         exports [{}]",
        exports.join(", ")
    )))
}

/// Core module or component, from the binary's preamble.
#[derive(Debug, PartialEq, Eq)]
enum Layer {
    Core,
    Component,
}

fn check_header(wasm: &[u8]) -> Result<Layer, ValidationError> {
    let size = wasm.len() as u64;
    if wasm.is_empty() {
        return Err(ValidationError::NotWasm("the file is empty".into()));
    }
    let magic_len = wasm.len().min(4);
    if wasm[..magic_len] != MAGIC[..magic_len] {
        return Err(ValidationError::NotWasm(format!(
            "it does not start with the WebAssembly magic bytes `\\0asm` (it starts with {:?})",
            String::from_utf8_lossy(&wasm[..wasm.len().min(8)])
        )));
    }
    if wasm.len() < 8 {
        return Err(ValidationError::Truncated { size });
    }
    let version: [u8; 4] = [wasm[4], wasm[5], wasm[6], wasm[7]];
    match version {
        COMPONENT_VERSION => Ok(Layer::Component),
        CORE_VERSION => Ok(Layer::Core),
        _ => Err(ValidationError::Unsupported(format!(
            "unknown WebAssembly binary version {version:02x?}"
        ))),
    }
}

/// Tells a binary that was cut short from one that is malformed.
fn classify_parse_error(size: u64, error: &wasmtime::Error) -> ValidationError {
    let chain: Vec<String> = error.chain().map(|e| e.to_string()).collect();
    let text = chain.join(": ");
    if text.contains("unexpected end") || text.contains("section size mismatch: unexpected end") {
        return ValidationError::Truncated { size };
    }
    // Keep the innermost cause: it names the offset and what was wrong there.
    let cause = chain.last().cloned().unwrap_or(text);
    ValidationError::Invalid(cause)
}

/// Why a module with a shared memory is refused.
const SHARED_MEMORY: &str = "shared memory, of the threads proposal (a module built for \
     wasm32-wasip1-threads): Kiln runs each invocation on one thread in a pooled slot, \
     which cannot hold a shared memory; atomic instructions on an ordinary memory are fine";

/// When `wasm` fails the engine's validation but is valid WebAssembly with every
/// proposal on: the proposals Kiln keeps off that it needs (each one the binary
/// fails without). `None` when it is invalid whatever is enabled, or when no single
/// kept-off proposal explains it. Costs a validation per kept-off proposal; only
/// a refused deploy pays it.
pub(crate) fn proposals_off(wasm: &[u8]) -> Option<Vec<String>> {
    let valid_with = |features| {
        Validator::new_with_features(features)
            .validate_all(wasm)
            .is_ok()
    };
    let all = WasmFeatures::all();
    if !valid_with(all) {
        return None;
    }
    let needed: Vec<String> = KEPT_OFF
        .iter()
        .filter(|(feature, _)| !valid_with(all.difference(*feature)))
        .map(|(_, name)| (*name).to_owned())
        .collect();
    (!needed.is_empty()).then_some(needed)
}

/// `env (2: a, b), wasi_snapshot_preview1 (1: sock_teleport)`: imports grouped by
/// module with counts, at most a few names each, so a refusal stays short.
fn grouped(imports: &[String]) -> String {
    const NAMES_SHOWN: usize = 4;
    let mut modules: Vec<(&str, Vec<&str>)> = Vec::new();
    for import in imports {
        let (module, name) = import.split_once("::").unwrap_or((import, ""));
        match modules.iter_mut().find(|(m, _)| *m == module) {
            Some((_, names)) => names.push(name),
            None => modules.push((module, vec![name])),
        }
    }
    let groups: Vec<String> = modules
        .iter()
        .map(|(module, names)| {
            let names: Vec<&str> = names.iter().copied().filter(|n| !n.is_empty()).collect();
            if names.is_empty() {
                return (*module).to_owned();
            }
            let shown = names[..names.len().min(NAMES_SHOWN)].join(", ");
            let more = if names.len() > NAMES_SHOWN {
                ", ..."
            } else {
                ""
            };
            format!("{module} ({}: {shown}{more})", names.len())
        })
        .collect();
    groups.join(", ")
}

/// The set of (module, name) pairs a linker defines, for [`validate`].
pub(crate) type ProvidedImports = BTreeSet<(String, String)>;
