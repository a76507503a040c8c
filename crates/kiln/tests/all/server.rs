//! The platform on one machine, as a user meets it: a real `kiln up` on a loopback
//! port, the `kiln` CLI to deploy, plain HTTP to call.

use crate::support::*;
use std::io::{Read, Write};

#[test]
fn deploy_call_redeploy_roll_back_and_delete() {
    let home = Home::new();
    let server = home.start(&[]);
    let said = server.ok(&["deploy", &guest("hello")]);
    let url = server.function_url("default", "hello");
    assert!(said.starts_with("deployed hello v1 ("), "{said}");
    assert!(said.trim_end().ends_with(&format!("->  {url}")), "{said}");

    let hello = post(&url, "world");
    assert_eq!(
        (hello.status, hello.body.as_str()),
        (200, "Hello, world!\n")
    );
    assert_eq!(hello.header("kiln-outcome"), Some("success"));

    // A changed module under the same name is a new version, served at once.
    let said = server.ok(&["deploy", "--name", "hello", &guest("echo-env")]);
    assert!(said.starts_with("deployed hello v2 ("), "{said}");
    assert!(post(&url, "").body.starts_with("ARG 0=hello\n"));

    assert_eq!(server.ok(&["rollback", "hello"]), "hello now serves v1\n");
    assert_eq!(post(&url, "again").body, "Hello, again!\n");
    server.ok(&["rollback", "hello", "2"]);
    assert!(post(&url, "").body.starts_with("ARG 0=hello\n"));

    let info = server.ok(&["info", "hello"]);
    assert!(info.contains("* v2") && info.contains("  v1"), "{info}");
    assert!(server.ok(&["list"]).contains(&url));

    assert_eq!(server.ok(&["rm", "hello"]), "deleted hello\n");
    let gone = post(&url, "world");
    assert_eq!(gone.status, 404);
    assert_eq!(gone.body, "no function default/hello\n");
}

