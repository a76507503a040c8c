//! Deploy-time validation: what is refused, with which error, and that nothing is stored for it.

use crate::{guests, runtime, wasm};
use kiln_runtime::{LoadError, ValidationError};

/// Compiling `bytes` fails with exactly `expected`, and nothing is written to the cache.
fn refused(bytes: &[u8], expected: &str) -> ValidationError {
    let rt = runtime();
    let err = match rt.runtime.compile(bytes) {
        Err(LoadError::Invalid(e)) => e,
        Err(other) => panic!("expected a validation error, got {other}"),
        Ok(_) => panic!("expected {expected:?}, but it compiled"),
    };
    assert_eq!(err.to_string(), expected);
    let stored = std::fs::read_dir(rt.runtime.artifacts().dir())
        .unwrap()
        .count();
    assert_eq!(stored, 0, "a refused module left an artifact");
    err
}

#[test]
fn an_empty_file_is_not_wasm() {
    refused(b"", "not a WebAssembly binary: the file is empty");
}

#[test]
fn a_text_file_is_not_wasm() {
    refused(
        b"#!/bin/sh\necho hi\n",
        "not a WebAssembly binary: it does not start with the WebAssembly magic bytes `\\0asm` \
         (it starts with \"#!/bin/s\")",
    );
}

#[test]
fn a_cut_short_module_is_truncated() {
    let whole = wasm(guests::COUNTER);
    for cut in [6, whole.len() / 2, whole.len() - 1] {
        let err = refused(
            &whole[..cut],
            &format!(
                "truncated WebAssembly binary: it ends after {cut} bytes, in the middle of its \
                 contents (was the upload or copy cut short?)"
            ),
        );
        assert!(matches!(err, ValidationError::Truncated { .. }));
    }
}

