//! Tenants against each other and against the host, through a real `kiln up`:
//! a guest that tries every way out of its sandbox finds none, memory one tenant
//! wrote is never seen by the next instance in the same slot, and every route of
//! the control API refuses a token of another tenant (or of the wrong kind).

use crate::support::*;
use std::net::TcpListener;

/// Deploys the `escape` guest (a core module or a component) and checks that
/// every attempt it makes is refused, with nothing reaching a loopback listener
/// it was told to connect to and only its own environment visible.
fn escape_finds_no_way_out(server: &KilnServer, name: &str, module: &str) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let target = listener.local_addr().expect("addr").to_string();
    server.ok(&["deploy", "--name", name, "--env", "GIVEN=1", module]);
    let answer = post(&server.function_url("default", name), &target);
    assert_eq!(answer.status, 200, "{}", answer.body);

    let lines: Vec<&str> = answer.body.lines().collect();
    let attempts = &lines[..lines.len() - 1];
    assert_eq!(attempts.len(), 13, "{}", answer.body);
    for attempt in attempts {
        assert!(attempt.contains(": refused ("), "{name}: {attempt}");
    }
    assert!(
        answer.body.contains(&format!("connect {target}: refused")),
        "{}",
        answer.body
    );
    // What the deploy set and the request's own variables; nothing of the
    // server's environment (which is this test's, and more).
    let given: Vec<&str> = lines
        .last()
        .and_then(|l| l.strip_prefix("env: "))
        .expect("env line")
        .split(',')
        .collect();
    assert_eq!(given[0], "GIVEN");
    assert!(given.contains(&"REQUEST_METHOD"), "{given:?}");
    let server_side: Vec<String> = std::env::vars_os()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .chain(["PATH", "HOME", "XDG_CONFIG_HOME", "KILN_LOG"].map(String::from))
        .collect();
    for name in &given {
        assert!(
            !server_side.iter().any(|s| s == name),
            "{name}: the server's environment leaked into the guest"
        );
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("{name} reached the host's loopback listener: {other:?}"),
    }
}

#[test]
fn a_guest_finds_no_host_filesystem_network_or_environment() {
    let home = Home::new();
    let server = home.start(&[]);
    assert!(!std::path::Path::new("/tmp/kiln-escape").exists());
    escape_finds_no_way_out(&server, "escape", &guest("escape"));
    let component = kiln_guests::component("escape").display().to_string();
    escape_finds_no_way_out(&server, "escape-p2", &component);
    assert!(!std::path::Path::new("/tmp/kiln-escape").exists());
}

/// Grows memory to 64 pages (4 MiB: past the 2 MiB a pool slot keeps resident,
/// so both ways of resetting a slot are crossed) and fills it with 0xAB.
const WRITER: &str = r#"(module (memory (export "memory") 1)
  (func (export "_start")
    (drop (memory.grow (i32.const 63)))
    (memory.fill (i32.const 0) (i32.const 0xAB) (i32.const 0x400000))))"#;

/// Grows memory to 64 pages and exits with code 1 if any byte of it is not zero.
const READER: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $at i32)
    (drop (memory.grow (i32.const 63)))
    (loop $scan
      (if (i64.ne (i64.load (local.get $at)) (i64.const 0))
        (then (call $exit (i32.const 1))))
      (local.set $at (i32.add (local.get $at) (i32.const 8)))
      (br_if $scan (i32.lt_u (local.get $at) (i32.const 0x400000))))))"#;

#[test]
fn no_memory_crosses_requests_or_tenants_in_a_reused_slot() {
    let home = Home::new();
    // One instance slot: every invocation reuses the same memory.
    let server = home.start(&["--max-instances", "1"]);
    let write = |name: &str, text: &str| {
        let path = home.dir.path().join(name);
        std::fs::write(&path, wat::parse_str(text).expect("wat")).expect("write");
        path.display().to_string()
    };
    let writer = write("writer.wasm", WRITER);
    let reader = write("reader.wasm", READER);
    let bee = server.ok(&["tenants", "create", "bee"]).trim().to_owned();
    server.ok(&["deploy", "--name", "writer", &writer]);
    let deployed = server.cli(
        &["deploy", "--name", "reader", &reader],
        &[("KILN_TOKEN", &bee)],
        b"",
    );
    assert!(deployed.status.success());
    server.ok(&["deploy", "--name", "reader", &reader]);

    for round in 0..3 {
        let wrote = post(&server.function_url("default", "writer"), "");
        assert_eq!(wrote.status, 200, "round {round}: {}", wrote.body);
        for tenant in ["bee", "default"] {
            let read = post(&server.function_url(tenant, "reader"), "");
            assert_eq!(
                read.status, 200,
                "round {round}: {tenant}'s reader saw the writer's memory: {}",
                read.body
            );
        }
    }
}

/// One request of the control API.
struct Call {
    method: &'static str,
    path: String,
    body: &'static str,
}

fn call(server: &KilnServer, token: &str, call: &Call) -> Answer {
    let url = format!("{}{}", server.url, call.path);
    let auth = format!("Bearer {token}");
    let agent = http();
    answer(match call.method {
        "GET" => agent.get(&url).header("Authorization", &auth).call(),
        "DELETE" => agent.delete(&url).header("Authorization", &auth).call(),
        "POST" => agent
            .post(&url)
            .header("Authorization", &auth)
            .send(call.body.as_bytes()),
        "PUT" => agent
            .put(&url)
            .header("Authorization", &auth)
            .send(call.body.as_bytes()),
        other => panic!("no such method {other}"),
    })
}

fn c(method: &'static str, path: impl Into<String>, body: &'static str) -> Call {
    Call {
        method,
        path: path.into(),
        body,
    }
}

