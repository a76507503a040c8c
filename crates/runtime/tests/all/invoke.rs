//! Buffered invocations: outcomes, limits, stats and the instance pool, on WAT and example guests.

use crate::{guests, runtime, runtime_with, wasm};
use kiln_api::MIB;
use kiln_runtime::{EngineConfig, InvokeError, Limits, Outcome, Request};
use std::time::Duration;

fn request(stdin: &[u8], limits: Limits) -> Request {
    Request {
        stdin: stdin.to_vec().into(),
        args: ["test".to_owned()].into(),
        env: vec![],
        limits,
        ..Default::default()
    }
}

async fn run(text: &str, limits: Limits) -> kiln_runtime::Invocation {
    let rt = runtime();
    let (function, _) = rt.runtime.load_wasm(&wasm(text)).expect("load");
    rt.runtime
        .invoke(&function, request(b"", limits))
        .await
        .expect("invoke")
}

#[tokio::test]
async fn every_invocation_gets_a_fresh_instance() {
    let rt = runtime();
    let (function, _) = rt.runtime.load_wasm(&wasm(guests::COUNTER)).unwrap();
    for _ in 0..5 {
        let inv = rt
            .runtime
            .invoke(&function, request(b"", Limits::default()))
            .await
            .unwrap();
        assert_eq!(inv.outcome, Outcome::Success);
        assert_eq!(&inv.stdout[..], b"1");
    }
}

/// Checks that every page of its 25 MiB memory starts as its image says (zero,
/// but "img5" at 5 MiB and "im20" at 20 MiB), exiting 7 if not, then dirties
/// the first word of every page.
const PAGE_CHECKER: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 400)
  (data (i32.const 5242880) "img5")
  (data (i32.const 20971520) "im20")
  (func (export "_start") (local $at i32) (local $expected i32)
    (loop $check
      (local.set $expected (i32.const 0))
      (if (i32.eq (local.get $at) (i32.const 5242880))
        (then (local.set $expected (i32.const 0x35676d69))))
      (if (i32.eq (local.get $at) (i32.const 20971520))
        (then (local.set $expected (i32.const 0x30326d69))))
      (if (i32.ne (i32.load (local.get $at)) (local.get $expected))
        (then (call $exit (i32.const 7))))
      (local.set $at (i32.add (local.get $at) (i32.const 4096)))
      (br_if $check (i32.lt_u (local.get $at) (i32.const 26214400))))
    (local.set $at (i32.const 0))
    (loop $dirty
      (i32.store (local.get $at) (i32.const -1))
      (local.set $at (i32.add (local.get $at) (i32.const 4096)))
      (br_if $dirty (i32.lt_u (local.get $at) (i32.const 26214400))))))"#;

#[tokio::test]
async fn a_reused_slot_starts_from_the_image_whatever_was_kept_resident() {
    // One slot, so every invocation reuses it; 16 MiB of the 25 MiB the last
    // one dirtied are reset in place, the rest handed back to the kernel.
    let rt = runtime_with(EngineConfig {
        max_instances: 1,
        keep_resident_bytes: 16 << 20,
        ..EngineConfig::default()
    });
    let (function, _) = rt.runtime.load_wasm(&wasm(PAGE_CHECKER)).expect("load");
    let limits = Limits {
        memory_bytes: 32 * MIB,
        ..Limits::default()
    };
    for run in 0..4 {
        let inv = rt
            .runtime
            .invoke(&function, request(b"", limits))
            .await
            .expect("invoke");
        assert_eq!(inv.outcome, Outcome::Success, "run {run}: {:?}", inv.detail);
    }
}

#[tokio::test]
async fn stdin_reaches_stdout_and_is_measured() {
    let rt = runtime();
    let (function, _) = rt.runtime.load_wasm(&wasm(guests::ECHO)).unwrap();
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let inv = rt
        .runtime
        .invoke(&function, request(&body, Limits::default()))
        .await
        .unwrap();
    assert_eq!(inv.outcome, Outcome::Success);
    assert_eq!(inv.stdout, body);
    assert_eq!(inv.stats.bytes_in, body.len() as u64);
    assert_eq!(inv.stats.bytes_out, body.len() as u64);
    assert_eq!(inv.stats.peak_memory_bytes, 2 * 65536);
    assert!(inv.stats.wall >= inv.stats.instantiation);
}

