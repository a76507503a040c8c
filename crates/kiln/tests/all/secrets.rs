//! Secrets and configuration through a real `kiln up`: `kiln secret set` from
//! stdin, sealed at rest, seen by the functions granted them (an environment
//! variable for a core module, `wasi:config` for a component), rotated
//! without a redeploy, and shown by nothing else.

use crate::support::*;

/// Every file under `dir`, recursively.
fn all_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn set_secret(server: &KilnServer, name: &str, value: &[u8]) {
    let out = server.cli(&["secret", "set", name], &[], value);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn secrets_are_sealed_at_rest_seen_only_where_granted_and_rotate_without_a_redeploy() {
    let home = Home::new();
    let server = home.start(&[]);
    let show = kiln_guests::state_example("show-config")
        .display()
        .to_string();
    set_secret(&server, "API_KEY", b"s3cr3t-first\n");
    server.ok(&[
        "deploy",
        "--name",
        "show",
        "--env",
        "GREETING=hi",
        "--secret",
        "API_KEY",
        &show,
    ]);
    server.ok(&[
        "deploy",
        "--name",
        "env",
        "--secret",
        "API_KEY",
        &guest("echo-env"),
    ]);
    server.ok(&[
        "deploy",
        "--name",
        "ungranted",
        "--env",
        "GREETING=hi",
        &show,
    ]);

    let shown = post(&server.function_url("default", "show"), "");
    assert_eq!(
        (shown.status, shown.body.as_str()),
        (200, "API_KEY=s3cr3t-first\nGREETING=hi\n")
    );
    let env = post(&server.function_url("default", "env"), "");
    assert!(
        env.body.contains("ENV API_KEY=s3cr3t-first\n"),
        "{}",
        env.body
    );
    let ungranted = post(&server.function_url("default", "ungranted"), "API_KEY");
    assert_eq!(ungranted.body, "absent\n");

    // Rotation: the next request sees the new value, with no redeploy.
    set_secret(&server, "API_KEY", b"s3cr3t-second");
    let key = post(&server.function_url("default", "show"), "API_KEY");
    assert_eq!(key.body, "s3cr3t-second\n");

    // Another tenant's secret of the same name is not this one.
    let admin = home.admin_token();
    let out = server.cli(
        &["tenants", "create", "other"],
        &[("KILN_TOKEN", &admin)],
        b"",
    );
    let other = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let as_other = [("KILN_TOKEN", other.as_str())];
    let out = server.cli(
        &["deploy", "--name", "show", "--secret", "API_KEY", &show],
        &as_other,
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = post(&server.function_url("other", "show"), "API_KEY");
    assert_eq!(theirs.body, "absent\n");

    // Shown by nothing but the functions: not the CLI, the API, logs, metrics.
    let token = home.token();
    let info = server.ok(&["info", "show"]);
    assert!(info.contains("secrets: API_KEY"), "{info}");
    let mut seen = vec![
        info,
        server.ok(&["secret", "list"]),
        server.ok(&["logs", "show", "-n", "100"]),
        server.ok(&["info", "show", "--json"]),
        get_as(&format!("{}/v1/functions/show", server.url), &token).body,
        get_as(&format!("{}/v1/secrets", server.url), &token).body,
        get_as(&format!("{}/metrics", server.url), &admin).body,
    ];
    assert_eq!(seen[1], "API_KEY\n");
    // ...and not the disk: the store holds it sealed.
    let mut files = Vec::new();
    all_files(&home.data(), &mut files);
    for file in files {
        seen.push(String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).into_owned());
    }
    for text in &seen {
        assert!(
            !text.contains("s3cr3t"),
            "a secret's value leaked: {text:.300}"
        );
    }

    // Bad input changes nothing.
    let refused = |args: &[&str], stdin: &[u8], expected: &str| {
        let out = server.cli(args, &[], stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "kiln {args:?} succeeded");
        assert!(stderr.contains(expected), "kiln {args:?}: {stderr}");
    };
    refused(&["secret", "set", "9LIVES"], b"v", "invalid secret name");
    refused(
        &["secret", "set", "BIG"],
        &vec![b'x'; 70_000],
        "at most 65536 bytes",
    );
    refused(&["secret", "set", "BIN"], &[0xff, 0xfe], "UTF-8");
    refused(&["secret", "rm", "NOPE"], b"", "no secret named");
    refused(
        &["deploy", "--name", "bad", "--secret", "not-a-name", &show],
        b"",
        "invalid secret name",
    );
    assert_eq!(server.ok(&["secret", "list"]), "API_KEY\n");
    server.ok(&["secret", "rm", "API_KEY"]);
    let gone = post(&server.function_url("default", "show"), "API_KEY");
    assert_eq!(gone.body, "absent\n");
}

#[test]
fn a_server_started_with_another_key_cannot_open_the_secrets_and_says_so() {
    let home = Home::new();
    let key_file = home.dir.path().join("key");
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).expect("key");
    let key = key_file.display().to_string();
    let server = home.start(&["--secret-key-file", &key]);
    set_secret(&server, "TOKEN", b"value");
    server.ok(&[
        "deploy",
        "--name",
        "env",
        "--secret",
        "TOKEN",
        &guest("echo-env"),
    ]);
    assert!(
        post(&server.function_url("default", "env"), "")
            .body
            .contains("ENV TOKEN=value")
    );
    server.stop();

    std::fs::write(&key_file, format!("{}\n", "cd".repeat(32))).expect("key");
    let server = home.start(&["--secret-key-file", &key]);
    let refused = post(&server.function_url("default", "env"), "");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused.body.contains("secrets cannot be read"),
        "{}",
        refused.body
    );

    // A key that is not 64 hex digits stops the server at start.
    std::fs::write(&key_file, "short\n").expect("key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["up", "--listen", "127.0.0.1:0", "--data"])
        .arg(home.data())
        .args(["--secret-key-file", &key])
        .env("XDG_CONFIG_HOME", home.config())
        .output()
        .expect("kiln up");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("64 hexadecimal digits"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
fn a_cluster_node_without_a_secret_key_refuses_secrets_clearly() {
    let database = kiln_guests::services::postgres_database("kiln_no_key");
    let home = Home::new();
    let server = home.start(&["--database", &database]);
    let out = server.cli(&["secret", "set", "TOKEN"], &[], b"value");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("this server has no secret key"), "{stderr}");
    assert_eq!(server.ok(&["secret", "list"]), "");
}