#[test]
fn the_cgi_environment_reaches_the_function_without_credentials() {
    let home = Home::new();
    let server = home.start(&[]);
    server.ok(&[
        "deploy",
        &guest("echo-env"),
        "--env",
        "GREETING=hi there",
        "--arg",
        "extra",
    ]);
    let token = home.token();
    let answer = answer(
        http()
            .post(format!(
                "{}/a/b?x=1&y=two",
                server.function_url("default", "echo-env")
            ))
            .header("Content-Type", "text/plain")
            .header("X-Custom", "yes")
            .header("Authorization", format!("Bearer {token}"))
            .send("body!"),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let lines: Vec<&str> = answer.body.lines().collect();
    for expected in [
        "ARG 0=echo-env",
        "ARG 1=extra",
        "ENV GREETING=hi there",
        "ENV REQUEST_METHOD=POST",
        "ENV SCRIPT_NAME=/fn/default/echo-env",
        "ENV PATH_INFO=/a/b",
        "ENV QUERY_STRING=x=1&y=two",
        "ENV CONTENT_TYPE=text/plain",
        "ENV CONTENT_LENGTH=5",
        "ENV HTTP_X_CUSTOM=yes",
        "ENV GATEWAY_INTERFACE=CGI/1.1",
        "ENV REMOTE_ADDR=127.0.0.1",
    ] {
        assert!(
            lines.contains(&expected),
            "missing {expected:?} in:\n{}",
            answer.body
        );
    }
    assert!(!answer.body.contains("AUTHORIZATION"), "{}", answer.body);
    assert!(
        !answer.body.contains(&token),
        "the token leaked to the guest"
    );
}

#[test]
fn cgi_functions_set_status_headers_redirects_and_cookies() {
    let home = Home::new();
    let server = home.start(&[]);
    server.ok(&["deploy", "--cgi", &guest("cgi")]);
    let url = server.function_url("default", "cgi");

    let created = get(&url);
    assert_eq!(created.status, 201);
    assert_eq!(created.header("content-type"), Some("application/json"));
    assert_eq!(created.body, "{\"created\":true}\n");

    let redirect = get(&format!("{url}?redirect"));
    assert_eq!(redirect.status, 302);
    assert_eq!(redirect.header("location"), Some("/elsewhere"));

    let cookies = get(&format!("{url}?cookies"));
    assert_eq!(cookies.status, 200);
    let set: Vec<_> = cookies
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(set, ["session=abc; HttpOnly", "theme=dark"]);
    assert_eq!(cookies.body, "two cookies\n");
}

#[test]
fn each_way_of_failing_has_its_own_status_and_stderr_stays_in_the_logs() {
    let home = Home::new();
    let server = home.start(&[]);
    server.ok(&["deploy", &guest("exit3")]);
    server.ok(&["deploy", &guest("trap")]);
    server.ok(&["deploy", "--timeout", "300ms", &guest("spin")]);
    server.ok(&["deploy", "--memory", "32MiB", &guest("memory-hog")]);
    server.ok(&["deploy", &guest("stdout-flood")]);
    let cases = [
        ("exit3", 502, "exit", "function exited with code 3\n"),
        (
            "trap",
            500,
            "trap",
            "function trapped: wasm `unreachable` instruction executed\n",
        ),
        (
            "spin",
            504,
            "timeout",
            "function exceeded its time limit of 300ms\n",
        ),
        (
            "memory-hog",
            507,
            "memory",
            "function exceeded its memory limit of 32 MiB\n",
        ),
        (
            "stdout-flood",
            509,
            "output",
            "function exceeded its output limit of 16 MiB\n",
        ),
    ];
    for (name, status, kind, body) in cases {
        let answer = post(&server.function_url("default", name), "");
        assert_eq!(answer.status, status, "{name}: {}", answer.body);
        assert_eq!(answer.header("kiln-outcome"), Some(kind), "{name}");
        assert_eq!(answer.body, body, "{name}");
    }

    // The guest's stderr is in its logs, never in the response.
    let logs = eventually("exit3's logs", || {
        let out = server.ok(&["logs", "exit3"]);
        out.contains("exit3: giving up with code 3").then_some(out)
    });
    assert!(logs.contains("v1 502 exited with code 3"), "{logs}");
    let trap_logs = eventually("trap's logs", || {
        let out = server.ok(&["logs", "trap"]);
        out.contains("dividing by zero on purpose").then_some(out)
    });
    assert!(trap_logs.contains("500 trapped"), "{trap_logs}");
}

#[test]
fn a_tenant_cannot_touch_another_tenants_functions() {
    let home = Home::new();
    let server = home.start(&[]);
    let a_token = home.token();
    server.ok(&["deploy", "--private", "--name", "secret", &guest("hello")]);
    let made = server.cli(&["tenants", "create", "bee"], &[], b"");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let b_token = String::from_utf8_lossy(&made.stdout).trim().to_owned();
    assert!(b_token.starts_with("kiln_"));
    let as_b = |args: &[&str]| server.cli(args, &[("KILN_TOKEN", &b_token)], b"");
    let fails = |out: std::process::Output, message: &str| {
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "expected {message:?} in {err}");
    };

    // B sees nothing of A's and cannot reach it by name.
    assert!(!String::from_utf8_lossy(&as_b(&["list"]).stdout).contains("secret"));
    fails(
        as_b(&["info", "secret"]),
        "no function named \"secret\" (404)",
    );
    fails(as_b(&["logs", "secret"]), "(404)");
    fails(as_b(&["rm", "secret"]), "(404)");
    fails(as_b(&["rollback", "secret"]), "(404)");
    // Deploying the same name makes B's own function; A's is untouched.
    let out = as_b(&["deploy", "--name", "secret", &guest("exit3")]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("/fn/bee/secret"));

    // A private function refuses anonymous and foreign callers.
    let url = server.function_url("default", "secret");
    assert_eq!(post(&url, "x").status, 401);
    let foreign = answer(
        http()
            .post(&url)
            .header("Authorization", format!("Bearer {b_token}"))
            .send("x"),
    );
    assert_eq!(foreign.status, 403);
    let own = answer(
        http()
            .post(&url)
            .header("Authorization", format!("Bearer {a_token}"))
            .send("x"),
    );
    assert_eq!((own.status, own.body.as_str()), (200, "Hello, x!\n"));

    // Admin routes refuse tenant tokens; tenant routes refuse the admin token.
    assert_eq!(
        get_as(&format!("{}/v1/tenants", server.url), &a_token).status,
        403
    );
    let admin = home.admin_token();
    assert_eq!(
        get_as(&format!("{}/v1/functions", server.url), &admin).status,
        403
    );

    // A revoked token is refused.
    let listed = as_b(&["tokens", "list"]);
    let id = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .expect("a token id");
    assert!(as_b(&["tokens", "revoke", &id]).status.success());
    fails(as_b(&["list"]), "invalid or revoked token (401)");
    assert_eq!(
        get_as(&format!("{}/v1/functions", server.url), "kiln_bogus").status,
        401
    );
    assert_eq!(get(&format!("{}/v1/functions", server.url)).status, 401);
}

