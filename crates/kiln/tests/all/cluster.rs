//! Kiln on the cluster stores: `kiln up --database postgres://...` against the
//! project's throwaway PostgreSQL on loopback, and several nodes sharing it and
//! an S3 bucket (the project's throwaway S3-compatible server).

use crate::support::*;
use kiln_guests::services::{S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, postgres_database, s3_bucket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How soon a change made through one node must be served by the others.
const PROPAGATION: Duration = Duration::from_secs(1);

/// Nodes sharing one database and one bucket; the first bootstrapped the store,
/// and its tokens work on every node.
pub(crate) struct Cluster {
    pub(crate) homes: Vec<Home>,
    nodes: Vec<Option<KilnServer>>,
    flags: Vec<String>,
}

impl Cluster {
    fn start(nodes: usize) -> Cluster {
        Cluster::start_with(nodes, &[])
    }

    /// `nodes` nodes, each given `extra` flags too.
    pub(crate) fn start_with(nodes: usize, extra: &[&str]) -> Cluster {
        let database = postgres_database("kiln_cluster");
        let (endpoint, bucket) = s3_bucket("kiln-cluster");
        let flags = vec![
            "--database".to_owned(),
            database,
            "--blobs".to_owned(),
            format!("s3://{bucket}"),
            "--s3-endpoint".to_owned(),
            endpoint,
            "--runtimes".to_owned(),
            kiln_guests::runtimes().display().to_string(),
        ]
        .into_iter()
        .chain(extra.iter().map(|flag| flag.to_string()))
        .collect();
        let mut cluster = Cluster {
            homes: Vec::new(),
            nodes: Vec::new(),
            flags,
        };
        for _ in 0..nodes {
            let home = Home::new();
            let node = cluster.start_on(&home);
            cluster.homes.push(home);
            cluster.nodes.push(Some(node));
        }
        cluster
    }

    pub(crate) fn start_on(&self, home: &Home) -> KilnServer {
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        let credentials = s3_credentials();
        let wrapper: Vec<&str> = credentials.iter().map(String::as_str).collect();
        home.start_in(&wrapper, &flags)
    }

    pub(crate) fn node(&self, i: usize) -> &KilnServer {
        self.nodes[i].as_ref().expect("node running")
    }

    /// SIGKILLs node `i`: the crash case.
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            node.kill();
        }
    }

    /// The CLI of the first node (which holds the credentials) against node `i`.
    pub(crate) fn cli(&self, i: usize, args: &[&str]) -> String {
        let first = self.node(0);
        let out = first.cli(args, &[("KILN_URL", &self.node(i).url)], b"");
        assert!(
            out.status.success(),
            "kiln {args:?} on node {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The cluster's bucket, opened as a node opens it.
    pub(crate) fn bucket(&self) -> kiln_store::S3Blobs {
        let bucket = self.flags[3].trim_start_matches("s3://").to_owned();
        kiln_store::S3Blobs::open(
            &kiln_store::S3Config {
                bucket,
                endpoint: Some(self.flags[5].clone()),
                credentials: Some((S3_ACCESS_KEY_ID.into(), S3_SECRET_ACCESS_KEY.into())),
                ca_cert: None,
            },
            self.homes[0].dir.path().join("bucket-staging"),
        )
        .expect("open the bucket")
    }

    fn status(&self, i: usize) -> serde_json::Value {
        let got = get_as(
            &format!("{}/v1/status", self.node(i).url),
            &self.homes[0].admin_token(),
        );
        assert_eq!(got.status, 200, "{}", got.body);
        serde_json::from_str(&got.body).expect("status JSON")
    }
}

/// `env` with the test S3 server's key: the wrapper `kiln up` is started in.
fn s3_credentials() -> [String; 3] {
    [
        "env".into(),
        format!("AWS_ACCESS_KEY_ID={S3_ACCESS_KEY_ID}"),
        format!("AWS_SECRET_ACCESS_KEY={S3_SECRET_ACCESS_KEY}"),
    ]
}

/// Polls `url` until it answers `expected` (status and body), failing once
/// `within` has passed since `since`.
fn served_within(url: &str, expected: (u16, &str), since: Instant, within: Duration) {
    loop {
        let got = post(url, "c");
        if (got.status, got.body.as_str()) == expected {
            return;
        }
        assert!(
            since.elapsed() < within,
            "{url} still answers {} {:?} after {within:?}, expected {expected:?}",
            got.status,
            got.body
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
#[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
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
    let output = Home::new().start_and_exit(&["--database", "postgres://kiln@127.0.0.1:1/nothing"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("cannot open the PostgreSQL metadata store"),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
fn a_deploy_rollback_and_delete_on_one_node_is_served_by_the_others_within_a_second() {
    let cluster = Cluster::start(3);
    let url = |i: usize| cluster.node(i).function_url("default", "f");

    // Deploy on A: B and C serve it, downloading A's compiled artifact.
    cluster.cli(0, &["deploy", "--name", "f", &guest("hello")]);
    let deployed = Instant::now();
    for i in [1, 2] {
        served_within(&url(i), (200, "Hello, c!\n"), deployed, PROPAGATION);
    }
    // A new version on B, cached everywhere, then rolled back on C.
    cluster.cli(1, &["deploy", "--name", "f", &guest("echo-env")]);
    let redeployed = Instant::now();
    for i in [0, 2] {
        let v2 = post(&url(i), "c");
        assert_eq!(v2.status, 200);
        assert_ne!(v2.body, "Hello, c!\n", "node {i} after the redeploy");
        assert!(redeployed.elapsed() < PROPAGATION);
    }
    cluster.cli(2, &["rollback", "f"]);
    let rolled_back = Instant::now();
    for i in [0, 1] {
        served_within(&url(i), (200, "Hello, c!\n"), rolled_back, PROPAGATION);
    }

    // The cluster compiled each module once: the node that deployed it.
    let (compiles, downloads): (Vec<u64>, Vec<u64>) = (0..3)
        .map(|i| {
            let status = cluster.status(i);
            (
                status["compiles"].as_u64().expect("compiles"),
                status["artifact_downloads"].as_u64().expect("downloads"),
            )
        })
        .unzip();
    assert_eq!(compiles, [1, 1, 0], "hello on A, echo-env on B");
    assert_eq!(downloads.iter().sum::<u64>(), 4, "{downloads:?}");
    // Any node lists every node of the cluster, by the address it serves on.
    let admin = cluster.homes[0].admin_token();
    let listed = get_as(&format!("{}/v1/admin/nodes", cluster.node(2).url), &admin);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listed.body).expect("nodes");
    let mut names: Vec<&str> = listed.iter().filter_map(|n| n["node"].as_str()).collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = (0..3)
        .map(|i| cluster.node(i).url.trim_start_matches("http://"))
        .collect();
    expected.sort_unstable();
    assert_eq!(names, expected);

    // Delete on A: gone everywhere.
    cluster.cli(0, &["rm", "f"]);
    let deleted = Instant::now();
    for i in [1, 2] {
        served_within(
            &url(i),
            (404, "no function default/f\n"),
            deleted,
            PROPAGATION,
        );
    }
}

#[test]
#[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
fn usage_from_every_node_adds_up_and_a_killed_node_loses_only_its_own_requests() {
    let mut cluster = Cluster::start(3);
    cluster.cli(0, &["deploy", "--name", "f", &guest("hello")]);
    let urls: Vec<String> = (0..3)
        .map(|i| cluster.node(i).function_url("default", "f"))
        .collect();
    // 30 requests on each node.
    for url in &urls {
        for i in 0..30 {
            assert_eq!(post(url, &i.to_string()).status, 200);
        }
    }

    // Every node's records reach the store within its flush interval.
    let token = cluster.homes[0].token();
    let usage_is = |node: &KilnServer, requests: u64| {
        let url = format!("{}/v1/usage", node.url);
        eventually("the cluster's usage", || {
            let got = get_as(&url, &token);
            let usage: serde_json::Value = serde_json::from_str(&got.body).ok()?;
            (usage["total"]["units"]["requests"] == requests).then_some(())
        });
    };
    usage_is(cluster.node(1), 90);
    logged(&cluster, 1, 90);

    // Load on A and C while B is killed.
    let served = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = [urls[0].clone(), urls[2].clone()]
        .into_iter()
        .map(|url| {
            let served = served.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    let got = post(&url, &i.to_string());
                    assert_eq!((got.status, got.body), (200, format!("Hello, {i}!\n")));
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    eventually("load under way", || {
        (served.load(Ordering::Relaxed) >= 20).then_some(())
    });
    cluster.nodes[1].take().expect("B").kill();
    for client in clients {
        client.join().expect("every request to A and C succeeded");
    }

    // Usage and logs from all nodes, read through any node: B's 30 (it served
    // none after they were stored) and A's and C's 130 each.
    for i in [0, 2] {
        usage_is(cluster.node(i), 290);
        logged(&cluster, i, 290);
    }
}

/// Waits until node `i` shows `count` successful invocations of `f` in its logs.
fn logged(cluster: &Cluster, i: usize, count: usize) {
    eventually("the cluster's logs", || {
        let logs = cluster.cli(i, &["logs", "f", "-n", "1000"]);
        (logs.matches(" 200 ").count() == count).then_some(())
    })
}

#[test]
#[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
fn loaded_functions_keep_serving_while_the_database_and_the_object_store_are_down() {
    // A PostgreSQL and an S3 server of this test's own, to stop and start.
    let pg_port = [("KILN_PG_PORT", "54331")];
    let s3_port = [("KILN_S3_PORT", "59010")];
    let services = kiln_guests::services::service;
    let database = services("postgres", &pg_port, &["database", "kiln_outage"]);
    let endpoint = services("s3", &s3_port, &["bucket", "kiln-outage"]);
    let home = Home::new();
    let flags = [
        "--database",
        &database,
        "--blobs",
        "s3://kiln-outage",
        "--s3-endpoint",
        &endpoint,
    ];
    let credentials = s3_credentials();
    let wrapper: Vec<&str> = credentials.iter().map(String::as_str).collect();
    let server = home.start_in(&wrapper, &flags);
    server.ok(&["deploy", &guest("hello")]);
    let url = server.function_url("default", "hello");
    let call = |what: &str| {
        for i in 0..5 {
            let got = post(&url, &i.to_string());
            assert_eq!(
                (got.status, got.body.as_str()),
                (200, format!("Hello, {i}!\n").as_str()),
                "{what}"
            );
        }
    };
    call("before");

    services("postgres", &pg_port, &["stop"]);
    call("with the database down");
    let deploy = server.cli(&["deploy", "--name", "other", &guest("exit3")], &[], b"");
    assert!(!deploy.status.success());
    assert_eq!(
        String::from_utf8_lossy(&deploy.stderr).trim(),
        "kiln: the metadata store is unavailable; try again later (503)"
    );
    services("s3", &s3_port, &["stop"]);
    call("with the database and the object store down");

    // Back: the usage buffered meanwhile is written, and deploys work again.
    services("postgres", &pg_port, &[]);
    services("s3", &s3_port, &[]);
    let usage_url = format!("{}/v1/usage", server.url);
    eventually("the usage buffered during the outage", || {
        let got = get_as(&usage_url, &home.token());
        let usage: serde_json::Value = serde_json::from_str(&got.body).ok()?;
        (usage["total"]["units"]["requests"] == 15).then_some(())
    });
    server.ok(&["deploy", "--name", "other", &guest("exit3")]);
}

#[test]
#[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
fn a_function_with_files_deployed_on_one_node_is_served_with_them_by_another() {
    let cluster = Cluster::start(2);
    let tree = cluster.homes[0].dir.path().join("site");
    std::fs::create_dir_all(tree.join("css")).expect("mkdir");
    std::fs::write(tree.join("index.html"), "<h1>kiln</h1>").expect("write");
    std::fs::write(tree.join("css/site.css"), "h1 {}").expect("write");
    let dir = format!("{}:/site", tree.display());
    cluster.cli(0, &["deploy", "--dir", &dir, "--tmp", "1MiB", &guest("fs")]);

    // Node B has neither the archive nor its tree: it fetches the archive from
    // the bucket on the function's first request, and unpacks it.
    let unpacked = cluster.homes[1].data().join("bundles");
    let trees = || std::fs::read_dir(&unpacked).map_or(0, |d| d.count());
    assert_eq!(trees(), 0);
    let answer = post(
        &cluster.node(1).function_url("default", "fs"),
        "cat /site/index.html\ncat /site/css/site.css\nwrite /tmp/x y\ncat /tmp/x",
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body,
        "cat /site/index.html -> <h1>kiln</h1>\ncat /site/css/site.css -> h1 {}\n\
         write /tmp/x y -> ok\ncat /tmp/x -> y\n"
    );
    assert_eq!(trees(), 1);

    // The tenant's bundle is known cluster-wide: a deploy through B uploads nothing.
    let first = cluster.node(0);
    let out = first.cli(
        &["deploy", "--name", "fs2", "--dir", &dir, &guest("fs")],
        &[("KILN_URL", &cluster.node(1).url)],
        b"",
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("unchanged, not uploaded"), "{said}");
}

#[test]
#[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
fn python_and_javascript_deployed_through_one_node_are_served_by_another() {
    let cluster = Cluster::start(2);
    let code = cluster.homes[0].dir.path().join("code");
    std::fs::create_dir_all(&code).expect("mkdir");
    std::fs::write(
        code.join("app.py"),
        "import statistics\n\ndef handle(request):\n    \
         return f'median {statistics.median([5, 1, 3])} for {request.text()}'\n",
    )
    .expect("write");
    std::fs::write(
        code.join("app.js"),
        "export default { async fetch(r) { return new Response(`js for ${await r.text()}`); } };\n",
    )
    .expect("write");
    cluster.cli(
        0,
        &[
            "deploy",
            "--name",
            "py",
            &code.join("app.py").display().to_string(),
        ],
    );
    cluster.cli(
        0,
        &[
            "deploy",
            "--name",
            "js",
            &code.join("app.js").display().to_string(),
        ],
    );
    // Node B never saw the deploys: it downloads each snapshot's artifact from the
    // bucket and unpacks the code's bundle, then answers from the snapshot.
    let py = post(&cluster.node(1).function_url("default", "py"), "b");
    assert_eq!((py.status, py.body.as_str()), (200, "median 3 for b"));
    let js = post(&cluster.node(1).function_url("default", "js"), "b");
    assert_eq!((js.status, js.body.as_str()), (200, "js for b"));
}

#[test]
#[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
fn a_counter_incremented_through_three_nodes_counts_exactly_and_reads_the_same_everywhere() {
    let cluster = Cluster::start(3);
    let component = kiln_guests::state_example("counter-component");
    let c = kiln_guests::c_example("counter", cluster.homes[0].dir.path());
    cluster.cli(
        0,
        &[
            "deploy",
            "--name",
            "component",
            "--kv",
            "counter",
            &component.display().to_string(),
        ],
    );
    cluster.cli(
        0,
        &[
            "deploy",
            "--name",
            "c",
            "--kv",
            "counter",
            &c.display().to_string(),
        ],
    );
    // 3 nodes × 2 functions × 2 threads × 10 requests, all on one key.
    let urls = (0..12)
        .map(|i| {
            let function = if i % 2 == 0 { "component" } else { "c" };
            cluster.node(i % 3).function_url("default", function)
        })
        .collect();
    let counts = counts_from(urls, 10);
    assert_eq!(counts, (1..=120).collect::<Vec<u64>>());
    // Read-your-writes on every node, at once.
    for i in 0..3 {
        assert_eq!(cluster.cli(i, &["kv", "get", "counter", "hits"]), "120");
    }
    cluster.cli(2, &["kv", "set", "counter", "hits", "1000"]);
    let next = post(&cluster.node(0).function_url("default", "c"), "");
    assert_eq!(next.body.trim(), "1001");

    // A tenant deleted through one node is gone on every node: its functions
    // (cached everywhere by now) stop answering, its bucket is empty.
    let admin = cluster.homes[0].admin_token();
    let deleted = cluster.node(1).cli(
        &["tenants", "delete", "default", "--yes"],
        &[("KILN_TOKEN", &admin), ("KILN_URL", &cluster.node(1).url)],
        b"",
    );
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    for i in 0..3 {
        eventually("the deleted tenant's function to stop answering", || {
            let got = post(&cluster.node(i).function_url("default", "c"), "");
            (got.status == 404).then_some(())
        });
    }
}

#[test]
#[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
fn key_value_calls_fail_with_a_typed_error_while_the_database_is_down_and_recover() {
    let pg_port = [("KILN_PG_PORT", "54332")];
    let services = kiln_guests::services::service;
    let database = services("postgres", &pg_port, &["database", "kiln_kv_outage"]);
    let home = Home::new();
    let server = home.start(&["--database", &database]);
    let counter = kiln_guests::state_example("counter").display().to_string();
    server.ok(&["deploy", "--kv", "counter", &counter]);
    let url = server.function_url("default", "counter");
    assert_eq!(post(&url, "").body.trim(), "1");

    services("postgres", &pg_port, &["stop"]);
    // The guest is told the store is unavailable (code -4) and fails; the
    // request ends instead of hanging.
    let down = post(&url, "");
    assert_eq!(down.status, 502, "{}", down.body);
    assert_eq!(down.header("kiln-exit-code"), Some("1"));

    services("postgres", &pg_port, &[]);
    let after = eventually("the counter after the outage", || {
        let got = post(&url, "");
        (got.status == 200).then_some(got.body)
    });
    assert_eq!(after.trim(), "2");
}

#[test]
#[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
fn a_lost_admin_token_is_replaced_offline_in_the_postgresql_store() {
    let database = postgres_database("kiln_reset");
    let home = Home::new();
    let server = home.start(&["--database", &database]);
    let old = home.admin_token();
    let new = kiln_ok(&[
        "admin",
        "reset-token",
        "--revoke-others",
        "--database",
        &database,
    ]);
    let tenants = |token: &str| get_as(&format!("{}/v1/tenants", server.url), token).status;
    assert_eq!(tenants(&new), 200);
    assert_eq!(tenants(&old), 401);
}

#[test]
#[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
fn an_artifact_swapped_in_the_bucket_is_not_loaded_by_another_node() {
    let mut cluster = Cluster::start(1);
    cluster.cli(0, &["deploy", "--name", "hello", &guest("hello")]);
    cluster.cli(0, &["deploy", "--name", "other", &guest("exit3")]);
    // The artifacts node 0 compiled, and shared under the same names.
    let root = cluster.homes[0].data().join("artifacts");
    let artifact_of = |wasm: &str| {
        let digest = kiln_api::Digest::of(&std::fs::read(guest(wasm)).expect("guest"));
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).expect("artifacts") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    pending.push(path);
                } else if path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&digest.to_string()))
                {
                    return path;
                }
            }
        }
        panic!("no artifact of {wasm} under {}", root.display());
    };
    let hello = artifact_of("hello");
    let key = hello
        .strip_prefix(&root)
        .expect("under the root")
        .to_string_lossy()
        .into_owned();
    // Someone with write access to the bucket puts another function's
    // (valid) machine code under hello's name.
    let blobs = cluster.bucket();
    let swapped = std::fs::read(artifact_of("exit3")).expect("the other artifact");
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(kiln_store::BlobStore::share_artifact(&blobs, &key, swapped))
        .expect("swap the artifact in the bucket");

    // A new node does not load it: the bytes are not the ones recorded, so it
    // compiles hello itself and answers as hello.
    let home = Home::new();
    let node = cluster.start_on(&home);
    cluster.homes.push(home);
    cluster.nodes.push(Some(node));
    let got = post(&cluster.node(1).function_url("default", "hello"), "x");
    assert_eq!((got.status, got.body.as_str()), (200, "Hello, x!\n"));
}

#[test]
#[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
fn postgresql_over_tls_is_checked_as_the_sslmode_in_the_url_says() {
    // A PostgreSQL that refuses plain connections, its certificate made for
    // `localhost` by a CA made at test time.
    let tls_env = [("KILN_PG_PORT", "54334"), ("KILN_PG_TLS", "1")];
    let services = kiln_guests::services::service;
    let plain = services("postgres", &tls_env, &["database", "kiln_tls"]);
    let tls = std::path::PathBuf::from(services("postgres", &tls_env, &["tls-dir"]));
    let ca = tls.join("ca.pem").display().to_string();
    let other_ca = tls.join("other-ca.pem").display().to_string();
    let with = |host: &str, query: &str| format!("{}?{query}", plain.replace("127.0.0.1", host));
    let start_fails = |url: &str| {
        let output = Home::new().start_and_exit(&["--database", url]);
        assert!(!output.status.success(), "kiln up on {url} started");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };

    // verify-full: the chain and the name; the whole journey works over it.
    let full = with(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let home = Home::new();
    let server = home.start(&["--database", &full]);
    server.ok(&["deploy", &guest("hello")]);
    assert_eq!(
        post(&server.function_url("default", "hello"), "t").body,
        "Hello, t!\n"
    );
    drop(server);

    // Plain is refused by this server; a CA that did not sign its certificate,
    // or a name the certificate does not carry, is refused by Kiln.
    let stderr = start_fails(&plain);
    assert!(stderr.contains("no encryption"), "{stderr}");
    let stderr = start_fails(&with(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other_ca}"),
    ));
    assert!(stderr.contains("certificate"), "{stderr}");
    let stderr = start_fails(&with(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ));
    assert!(stderr.contains("certificate"), "{stderr}");
    // verify-ca checks the chain only; require encrypts without checking.
    for query in [
        format!("sslmode=verify-ca&sslrootcert={ca}"),
        "sslmode=require".to_owned(),
    ] {
        let url = with("127.0.0.1", &query);
        // The same node again (its modules are in its data directory).
        let server = home.start(&["--database", &url]);
        assert_eq!(
            post(&server.function_url("default", "hello"), "u").body,
            "Hello, u!\n"
        );
    }
    let stderr = start_fails(&with(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={other_ca}"),
    ));
    assert!(stderr.contains("certificate"), "{stderr}");
}

/// nginx on loopback terminating TLS (the test CA's certificate for
/// `localhost`, in `tls`) in front of `upstream`; stopped when dropped.
struct TlsProxy {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TlsProxy {
    fn start(tls: &std::path::Path, upstream: &str) -> TlsProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
             http {{\n access_log off;\n client_max_body_size 0;\n\
             server {{\n  listen 127.0.0.1:{port} ssl;\n\
               ssl_certificate {t}/server.pem;\n  ssl_certificate_key {t}/server.key;\n\
               location / {{ proxy_pass {upstream}; proxy_set_header Host $http_host; \
               proxy_http_version 1.1; proxy_request_buffering off; proxy_buffering off; }}\n }}\n}}\n",
            d = dir.path().display(),
            t = tls.display(),
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, config).expect("nginx.conf");
        let child = std::process::Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .args(["-g", "daemon off;"])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("nginx (scripts/test installs it)");
        eventually("nginx to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        TlsProxy {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        // SIGTERM: nginx's master stops its workers (SIGKILL would leave them).
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
fn an_s3_endpoint_over_tls_is_trusted_through_the_given_ca_only() {
    let tls_env = [("KILN_PG_PORT", "54334"), ("KILN_PG_TLS", "1")];
    let tls = std::path::PathBuf::from(kiln_guests::services::service(
        "postgres",
        &tls_env,
        &["tls-dir"],
    ));
    let ca = tls.join("ca.pem").display().to_string();
    let (endpoint, bucket) = s3_bucket("kiln-s3-tls");
    let proxy = TlsProxy::start(&tls, &endpoint);
    let https = format!("https://localhost:{}", proxy.port);
    let database = postgres_database("kiln_s3_tls");
    let blobs = format!("s3://{bucket}");
    let credentials = s3_credentials();
    let wrapper: Vec<&str> = credentials.iter().map(String::as_str).collect();
    let mut flags = vec![
        "--database",
        &database,
        "--blobs",
        &blobs,
        "--s3-endpoint",
        &https,
    ];

    // Untrusted (the web's roots only): nothing reaches the bucket.
    let home = Home::new();
    let untrusting = home.start_in(&wrapper, &flags);
    let out = untrusting.cli(&["deploy", &guest("hello")], &[], b"");
    assert!(
        !out.status.success(),
        "a deploy went through an untrusted endpoint"
    );
    drop(untrusting);

    // With the private CA: the module goes to the bucket over TLS, and a
    // second node with nothing of its own serves it from there.
    flags.extend(["--s3-ca-cert", ca.as_str()]);
    let first = home.start_in(&wrapper, &flags);
    first.ok(&["deploy", &guest("hello")]);
    let other = Home::new();
    let second = other.start_in(&wrapper, &flags);
    let got = post(&second.function_url("default", "hello"), "s");
    assert_eq!((got.status, got.body.as_str()), (200, "Hello, s!\n"));
}
