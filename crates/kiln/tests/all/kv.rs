//! Key-value state through a real `kiln up` on its embedded store: the counters
//! of the README (C and Rust core modules importing `kiln_kv`, a Rust component
//! importing `wasi:keyvalue`), grants and tenants, limits and quotas, the CLI,
//! and durability across a kill -9. (`cluster.rs` has the cross-node counter.)

use crate::support::*;

/// A function's failure, as its log tells it.
fn last_log(server: &KilnServer, function: &str) -> String {
    server.ok(&["logs", function, "-n", "1"])
}

fn deploy(server: &KilnServer, args: &[&str]) {
    server.ok(&[&["deploy"], args].concat());
}

/// `kiln kv get`, or `None` if the key is not set.
fn kv_get(server: &KilnServer, bucket: &str, key: &str) -> Option<String> {
    let out = server.cli(&["kv", "get", bucket, key], &[], b"");
    match out.status.success() {
        true => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("has no key"), "kiln kv get: {stderr}");
            None
        }
    }
}

#[test]
fn counters_in_c_rust_and_a_component_count_exactly_and_survive_kill_9() {
    let home = Home::new();
    let server = home.start(&[]);
    let c = kiln_guests::c_example("counter", home.dir.path());
    let c = c.display().to_string();
    let rust = kiln_guests::state_example("counter").display().to_string();
    let component = kiln_guests::state_example("counter-component")
        .display()
        .to_string();
    deploy(&server, &["--name", "c-counter", "--kv", "counter", &c]);
    deploy(
        &server,
        &["--name", "rust-counter", "--kv", "counter", &rust],
    );
    deploy(
        &server,
        &["--name", "component-counter", "--kv", "counter", &component],
    );

    // 3 functions × 8 threads × 5 requests, all on one key.
    let names = ["c-counter", "rust-counter", "component-counter"];
    let urls = (0..24)
        .map(|i| server.function_url("default", names[i % 3]))
        .collect();
    let counts = counts_from(urls, 5);
    // Every request saw its own total: no increment lost or doubled.
    assert_eq!(counts, (1..=120).collect::<Vec<u64>>());

    // The path names the key.
    let visits = post(
        &format!("{}/visits", server.function_url("default", "c-counter")),
        "",
    );
    assert_eq!(visits.body.trim(), "1");
    assert_eq!(kv_get(&server, "counter", "hits").as_deref(), Some("120"));

    // Metered: one write per increment, priced in the usage report.
    let usage_url = format!("{}/v1/usage", server.url);
    let token = home.token();
    let usage = eventually("the key-value writes in the usage", || {
        let got = get_as(&usage_url, &token);
        let usage: serde_json::Value = serde_json::from_str(&got.body).ok()?;
        (usage["total"]["units"]["kv_writes"] == 121).then_some(usage)
    });
    assert_eq!(usage["total"]["units"]["kv_reads"], 0);
    let kv_cost = usage["total"]["cost"]["kv"].as_f64().expect("kv cost");
    assert!((kv_cost - 121.0 * 5.0 / 1e6).abs() < 1e-12, "{kv_cost}");

    // What answered is on disk: a kill -9 loses none of it.
    server.kill();
    let server = home.start(&[]);
    assert_eq!(kv_get(&server, "counter", "hits").as_deref(), Some("120"));
    let next = post(&server.function_url("default", "component-counter"), "");
    assert_eq!(next.body.trim(), "121");
    let keys = server.ok(&["kv", "list", "counter"]);
    assert_eq!(keys, "hits\nvisits\n");
    let buckets = server.ok(&["kv", "buckets"]);
    assert!(
        buckets.contains("counter") && buckets.contains("2 keys"),
        "{buckets}"
    );
}