#[test]
fn a_malformed_module_is_invalid() {
    // A function whose body uses an undefined local.
    let mut bytes = wasm(r#"(module (func (export "_start") (local i32) (drop (local.get 0))))"#);
    let at = bytes.windows(2).rposition(|w| w == [0x20, 0x00]).unwrap();
    bytes[at + 1] = 0x07;
    let rt = runtime();
    match rt.runtime.compile(&bytes) {
        Err(LoadError::Invalid(ValidationError::Invalid(message))) => {
            assert!(message.contains("unknown local"), "{message}")
        }
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn a_component_that_is_no_command_names_what_it_exports() {
    refused(
        &wasm(r#"(component (instance $i) (export "acme:tools/greet@1.0.0" (instance $i)))"#),
        "unsupported kind of WebAssembly binary: this is a library component: it exports neither \
         `wasi:cli/run@0.2` (a command, e.g. a wasm32-wasip2 program with a `main`) nor \
         `wasi:http/incoming-handler@0.2`; it exports [acme:tools/greet@1.0.0]",
    );
}

#[test]
fn a_component_importing_what_kiln_lacks_is_refused_naming_each() {
    refused(
        &wasm(
            r#"(component
                 (import "wasi:blobstore/container@0.2.0-draft" (instance))
                 (import "wasi:http/outgoing-handler@0.2.0" (instance))
                 (import "wasi:cli/stdout@0.2.3" (instance))
                 (import "wasi:cli/stdout@0.3.0" (instance))
                 (instance $run)
                 (export "wasi:cli/run@0.2.0" (instance $run)))"#,
        ),
        "the module imports what Kiln does not provide: wasi:blobstore/container@0.2.0-draft, \
         wasi:cli/stdout@0.3.0",
    );
}

#[test]
fn a_reactor_is_not_a_command() {
    refused(
        &wasm(r#"(module (memory (export "memory") 1) (func (export "_initialize")))"#),
        "unsupported kind of WebAssembly binary: this is a WASI reactor (it exports \
         `_initialize`, not `_start`); Kiln runs commands: build a program with a `main`",
    );
}

#[test]
fn a_module_without_start_is_refused() {
    refused(
        &wasm(r#"(module (memory (export "memory") 1) (func (export "main")))"#),
        "not a WASI command: the module exports no `_start` function (build a program with a \
         `main`, e.g. for wasm32-wasip1, not a library)",
    );
}

#[test]
fn a_start_with_parameters_is_refused() {
    refused(
        &wasm(r#"(module (memory (export "memory") 1) (func (export "_start") (param i32)))"#),
        "`_start` must take no parameters and return nothing, but its type is (i32) -> ()",
    );
}

#[test]
fn unknown_imports_are_all_named() {
    refused(
        &wasm(
            r#"(module
              (import "env" "host_magic" (func))
              (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "teleport" (func))
              (memory (export "memory") 1)
              (func (export "_start")))"#,
        ),
        "the module imports what Kiln does not provide: env (1: host_magic), \
         wasi_snapshot_preview1 (1: teleport)",
    );
}

#[test]
fn many_unknown_imports_are_grouped_by_module_with_counts() {
    let imports: String = (0..40)
        .map(|i| format!(r#"(import "env" "f{i}" (func))"#))
        .collect();
    refused(
        &wasm(&format!(
            r#"(module {imports} (import "gpu" "launch" (func))
                 (memory (export "memory") 1) (func (export "_start")))"#
        )),
        "the module imports what Kiln does not provide: env (40: f0, f1, f2, f3, ...), \
         gpu (1: launch)",
    );
}

#[test]
fn the_kind_of_binary_is_said_before_its_imports() {
    refused(
        &wasm(
            r#"(module (import "env" "host_magic" (func))
                 (memory (export "memory") 1) (func (export "_initialize")))"#,
        ),
        "unsupported kind of WebAssembly binary: this is a WASI reactor (it exports \
         `_initialize`, not `_start`); Kiln runs commands: build a program with a `main`",
    );
}

/// Throws a WebAssembly exception carrying 7 and catches it with `try_table`:
/// what C++ built with `-fwasm-exceptions` does. Exits with the caught value.
const EXCEPTIONS: &str = r#"
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (tag $oops (param i32))
  (func $throws (throw $oops (i32.const 7)))
  (func (export "_start")
    (call $exit
      (block $caught (result i32)
        (try_table (catch $oops $caught) (call $throws))
        (i32.const 0)))))
"#;

#[tokio::test]
async fn exception_handling_modules_run() {
    let rt = runtime();
    let (function, _) = rt
        .runtime
        .load_wasm(&wasm(EXCEPTIONS))
        .expect("exceptions are on");
    let inv = rt
        .runtime
        .invoke(&function, kiln_runtime::Request::default())
        .await
        .expect("invoke");
    assert_eq!(inv.outcome, kiln_runtime::Outcome::Exit(7));
}

/// Atomic instructions on an ordinary memory, as C and C++ built with atomics
/// (single-threaded) emit: valid, and run.
#[tokio::test]
async fn atomic_instructions_on_an_ordinary_memory_run() {
    let rt = runtime();
    let text = r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start")
          (drop (i32.atomic.rmw.add (i32.const 0) (i32.const 41)))
          (call $exit (i32.add (i32.atomic.load (i32.const 0)) (i32.const 1)))))"#;
    let (function, _) = rt.runtime.load_wasm(&wasm(text)).expect("atomics are on");
    let inv = rt
        .runtime
        .invoke(&function, kiln_runtime::Request::default())
        .await
        .expect("invoke");
    assert_eq!(inv.outcome, kiln_runtime::Outcome::Exit(42));
}

#[test]
fn a_module_needing_a_proposal_kiln_keeps_off_is_refused_naming_it() {
    refused(
        &wasm(
            r#"(module (memory (export "memory") 1 1 shared)
                 (func (export "_start")))"#,
        ),
        "the binary uses WebAssembly proposals Kiln does not enable: shared memory, of the \
         threads proposal (a module built for wasm32-wasip1-threads): Kiln runs each invocation \
         on one thread in a pooled slot, which cannot hold a shared memory; atomic instructions \
         on an ordinary memory are fine",
    );
    refused(
        &wasm(
            r#"(module (memory (export "memory") 1) (tag $e)
                 (func (export "_start") try throw $e catch_all end))"#,
        ),
        "the binary uses WebAssembly proposals Kiln does not enable: legacy exception handling \
         (`try`/`catch`; rebuild with a current toolchain, which emits the standard `try_table`)",
    );
}

#[test]
fn an_import_of_the_wrong_type_is_refused() {
    let rt = runtime();
    let bytes = wasm(
        r#"(module
          (import "wasi_snapshot_preview1" "proc_exit" (func (param i64)))
          (memory (export "memory") 1)
          (func (export "_start")))"#,
    );
    match rt.runtime.compile(&bytes) {
        Err(LoadError::Invalid(ValidationError::Invalid(message))) => {
            assert!(message.contains("proc_exit"), "{message}")
        }
        other => panic!("expected a link error, got {other:?}"),
    }
    assert_eq!(
        std::fs::read_dir(rt.runtime.artifacts().dir())
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_wasi_module_must_export_its_memory() {
    refused(
        &wasm(
            r#"(module
              (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
              (memory 1)
              (func (export "_start")))"#,
        ),
        "the module exports no `memory`: a WASI command must export its linear memory as `memory`",
    );
}