#[tokio::test]
async fn random_clocks_args_and_environment_are_available() {
    let rt = runtime();
    let (function, _) = rt.runtime.load_wasm(&wasm(guests::WASI_BASICS)).unwrap();
    let mut req = request(b"", Limits::default());
    req.env = vec![("A".into(), "1".into())];
    let inv = rt.runtime.invoke(&function, req).await.unwrap();
    assert_eq!(inv.outcome, Outcome::Success, "{:?}", inv.detail);
}

#[tokio::test]
async fn exit_codes_are_reported() {
    let inv = run(&guests::exit(3), Limits::default()).await;
    assert_eq!(inv.outcome, Outcome::Exit(3));
    assert_eq!(inv.outcome.to_string(), "exited with code 3");
    let inv = run(&guests::exit(0), Limits::default()).await;
    assert_eq!(inv.outcome, Outcome::Success);
}

#[tokio::test]
async fn a_trap_names_its_cause() {
    let inv = run(guests::TRAP, Limits::default()).await;
    match &inv.outcome {
        Outcome::Trap { message } => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(inv.detail.is_some());
}

#[tokio::test]
async fn a_busy_loop_stops_at_the_wall_time_limit() {
    let limit = Duration::from_millis(200);
    let limits = Limits {
        wall_time: limit,
        ..Limits::default()
    };
    let inv = run(guests::LOOP, limits).await;
    assert_eq!(inv.outcome, Outcome::WallTimeLimit { limit });
    assert!(inv.stats.wall >= limit);
    assert_eq!(
        inv.outcome.to_string(),
        "stopped: wall-time limit of 200ms exceeded"
    );
}

#[tokio::test]
async fn a_guest_blocked_in_a_wasi_sleep_stops_at_the_wall_time_limit() {
    let limit = Duration::from_millis(200);
    let limits = Limits {
        wall_time: limit,
        ..Limits::default()
    };
    let inv = run(&guests::sleep(60_000_000_000), limits).await;
    assert_eq!(inv.outcome, Outcome::WallTimeLimit { limit });
    // Sleeping is not computing.
    assert!(inv.stats.cpu < inv.stats.wall / 2, "{:?}", inv.stats);
}

#[tokio::test]
async fn a_short_sleep_completes() {
    let inv = run(&guests::sleep(1_000_000), Limits::default()).await;
    assert_eq!(inv.outcome, Outcome::Success);
}

#[tokio::test]
async fn a_memory_bomb_stops_at_the_memory_limit() {
    let limits = Limits {
        memory_bytes: 16 * MIB,
        ..Limits::default()
    };
    let inv = run(guests::MEMORY_BOMB, limits).await;
    assert_eq!(inv.outcome, Outcome::MemoryLimit { limit: 16 * MIB });
    assert_eq!(inv.stats.peak_memory_bytes, 16 * MIB);
    assert_eq!(
        inv.outcome.to_string(),
        "stopped: memory limit of 16 MiB exceeded"
    );
}

#[tokio::test]
async fn initial_memory_above_the_limit_is_a_memory_limit() {
    let limits = Limits {
        memory_bytes: 16 * MIB,
        ..Limits::default()
    };
    let inv = run(guests::BIG_INITIAL_MEMORY, limits).await;
    assert_eq!(inv.outcome, Outcome::MemoryLimit { limit: 16 * MIB });
    // The same module runs under the default 128 MiB.
    let inv = run(guests::BIG_INITIAL_MEMORY, Limits::default()).await;
    assert_eq!(inv.outcome, Outcome::Success);
    assert_eq!(inv.stats.peak_memory_bytes, 32 * MIB);
}

#[tokio::test]
async fn a_stdout_flood_stops_at_the_output_limit() {
    let limits = Limits {
        stdout_bytes: MIB,
        ..Limits::default()
    };
    let inv = run(&guests::flood(1, 0), limits).await;
    assert_eq!(inv.outcome, Outcome::OutputLimit { limit: MIB });
    assert_eq!(inv.stdout.len() as u64, MIB);
    // Writing exactly the limit is fine.
    let inv = run(&guests::flood(1, 16), limits).await;
    assert_eq!(inv.outcome, Outcome::Success);
    assert_eq!(inv.stdout.len() as u64, MIB);
}

#[tokio::test]
async fn stderr_past_its_limit_is_truncated_not_fatal() {
    let limits = Limits {
        stderr_bytes: 1000,
        ..Limits::default()
    };
    let inv = run(&guests::flood(2, 3), limits).await;
    assert_eq!(inv.outcome, Outcome::Success);
    assert_eq!(inv.stderr.len(), 1000);
    assert!(inv.stderr_truncated);
    assert!(inv.stdout.is_empty());
}

#[tokio::test]
async fn oversized_stdin_is_refused_before_running() {
    let rt = runtime();
    let (function, _) = rt.runtime.load_wasm(&wasm(guests::ECHO)).unwrap();
    let limits = Limits {
        stdin_bytes: 10,
        ..Limits::default()
    };
    let err = rt
        .runtime
        .invoke(&function, request(b"eleven byte", limits))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        InvokeError::StdinTooLarge {
            size: 11,
            limit: 10
        }
    );
    assert_eq!(
        err.to_string(),
        "request body of 11 bytes is over the limit of 10 bytes"
    );
}

