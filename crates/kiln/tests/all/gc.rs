//! The blob collector through a real `kiln up`: what no version refers to any
//! more goes (module, bundle, compiled artifact, unpacked tree) once its grace
//! period is over, a dry run only says so, and deploys racing the collector
//! never lose a blob they refer to; in a cluster, the bucket's blobs and shared
//! artifacts go, and every node drops its own copies.

use crate::support::*;
use std::path::PathBuf;

/// A server that collects only when asked, with no grace period.
fn collecting_server(home: &Home) -> KilnServer {
    home.start(&["--gc-grace", "0s", "--gc-interval", "0s"])
}

/// A tree to mount, unique to `tag`.
fn tree(home: &Home, tag: &str) -> String {
    let root = home.dir.path().join(format!("tree-{tag}"));
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(root.join("note.txt"), format!("tree {tag}")).expect("write");
    format!("{}:/assets", root.display())
}

/// Deploys `module` as `name` mounting `dir`: the digests of the module and of
/// the bundle.
fn deploy(server: &KilnServer, name: &str, dir: &str, module: &str) -> (String, String) {
    let out = server.cli(&["deploy", "--name", name, "--dir", dir, module], &[], b"");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let info = server.ok(&["info", name, "--json"]);
    let info: serde_json::Value = serde_json::from_str(&info).expect("info JSON");
    let version = &info["versions"][0];
    let digest = |v: &serde_json::Value| v.as_str().expect("digest").to_owned();
    (
        digest(&version["digest"]),
        digest(&version["config"]["mounts"][0]["bundle"]),
    )
}

/// Every file and directory under `home`'s data directory named for one of
/// `digests` (blobs, artifacts, unpacked trees).
fn stored_copies(home: &Home, digests: &(String, String)) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![home.data()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&digests.0) || name.starts_with(&digests.1) {
                found.push(path);
            } else if path.is_dir() {
                pending.push(path);
            }
        }
    }
    found.sort();
    found
}

/// One collection pass through the API: its report.
fn gc(server: &KilnServer, token: &str, dry_run: bool) -> serde_json::Value {
    let url = format!("{}/v1/admin/gc?dry_run={dry_run}", server.url);
    let answer = answer(
        http()
            .post(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .send(""),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    serde_json::from_str(&answer.body).expect("report JSON")
}

#[test]
fn unreferenced_blobs_and_their_copies_go_and_a_dry_run_only_says_so() {
    let home = Home::new();
    let server = collecting_server(&home);
    let admin = home.admin_token();
    let kept = deploy(&server, "kept", &tree(&home, "kept"), &guest("hello"));
    let gone_dir = tree(&home, "gone");
    let gone = deploy(&server, "gone", &gone_dir, &guest("fs"));
    let gone_copies = stored_copies(&home, &gone);
    // Module, bundle, artifact, unpacked tree.
    assert_eq!(gone_copies.len(), 4, "{gone_copies:?}");
    server.ok(&["rm", "gone"]);

    // A dry run names the module, its bundle, the artifact and the unpacked
    // tree, and deletes nothing.
    let listed = server.ok(&["admin", "gc", "--dry-run"]);
    for kind in ["module", "bundle", "artifact", "unpacked bundle"] {
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with("would delete") && l.contains(kind)),
            "{kind} in {listed}"
        );
    }
    assert!(
        listed.contains(&gone.0) && listed.contains(&gone.1),
        "{listed}"
    );
    assert!(
        !listed.contains(&kept.0) && !listed.contains(&kept.1),
        "{listed}"
    );
    assert_eq!(stored_copies(&home, &gone), gone_copies);
    let status = get_as(&format!("{}/v1/status", server.url), &admin);
    let status: serde_json::Value = serde_json::from_str(&status.body).expect("status");
    let reclaimable = status["gc"]["reclaimable_bytes"]
        .as_u64()
        .expect("reclaimable");
    assert!(reclaimable > 1024, "{status}");

    // A pass deletes them all; what a version refers to stays and serves.
    let report = gc(&server, &admin, false);
    assert!(report["summary"]["deleted_bytes"].as_u64() >= Some(reclaimable));
    assert_eq!(stored_copies(&home, &gone), Vec::<PathBuf>::new());
    assert!(!stored_copies(&home, &kept).is_empty());
    let status = get_as(&format!("{}/v1/status", server.url), &admin);
    let status: serde_json::Value = serde_json::from_str(&status.body).expect("status");
    assert_eq!(status["gc"]["reclaimable_bytes"], 0, "{status}");
    assert_eq!(
        post(&server.function_url("default", "kept"), "gc").status,
        200
    );

    // Deployed again, it is uploaded again, and survives a restart.
    let again = deploy(&server, "gone", &gone_dir, &guest("fs"));
    assert_eq!(again, gone);
    server.stop();
    let server = collecting_server(&home);
    assert_eq!(gc(&server, &admin, false)["summary"]["deleted_bytes"], 0);
    let probe = post(
        &server.function_url("default", "gone"),
        "cat /assets/note.txt",
    );
    assert_eq!(probe.status, 200, "{}", probe.body);
    assert!(probe.body.contains("tree gone"), "{}", probe.body);
}