#[test]
fn bad_deploys_are_refused_clearly_and_store_nothing() {
    let home = Home::new();
    let server = home.start(&["--max-module-size", "40KiB"]);
    let scratch = home.dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = scratch.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    let hello = std::fs::read(guest("hello")).unwrap();
    let exit3 = std::fs::read(guest("exit3")).unwrap();
    assert!(
        hello.len() > 40 << 10 && exit3.len() < 40 << 10,
        "fixture sizes changed"
    );
    let imports = wat::parse_str(
        r#"(module (import "env" "gpu_compute" (func)) (import "wasi_snapshot_preview1" "sock_teleport" (func))
           (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .unwrap();
    let huge_table = wat::parse_str(
        r#"(module (memory (export "memory") 1) (table 2000000 funcref) (func (export "_start")))"#,
    )
    .unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![write("table.wasm", &huge_table)],
            "the module does not fit Kiln's instance limits: table index 0 has a minimum element size of 2000000 which exceeds the limit of 1000000 (400)",
        ),
        (
            vec![write("notes.wasm", b"just text")],
            "not a WebAssembly binary",
        ),
        (
            vec![write("cut.wasm", &exit3[..exit3.len() / 2])],
            "truncated WebAssembly binary",
        ),
        (
            vec![write("imports.wasm", &imports)],
            "the module imports what Kiln does not provide: env (1: gpu_compute), wasi_snapshot_preview1 (1: sock_teleport) (400)",
        ),
        (
            vec![guest("hello")],
            "module is over the maximum module size of 40 KiB (413)",
        ),
        (
            vec![guest("exit3"), "--name".into(), "Bad_Name".into()],
            "invalid function name \"Bad_Name\"",
        ),
        (
            vec![guest("exit3"), "--memory".into(), "64GiB".into()],
            "memory limit must be between 1 byte and this server's maximum of 4 GiB",
        ),
    ];
    for (args, message) in cases {
        let mut argv = vec!["deploy"];
        argv.extend(args.iter().map(String::as_str));
        let out = server.cli(&argv, &[], b"");
        assert!(!out.status.success(), "{argv:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("kiln: ") && err.contains(message),
            "{argv:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    }
    let anonymous = server.cli(
        &["deploy", &guest("exit3")],
        &[("KILN_TOKEN", "kiln_nope")],
        b"",
    );
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("invalid or revoked token (401)"));
    let upload = answer(
        http()
            .post(format!("{}/v1/functions/x/versions", server.url))
            .send(&exit3[..]),
    );
    assert_eq!(upload.status, 401);

    // Nothing was stored: no function, no module, no staging leftovers.
    assert_eq!(server.ok(&["list", "--json"]).trim(), "[]");
    let modules = home.data().join("modules");
    assert!(files_in(&modules).is_empty(), "{:?}", files_in(&modules));
    assert!(files_in(&modules.join(".staging")).is_empty());
}

/// Sends a whole request on a raw connection and returns it, unanswered yet.
fn send_raw(url: &str, path: &str, body: &str) -> std::net::TcpStream {
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    stream
}

fn status(server_url: &str, admin: &str) -> serde_json::Value {
    let answer = get_as(&format!("{server_url}/v1/status"), admin);
    assert_eq!(answer.status, 200, "{}", answer.body);
    serde_json::from_str(&answer.body).unwrap()
}

#[test]
fn sigterm_drains_requests_in_flight_and_a_restart_serves_without_recompiling() {
    let home = Home::new();
    let server = home.start(&[]);
    server.ok(&["deploy", &guest("hello")]);
    server.ok(&["deploy", &guest("slow")]);
    let admin = home.admin_token();
    let artifacts = home.data().join("artifacts");
    // A deploy answers before its artifact's file is written (behind it, on
    // its own thread): wait for both files.
    let before: Vec<_> = eventually("both artifacts written", || {
        let files: Vec<_> = std::fs::read_dir(&artifacts)
            .ok()?
            .flat_map(|d| files_in(&d.unwrap().path()))
            .filter(|p| p.extension().is_none_or(|e| e != "tmp"))
            .collect();
        (files.len() == 2).then_some(files)
    })
    .into_iter()
    .map(|p| {
        (
            p.clone(),
            std::fs::metadata(&p).unwrap().modified().unwrap(),
        )
    })
    .collect();

    let streams: Vec<_> = (0..4)
        .map(|_| send_raw(&server.url, "/fn/default/slow", "1500"))
        .collect();
    eventually("four requests in flight", || {
        (status(&server.url, &admin)["in_flight"] == 4).then_some(())
    });
    let mut server = server;
    server.signal(libc::SIGTERM);
    for mut stream in streams {
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.ends_with("slept 1500 ms\n"), "{response}");
    }
    assert!(server.wait().success());

    let server = home.start(&[]);
    assert_eq!(
        post(&server.function_url("default", "hello"), "again").body,
        "Hello, again!\n"
    );
    assert_eq!(
        post(&server.function_url("default", "slow"), "1").body,
        "slept 1 ms\n"
    );
    assert_eq!(status(&server.url, &admin)["compiles"], 0);
    for (path, modified) in before {
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            modified
        );
    }
}