#[tokio::test]
async fn a_memory_limit_above_the_engine_maximum_is_refused() {
    let rt = runtime_with(EngineConfig {
        max_instances: 4,
        max_memory_bytes: 64 * MIB,
        ..EngineConfig::default()
    });
    let (function, _) = rt.runtime.load_wasm(&wasm(guests::TRAP)).unwrap();
    let limits = Limits {
        memory_bytes: 128 * MIB,
        ..Limits::default()
    };
    let err = rt
        .runtime
        .invoke(&function, request(b"", limits))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "memory limit of 128 MiB is over this server's maximum of 64 MiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_queues_then_refuses_cleanly_and_recovers() {
    let rt = std::sync::Arc::new(runtime_with(EngineConfig {
        max_instances: 1,
        instance_wait: Duration::from_millis(100),
        ..EngineConfig::default()
    }));
    let (sleeper, _) = rt
        .runtime
        .load_wasm(&wasm(&guests::sleep(60_000_000_000)))
        .unwrap();
    let (trap, _) = rt.runtime.load_wasm(&wasm(guests::TRAP)).unwrap();
    let limits = Limits {
        wall_time: Duration::from_secs(30),
        ..Limits::default()
    };
    let holder = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.runtime.invoke(&sleeper, request(b"", limits)).await })
    };
    // Once the sleeper holds the only slot, another invocation waits its 100 ms
    // and is refused. (Until then, the trap runs and returns.)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let err = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the pool never filled"
        );
        assert!(
            !holder.is_finished(),
            "the sleeper ended: {:?}",
            holder.await
        );
        match rt
            .runtime
            .invoke(&trap, request(b"", Limits::default()))
            .await
        {
            Err(e) => break e,
            Ok(_) => tokio::task::yield_now().await,
        }
    };
    assert_eq!(err, InvokeError::AtCapacity(1));
    holder.abort();
    let _ = holder.await;
    // The slot is back once the sleeper is gone.
    let inv = rt
        .runtime
        .invoke(&trap, request(b"", Limits::default()))
        .await
        .unwrap();
    assert!(matches!(inv.outcome, Outcome::Trap { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_waits_for_a_slot_instead_of_failing() {
    let rt = std::sync::Arc::new(runtime_with(EngineConfig {
        max_instances: 1,
        instance_wait: Duration::from_secs(30),
        ..EngineConfig::default()
    }));
    let (napper, _) = rt
        .runtime
        .load_wasm(&wasm(&guests::sleep(50_000_000)))
        .unwrap();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let rt = rt.clone();
            let napper = napper.clone();
            tokio::spawn(async move {
                rt.runtime
                    .invoke(&napper, request(b"", Limits::default()))
                    .await
            })
        })
        .collect();
    for run in runs {
        let inv = run.await.unwrap().expect("queued, not refused");
        assert_eq!(inv.outcome, Outcome::Success);
    }
}
