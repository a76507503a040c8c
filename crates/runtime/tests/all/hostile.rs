//! Hostile guests: modules written to exhaust a resource of the host (tables,
//! the call stack, instance memory for globals, compiler time). Each one is
//! stopped with a clear error and leaves the runtime serving the next guest.

use crate::{TestRuntime, guests, runtime, runtime_with, wasm};
use kiln_api::Digest;
use kiln_runtime::{EngineConfig, Limits, LoadError, Outcome, Request, SlotLimits};
use std::path::Path;
use std::sync::atomic::AtomicBool;

async fn run_on(rt: &TestRuntime, text: &str) -> kiln_runtime::Invocation {
    let (function, _) = rt.runtime.load_wasm(&wasm(text)).expect("load");
    let request = Request {
        stdin: Vec::new().into(),
        limits: Limits::default(),
        ..Default::default()
    };
    rt.runtime.invoke(&function, request).await.expect("invoke")
}

/// The runtime still runs an ordinary guest after a hostile one.
async fn still_serves(rt: &TestRuntime) {
    let inv = run_on(rt, guests::COUNTER).await;
    assert_eq!(inv.outcome, Outcome::Success);
    assert_eq!(&inv.stdout[..], b"1");
}

/// Every file under `dir`, at any depth.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        // The incremental compilation cache keeps each function compiled, not
        // artifacts: a refused module's functions may stay there, unloadable.
        if path.ends_with("compile-cache") {
            continue;
        }
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Grows its table by 1,000 elements until the host refuses, then exits with
/// the table's size in thousands as its exit code.
const TABLE_BOMB: &str = r#"
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (table $t 1000 funcref)
  (func (export "_start")
    (block $refused
      (loop $grow
        (br_if $refused
          (i32.eq (table.grow $t (ref.null func) (i32.const 1000)) (i32.const -1)))
        (br $grow)))
    (call $exit (i32.div_u (table.size $t) (i32.const 1000)))))
"#;

/// A runtime whose pool slots are shaped by `slot`.
fn runtime_with_slots(slot: SlotLimits) -> TestRuntime {
    runtime_with(EngineConfig {
        max_instances: 16,
        slot,
        ..EngineConfig::default()
    })
}

#[tokio::test]
async fn a_table_bomb_is_refused_growth_at_the_pool_limit() {
    let rt = runtime_with_slots(SlotLimits {
        table_elements: 50_000,
        ..SlotLimits::default()
    });
    let inv = run_on(&rt, TABLE_BOMB).await;
    assert_eq!(inv.outcome, Outcome::Exit(50));
    still_serves(&rt).await;
}

#[tokio::test]
async fn the_default_pool_admits_the_tables_of_large_c_programs() {
    let rt = runtime();
    let big = r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (table $t 150000 funcref)
        (func (export "_start") (call $exit (i32.div_u (table.size $t) (i32.const 10000)))))"#;
    assert_eq!(run_on(&rt, big).await.outcome, Outcome::Exit(15));
}

#[tokio::test]
async fn unbounded_recursion_traps_on_stack_overflow() {
    let rt = runtime();
    let deep = r#"(module (memory (export "memory") 1)
        (func $down (param i64) (result i64)
          (i64.add (call $down (i64.add (local.get 0) (i64.const 1))) (i64.const 1)))
        (func (export "_start") (drop (call $down (i64.const 0)))))"#;
    let inv = run_on(&rt, deep).await;
    match &inv.outcome {
        Outcome::Trap { message } => {
            assert!(message.contains("call stack exhausted"), "{message}")
        }
        other => panic!("expected a stack overflow trap, got {other:?}"),
    }
    still_serves(&rt).await;
}