#[test]
fn a_deploy_that_answered_survives_kill_9() {
    let home = Home::new();
    let server = home.start(&[]);
    server.ok(&["deploy", &guest("hello")]);
    server.kill();
    let server = home.start(&[]);
    assert_eq!(
        post(&server.function_url("default", "hello"), "still").body,
        "Hello, still!\n"
    );
    assert!(server.ok(&["info", "hello"]).contains("* v1"));
}

#[test]
fn invoke_through_the_cli() {
    let home = Home::new();
    let server = home.start(&[]);
    server.ok(&["deploy", &guest("hello")]);
    let out = server.cli(&["invoke", "hello"], &[], b"cli");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello, cli!\n");
    server.ok(&["deploy", &guest("exit3")]);
    let out = server.cli(&["invoke", "exit3"], &[], b"");
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "kiln: exit3 answered 502: function exited with code 3\n"
    );
}

#[test]
fn an_oversized_request_body_is_refused() {
    let home = Home::new();
    let server = home.start(&[]);
    server.ok(&["deploy", &guest("hello")]);
    let big = "x".repeat(17 << 20);
    let answer = post(&server.function_url("default", "hello"), &big);
    assert_eq!(answer.status, 413);
    assert_eq!(answer.body, "request body is over the limit of 16 MiB\n");
}

#[test]
fn a_full_instance_pool_queues_then_answers_503() {
    let home = Home::new();
    let server = home.start(&["--max-instances", "1", "--instance-wait", "50ms"]);
    server.ok(&["deploy", &guest("hello")]);
    server.ok(&["deploy", &guest("slow")]);
    let admin = home.admin_token();
    // The only instance sleeps for a minute; the server is killed long before.
    let _holder = send_raw(&server.url, "/fn/default/slow", "60000");
    eventually("the only instance is busy", || {
        (status(&server.url, &admin)["active_instances"] == 1).then_some(())
    });
    let refused = post(&server.function_url("default", "hello"), "x");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.header("kiln-outcome"), Some("capacity"));
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(
        refused.body,
        "no free instance slot: all 1 were in use for the whole wait; retry shortly\n"
    );
    assert_eq!(status(&server.url, &admin)["active_instances"], 1);
}

