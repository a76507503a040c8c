//! Writable copies of a mounted tree, through `Runtime::invoke` and the `fs`
//! example guest: a copy left unchanged by a core module is handed to the next
//! invocation, a changed one (or a component's) is not, and no invocation sees
//! what another wrote.

use crate::runtime;
use kiln_runtime::{Files, HostMount, Limits, Outcome, Request, ScratchLimits};
use std::sync::Arc;

fn files(tree: &std::path::Path) -> Arc<Files> {
    Arc::new(Files {
        mounts: vec![HostMount {
            host: tree.to_owned(),
            guest: "data".into(),
            copy: true,
        }],
        scratch: Some(ScratchLimits {
            bytes: 1 << 20,
            entries: 100,
            guest: "/tmp".into(),
        }),
    })
}

/// What the `fs` guest printed for `commands` (one per line).
async fn probe(
    rt: &kiln_runtime::Runtime,
    function: &kiln_runtime::Function,
    files: &Arc<Files>,
    commands: &str,
) -> String {
    let invocation = rt
        .invoke(
            function,
            Request {
                stdin: commands.as_bytes().to_vec().into(),
                args: ["fs".to_owned()].into(),
                limits: Limits::default(),
                files: files.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("invoke");
    assert_eq!(invocation.outcome, Outcome::Success);
    String::from_utf8(invocation.stdout.to_vec()).expect("utf-8")
}

fn tree(dir: &std::path::Path) -> std::path::PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("sub")).expect("mkdir");
    std::fs::write(tree.join("a.txt"), "original").expect("write");
    std::fs::write(tree.join("sub/b.txt"), "b").expect("write");
    tree
}

#[tokio::test]
async fn a_core_modules_unchanged_copy_is_reused_and_a_changed_one_is_not() {
    let rt = runtime();
    let wasm = std::fs::read(kiln_guests::path("fs")).expect("fs guest");
    let (function, _) = rt.runtime.load_wasm(&wasm).expect("load");
    let files = files(&tree(rt.dir.path()));
    let read = "cat data/a.txt\nls data\ncat data/sub/b.txt\nls data/sub";
    for _ in 0..3 {
        let out = probe(&rt.runtime, &function, &files, read).await;
        assert!(out.contains("cat data/a.txt -> original"), "{out}");
    }
    assert_eq!(rt.runtime.writable_copies(), (1, 2));
    let out = probe(&rt.runtime, &function, &files, "append data/a.txt +").await;
    assert!(out.contains("-> ok"), "{out}");
    for _ in 0..2 {
        let out = probe(&rt.runtime, &function, &files, "cat data/a.txt").await;
        assert!(out.contains("cat data/a.txt -> original\n"), "{out}");
    }
    // The append's copy (the one reused last) was deleted; a new one was made
    // and then reused.
    assert_eq!(rt.runtime.writable_copies(), (2, 4));
}

#[tokio::test]
async fn a_components_copy_is_never_reused() {
    let rt = runtime();
    let wasm = std::fs::read(kiln_guests::component("fs")).expect("fs component");
    let (function, _) = rt.runtime.load_wasm(&wasm).expect("load");
    let files = files(&tree(rt.dir.path()));
    for _ in 0..3 {
        let out = probe(&rt.runtime, &function, &files, "cat data/a.txt").await;
        assert!(out.contains("cat data/a.txt -> original"), "{out}");
    }
    assert_eq!(rt.runtime.writable_copies(), (3, 0));
}
