//! The two tiers of compiled code: Winch's baseline code runs under the same
//! limits as Cranelift's, the optimized tier is preferred once present, and a
//! module Winch cannot compile is a compile error of its tier alone.

use crate::{guests, runtime, wasm};
use kiln_api::Digest;
use kiln_runtime::{CompilePriority, Compiled, Limits, LoadError, Outcome, Request, Runtime, Tier};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Compiles `bytes` with `tier`'s compiler at `priority`, never abandoned.
fn compile(
    runtime: &Runtime,
    bytes: &[u8],
    tier: Tier,
    priority: CompilePriority,
) -> Result<Compiled, LoadError> {
    let never = AtomicBool::new(false);
    runtime.compile_tier(Digest::of(bytes), bytes, tier, priority, &never)
}

fn echo(stdin: &str, limits: Limits) -> Request {
    Request {
        stdin: stdin.as_bytes().to_vec().into(),
        args: ["echo".to_owned()].into(),
        limits,
        ..Request::default()
    }
}

#[tokio::test]
async fn baseline_code_runs_and_the_optimized_tier_is_preferred_once_there() {
    let rt = runtime();
    let bytes = wasm(guests::ECHO);
    let digest = Digest::of(&bytes);
    let baseline = compile(&rt.runtime, &bytes, Tier::Baseline, CompilePriority::Waited)
        .expect("Winch compiles a plain module");
    assert_eq!(baseline.function.tier(), Tier::Baseline);
    assert_eq!(rt.runtime.best_tier(&digest), Some(Tier::Baseline));
    let ran = rt
        .runtime
        .invoke(&baseline.function, echo("baseline", Limits::default()))
        .await
        .expect("invoke");
    assert_eq!(
        (ran.outcome, &ran.stdout[..]),
        (Outcome::Success, &b"baseline"[..])
    );
    assert_eq!(
        rt.runtime.load(&digest).expect("load").tier(),
        Tier::Baseline
    );

    // As the server makes it: in the background, while baseline code serves.
    let optimized = compile(
        &rt.runtime,
        &bytes,
        Tier::Optimized,
        CompilePriority::Background,
    )
    .expect("Cranelift compiles it");
    assert_eq!(optimized.function.tier(), Tier::Optimized);
    let loaded = rt.runtime.load(&digest).expect("load");
    assert_eq!(loaded.tier(), Tier::Optimized, "the best tier is loaded");
    let ran = rt
        .runtime
        .invoke(&loaded, echo("optimized", Limits::default()))
        .await
        .expect("invoke");
    assert_eq!(&ran.stdout[..], b"optimized");
    // The baseline artifact stays loadable (a function still running on it).
    assert_eq!(
        rt.runtime
            .load_tier(&digest, Tier::Baseline)
            .expect("baseline")
            .tier(),
        Tier::Baseline
    );
    rt.runtime.remove_artifacts(&digest).expect("remove");
    assert_eq!(rt.runtime.best_tier(&digest), None);
}

/// Why a function's throughput once its optimized code is in equals today's
/// (issue 21): the optimized artifact made in the background after baseline
/// code is, byte for byte, the one a direct compile makes on another node.
#[test]
fn optimized_code_made_after_baseline_code_is_the_code_of_a_direct_compile() {
    let bytes = wasm(guests::ECHO);
    let digest = Digest::of(&bytes);
    let tiered = runtime();
    compile(
        &tiered.runtime,
        &bytes,
        Tier::Baseline,
        CompilePriority::Waited,
    )
    .expect("baseline");
    compile(
        &tiered.runtime,
        &bytes,
        Tier::Optimized,
        CompilePriority::Background,
    )
    .expect("optimized, in the background");
    let direct = runtime();
    compile(
        &direct.runtime,
        &bytes,
        Tier::Optimized,
        CompilePriority::Waited,
    )
    .expect("direct");
    let artifact = |rt: &Runtime| {
        rt.flush_artifacts();
        rt.export_artifact(&digest, Tier::Optimized)
            .expect("optimized artifact")
    };
    let (tiered_key, tiered_code) = artifact(&tiered.runtime);
    let (direct_key, direct_code) = artifact(&direct.runtime);
    assert_eq!(tiered_key, direct_key, "the same engine, the same name");
    assert!(
        tiered_code == direct_code,
        "the optimized artifacts differ ({} and {} bytes)",
        tiered_code.len(),
        direct_code.len()
    );
    let (_, baseline_code) = tiered
        .runtime
        .export_artifact(&digest, Tier::Baseline)
        .expect("baseline artifact");
    assert!(
        baseline_code != direct_code,
        "Winch's code is not Cranelift's"
    );
}

#[tokio::test]
async fn baseline_code_stops_at_the_wall_time_limit() {
    let rt = runtime();
    let bytes = wasm(guests::LOOP);
    let compiled =
        compile(&rt.runtime, &bytes, Tier::Baseline, CompilePriority::Waited).expect("compile");
    let limit = Duration::from_millis(100);
    let limits = Limits {
        wall_time: limit,
        ..Limits::default()
    };
    let ran = rt
        .runtime
        .invoke(&compiled.function, echo("", limits))
        .await
        .expect("invoke");
    assert_eq!(ran.outcome, Outcome::WallTimeLimit { limit });
}

#[test]
fn a_module_winch_cannot_compile_fails_its_baseline_tier_only() {
    let rt = runtime();
    // WebAssembly exceptions: valid, and Cranelift's; Winch has no support.
    let bytes = wasm(
        r#"(module
  (tag $oops)
  (memory (export "memory") 1)
  (func (export "_start")
    (block $caught (try_table (catch_all $caught) (throw $oops)))))"#,
    );
    let digest = Digest::of(&bytes);
    let refused = compile(&rt.runtime, &bytes, Tier::Baseline, CompilePriority::Waited)
        .expect_err("Winch refuses exceptions");
    assert!(matches!(refused, LoadError::Compile(_)), "{refused:?}");
    assert_eq!(rt.runtime.best_tier(&digest), None, "nothing was written");
    let compiled = compile(
        &rt.runtime,
        &bytes,
        Tier::Optimized,
        CompilePriority::Waited,
    )
    .expect("Cranelift compiles it");
    assert_eq!(compiled.function.tier(), Tier::Optimized);
}
