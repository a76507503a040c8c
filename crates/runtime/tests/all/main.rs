//! Integration tests of the sandbox, with guests written in WebAssembly text so that
//! each one does exactly the thing under test. One binary for all (faster to build).

mod cache;
mod component;
mod copies;
mod cpu_share;
mod guests;
mod hostile;
mod http;
mod invoke;
mod kv;
mod tiers;
mod validate;

use kiln_runtime::{EngineConfig, Runtime, RuntimeConfig, ScratchConfig};

/// A runtime with its own artifact directory, removed when the test ends.
pub struct TestRuntime {
    pub runtime: Runtime,
    pub dir: tempfile::TempDir,
}

pub fn runtime() -> TestRuntime {
    runtime_with(EngineConfig {
        max_instances: 16,
        ..EngineConfig::default()
    })
}

pub fn runtime_with(engine: EngineConfig) -> TestRuntime {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(RuntimeConfig {
        artifact_dir: dir.path().to_owned(),
        engine,
        scratch: ScratchConfig::new(dir.path().join("scratch")),
        compile_cache: Some(dir.path().join("compile-cache")),
        egress: Default::default(),
    })
    .expect("runtime");
    TestRuntime { runtime, dir }
}

pub fn wasm(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("test guest must be valid WAT")
}
