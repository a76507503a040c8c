//! Tiered compilation over HTTP: a big module is served at once on baseline
//! code and switches to optimized code under load without a client seeing it;
//! a module the baseline compiler cannot compile still deploys, and says why;
//! a restart serves the best code already compiled, compiling nothing.

use crate::support::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Prints `tiered`, after `functions` functions of arithmetic that only make
/// the optimizing compiler take a while.
fn padded_module(functions: usize) -> Vec<u8> {
    let body = "local.get 0 i32.const 3 i32.mul i32.const 7 i32.add local.set 0 ".repeat(12);
    let padding = format!("(func (param i32) (result i32) {body} local.get 0)").repeat(functions);
    printing_module("tiered\n", &padding)
}

fn tier_of(server: &KilnServer, name: &str) -> String {
    let info: serde_json::Value =
        serde_json::from_str(&server.ok(&["info", name, "--json"])).expect("info JSON");
    info["tier"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_big_module_serves_baseline_code_then_switches_to_optimized_code_unseen() {
    let home = Home::new();
    let server = home.start(&["--baseline-above", "64KiB"]);
    let path = home.dir.path().join("padded.wasm");
    std::fs::write(&path, padded_module(6000)).expect("write");
    let deployed: serde_json::Value =
        serde_json::from_str(&server.ok(&["deploy", &path.display().to_string(), "--json"]))
            .expect("deploy JSON");
    assert_eq!(deployed["tier"], "baseline", "{deployed}");
    assert!(deployed.get("tier_note").is_none(), "{deployed}");

    // Clients call it without a pause while the optimized code is compiled
    // and switched in.
    let url = server.function_url("default", "padded");
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, served, url) = (stop.clone(), served.clone(), url.clone());
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let answer = post(&url, "");
                    answers.push((answer.status, answer.body));
                    served.fetch_add(1, Ordering::Relaxed);
                }
                answers
            })
        })
        .collect();
    eventually("the first answers", || {
        (served.load(Ordering::Relaxed) >= 4).then_some(())
    });
    let under_load = tier_of(&server, "padded");
    eventually("the optimized code", || {
        (tier_of(&server, "padded") == "optimized").then_some(())
    });
    let switched_at = served.load(Ordering::Relaxed);
    eventually("answers from the optimized code", || {
        (served.load(Ordering::Relaxed) >= switched_at + 40).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let answers: Vec<(u16, String)> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client"))
        .collect();
    assert_eq!(
        under_load, "baseline",
        "the optimized code was in before the clients started: no switch under load to check"
    );
    let wrong: Vec<_> = answers
        .iter()
        .filter(|a| (a.0, a.1.as_str()) != (200, "tiered\n"))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {}: {wrong:?}",
        wrong.len(),
        answers.len()
    );
    let text = metrics(&server, &home);
    assert_eq!(metric(&text, "kiln_baseline_compiles_total"), 1.0);
    assert_eq!(metric(&text, "kiln_tier_switches_total"), 1.0);

    // A restart loads the optimized artifact: nothing is compiled again.
    assert!(server.stop().success());
    let server = home.start(&["--baseline-above", "64KiB"]);
    assert_eq!(tier_of(&server, "padded"), "optimized");
    let answer = post(&url_of(&server, "padded"), "");
    assert_eq!((answer.status, answer.body.as_str()), (200, "tiered\n"));
    assert_eq!(metric(&metrics(&server, &home), "kiln_compiles_total"), 0.0);
}

#[test]
fn a_module_the_baseline_compiler_cannot_compile_still_deploys() {
    let home = Home::new();
    let server = home.start(&["--baseline-above", "0"]);
    // WebAssembly exceptions, which Winch does not compile: throws, catches,
    // then prints.
    let wasm = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
          (tag $oops)
          (memory (export "memory") 1)
          (data (i32.const 16) "caught\n")
          (func (export "_start")
            (block $caught (try_table (catch_all $caught) (throw $oops)))
            (i32.store (i32.const 0) (i32.const 16))
            (i32.store (i32.const 4) (i32.const 7))
            (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
    )
    .expect("wat");
    let path = home.dir.path().join("throws.wasm");
    std::fs::write(&path, wasm).expect("write");
    let out = server.cli(&["deploy", &path.display().to_string()], &[], b"");
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("note: the baseline compiler (Winch) cannot compile this module")
            && said.contains("exceptions"),
        "{said}"
    );
    assert_eq!(tier_of(&server, "throws"), "optimized");
    let answer = post(&url_of(&server, "throws"), "");
    assert_eq!((answer.status, answer.body.as_str()), (200, "caught\n"));
}

fn url_of(server: &KilnServer, name: &str) -> String {
    server.function_url("default", name)
}
