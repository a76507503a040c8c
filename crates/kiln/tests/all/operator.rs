//! What an operator relies on, through a real `kiln up`: a private data
//! directory, logs that are there when looked at and never lost silently, an
//! admin token replaced offline when the credentials are lost, the nodes that
//! served on a store, and the seccomp filter the server runs under.

use crate::support::*;

/// Every entry under `dir` whose mode lets group or others in, with its mode.
fn not_private(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut open = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).expect("stat");
        if metadata.mode() & 0o077 != 0 {
            open.push((path.clone(), metadata.mode() & 0o777));
        }
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read_dir") {
                pending.push(entry.expect("entry").path());
            }
        }
    }
    open
}

#[test]
fn the_data_directory_and_everything_in_it_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    let server = home.start(&[]);
    server.ok(&["deploy", &guest("hello")]);
    assert_eq!(
        post(&server.function_url("default", "hello"), "x").status,
        200
    );
    let set = server.cli(&["kv", "set", "b", "k"], &[], b"v");
    assert!(set.status.success());
    server.stop();
    let data = home.data();
    let entries = std::fs::read_dir(&data).expect("data dir").count();
    assert!(entries >= 3, "the data directory holds {entries} entries");
    assert_eq!(not_private(&data), vec![]);

    // A data directory others can write is refused, and nothing is written.
    let shared = Home::new();
    std::fs::create_dir(shared.data()).expect("mkdir");
    std::fs::set_permissions(shared.data(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = shared.start_and_exit(&[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("can be written by its group and by others (mode 0777)"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(shared.data()).expect("read").count(), 0);

    // One others can only read (as an earlier Kiln left it) is made private.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(data.join("kiln.db"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let server = home.start(&[]);
    assert_eq!(
        post(&server.function_url("default", "hello"), "x").status,
        200
    );
    assert_eq!(not_private(&data), vec![]);
}

#[test]
fn logs_show_a_request_as_soon_as_it_has_answered() {
    let home = Home::new();
    let server = home.start(&[]);
    server.ok(&["deploy", &guest("hello")]);
    for i in 0..5 {
        let body = format!("call-{i}");
        assert_eq!(
            post(&server.function_url("default", "hello"), &body).status,
            200
        );
        // No waiting: the read has the node write what it queued first.
        let log = server.ok(&["logs", "hello", "-n", "1"]);
        assert!(log.contains(" 200 "), "call {i}: {log:?}");
        let all = server.ok(&["logs", "hello", "-n", "100"]);
        assert_eq!(all.matches(" 200 ").count(), i + 1, "{all}");
    }
}

#[test]
fn logs_under_overload_are_sampled_and_every_dropped_entry_is_counted() {
    let home = Home::new();
    // A queue of one entry: any burst overflows it.
    let server = home.start(&["--log-buffer", "1"]);
    server.ok(&["deploy", &guest("hello")]);
    let url = server.function_url("default", "hello");
    let logs_url = format!("{}/v1/functions/hello/logs?limit=1000", server.url);
    let token = home.token();
    let entries = || -> Vec<serde_json::Value> {
        let got = get_as(&logs_url, &token);
        serde_json::from_str(&got.body).expect("logs JSON")
    };
    let mut sent = 0;
    let dropped_entry = eventually("an entry counting dropped logs", || {
        // 8 threads × 10 requests per round; well under the 1000 kept.
        let urls = (0..8).map(|_| url.clone()).collect::<Vec<_>>();
        let threads: Vec<_> = urls
            .into_iter()
            .map(|url| {
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        assert_eq!(post(&url, "x").status, 200);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("client thread");
        }
        sent += 80;
        assert!(sent <= 800, "no entry was ever dropped with a queue of one");
        entries()
            .into_iter()
            .find(|e| e["outcome"] == "logs dropped")
    });
    assert!(
        dropped_entry["stderr"]
            .as_str()
            .is_some_and(|s| s.contains("invocation log entries dropped")),
        "{dropped_entry}"
    );
    // Every invocation is in the logs, or in a count.
    let all = entries();
    let kept = all
        .iter()
        .filter(|e| e["outcome"] != "logs dropped")
        .count();
    let counted: u64 = all
        .iter()
        .filter(|e| e["outcome"] == "logs dropped")
        .map(|e| {
            let text = e["stderr"].as_str().unwrap_or("");
            let n = text.split(' ').next().unwrap_or("");
            n.parse::<u64>()
                .unwrap_or_else(|_| panic!("no count in {text:?}"))
        })
        .sum();
    assert_eq!(
        kept as u64 + counted,
        sent,
        "{kept} kept, {counted} counted"
    );
    let shown = server.ok(&["logs", "hello", "-n", "1000"]);
    assert!(shown.contains("logs dropped"), "{shown}");
}

#[test]
fn a_lost_admin_token_is_replaced_offline_from_the_store() {
    let home = Home::new();
    let server = home.start(&[]);
    let old = home.admin_token();
    server.stop();
    std::fs::remove_file(home.config().join("kiln/credentials.json")).expect("rm credentials");
    let data = home.data().display().to_string();
    let reset =
        |extra: &[&str]| kiln_ok(&[&["admin", "reset-token", "--data", &data], extra].concat());
    let first = reset(&[]);
    assert!(first.starts_with("kiln_") && first != old, "{first}");

    let server = home.start(&[]);
    let tenants = |token: &str| get_as(&format!("{}/v1/tenants", server.url), token).status;
    assert_eq!(tenants(&first), 200);
    assert_eq!(tenants(&old), 200);
    // A leaked token is cut off with the others; the server may be running.
    let second = reset(&["--revoke-others"]);
    assert_eq!(tenants(&second), 200);
    assert_eq!(tenants(&first), 401);
    assert_eq!(tenants(&old), 401);

    // A directory that holds no store is refused, and left as it was.
    let empty = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["admin", "reset-token", "--data"])
        .arg(empty.path())
        .output()
        .expect("kiln admin reset-token");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no Kiln store"));
    assert_eq!(std::fs::read_dir(empty.path()).expect("read").count(), 0);
}

/// The `Seccomp` mode and filter count of a running process, from
/// `/proc/PID/status`.
fn seccomp_of(pid: i32) -> (String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    (field("Seccomp:"), field("Seccomp_filters:"))
}

#[test]
fn a_started_server_runs_under_its_seccomp_filter_unless_told_not_to() {
    let home = Home::new();
    let server = home.start(&[]);
    // Mode 2: a filter; two of them (clone3's ENOSYS and the allow-list).
    assert_eq!(seccomp_of(server.pid()), ("2".into(), "2".into()));
    // Serving works under it: a deploy compiles on new threads, an invocation
    // runs, the store writes.
    server.ok(&["deploy", &guest("hello")]);
    let answer = post(&server.function_url("default", "hello"), "seccomp");
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "Hello, seccomp!\n")
    );
    assert_eq!(server.stop().code(), Some(0));

    let server = home.start(&["--no-seccomp"]);
    assert_eq!(seccomp_of(server.pid()), ("0".into(), "0".into()));
}

#[test]
fn nodes_report_themselves_and_a_clean_stop_says_so() {
    let home = Home::new();
    let server = home.start(&[]);
    let admin = home.admin_token();
    let nodes_of = |server: &KilnServer| {
        let listed = get_as(&format!("{}/v1/admin/nodes", server.url), &admin);
        assert_eq!(listed.status, 200, "{}", listed.body);
        serde_json::from_str::<Vec<serde_json::Value>>(&listed.body).expect("nodes")
    };
    let name = server.url.trim_start_matches("http://").to_owned();
    let first = eventually("the node's first report", || {
        let nodes = nodes_of(&server);
        (nodes.len() == 1).then(|| nodes[0].clone())
    });
    assert_eq!(first["node"], name.as_str());
    assert_eq!(first["stopped"], false);
    assert!(first["status"]["loaded_functions"].is_u64(), "{first}");
    // A tenant token may not list them.
    let refused = get_as(&format!("{}/v1/admin/nodes", server.url), &home.token());
    assert_eq!(refused.status, 403);

    // Stopped cleanly, it says so; the node that replaces it reports too.
    assert!(server.stop().success());
    let server = home.start(&[]);
    let again = eventually("both nodes listed", || {
        let nodes = nodes_of(&server);
        (nodes.len() == 2).then_some(nodes)
    });
    let old = again
        .iter()
        .find(|n| n["node"] == name.as_str())
        .expect("the old node");
    assert_eq!(old["stopped"], true, "{old}");
    let new = again
        .iter()
        .find(|n| n["node"] != name.as_str())
        .expect("the new node");
    assert_eq!(new["stopped"], false, "{new}");
}