#[test]
fn every_route_refuses_a_foreign_or_wrong_kind_of_token() {
    let home = Home::new();
    let server = home.start(&[]);
    let owner = home.token();
    let admin = home.admin_token();
    // Two versions, so that a rollback would have something to do.
    server.ok(&["deploy", "--private", "--name", "secret", &guest("hello")]);
    server.ok(&[
        "deploy",
        "--private",
        "--name",
        "secret",
        &guest("echo-env"),
    ]);
    let bee = server.ok(&["tenants", "create", "bee"]).trim().to_owned();
    let tokens: serde_json::Value =
        serde_json::from_str(&call(&server, &owner, &c("GET", "/v1/tokens", "")).body)
            .expect("tokens JSON");
    let owner_token_id = tokens[0]["id"].as_i64().expect("token id");
    let before = server.ok(&["info", "secret", "--json"]);

    // Another tenant: A's function does not exist for it, and nothing it can
    // name reaches A's tokens, tenants, quotas, usage or metrics.
    let foreign: Vec<(Call, u16)> = vec![
        (c("GET", "/v1/functions/secret", ""), 404),
        (c("DELETE", "/v1/functions/secret", ""), 404),
        (c("POST", "/v1/functions/secret/rollback", ""), 404),
        (c("GET", "/v1/functions/secret/logs", ""), 404),
        (c("DELETE", format!("/v1/tokens/{owner_token_id}"), ""), 404),
        (c("GET", "/v1/tenants", ""), 403),
        (c("POST", "/v1/tenants", r#"{"name":"evil"}"#), 403),
        (c("GET", "/v1/tenants/default/quota", ""), 403),
        (
            c(
                "PUT",
                "/v1/tenants/bee/quota",
                r#"{"requests_per_month":null}"#,
            ),
            403,
        ),
        (c("GET", "/v1/usage?tenant=default", ""), 403),
        (c("GET", "/v1/status", ""), 403),
        (c("POST", "/v1/admin/gc?dry_run=true", ""), 403),
        (c("POST", "/v1/admin/gc", ""), 403),
        (c("GET", "/metrics", ""), 403),
        (c("POST", "/fn/default/secret", ""), 403),
    ];
    for (request, status) in &foreign {
        let got = call(&server, &bee, request);
        assert_eq!(
            got.status, *status,
            "{} {} with another tenant's token: {}",
            request.method, request.path, got.body
        );
    }
    // What it can list is its own only.
    let listed = call(&server, &bee, &c("GET", "/v1/functions", ""));
    assert_eq!((listed.status, listed.body.as_str()), (200, "[]"));
    let listed = call(&server, &bee, &c("GET", "/v1/tokens", ""));
    assert!(!listed.body.contains(&format!("\"id\":{owner_token_id},")));
    let whoami = call(&server, &bee, &c("GET", "/v1/whoami", ""));
    assert_eq!(whoami.body, r#"{"admin":false,"tenant":"bee"}"#);

    // The admin token is no tenant: tenant routes refuse it.
    let tenant_only = [
        c("GET", "/v1/functions", ""),
        c("GET", "/v1/functions/secret", ""),
        c("DELETE", "/v1/functions/secret", ""),
        c("POST", "/v1/functions/secret/versions", "\0asm"),
        c("POST", "/v1/functions/secret/rollback", ""),
        c("GET", "/v1/functions/secret/logs", ""),
        c("GET", "/v1/quota", ""),
    ];
    for request in &tenant_only {
        let got = call(&server, &admin, request);
        assert_eq!(
            got.status, 403,
            "{} {} with the admin token: {}",
            request.method, request.path, got.body
        );
    }

    // Nothing of A's changed, and its token still works.
    assert_eq!(server.ok(&["info", "secret", "--json"]), before);
    let own = answer(
        http()
            .post(server.function_url("default", "secret"))
            .header("Authorization", format!("Bearer {owner}"))
            .send("A"),
    );
    assert_eq!(own.status, 200, "{}", own.body);
}

#[test]
fn tokens_are_stored_only_as_hashes() {
    let home = Home::new();
    let server = home.start(&[]);
    let created = server.ok(&["tokens", "create", "ci"]).trim().to_owned();
    let mut secrets = vec![home.token(), home.admin_token(), created];
    secrets.retain(|s| s.starts_with("kiln_"));
    assert_eq!(secrets.len(), 3);
    server.stop();
    // No file of the data directory holds any secret, in any form a reader of
    // the disk could use: the text, or its hex part.
    let mut stack = vec![home.data()];
    let mut read = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).expect("read");
            read += 1;
            for secret in &secrets {
                let hex = secret.trim_start_matches("kiln_").as_bytes();
                assert!(
                    !bytes.windows(hex.len()).any(|w| w == hex),
                    "{} holds a token in the clear",
                    path.display()
                );
            }
        }
    }
    assert!(read > 0);
}

#[test]
fn the_server_runs_without_capabilities_and_cannot_gain_privileges() {
    let home = Home::new();
    let server = home.start(&[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    assert_eq!(field("NoNewPrivs:"), "1");
    for set in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
        assert_eq!(field(set), "0000000000000000", "{set}");
    }
    // Dropping from the bounding set needs a privileged start (as root, like
    // these tests in CI); unprivileged, there is nothing in it to use anyway.
    if privileged() {
        assert_eq!(field("CapBnd:"), "0000000000000000");
    }
    // And it still serves.
    server.ok(&["deploy", &guest("hello")]);
    assert_eq!(
        post(&server.function_url("default", "hello"), "x").status,
        200
    );
}

/// Whether this test process has any effective capability.
fn privileged() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("CapEff:")
                    .map(|v| v.trim() != "0000000000000000")
            })
        })
        .unwrap_or(false)
}
