//! Fair shares of CPU: a tenant over its share of a saturated machine waits at
//! epoch ticks (and still succeeds); a tenant alone is never held back.

use crate::{runtime_with, wasm};
use kiln_runtime::{CpuShare, EngineConfig, Function, Limits, Outcome, Request};
use std::sync::Arc;
use std::time::Duration;

/// Spins through 300 million rounds of a loop (a few hundred ms of CPU) and
/// exits cleanly.
const BURNER: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (local $i i32)
    (loop $spin
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $spin (i32.lt_u (local.get $i) (i32.const 300000000))))))"#;

/// Runs `count` burners for each tenant at once; their outcomes.
async fn burn(
    runtime: &Arc<crate::TestRuntime>,
    function: &Function,
    tenants: &[(&CpuShare, usize)],
) -> Vec<Outcome> {
    let mut runs = Vec::new();
    for (share, count) in tenants {
        for _ in 0..*count {
            let (runtime, function, share) = (runtime.clone(), function.clone(), (*share).clone());
            runs.push(tokio::spawn(async move {
                let request = Request {
                    args: ["burn".to_owned()].into(),
                    limits: Limits {
                        wall_time: Duration::from_secs(120),
                        ..Limits::default()
                    },
                    cpu: Some(share),
                    ..Request::default()
                };
                runtime.runtime.invoke(&function, request).await
            }));
        }
    }
    let mut outcomes = Vec::new();
    for run in runs {
        let invocation = run.await.expect("join").expect("invoked");
        outcomes.push(invocation.outcome);
    }
    outcomes
}

fn one_core() -> Arc<crate::TestRuntime> {
    Arc::new(runtime_with(EngineConfig {
        max_instances: 8,
        cpu_cores: 1,
        ..EngineConfig::default()
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_share_is_delayed_not_failed() {
    let rt = one_core();
    let (function, _) = rt.runtime.load_wasm(&wasm(BURNER)).expect("load");
    let (greedy, modest) = (rt.runtime.cpu_share(1), rt.runtime.cpu_share(2));
    let outcomes = burn(&rt, &function, &[(&greedy, 3), (&modest, 1)]).await;
    assert_eq!(outcomes, vec![Outcome::Success; 4]);
    assert!(
        greedy.delays() > 0,
        "three guests on a one-core share beside another tenant were never held back"
    );
    assert_eq!(
        rt.runtime.cpu_shares().delays(),
        greedy.delays() + modest.delays()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_alone_has_the_whole_machine() {
    let rt = one_core();
    let (function, _) = rt.runtime.load_wasm(&wasm(BURNER)).expect("load");
    let alone = rt.runtime.cpu_share(1);
    let outcomes = burn(&rt, &function, &[(&alone, 3)]).await;
    assert_eq!(outcomes, vec![Outcome::Success; 3]);
    assert_eq!(alone.delays(), 0, "a tenant alone was held back");
    assert_eq!(rt.runtime.cpu_shares().limited(), 0);
}
