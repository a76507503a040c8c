//! WASI 0.2 command components (Rust programs built for wasm32-wasip2): the same
//! invoke contract as core modules.

use crate::runtime;
use kiln_api::MIB;
use kiln_runtime::{Limits, ModuleKind, Outcome, Request};
use std::time::Duration;

fn component(name: &str) -> Vec<u8> {
    std::fs::read(kiln_guests::component(name)).expect("component guest")
}

fn request(stdin: &[u8], limits: Limits) -> Request {
    Request {
        stdin: stdin.to_vec().into(),
        args: ["echo-env".to_owned(), "first".to_owned()].into(),
        env: vec![("GREETING".into(), "hi".into())],
        limits,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_command_component_gets_stdin_args_and_env_and_is_measured() {
    let rt = runtime();
    let compiled = rt.runtime.compile(&component("hello")).expect("compile");
    assert_eq!(compiled.info.kind, ModuleKind::ComponentCommand);
    let inv = rt
        .runtime
        .invoke(&compiled.function, request(b"component", Limits::default()))
        .await
        .unwrap();
    assert_eq!(inv.outcome, Outcome::Success);
    assert_eq!(&inv.stdout[..], b"Hello, component!\n");
    assert_eq!(inv.stats.bytes_in, 9);
    assert_eq!(inv.stats.bytes_out, 18);
    assert!(inv.stats.peak_memory_bytes > 0);

    let (echo, _) = rt.runtime.load_wasm(&component("echo-env")).unwrap();
    let inv = rt
        .runtime
        .invoke(&echo, request(b"", Limits::default()))
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&inv.stdout);
    assert!(out.contains("ARG 1=first\n"), "{out}");
    assert!(out.contains("ENV GREETING=hi\n"), "{out}");
}

#[tokio::test]
async fn a_restarted_runtime_loads_a_component_without_compiling() {
    let rt = runtime();
    let digest = rt.runtime.compile(&component("hello")).unwrap().digest;
    // What a runtime does before it goes (`kiln up` at shutdown): a compile
    // writes its artifact behind, which another runtime would not wait for.
    rt.runtime.flush_artifacts();
    let again = kiln_runtime::Runtime::new(kiln_runtime::RuntimeConfig::new(rt.dir.path()))
        .expect("runtime");
    let function = again.load(&digest).expect("load from the artifact");
    let inv = again
        .invoke(&function, request(b"again", Limits::default()))
        .await
        .unwrap();
    assert_eq!(&inv.stdout[..], b"Hello, again!\n");
}

#[tokio::test]
async fn component_failures_end_like_core_ones() {
    let rt = runtime();
    let limits = Limits {
        memory_bytes: 16 * MIB,
        wall_time: Duration::from_millis(200),
        ..Limits::default()
    };
    let run = |name: &'static str| {
        let function = rt.runtime.load_wasm(&component(name)).unwrap().0;
        let rt = &rt.runtime;
        async move { rt.invoke(&function, request(b"", limits)).await.unwrap() }
    };
    // WASI 0.2 carries success or failure, not a code: any non-zero exit is 1.
    assert_eq!(run("exit3").await.outcome, Outcome::Exit(1));
    assert!(matches!(run("trap").await.outcome, Outcome::Trap { .. }));
    assert_eq!(
        run("memory-hog").await.outcome,
        Outcome::MemoryLimit { limit: 16 * MIB }
    );
    assert_eq!(
        run("spin").await.outcome,
        Outcome::WallTimeLimit {
            limit: Duration::from_millis(200)
        }
    );
}
