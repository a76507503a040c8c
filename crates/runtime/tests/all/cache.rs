//! The artifact cache: compile once, load many times, survive a restart, refuse damaged files.

use crate::{guests, runtime, wasm};
use kiln_runtime::{LoadError, LoadSource, Runtime, RuntimeConfig};

#[test]
fn compiling_twice_compiles_once() {
    let rt = runtime();
    let bytes = wasm(guests::COUNTER);
    let first = rt.runtime.compile(&bytes).unwrap();
    assert!(first.compile_time.is_some());
    // At once, while its file may still be being written behind.
    let second = rt.runtime.compile(&bytes).unwrap();
    assert_eq!(second.compile_time, None);
    assert_eq!(second.digest, first.digest);
    rt.runtime.flush_artifacts();
    assert!(first.artifact.is_file());
}

#[test]
fn a_new_runtime_loads_the_artifact_without_compiling() {
    let rt = runtime();
    let bytes = wasm(guests::COUNTER);
    let compiled = rt.runtime.compile(&bytes).unwrap();
    // What a runtime does before it goes (`kiln up` at shutdown).
    rt.runtime.flush_artifacts();
    let modified = std::fs::metadata(&compiled.artifact)
        .unwrap()
        .modified()
        .unwrap();

    let restarted = Runtime::new(RuntimeConfig::new(rt.dir.path())).unwrap();
    let function = restarted.load(&compiled.digest).unwrap();
    assert_eq!(function.digest(), compiled.digest);
    let (_, source) = restarted.load_wasm(&bytes).unwrap();
    assert_eq!(source, LoadSource::Cached);
    let after = std::fs::metadata(&compiled.artifact)
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(after, modified, "the artifact was rewritten");
}

#[test]
fn loading_an_unknown_digest_names_it() {
    let rt = runtime();
    let digest = kiln_api::Digest::of(b"never compiled");
    match rt.runtime.load(&digest) {
        Err(LoadError::NotCompiled(d)) => assert_eq!(d, digest),
        other => panic!("expected NotCompiled, got {other:?}"),
    }
}

#[test]
fn a_damaged_artifact_is_refused_then_replaced() {
    let rt = runtime();
    let bytes = wasm(guests::COUNTER);
    let compiled = rt.runtime.compile(&bytes).unwrap();
    // Its file is written behind the compile: finished before it is damaged.
    rt.runtime.flush_artifacts();
    // Unmap it before damaging the file in place (a mapped file cut short under a
    // live function would fault on access; the cache itself only ever renames).
    drop(compiled.function);
    std::fs::write(&compiled.artifact, b"\x7fELF garbage").unwrap();
    assert!(matches!(
        rt.runtime.load(&compiled.digest),
        Err(LoadError::BadArtifact { .. })
    ));
    let (_, source) = rt.runtime.load_wasm(&bytes).unwrap();
    assert!(matches!(source, LoadSource::Compiled(_)));
    assert!(rt.runtime.load(&compiled.digest).is_ok());
}
