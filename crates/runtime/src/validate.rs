//! Deploy-time checks of a WebAssembly binary, before anything is compiled or run.
//!
//! Each way a binary can be unfit gets its own [`ValidationError`] variant with a
//! message that names the problem and what to do about it.

use std::collections::BTreeSet;
use wasmparser::{ExternalKind, Parser, Payload, TypeRef};

const MAGIC: &[u8; 4] = b"\0asm";
const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
/// Components share the magic; their version field is 0x0d and their layer 1.
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0, 1, 0];

/// What kind of function a binary is. Only WASI preview 1 commands exist for now;
/// components arrive as further variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// A core module importing `wasi_snapshot_preview1` and exporting `_start`.
    CoreCommand,
}

/// What validation learned about an acceptable binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    pub kind: ModuleKind,
    /// Size of the binary in bytes.
    pub size: u64,
    /// Every import, as `module::name`.
    pub imports: Vec<String>,
}

/// Why a binary cannot be a Kiln function.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("not a WebAssembly binary: {0}")]
    NotWasm(String),
    #[error(
        "truncated WebAssembly binary: it ends after {size} bytes, in the middle of its contents \
         (was the upload or copy cut short?)"
    )]
    Truncated { size: u64 },
    #[error("invalid WebAssembly: {0}")]
    Invalid(String),
    #[error("unsupported kind of WebAssembly binary: {0}")]
    Unsupported(String),
    #[error(
        "not a WASI command: the module exports no `_start` function \
         (build a program with a `main`, e.g. for wasm32-wasip1, not a library)"
    )]
    MissingStart,
    #[error("`_start` must take no parameters and return nothing, but its type is {0}")]
    BadStartType(String),
    #[error(
        "the module exports no `memory`: a WASI command must export its linear memory as `memory`"
    )]
    MissingMemory,
    #[error("the module imports what Kiln does not provide: {}", .0.join(", "))]
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
    let size = wasm.len() as u64;
    check_header(wasm)?;
    if let Err(e) = wasmtime::Module::validate(engine, wasm) {
        return Err(classify_parse_error(size, &e));
    }

    let mut imports = Vec::new();
    let mut unknown = Vec::new();
    let mut has_start = false;
    let mut has_initialize = false;
    let mut has_memory = false;
    let mut imported_memory = false;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| ValidationError::Invalid(e.to_string()))?;
        match payload {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(|e| ValidationError::Invalid(e.to_string()))?;
                    let name = format!("{}::{}", import.module, import.name);
                    if matches!(import.ty, TypeRef::Memory(_)) {
                        imported_memory = true;
                    }
                    if !provided(import.module, import.name) {
                        unknown.push(name.clone());
                    }
                    imports.push(name);
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(|e| ValidationError::Invalid(e.to_string()))?;
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

    if !unknown.is_empty() {
        return Err(ValidationError::UnknownImports(unknown));
    }
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

fn check_header(wasm: &[u8]) -> Result<(), ValidationError> {
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
    if version == COMPONENT_VERSION {
        return Err(ValidationError::Unsupported(
            "this is a WebAssembly component (WASI 0.2); Kiln runs WASI preview 1 core modules \
             for now: build for wasm32-wasip1"
                .into(),
        ));
    }
    if version != CORE_VERSION {
        return Err(ValidationError::Unsupported(format!(
            "unknown WebAssembly binary version {version:02x?}"
        )));
    }
    Ok(())
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

/// The set of (module, name) pairs a linker defines, for [`validate`].
pub(crate) type ProvidedImports = BTreeSet<(String, String)>;
