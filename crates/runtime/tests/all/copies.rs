//! Writable copies of a mounted tree, through `Runtime::invoke` and the `fs`
//! example guest, as a core module and as a component: a copy left unchanged is
//! handed to the next invocation, a changed one is not, and no invocation sees
//! what another wrote; the same for scratch directories, which are copies of
//! an empty tree.

use crate::runtime;
use kiln_runtime::{Files, HostMount, Limits, Outcome, Request, ScratchLimits, WritableCopies};
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

/// The `fs` guest's invocation for `commands` (one per line).
async fn run(
    rt: &kiln_runtime::Runtime,
    function: &kiln_runtime::Function,
    files: &Arc<Files>,
    commands: &str,
) -> kiln_runtime::Invocation {
    rt.invoke(
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
    .expect("invoke")
}

/// What the `fs` guest printed for `commands`, having succeeded.
async fn probe(
    rt: &kiln_runtime::Runtime,
    function: &kiln_runtime::Function,
    files: &Arc<Files>,
    commands: &str,
) -> String {
    let invocation = run(rt, function, files, commands).await;
    assert_eq!(invocation.outcome, Outcome::Success);
    String::from_utf8(invocation.stdout.to_vec()).expect("utf-8")
}

/// Copies made, reused, idle.
fn counts(rt: &kiln_runtime::Runtime) -> (u64, u64, u64) {
    let WritableCopies {
        made, reused, idle, ..
    } = rt.writable_copies();
    (made, reused, idle)
}

/// Waits (on the blocking pool's work, with a deadline) until a copy is idle:
/// the one made ahead to replace a copy not kept.
async fn made_ahead(rt: &kiln_runtime::Runtime) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rt.writable_copies().idle == 0 {
        assert!(std::time::Instant::now() < deadline, "no copy made ahead");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

fn tree(dir: &std::path::Path) -> std::path::PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("sub")).expect("mkdir");
    std::fs::write(tree.join("a.txt"), "original").expect("write");
    std::fs::write(tree.join("sub/b.txt"), "b").expect("write");
    tree
}

/// Three reads, an append, two reads: the first copy serves the three reads
/// and the append; the append's is deleted, a new one is made ahead of the
/// next invocation and serves the last two.
async fn an_unchanged_copy_is_reused_and_a_changed_one_is_not(wasm: &[u8]) {
    let rt = runtime();
    let (function, _) = rt.runtime.load_wasm(wasm).expect("load");
    let files = files(&tree(rt.dir.path()));
    let read = "cat data/a.txt\nls data\ncat data/sub/b.txt\nls data/sub";
    for _ in 0..3 {
        let out = probe(&rt.runtime, &function, &files, read).await;
        assert!(out.contains("cat data/a.txt -> original"), "{out}");
    }
    assert_eq!(counts(&rt.runtime), (1, 2, 1));
    let out = probe(&rt.runtime, &function, &files, "append data/a.txt +").await;
    assert!(out.contains("-> ok"), "{out}");
    made_ahead(&rt.runtime).await;
    for _ in 0..2 {
        let out = probe(&rt.runtime, &function, &files, "cat data/a.txt").await;
        assert!(out.contains("cat data/a.txt -> original\n"), "{out}");
    }
    assert_eq!(counts(&rt.runtime), (2, 5, 1));
}

#[tokio::test]
async fn a_core_modules_unchanged_copy_is_reused_and_a_changed_one_is_not() {
    let wasm = std::fs::read(kiln_guests::path("fs")).expect("fs guest");
    an_unchanged_copy_is_reused_and_a_changed_one_is_not(&wasm).await;
}

#[tokio::test]
async fn a_components_unchanged_copy_is_reused_and_a_changed_one_is_not() {
    let wasm = std::fs::read(kiln_guests::component("fs")).expect("fs component");
    an_unchanged_copy_is_reused_and_a_changed_one_is_not(&wasm).await;
}

#[tokio::test]
async fn a_guest_filling_its_copy_on_write_copy_is_stopped_at_its_bound() {
    let rt = runtime();
    let wasm = std::fs::read(kiln_guests::path("fs")).expect("fs guest");
    let (function, _) = rt.runtime.load_wasm(&wasm).expect("load");
    let tree = tree(rt.dir.path());
    let files = files(&tree);
    // What is written to an overlay copy counts, with its tree, against the
    // invocation's bound (1 MiB here).
    let invocation = run(&rt.runtime, &function, &files, "fill data/big 2000000").await;
    assert!(
        matches!(invocation.outcome, Outcome::ScratchLimit(_)),
        "{:?}",
        invocation.outcome
    );
    assert!(!tree.join("big").exists());
    let copies = rt.runtime.writable_copies();
    assert_eq!(copies.overlaid, copies.made, "every copy an overlay here");
    made_ahead(&rt.runtime).await;
    let next = run(&rt.runtime, &function, &files, "ls data").await;
    assert_eq!(
        String::from_utf8_lossy(&next.stdout),
        "ls data -> a.txt,sub\n"
    );
}

#[tokio::test]
async fn a_copy_is_not_reused_after_a_guest_stopped_by_a_limit() {
    let rt = runtime();
    let wasm = std::fs::read(kiln_guests::path("fs")).expect("fs guest");
    let (function, _) = rt.runtime.load_wasm(&wasm).expect("load");
    let files = files(&tree(rt.dir.path()));
    probe(&rt.runtime, &function, &files, "cat data/a.txt").await;
    // Over its scratch bound: stopped, though it changed nothing in the copy.
    let commands = "cat data/a.txt\nfill /tmp/big 2000000";
    let invocation = run(&rt.runtime, &function, &files, commands).await;
    assert!(
        matches!(invocation.outcome, Outcome::ScratchLimit(_)),
        "{:?}",
        invocation.outcome
    );
    made_ahead(&rt.runtime).await;
    probe(&rt.runtime, &function, &files, "cat data/a.txt").await;
    assert_eq!(counts(&rt.runtime), (2, 2, 1));
}

#[tokio::test]
async fn an_untouched_scratch_directory_is_reused_and_a_written_one_is_not() {
    let rt = runtime();
    let wasm = std::fs::read(kiln_guests::path("fs")).expect("fs guest");
    let (function, _) = rt.runtime.load_wasm(&wasm).expect("load");
    let files = Arc::new(Files {
        mounts: vec![],
        scratch: Some(ScratchLimits {
            bytes: 1 << 20,
            entries: 100,
            guest: "/tmp".into(),
        }),
    });
    let scratch = |rt: &kiln_runtime::Runtime| {
        let WritableCopies {
            made, reused, idle, ..
        } = rt.scratch_directories();
        (made, reused, idle)
    };
    for _ in 0..3 {
        let out = probe(&rt.runtime, &function, &files, "ls /tmp").await;
        assert_eq!(out, "ls /tmp -> \n");
    }
    assert_eq!(scratch(&rt.runtime), (1, 2, 1));
    let out = probe(&rt.runtime, &function, &files, "write /tmp/x hi\nls /tmp").await;
    assert!(out.contains("ls /tmp -> x\n"), "{out}");
    // Written: deleted, and an empty one made ahead of the next invocation.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rt.runtime.scratch_directories().idle == 0 {
        assert!(std::time::Instant::now() < deadline, "none made ahead");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let out = probe(&rt.runtime, &function, &files, "ls /tmp").await;
    assert_eq!(out, "ls /tmp -> \n");
    assert_eq!(scratch(&rt.runtime), (2, 4, 1));
    // Writable copies are counted apart.
    assert_eq!(counts(&rt.runtime), (0, 0, 0));
}