/// Compiling `text` fails as a module too large for an instance slot, with a
/// message naming `expected`, and leaves no artifact behind.
fn refused_as_unfit(rt: TestRuntime, text: &str, expected: &str) {
    match rt.runtime.compile(&wasm(text)) {
        Err(unfit @ LoadError::Unfit(_)) => {
            let message = unfit.to_string();
            assert!(
                message.starts_with("the module does not fit Kiln's instance limits: ")
                    && message.contains(expected),
                "{message}"
            );
        }
        other => panic!("expected Unfit, got {other:?}"),
    }
    assert_eq!(files_under(rt.dir.path()), Vec::<std::path::PathBuf>::new());
}

#[test]
fn a_table_larger_than_a_pool_slot_is_refused_at_compile_time() {
    refused_as_unfit(
        runtime(),
        r#"(module (memory (export "memory") 1) (table 1000001 funcref) (func (export "_start")))"#,
        "minimum element size of 1000001 which exceeds the limit of 1000000",
    );
}

#[test]
fn globals_past_the_instance_size_limit_are_refused_at_compile_time() {
    let globals: String = (0..200_000)
        .map(|i| format!("(global (mut i64) (i64.const {i}))"))
        .collect();
    // 200,000 globals need about 3 MiB: over a 1 MiB slot, within the default 4 MiB.
    let text =
        format!(r#"(module (memory (export "memory") 1) {globals} (func (export "_start")))"#);
    runtime()
        .runtime
        .compile(&wasm(&text))
        .expect("fits the default slot");
    refused_as_unfit(
        runtime_with_slots(SlotLimits {
            core_instance_bytes: 1 << 20,
            ..SlotLimits::default()
        }),
        &text,
        "instance allocation for this module requires",
    );
}

#[test]
fn an_abandoned_compilation_writes_no_artifact() {
    let rt = runtime();
    let bytes = wasm(guests::COUNTER);
    let abandoned = AtomicBool::new(true);
    match rt
        .runtime
        .compile_digested(Digest::of(&bytes), &bytes, &abandoned)
    {
        Err(LoadError::Abandoned) => {}
        other => panic!("expected Abandoned, got {other:?}"),
    }
    assert_eq!(files_under(rt.dir.path()), Vec::<std::path::PathBuf>::new());
}

/// Calls the WASI filesystem and socket functions directly (no libc in between)
/// on every descriptor from 0 to 63: `fd_prestat_get` (a preopened directory?),
/// `path_open` of `/etc/passwd` and of `../../etc/passwd` relative to it, and
/// `sock_accept`. Exits with the number of calls that succeeded.
const RAW_WASI_PROBE: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "/etc/passwd")
  (data (i32.const 200) "../../etc/passwd")
  (func $ok (param $errno i32) (result i32) (i32.eqz (local.get $errno)))
  (func (export "_start") (local $fd i32) (local $got i32)
    (loop $each
      (local.set $got (i32.add (local.get $got)
        (call $ok (call $prestat (local.get $fd) (i32.const 0)))))
      (local.set $got (i32.add (local.get $got)
        (call $ok (call $path_open (local.get $fd) (i32.const 1) (i32.const 100) (i32.const 11)
          (i32.const 0) (i64.const 2) (i64.const 2) (i32.const 0) (i32.const 8)))))
      (local.set $got (i32.add (local.get $got)
        (call $ok (call $path_open (local.get $fd) (i32.const 0) (i32.const 200) (i32.const 16)
          (i32.const 0) (i64.const 2) (i64.const 2) (i32.const 0) (i32.const 8)))))
      (local.set $got (i32.add (local.get $got)
        (call $ok (call $accept (local.get $fd) (i32.const 0) (i32.const 8)))))
      (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
      (br_if $each (i32.lt_u (local.get $fd) (i32.const 64))))
    (call $exit (local.get $got))))
"#;

#[tokio::test]
async fn raw_wasi_calls_find_no_preopen_file_or_socket() {
    let rt = runtime();
    let inv = run_on(&rt, RAW_WASI_PROBE).await;
    assert_eq!(inv.outcome, Outcome::Success, "{:?}", inv.detail);
}
