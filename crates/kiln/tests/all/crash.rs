//! Crash safety of a real `kiln up`: `kill -9` at many points while deploys and
//! invocations are in flight, and a disk that fills up during a deploy. After
//! each, the store is consistent: every deploy that answered 201 is served, no
//! half-written module or artifact is loaded, and usage lost is bounded by the
//! flush interval.

use crate::support::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A module that prints `marker`, padded with `functions` empty functions so
/// that compiling it takes a while (kills then land in the compile, too).
fn module(marker: &str, functions: usize) -> Vec<u8> {
    printing_module(marker, &"(func)".repeat(functions))
}

fn write_module(home: &Home, marker: &str) -> String {
    let path = home.dir.path().join(format!("{marker}.wasm"));
    std::fs::write(&path, module(marker, 0)).expect("write");
    path.display().to_string()
}

/// What clients saw answered before a kill.
#[derive(Default)]
struct Seen {
    /// Version number → marker, for every deploy that answered 201.
    deployed: BTreeMap<u64, String>,
    /// When each invocation answered 200.
    served: Vec<Instant>,
    /// Invocations answered with any status.
    answered: u64,
}

/// Deploys new modules one after another until the server goes away.
fn deploy_until_gone(url: String, token: String, first: usize, seen: Arc<Mutex<Seen>>) {
    for n in first.. {
        let marker = format!("v{n}");
        let bytes = module(&marker, (n % 3) * 100);
        let Ok(mut response) = http()
            .post(format!("{url}/v1/functions/f/versions"))
            .header("Authorization", format!("Bearer {token}"))
            .send(&bytes[..])
        else {
            return;
        };
        let status = response.status().as_u16();
        let Ok(body) = response.body_mut().read_to_string() else {
            return;
        };
        assert_eq!(status, 201, "{body}");
        let deployed: serde_json::Value = serde_json::from_str(&body).expect("deploy JSON");
        let version = deployed["version"].as_u64().expect("version");
        seen.lock().unwrap().deployed.insert(version, marker);
    }
}

/// Invokes `f` until the server goes away, noting when each call succeeded.
fn invoke_until_gone(url: String, seen: Arc<Mutex<Seen>>) {
    loop {
        let Ok(mut response) = http().post(&url).send("") else {
            return;
        };
        let ok = response.status() == 200;
        if response.body_mut().read_to_string().is_err() {
            return;
        }
        let mut seen = seen.lock().unwrap();
        seen.answered += 1;
        if ok {
            seen.served.push(Instant::now());
        }
    }
}

fn function(server: &KilnServer, token: &str) -> serde_json::Value {
    let got = get_as(&format!("{}/v1/functions/f", server.url), token);
    assert_eq!(got.status, 200, "{}", got.body);
    serde_json::from_str(&got.body).expect("function JSON")
}

fn stored_requests(server: &KilnServer, token: &str) -> u64 {
    let got = get_as(&format!("{}/v1/usage", server.url), token);
    assert_eq!(got.status, 200, "{}", got.body);
    let report: serde_json::Value = serde_json::from_str(&got.body).expect("usage JSON");
    report["total"]["units"]["requests"].as_u64().unwrap_or(0)
}

#[test]
fn kill_9_at_many_points_keeps_every_answered_deploy_and_loads_nothing_half_written() {
    const ROUNDS: u64 = 12;
    let flush = Duration::from_millis(200);
    let flags = ["--usage-flush", "200ms"];
    let home = Home::new();
    let server = home.start(&flags);
    let token = home.token();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let first = server.ok(&[
        "deploy",
        "--name",
        "f",
        "--json",
        &write_module(&home, "v0"),
    ]);
    let first: serde_json::Value = serde_json::from_str(&first).expect("deploy JSON");
    assert_eq!(first["version"], 1);
    seen.lock().unwrap().deployed.insert(1, "v0".into());
    let mut server = Some(server);
    let mut next_marker = 1;
    // Requests served before the flush interval (and a margin for a loaded
    // machine) preceding each kill: those must have reached the store.
    let mut surely_flushed = 0u64;
    let mut answered_total = 0u64;

    for round in 0..ROUNDS {
        let running = server.take().expect("server");
        let deployer = {
            let (url, token, seen) = (running.url.clone(), token.clone(), seen.clone());
            let first = next_marker;
            std::thread::spawn(move || deploy_until_gone(url, token, first, seen))
        };
        let invoker = {
            let (url, seen) = (running.function_url("default", "f"), seen.clone());
            std::thread::spawn(move || invoke_until_gone(url, seen))
        };
        // Kill points spread over 40 ms .. 1.5 s into the round: uploads,
        // compilations, commits, invocations and usage flushes in between.
        let delay = Duration::from_millis(40 + (round * 397) % 1460);
        std::thread::sleep(delay);
        let killed_at = Instant::now();
        running.kill();
        deployer.join().expect("deployer");
        invoker.join().expect("invoker");
        next_marker += 10_000;
        {
            let mut seen = seen.lock().unwrap();
            let margin = flush + Duration::from_millis(500);
            surely_flushed += seen
                .served
                .iter()
                .filter(|t| killed_at.duration_since(**t) > margin)
                .count() as u64;
            answered_total += seen.answered;
            seen.served.clear();
            seen.answered = 0;
        }

        let restarted = home.start(&flags);
        // Every deploy that answered is there, under the number it was given.
        let detail = function(&restarted, &token);
        let versions: BTreeMap<u64, String> = detail["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .map(|v| {
                let number = v["number"].as_u64().expect("number");
                (number, v["digest"].as_str().expect("digest").to_owned())
            })
            .collect();
        let deployed = seen.lock().unwrap().deployed.clone();
        for version in deployed.keys() {
            assert!(
                versions.contains_key(version),
                "round {round}: v{version} answered 201 but is gone"
            );
        }
        let current = detail["current_version"].as_u64().expect("current");
        let last_answered = *deployed.keys().last().expect("a deploy");
        assert!(current >= last_answered, "round {round}");
        // Every stored version's module is whole, and the current one runs.
        let modules = home.data().join("modules");
        for digest in versions.values() {
            let blob = std::fs::read(modules.join(format!("{digest}.wasm"))).expect("blob");
            assert!(blob.starts_with(b"\0asm"), "round {round}: blob {digest}");
        }
        let answer = post(&restarted.function_url("default", "f"), "");
        assert_eq!(answer.status, 200, "round {round}: {}", answer.body);
        if let Some(marker) = deployed.get(&current) {
            assert_eq!(&answer.body, marker, "round {round}");
        }
        // Usage: nothing counted that was not served, nothing lost but the
        // last flush interval. (The probe above is not flushed yet.)
        let stored = stored_requests(&restarted, &token);
        assert!(
            stored >= surely_flushed && stored <= answered_total + 2 * (round + 1),
            "round {round}: {stored} requests stored, {surely_flushed}..{answered_total} expected"
        );
        server = Some(restarted);
    }

    // Finally, each answered version serves its own module when made current.
    let server = server.expect("server");
    let deployed = seen.lock().unwrap().deployed.clone();
    for (version, marker) in deployed.iter().rev().take(6) {
        server.ok(&["rollback", "f", &version.to_string()]);
        let answer = post(&server.function_url("default", "f"), "");
        assert_eq!((answer.status, &answer.body), (200, marker));
    }
}