#[test]
fn loaded_functions_are_bounded_and_an_evicted_one_loads_again() {
    let home = Home::new();
    let server = home.start(&["--max-loaded-functions", "2"]);
    let admin = home.admin_token();
    for name in ["hello", "echo-env", "exit3"] {
        server.ok(&["deploy", &guest(name)]);
    }
    // Each deploy loads its function; the third pushed out the least recent.
    let after_deploys = status(&server.url, &admin);
    assert_eq!(after_deploys["loaded_functions"], 2);
    assert_eq!(after_deploys["function_cache_evictions"], 1);
    assert_eq!(after_deploys["function_cache_misses"], 0);

    let hello = server.function_url("default", "hello");
    assert_eq!(post(&hello, "again").body, "Hello, again!\n");
    let reloaded = status(&server.url, &admin);
    assert_eq!(reloaded["function_cache_misses"], 1);
    assert_eq!(reloaded["function_cache_evictions"], 2);
    assert_eq!(reloaded["loaded_functions"], 2);
    assert_eq!(
        reloaded["compiles"], 3,
        "a reload maps the artifact, it never compiles"
    );

    assert_eq!(post(&hello, "once more").body, "Hello, once more!\n");
    let hit = status(&server.url, &admin);
    assert_eq!(hit["function_cache_hits"], 1);
    assert_eq!(hit["function_cache_misses"], 1);
}

#[test]
fn a_restart_even_after_kill_9_loads_again_in_the_background_what_was_loaded() {
    let home = Home::new();
    let flags = ["--max-loaded-functions", "1"];
    let server = home.start(&flags);
    let admin = home.admin_token();
    server.ok(&["deploy", &guest("hello")]);
    server.ok(&["deploy", &guest("exit3")]);
    // One function fits: hello's request pushes out exit3, which its deploy loaded.
    let hello = server.function_url("default", "hello");
    assert_eq!(post(&hello, "a").body, "Hello, a!\n");
    let hello_digest = kiln_api::Digest::of(&std::fs::read(guest("hello")).expect("guest"));
    let written = home.data().join("loaded-functions");
    eventually("the loaded set written down", || {
        let text = std::fs::read_to_string(&written).ok()?;
        (text == format!("{hello_digest}\n")).then_some(())
    });
    server.kill();

    let server = home.start(&flags);
    let rewarmed = eventually("hello loaded again, with no request", || {
        let now = status(&server.url, &admin);
        (now["rewarm_pending"] == 0 && now["loaded_functions"] == 1).then_some(now)
    });
    assert_eq!(rewarmed["function_cache_misses"], 0);
    assert_eq!(rewarmed["compiles"], 0, "a rewarm only loads");
    let hello = server.function_url("default", "hello");
    assert_eq!(post(&hello, "b").body, "Hello, b!\n");
    let after = status(&server.url, &admin);
    assert_eq!(
        after["function_cache_hits"], 1,
        "its first request found it loaded"
    );
    assert_eq!(after["function_cache_misses"], 0);
    // The one not loaded before the restart was not loaded again.
    let exit3 = post(&server.function_url("default", "exit3"), "");
    assert_eq!(exit3.status, 502);
    assert_eq!(status(&server.url, &admin)["function_cache_misses"], 1);
}