#[test]
fn a_function_reaches_only_the_granted_buckets_of_its_own_tenant() {
    let home = Home::new();
    let server = home.start(&[]);
    let counter = kiln_guests::state_example("counter").display().to_string();
    let component = kiln_guests::state_example("counter-component")
        .display()
        .to_string();
    // Granted another bucket, or none: `counter` cannot be opened.
    deploy(
        &server,
        &["--name", "wrong-grant", "--kv", "sessions", &counter],
    );
    deploy(&server, &["--name", "no-grant", &component]);
    for name in ["wrong-grant", "no-grant"] {
        let got = post(&server.function_url("default", name), "");
        assert_eq!(got.status, 502, "{name}: {}", got.body);
        let log = eventually("the refusal in the log", || {
            let log = last_log(&server, name);
            log.contains("cannot open bucket counter").then_some(log)
        });
        assert!(
            log.contains("granted") || log.contains("NoSuchStore"),
            "{name}: {log}"
        );
    }

    // Another tenant's bucket of the same name is its own.
    deploy(&server, &["--name", "counter", "--kv", "counter", &counter]);
    for _ in 0..3 {
        post(&server.function_url("default", "counter"), "");
    }
    let admin = home.admin_token();
    let out = server.cli(
        &["tenants", "create", "other"],
        &[("KILN_TOKEN", &admin)],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let as_other = |args: &[&str]| {
        let out = server.cli(args, &[("KILN_TOKEN", &other)], b"");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    as_other(&["deploy", "--name", "counter", "--kv", "counter", &counter]);
    let theirs = post(&server.function_url("other", "counter"), "");
    assert_eq!(theirs.body.trim(), "1");
    assert_eq!(as_other(&["kv", "get", "counter", "hits"]), "1");
    assert_eq!(kv_get(&server, "counter", "hits").as_deref(), Some("3"));
    // The admin token is no tenant: it reaches no bucket.
    let out = server.cli(&["kv", "buckets"], &[("KILN_TOKEN", &admin)], b"");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenant token"));
}

#[test]
fn limits_and_quotas_refuse_writes_with_a_clear_error_and_change_nothing() {
    let home = Home::new();
    let server = home.start(&["--kv-max-key", "16B", "--kv-max-value", "64B"]);
    let counter = kiln_guests::state_example("counter").display().to_string();
    deploy(&server, &["--name", "counter", "--kv", "counter", &counter]);
    let url = server.function_url("default", "counter");

    // A key over the limit, from a function: refused inside the guest.
    let long = post(&format!("{url}/{}", "k".repeat(17)), "");
    assert_eq!(long.status, 502, "{}", long.body);
    let log = eventually("the refusal in the log", || {
        let log = last_log(&server, "counter");
        log.contains("over the limit").then_some(log)
    });
    assert!(
        log.contains("key of 17 bytes is over the limit of 16 bytes"),
        "{log}"
    );
    assert_eq!(server.ok(&["kv", "list", "counter"]), "");

    // Through the CLI: values over the limit, empty and NUL keys, bad buckets.
    let refused = |args: &[&str], stdin: &[u8], expected: &str| {
        let out = server.cli(args, &[], stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "kiln {args:?} succeeded");
        assert!(stderr.contains(expected), "kiln {args:?}: {stderr}");
    };
    refused(
        &["kv", "set", "b", "k"],
        &[7; 65],
        "value of 65 bytes is over the limit of 64 bytes",
    );
    refused(
        &["kv", "set", "Other/Bucket", "k", "v"],
        b"",
        "invalid bucket name",
    );
    refused(
        &["kv", "get", "b", &"k".repeat(17)],
        b"",
        "over the limit of 16 bytes",
    );
    // Binary values round-trip through stdin and stdout.
    let binary: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37)).collect();
    let out = server.cli(&["kv", "set", "b", "bin"], &[], &binary);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server.cli(&["kv", "get", "b", "bin"], &[], b"");
    assert_eq!(out.stdout, binary);

    // A NUL in a key (no argv can hold one) and the empty key, through the API.
    let token = home.token();
    let nul = answer(
        http()
            .put(format!("{}/v1/kv/b/nul%00key", server.url))
            .header("Authorization", format!("Bearer {token}"))
            .send("v"),
    );
    assert_eq!(nul.status, 400, "{}", nul.body);
    assert!(nul.body.contains("NUL"), "{}", nul.body);
    let empty = answer(
        http()
            .put(format!("{}/v1/kv/b/", server.url))
            .header("Authorization", format!("Bearer {token}"))
            .send("v"),
    );
    assert!(matches!(empty.status, 400 | 404 | 405), "{}", empty.status);

    // A storage quota of 3 keys: `bin`, `hits`, then nothing new.
    let admin = home.admin_token();
    let out = server.cli(
        &["quota", "default", "--kv-keys", "3"],
        &[("KILN_TOKEN", &admin)],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(post(&url, "").body.trim(), "1");
    server.ok(&["kv", "set", "b", "third", "v"]);
    refused(
        &["kv", "set", "b", "fourth", "v"],
        b"",
        "quota allows 3 keys",
    );
    let over = post(&format!("{url}/new-key"), "");
    assert_eq!(over.status, 502, "{}", over.body);
    let log = eventually("the quota refusal in the log", || {
        let log = last_log(&server, "counter");
        log.contains("quota").then_some(log)
    });
    assert!(log.contains("quota allows 3 keys"), "{log}");
    // Overwriting and incrementing existing keys still work; deleting frees room.
    assert_eq!(post(&url, "").body.trim(), "2");
    server.ok(&["kv", "delete", "b", "third"]);
    assert_eq!(post(&format!("{url}/new-key"), "").body.trim(), "1");
    let keys = server.ok(&["kv", "list", "counter"]);
    assert_eq!(keys, "hits\nnew-key\n");
    server.ok(&["kv", "delete", "b"]);
    assert_eq!(kv_get(&server, "b", "bin"), None);
}

#[test]
fn stored_data_is_metered_by_the_hour_and_priced() {
    let home = Home::new();
    let server = home.start(&["--storage-meter", "100ms"]);
    let value = vec![b'v'; 4000];
    let set = server.cli(&["kv", "set", "cache", "page"], &[], &value);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let stored = 4 + 4000; // key and value
    let usage_url = format!("{}/v1/usage?by=function", server.url);
    let token = home.token();
    let usage = eventually("the stored bytes in the usage", || {
        let got = get_as(&usage_url, &token);
        let usage: serde_json::Value = serde_json::from_str(&got.body).ok()?;
        (usage["total"]["units"]["kv_byte_hours"] == stored).then_some(usage)
    });
    // One hour of 4004 bytes at 0.50 per GB-month of 730 hours.
    let kv_cost = usage["total"]["cost"]["kv"].as_f64().expect("kv cost");
    let expected = stored as f64 / (1u64 << 30) as f64 / 730.0 * 0.50;
    assert!(
        (kv_cost - expected).abs() < 1e-15,
        "{kv_cost} vs {expected}"
    );
    assert_eq!(usage["total"]["units"]["requests"], 0);
    // The table names the line, the CSV has the column.
    let table = server.ok(&["usage"]);
    assert!(table.contains("(stored data)"), "{table}");
    let csv = server.ok(&["usage", "--csv"]);
    let header: Vec<&str> = csv.lines().next().unwrap_or("").split(',').collect();
    let column = header.iter().position(|c| *c == "kv_byte_hours");
    let total = csv
        .lines()
        .last()
        .unwrap_or("")
        .split(',')
        .collect::<Vec<_>>();
    assert_eq!(column.map(|c| total[c]), Some("4004"), "{csv}");
}

#[test]
fn deleting_a_tenant_takes_its_functions_tokens_buckets_and_secrets() {
    let home = Home::new();
    let server = home.start(&[]);
    let admin = home.admin_token();
    let as_admin = |args: &[&str]| server.cli(args, &[("KILN_TOKEN", &admin)], b"");
    let created = as_admin(&["tenants", "create", "doomed"]);
    assert!(created.status.success());
    let doomed = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    let as_doomed = |args: &[&str], stdin: &[u8]| {
        let out = server.cli(args, &[("KILN_TOKEN", &doomed)], stdin);
        assert!(
            out.status.success(),
            "kiln {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let counter = kiln_guests::state_example("counter").display().to_string();
    as_doomed(
        &["deploy", "--kv", "counter", "--secret", "KEY", &counter],
        b"",
    );
    as_doomed(&["secret", "set", "KEY"], b"hush");
    deploy(&server, &["--kv", "counter", &counter]);
    let url = server.function_url("doomed", "counter");
    assert_eq!(post(&url, "").body.trim(), "1");
    assert_eq!(
        post(&server.function_url("default", "counter"), "")
            .body
            .trim(),
        "1"
    );

    // Without --yes nothing happens.
    let refused = as_admin(&["tenants", "delete", "doomed"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    assert_eq!(post(&url, "").body.trim(), "2");
    // A tenant token cannot delete a tenant.
    let out = server.cli(
        &["tenants", "delete", "doomed", "--yes"],
        &[("KILN_TOKEN", &doomed)],
        b"",
    );
    assert!(!out.status.success());
    assert_eq!(post(&url, "").body.trim(), "3");

    let deleted = as_admin(&["tenants", "delete", "doomed", "--yes"]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert_eq!(post(&url, "").status, 404);
    let out = server.cli(&["functions"], &[("KILN_TOKEN", &doomed)], b"");
    assert!(
        !out.status.success(),
        "the deleted tenant's token still works"
    );
    let again = as_admin(&["tenants", "delete", "doomed", "--yes"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("no tenant named"));

    // A new tenant of the same name starts with nothing.
    let created = as_admin(&["tenants", "create", "doomed"]);
    let reborn = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    let as_reborn = |args: &[&str]| {
        let out = server.cli(args, &[("KILN_TOKEN", &reborn)], b"");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let buckets = as_reborn(&["kv", "buckets"]);
    assert!(buckets.contains("stored: 0 keys"), "{buckets}");
    assert!(!buckets.contains("counter"), "{buckets}");
    assert_eq!(as_reborn(&["secret", "list"]).trim(), "");
    assert_eq!(post(&url, "").status, 404);
    // The other tenant is untouched.
    assert_eq!(
        post(&server.function_url("default", "counter"), "")
            .body
            .trim(),
        "2"
    );
}