#[test]
fn deploys_racing_the_collector_never_lose_a_blob_they_refer_to() {
    let home = Home::new();
    let server = collecting_server(&home);
    let admin = home.admin_token();
    let dir = tree(&home, "raced");
    let done = std::sync::atomic::AtomicBool::new(false);
    let collected = std::thread::scope(|scope| {
        let collector = scope.spawn(|| {
            let mut deleted_modules = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let report = gc(&server, &admin, false);
                let items = report["items"].as_array().cloned().unwrap_or_default();
                deleted_modules += items
                    .iter()
                    .filter(|i| i["kind"] == "module" && i["deleted"] == true)
                    .count();
            }
            deleted_modules
        });
        for round in 0..25 {
            let (digest, _) = deploy(&server, "raced", &dir, &guest("hello"));
            // Referred to by a version: its module and bundle are stored, now
            // and whatever the collector does meanwhile.
            let module = home.data().join(format!("modules/{digest}.wasm"));
            assert!(
                module.is_file(),
                "round {round}: {} is gone",
                module.display()
            );
            let answer = post(&server.function_url("default", "raced"), "race");
            assert_eq!(answer.status, 200, "round {round}: {}", answer.body);
            server.ok(&["rm", "raced"]);
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        collector.join().expect("collector thread")
    });
    // The race was run: the collector deleted the module between rounds.
    assert!(collected > 0, "the collector never deleted the module");
    let (digest, _) = deploy(&server, "raced", &dir, &guest("hello"));
    server.stop();
    let server = collecting_server(&home);
    gc(&server, &admin, false);
    assert!(home.data().join(format!("modules/{digest}.wasm")).is_file());
    assert_eq!(
        post(&server.function_url("default", "raced"), "x").status,
        200
    );
}

#[test]
#[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
fn a_cluster_collects_the_bucket_and_every_node_its_own_copies() {
    let cluster =
        crate::cluster::Cluster::start_with(2, &["--gc-grace", "0s", "--gc-interval", "0s"]);
    let admin = cluster.homes[0].admin_token();
    let dir = tree(&cluster.homes[0], "shared");
    let digests = deploy(cluster.node(0), "gone", &dir, &guest("fs"));
    // Node 1 serves it too: it downloads the artifact and unpacks the tree.
    let url = cluster.node(1).function_url("default", "gone");
    let probe = post(&url, "cat /assets/note.txt");
    assert!(probe.body.contains("tree shared"), "{}", probe.body);
    let copies_on = |node: usize| stored_copies(&cluster.homes[node], &digests);
    assert_eq!(
        copies_on(1).len(),
        2,
        "artifact and tree: {:?}",
        copies_on(1)
    );
    let bucket = cluster.bucket();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let in_bucket = || {
        runtime.block_on(async {
            let blobs = kiln_store::BlobStore::list(&bucket).await.expect("list");
            let shared = kiln_store::BlobStore::shared_artifacts(&bucket)
                .await
                .expect("list artifacts");
            let named = |hex: String| hex == digests.0 || hex == digests.1;
            let blobs = blobs
                .iter()
                .filter(|b| named(b.blob.digest.to_hex()))
                .count();
            let shared = shared.iter().filter(|a| named(a.module.to_hex())).count();
            (blobs, shared)
        })
    };
    assert_eq!(in_bucket(), (2, 1));
    cluster.cli(0, &["rm", "gone"]);

    // Node 0's pass deletes the bucket's objects and its own copies.
    let report = gc(cluster.node(0), &admin, false);
    assert!(
        report["summary"]["deleted_bytes"].as_u64() > Some(0),
        "{report}"
    );
    assert_eq!(in_bucket(), (0, 0));
    assert_eq!(copies_on(0), Vec::<PathBuf>::new());
    // Node 1's copies go at its own pass (their blobs are gone).
    assert_eq!(copies_on(1).len(), 2);
    let report = gc(cluster.node(1), &admin, false);
    let kinds: Vec<&str> = report["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["deleted"] == true)
        .filter_map(|i| i["kind"].as_str())
        .collect();
    assert_eq!(kinds, vec!["artifact", "unpacked-bundle"], "{report}");
    assert_eq!(copies_on(1), Vec::<PathBuf>::new());
}
