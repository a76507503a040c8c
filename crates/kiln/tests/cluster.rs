//! Kiln on the cluster stores: `kiln up --database postgres://...` against the
//! project's throwaway PostgreSQL on loopback.

mod support;

use support::*;

#[test]
fn a_node_on_postgres_deploys_serves_meters_and_keeps_it_all_across_a_restart() {
    let database = postgres_database("kiln_node");
    let home = Home::new();
    let flags = ["--database", database.as_str()];
    let server = home.start(&flags);
    server.ok(&["deploy", &guest("hello")]);
    server.ok(&["deploy", &guest("echo-env"), "--name", "hello"]);
    server.ok(&["rollback", "hello"]);
    let url = server.function_url("default", "hello");
    for i in 0..5 {
        let answer = post(&url, &i.to_string());
        assert_eq!(answer.body, format!("Hello, {i}!\n"));
    }
    assert!(server.stop().success());
    // Nothing of the metadata is in the data directory.
    assert!(!home.data().join("kiln.db").exists());

    let server = home.start(&flags);
    let info = server.ok(&["info", "hello"]);
    assert!(info.contains("* v1") && info.contains("v2"), "{info}");
    let url = server.function_url("default", "hello");
    assert_eq!(post(&url, "again").body, "Hello, again!\n");
    let usage = get_as(&format!("{}/v1/usage", server.url), &home.token());
    let usage: serde_json::Value = serde_json::from_str(&usage.body).expect("usage JSON");
    assert_eq!(usage["total"]["units"]["requests"], 5);
    // The five before the restart, and the one after it once written.
    eventually("six invocations in the log", || {
        let logs = server.ok(&["logs", "hello", "-n", "10"]);
        (logs.matches(" v1 200 exited successfully").count() == 6).then_some(())
    });
}

#[test]
fn an_unreachable_database_is_a_clear_error_at_start() {
    let home = Home::new();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["up", "--listen", "127.0.0.1:0", "--data"])
        .arg(home.data())
        .args(["--database", "postgres://kiln@127.0.0.1:1/nothing"])
        .env("XDG_CONFIG_HOME", home.config())
        .output()
        .expect("kiln up");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("cannot open the PostgreSQL metadata store"),
        "{stderr}"
    );
}