#[test]
fn loaded_code_is_bounded_in_bytes_and_a_function_bigger_than_the_bound_still_runs() {
    let home = Home::new();
    let server = home.start(&["--max-loaded-code", "1MiB"]);
    let deploy = |name: &str, kib: usize| {
        let text = format!("{name}\n");
        let path = home.dir.path().join(format!("{name}.wasm"));
        std::fs::write(&path, printing_module_with_data(&text, kib * 1024)).expect("write");
        server.ok(&["deploy", "--name", name, &path.display().to_string()]);
    };
    let loaded = || {
        let text = metrics(&server, &home);
        (
            metric(&text, "kiln_loaded_functions"),
            metric(&text, "kiln_loaded_code_bytes"),
            metric(&text, "kiln_function_cache_evictions_total"),
        )
    };
    deploy("first", 600);
    let (functions, bytes, evictions) = loaded();
    assert_eq!((functions, evictions), (1.0, 0.0));
    assert!(
        (600.0 * 1024.0..=1024.0 * 1024.0).contains(&bytes),
        "{bytes}"
    );
    // Two would pass 1 MiB: the least recently used is unloaded.
    deploy("second", 600);
    let (functions, bytes, evictions) = loaded();
    assert_eq!((functions, evictions), (1.0, 1.0), "{bytes}");
    assert!(bytes <= 1024.0 * 1024.0, "{bytes}");
    // The first loads again on its request, and pushes the second out.
    let first = post(&server.function_url("default", "first"), "");
    assert_eq!((first.status, first.body.as_str()), (200, "first\n"));
    assert_eq!(loaded().2, 2.0);
    // One function over the bound on its own is loaded, alone, and runs.
    deploy("big", 1500);
    let (functions, bytes, evictions) = loaded();
    assert_eq!((functions, evictions), (1.0, 3.0));
    assert!(bytes >= 1500.0 * 1024.0, "{bytes}");
    let big = post(&server.function_url("default", "big"), "");
    assert_eq!((big.status, big.body.as_str()), (200, "big\n"));
}

#[test]
fn out_of_range_server_limits_are_refused_before_starting() {
    let home = Home::new();
    for (flag, value, message) in [
        (
            "--max-loaded-functions",
            "0",
            "number would be zero for non-zero type",
        ),
        ("--max-instances", "0", "0 is not in 1.."),
        ("--max-memory", "8GiB", "must be between 64KiB and 4GiB"),
        ("--keep-resident", "2GiB", "must be at most 1GiB"),
        ("--max-loaded-code", "512KiB", "must be at least 1MiB"),
        ("--instance-wait", "soon", "invalid value 'soon'"),
        ("--compile-timeout", "2h", "must be between 100ms and 1h"),
        ("--header-timeout", "1ms", "must be between 100ms and 1h"),
        ("--max-connections", "0", "0 is not in 1.."),
        ("--max-header-size", "1KiB", "must be between 8KiB and 1MiB"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["up", "--listen", "127.0.0.1:0", "--data"])
            .arg(home.data())
            .args([flag, value])
            .env("XDG_CONFIG_HOME", home.config())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(message),
            "{flag}: {stderr}"
        );
        assert!(!home.data().exists(), "{flag} created the data directory");
    }
}

#[test]
fn a_wasip2_command_component_is_deployed_served_metered_and_survives_a_restart() {
    let home = Home::new();
    let server = home.start(&[]);
    let component = kiln_guests::component("hello").display().to_string();
    let said = server.ok(&["deploy", "--name", "hello2", &component, "--receipt"]);
    assert!(
        said.starts_with("deployed hello2 v1 (component, "),
        "{said}"
    );
    let url = server.function_url("default", "hello2");
    let answer = post(&url, "component");
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "Hello, component!\n")
    );
    assert!(answer.header("kiln-cpu-us").is_some());

    // The CGI environment reaches a component like a module.
    let echo = kiln_guests::component("echo-env").display().to_string();
    server.ok(&["deploy", "--name", "env2", &echo, "--env", "K=V"]);
    let env = post(
        &format!("{}/some/path?q=1", server.function_url("default", "env2")),
        "",
    );
    assert!(env.body.contains("ENV K=V\n"), "{}", env.body);
    assert!(
        env.body.contains("ENV PATH_INFO=/some/path\n"),
        "{}",
        env.body
    );
    assert!(env.body.contains("ENV QUERY_STRING=q=1\n"), "{}", env.body);

    let exit = server.ok(&[
        "deploy",
        "--name",
        "exit2",
        &kiln_guests::component("exit3").display().to_string(),
    ]);
    assert!(exit.contains("component"));
    let failed = post(&server.function_url("default", "exit2"), "");
    assert_eq!(
        (failed.status, failed.body.as_str()),
        (502, "function exited with code 1\n")
    );

    // After a restart it is loaded from its artifact, never recompiled.
    assert!(server.stop().success());
    let server = home.start(&[]);
    let url = server.function_url("default", "hello2");
    assert_eq!(post(&url, "again").body, "Hello, again!\n");
    assert_eq!(status(&server.url, &home.admin_token())["compiles"], 0);
}