#[test]
fn a_full_disk_fails_the_deploy_with_507_and_the_previous_version_keeps_serving() {
    let home = Home::new();
    std::fs::create_dir_all(home.data()).expect("data dir");
    let data = home.data().display().to_string();
    // The data directory on a 4 MiB tmpfs of the server's own mount namespace
    // (in a user namespace, so that no privilege is needed and nothing is left
    // mounted on the machine).
    let mount = "mount -t tmpfs -o size=4m,mode=0700 kiln-test \"$0\" && exec \"$@\"";
    let wrapper = [
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        mount,
        data.as_str(),
    ];
    let server = home.start_in(&wrapper, &[]);
    server.ok(&["deploy", "--name", "f", &guest("hello")]);

    // 8 MiB: a valid module that cannot fit.
    let big = padded_module(&home, "big.wasm", 8 << 20);
    let out = server.cli(&["deploy", "--name", "f", &big], &[], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(
        err.trim(),
        "kiln: the server's storage is full; nothing was stored (507)"
    );
    // The previous version is still current and serving; nothing half-stored.
    let info = server.ok(&["info", "f"]);
    assert!(info.contains("* v1") && !info.contains("v2"), "{info}");
    let hello = post(&server.function_url("default", "f"), "disk");
    assert_eq!((hello.status, hello.body.as_str()), (200, "Hello, disk!\n"));
    // The refused upload left nothing behind: 2.5 MiB fits only in the room
    // its staging file took.
    let fits = padded_module(&home, "fits.wasm", 5 << 19);
    server.ok(&["deploy", "--name", "f", &fits]);
    assert!(server.ok(&["info", "f"]).contains("* v2"));
}

/// Writes a valid module carrying `size` bytes of custom section; its path.
fn padded_module(home: &Home, name: &str, size: usize) -> String {
    let mut module =
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)
            .expect("wat");
    let mut section = vec![4u8];
    section.extend_from_slice(b"fill");
    section.resize(5 + size, 0x5a);
    module.push(0);
    leb128(&mut module, section.len());
    module.extend_from_slice(&section);
    let path = home.dir.path().join(name);
    std::fs::write(&path, &module).expect("write");
    path.display().to_string()
}

fn leb128(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Every file under `dir`.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        match std::fs::read_dir(&path) {
            Ok(entries) => pending.extend(entries.map(|e| e.expect("entry").path())),
            Err(_) => files.push(path),
        }
    }
    files
}

#[test]
fn an_artifact_cut_short_or_damaged_on_disk_neither_crashes_the_server_nor_stops_its_function() {
    let home = Home::new();
    let server = home.start(&[]);
    server.ok(&["deploy", "--name", "f", &guest("hello")]);
    let url = server.function_url("default", "f");
    assert_eq!(post(&url, "a").body, "Hello, a!\n");
    // The artifact's file is written behind the deploy's answer: wait for it.
    let artifacts = eventually("the artifact on disk", || {
        let files = files_under(&home.data().join("artifacts"));
        let written = !files.is_empty()
            && files
                .iter()
                .all(|f| f.extension().is_none_or(|e| e != "tmp"));
        written.then_some(files)
    });
    // Cut to nothing while the function is loaded: a mapped file would fault
    // (SIGBUS) on the next touch of its code.
    for artifact in &artifacts {
        std::fs::OpenOptions::new()
            .write(true)
            .open(artifact)
            .and_then(|f| f.set_len(0))
            .expect("truncate the artifact");
    }
    for i in 0..10 {
        let got = post(&url, &format!("b{i}"));
        assert_eq!(got.body, format!("Hello, b{i}!\n"));
    }
    // Restarted on a damaged cache: the artifact is made again from the module.
    assert!(server.stop().success());
    for artifact in &artifacts {
        std::fs::write(artifact, b"not an artifact at all").expect("damage the artifact");
    }
    let server = home.start(&[]);
    let url = server.function_url("default", "f");
    assert_eq!(post(&url, "c").body, "Hello, c!\n");
    assert_eq!(post(&url, "d").body, "Hello, d!\n");
}
