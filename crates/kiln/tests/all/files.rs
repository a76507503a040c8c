//! Files for functions, as a user meets them: `kiln deploy --dir` mounts a
//! directory read-only (or as a private writable copy), `--tmp` gives each
//! invocation a scratch directory; the `fs` guest (one filesystem command per
//! line of its body) probes both, as a core module and as a WASI 0.2 component,
//! and tries every way out.

use crate::support::*;

/// A directory tree to ship: two files, one in a subdirectory, and a link
/// inside the tree (packed as the file it points to).
fn assets(home: &Home) -> std::path::PathBuf {
    let root = home.dir.path().join("assets");
    std::fs::create_dir_all(root.join("fonts")).expect("mkdir");
    std::fs::write(root.join("hello.txt"), "hello from a bundle").expect("write");
    std::fs::write(root.join("fonts/sans.txt"), "glyphs").expect("write");
    std::os::unix::fs::symlink("hello.txt", root.join("alias.txt")).expect("symlink");
    root
}

/// What the `fs` guest answered to `commands`, one `COMMAND -> RESULT` per line.
fn probe(url: &str, commands: &str) -> String {
    let answer = post(url, commands);
    assert_eq!(answer.status, 200, "{commands}: {}", answer.body);
    answer.body
}

/// The result the probe printed for `command`.
fn result_of<'a>(output: &'a str, command: &str) -> &'a str {
    output
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{command} -> ")))
        .unwrap_or_else(|| panic!("no result for {command:?} in {output}"))
}

#[test]
fn a_shipped_directory_is_read_only_and_all_there_is_for_modules_and_components() {
    let home = Home::new();
    let server = home.start(&[]);
    let root = assets(&home);
    let dir = format!("{}:/assets", root.display());
    let component = kiln_guests::component("fs").display().to_string();
    let first = server.cli(&["deploy", "--dir", &dir, &guest("fs")], &[], b"");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        String::from_utf8_lossy(&first.stderr).contains("uploaded"),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // The same tree for a second function, and a redeploy: nothing is uploaded again.
    for args in [
        vec!["deploy", "--name", "fs2", "--dir", &dir, &component],
        vec!["deploy", "--dir", &dir, &guest("fs")],
    ] {
        let again = server.cli(&args, &[], b"");
        let said = String::from_utf8_lossy(&again.stderr);
        assert!(again.status.success(), "{said}");
        assert!(said.contains("unchanged, not uploaded (3 files"), "{said}");
    }

    for function in ["fs", "fs2"] {
        let url = server.function_url("default", function);
        let out = probe(
            &url,
            "cat /assets/hello.txt\ncat /assets/fonts/sans.txt\ncat /assets/alias.txt\n\
             ls /assets\nstat /assets/hello.txt\n\
             write /assets/new.txt x\nwrite /assets/hello.txt changed\nrm /assets/hello.txt\n\
             mkdir /assets/d\nrename /assets/hello.txt /assets/moved.txt\n\
             cat /assets/../../etc/passwd\ncat /etc/passwd\nls /\ncat /assets/hello.txt",
        );
        assert_eq!(
            result_of(&out, "cat /assets/hello.txt"),
            "hello from a bundle"
        );
        assert_eq!(result_of(&out, "cat /assets/fonts/sans.txt"), "glyphs");
        assert_eq!(
            result_of(&out, "cat /assets/alias.txt"),
            "hello from a bundle"
        );
        assert_eq!(result_of(&out, "ls /assets"), "alias.txt,fonts,hello.txt");
        assert!(
            result_of(&out, "stat /assets/hello.txt").starts_with("file 19 bytes, modified "),
            "{out}"
        );
        for refused in [
            "write /assets/new.txt x",
            "write /assets/hello.txt changed",
            "rm /assets/hello.txt",
            "mkdir /assets/d",
            "rename /assets/hello.txt /assets/moved.txt",
            "cat /assets/../../etc/passwd",
            "cat /etc/passwd",
            "ls /",
        ] {
            assert!(
                result_of(&out, refused).starts_with("error: "),
                "{function}: {refused} was allowed: {out}"
            );
        }
    }
    // Nothing a guest did changed the tree on the server's disk.
    let unpacked = home.data().join("bundles");
    let trees: Vec<_> = std::fs::read_dir(&unpacked)
        .expect("bundles")
        .flatten()
        .collect();
    assert_eq!(trees.len(), 1, "one tree, shared");
    let tree = trees[0].path();
    assert_eq!(
        std::fs::read_to_string(tree.join("hello.txt")).expect("read"),
        "hello from a bundle"
    );
    assert!(!tree.join("new.txt").exists());

    let info = server.ok(&["info", "fs"]);
    assert!(info.contains("/assets  <- bundle sha256:"), "{info}");
    assert!(info.contains("(read-only)"), "{info}");
}

#[test]
fn scratch_is_private_bounded_and_gone_after_each_invocation() {
    let home = Home::new();
    let server = home.start(&["--scratch-files", "20"]);
    server.ok(&["deploy", "--tmp", "1MiB", &guest("fs")]);
    server.ok(&["deploy", "--name", "none", &guest("fs")]);
    server.ok(&[
        "deploy",
        "--name",
        "fs2",
        "--tmp",
        "1MiB:/scratch",
        &kiln_guests::component("fs").display().to_string(),
    ]);
    let url = server.function_url("default", "fs");

    let out = probe(
        &url,
        "ls /tmp\nwrite /tmp/a.txt first\nappend /tmp/a.txt +more\nmkdir /tmp/d\n\
         rename /tmp/a.txt /tmp/d/b.txt\ncat /tmp/d/b.txt\nls /tmp\nfill /tmp/half 500000",
    );
    assert_eq!(result_of(&out, "ls /tmp"), "");
    assert_eq!(result_of(&out, "cat /tmp/d/b.txt"), "first+more");
    assert_eq!(result_of(&out, "fill /tmp/half 500000"), "wrote 500000");
    // The next invocation starts empty.
    assert_eq!(result_of(&probe(&url, "ls /tmp"), "ls /tmp"), "");
    // A component sees its scratch where it was asked for.
    let other = probe(
        &server.function_url("default", "fs2"),
        "write /scratch/x hi\ncat /scratch/x",
    );
    assert_eq!(result_of(&other, "cat /scratch/x"), "hi");
    // Without --tmp there is nothing to write to.
    let none = probe(&server.function_url("default", "none"), "write /tmp/x hi");
    assert!(
        result_of(&none, "write /tmp/x hi").starts_with("error: "),
        "{none}"
    );

    // Past the bytes, the invocation is stopped and says which limit.
    let full = post(&url, "fill /tmp/big 4000000");
    assert_eq!(full.status, 507, "{}", full.body);
    assert_eq!(full.header("kiln-outcome"), Some("scratch"));
    assert_eq!(
        full.body,
        "function stopped: scratch limit of 1 MiB exceeded\n"
    );
    // Past the files (20 on this server), likewise.
    let many = post(&url, "many /tmp 50");
    assert_eq!(many.status, 507, "{}", many.body);
    assert_eq!(
        many.body,
        "function stopped: scratch limit of 20 files exceeded\n"
    );

    // Nothing an invocation wrote is left once it has answered: what stays
    // in the scratch root are empty directories, ready for the next ones.
    let scratch = home.data().join("scratch");
    eventually("what invocations wrote removed", || {
        written_in(&scratch).is_empty().then_some(())
    });
}

/// Whatever is in the scratch root `root` besides the empty trees the server
/// keeps ready there (an empty directory, or one holding only an empty `tree`).
fn written_in(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let empty =
        |dir: &std::path::Path| std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
    std::fs::read_dir(root)
        .expect("scratch root")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            let names: Vec<_> = std::fs::read_dir(path)
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            let kept = names.is_empty() || (names == ["tree"] && empty(&path.join("tree")));
            !kept
        })
        .collect()
}

#[test]
fn a_copy_mount_is_writable_per_invocation_and_the_original_stays() {
    let home = Home::new();
    let server = home.start(&[]);
    let root = assets(&home);
    let dir = format!("{}:data:copy", root.display());
    // Copies are made in the scratch directory: one must be there, large enough.
    let fs = guest("fs");
    for tmp in [None, Some("16")] {
        let mut args = vec!["deploy", "--dir", &dir];
        if let Some(tmp) = tmp {
            args.extend_from_slice(&["--tmp", tmp]);
        }
        args.push(&fs);
        let refused = server.cli(&args, &[], b"");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{tmp:?}");
        assert!(
            said.contains("deploy with a tmp larger than that"),
            "{said}"
        );
    }
    // A copy is made ahead at deploy, for the first request; the copy the
    // write changed is deleted and a new one made ahead of the next
    // request; one only read is handed to the next invocation, and the next,
    // as it is: copied once, not per request. A change deletes it again, and
    // another is made ahead.
    let copies = |server: &KilnServer| {
        let text = metrics(server, &home);
        (
            metric(&text, "kiln_writable_copies_made_total"),
            metric(&text, "kiln_writable_copies_reused_total"),
            metric(&text, "kiln_writable_copies_idle"),
        )
    };
    let made_ahead = |server: &KilnServer| {
        eventually("a writable copy made ahead", || {
            (copies(server).2 == 1.0).then_some(())
        })
    };
    server.ok(&["deploy", "--dir", &dir, "--tmp", "1MiB", &fs]);
    made_ahead(&server);
    assert_eq!(copies(&server), (1.0, 0.0, 1.0));
    // Copy-on-write: the server (without capabilities) has its helper mount
    // every copy as an overlay of the tree, none copied whole.
    let overlaid = |server: &KilnServer| {
        metric(
            &metrics(server, &home),
            "kiln_writable_copies_overlaid_total",
        )
    };
    assert_eq!(overlaid(&server), 1.0);
    let url = server.function_url("default", "fs");
    let out = probe(
        &url,
        "write data/hello.txt changed\ncat data/hello.txt\nwrite data/new.txt n\nls data",
    );
    assert_eq!(result_of(&out, "cat data/hello.txt"), "changed");
    assert_eq!(
        result_of(&out, "ls data"),
        "alias.txt,fonts,hello.txt,new.txt"
    );
    made_ahead(&server);
    let next = probe(&url, "cat data/hello.txt\nls data");
    assert_eq!(
        result_of(&next, "cat data/hello.txt"),
        "hello from a bundle"
    );
    assert_eq!(result_of(&next, "ls data"), "alias.txt,fonts,hello.txt");
    assert_eq!(copies(&server), (2.0, 2.0, 1.0));
    for _ in 0..2 {
        let read = probe(&url, "cat data/fonts/sans.txt\nls data");
        assert_eq!(result_of(&read, "cat data/fonts/sans.txt"), "glyphs");
        assert_eq!(result_of(&read, "ls data"), "alias.txt,fonts,hello.txt");
    }
    assert_eq!(copies(&server), (2.0, 4.0, 1.0));
    assert_eq!(overlaid(&server), 2.0);
    let mkdir = probe(&url, "mkdir data/made\nls data");
    assert_eq!(
        result_of(&mkdir, "ls data"),
        "alias.txt,fonts,hello.txt,made"
    );
    made_ahead(&server);
    let after = probe(&url, "ls data");
    assert_eq!(result_of(&after, "ls data"), "alias.txt,fonts,hello.txt");
    assert_eq!(copies(&server), (3.0, 6.0, 1.0));
    let info = server.ok(&["info", "fs"]);
    assert!(info.contains("data  <- bundle sha256:"), "{info}");
    assert!(info.contains("(writable copy)"), "{info}");
}

#[test]
fn copies_are_whole_with_copy_on_write_off() {
    let home = Home::new();
    let server = home.start(&["--copy-on-write", "off"]);
    assert!(
        children(server.pid()).is_empty(),
        "a helper without overlays"
    );
    let dir = format!("{}:data:copy", assets(&home).display());
    server.ok(&["deploy", "--dir", &dir, "--tmp", "1MiB", &guest("fs")]);
    let url = server.function_url("default", "fs");
    let out = probe(&url, "write data/hello.txt changed\ncat data/hello.txt");
    assert_eq!(result_of(&out, "cat data/hello.txt"), "changed");
    let next = probe(&url, "cat data/hello.txt");
    assert_eq!(
        result_of(&next, "cat data/hello.txt"),
        "hello from a bundle"
    );
    let text = metrics(&server, &home);
    assert!(metric(&text, "kiln_writable_copies_made_total") >= 2.0);
    assert_eq!(metric(&text, "kiln_writable_copies_overlaid_total"), 0.0);
}

#[test]
fn scratch_left_by_a_killed_server_is_removed_at_start() {
    let home = Home::new();
    let server = home.start(&[]);
    // A writable copy too: an overlay, with a work directory the kernel made
    // with no permissions, and the tree's base.
    let dir = format!("{}:data:copy", assets(&home).display());
    server.ok(&["deploy", "--dir", &dir, "--tmp", "1MiB", &guest("fs")]);
    let url = server.function_url("default", "fs");
    let slow = std::thread::spawn(move || {
        // Cut off by the kill: its answer does not matter.
        let _ = http()
            .post(&url)
            .send("write data/hello.txt x\nwrite /tmp/left-behind x\nsleep 30000");
    });
    let scratch = home.data().join("scratch");
    let names = || -> Vec<std::ffi::OsString> {
        let dirs = std::fs::read_dir(&scratch).expect("scratch");
        dirs.flatten().map(|d| d.file_name()).collect()
    };
    eventually("an invocation's scratch file", || {
        let dirs = std::fs::read_dir(&scratch).ok()?;
        dirs.flatten()
            .any(|d| d.path().join("tree/left-behind").exists())
            .then_some(())
    });
    // The overlay helper is the server's one child; it ends with it.
    let helpers = children(server.pid());
    assert_eq!(helpers.len(), 1, "{helpers:?}");
    server.kill();
    let _ = slow.join();
    eventually("the overlay helper gone with its server", || {
        helpers.iter().all(|&pid| !running(pid)).then_some(())
    });
    let killed = names();
    let left = written_in(&scratch);
    assert!(
        left.iter().any(|d| d.join("tree/left-behind").exists())
            && left.iter().any(|d| d.join("upper/tree/hello.txt").exists()),
        "{left:?}"
    );
    let _restarted = home.start(&[]);
    assert!(
        written_in(&scratch).is_empty(),
        "the killed server's scratch is gone"
    );
    assert!(
        names().iter().all(|name| !killed.contains(name)),
        "nothing of the killed server is left: {:?}",
        names()
    );
}

/// The children of process `pid`.
fn children(pid: i32) -> Vec<i32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks");
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Whether process `pid` exists and has not exited (a zombie has).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(") ")
            .next()
            .is_some_and(|rest| !rest.starts_with('Z'))
    })
}

/// A tar archive of `entries`, written raw: whatever a hostile client sends.
fn raw_archive(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            header.set_link_name("/etc/passwd").expect("link name");
        }
        header.set_cksum();
        builder.append(&header, *data).expect("append");
    }
    builder.into_inner().expect("archive")
}

fn sha256(bytes: &[u8]) -> String {
    kiln_api::Digest::of(bytes).to_string()
}

#[test]
fn hostile_bundles_are_refused_and_nothing_is_stored() {
    let home = Home::new();
    let server = home.start(&["--max-bundle-files", "3", "--max-bundle-size", "64KiB"]);
    let token = home.token();
    let put = |bytes: &[u8], digest: &str| {
        answer(
            http()
                .put(&format!("{}/v1/bundles/{digest}", server.url))
                .header("Authorization", &format!("Bearer {token}"))
                .send(bytes),
        )
    };
    let too_many: Vec<(String, tar::EntryType, &[u8])> = (0..4)
        .map(|i| (format!("f{i}"), tar::EntryType::Regular, &b"x"[..]))
        .collect();
    let too_many: Vec<(&str, tar::EntryType, &[u8])> = too_many
        .iter()
        .map(|(n, k, d)| (n.as_str(), *k, *d))
        .collect();
    let big = vec![0u8; 70 << 10];
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            raw_archive(&[("../escape", tar::EntryType::Regular, b"x")]),
            400,
            "`..` is not allowed",
        ),
        (
            raw_archive(&[("/etc/cron.d/x", tar::EntryType::Regular, b"x")]),
            400,
            "absolute paths are not allowed",
        ),
        (
            raw_archive(&[("link", tar::EntryType::Symlink, b"")]),
            400,
            "symbolic links are not allowed",
        ),
        (
            raw_archive(&[("hard", tar::EntryType::Link, b"")]),
            400,
            "hard links are not allowed",
        ),
        (
            raw_archive(&[("tty", tar::EntryType::Char, b"")]),
            400,
            "device files are not allowed",
        ),
        (raw_archive(&too_many), 413, "more than 3 files"),
        (
            raw_archive(&[("big", tar::EntryType::Regular, &big)]),
            413,
            "over the maximum bundle size of 64 KiB",
        ),
        (
            b"not a tar archive at all".repeat(40),
            400,
            "not a readable tar archive",
        ),
    ];
    for (bytes, status, expected) in cases {
        let digest = sha256(&bytes);
        let refused = put(&bytes, &digest);
        assert_eq!(refused.status, status, "{expected}: {}", refused.body);
        assert!(
            refused.body.contains(expected),
            "{expected}: {}",
            refused.body
        );
        let asked = get_as(&format!("{}/v1/bundles/{digest}", server.url), &token);
        assert_eq!(asked.status, 404, "{expected}: stored anyway");
    }
    // A body that does not hash to the digest named is refused too.
    let good = raw_archive(&[("a", tar::EntryType::Regular, b"x")]);
    let wrong = put(&good, &sha256(b"something else"));
    assert_eq!(wrong.status, 400, "{}", wrong.body);
    assert!(
        wrong.body.contains("it was changed or cut short"),
        "{}",
        wrong.body
    );

    // Nothing refused reached the blob store or the node's bundle cache.
    assert_eq!(
        files_in(&home.data().join("modules")),
        Vec::<std::path::PathBuf>::new()
    );
    let unpacked = std::fs::read_dir(home.data().join("bundles")).map_or(0, |d| d.count());
    assert_eq!(unpacked, 0);

    // A deploy naming a bundle the tenant never uploaded is refused, and stores nothing.
    let digest = sha256(&good);
    let mounted = answer(
        http()
            .post(&format!(
                "{}/v1/functions/y/versions?mount={digest}:/data",
                server.url
            ))
            .header("Authorization", &format!("Bearer {token}"))
            .send(&std::fs::read(guest("fs")).expect("guest")[..]),
    );
    assert_eq!(mounted.status, 400, "{}", mounted.body);
    assert!(mounted.body.contains("upload it first"), "{}", mounted.body);
    assert!(!server.ok(&["list"]).contains("/y"));
}

#[test]
fn one_tenant_cannot_learn_of_or_mount_another_tenants_bundle() {
    let home = Home::new();
    let server = home.start(&[]);
    let root = assets(&home);
    let dir = format!("{}:/assets", root.display());
    server.ok(&["deploy", "--dir", &dir, &guest("fs")]);
    let info = server.ok(&["info", "--json", "fs"]);
    let info: serde_json::Value = serde_json::from_str(&info).expect("json");
    let digest = info["versions"][0]["config"]["mounts"][0]["bundle"]
        .as_str()
        .expect("bundle digest")
        .to_owned();

    let admin = home.admin_token();
    let created = answer(
        http()
            .post(&format!("{}/v1/tenants", server.url))
            .header("Authorization", &format!("Bearer {admin}"))
            .send_json(serde_json::json!({"name": "mallory"})),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let created: serde_json::Value = serde_json::from_str(&created.body).expect("json");
    let mallory = created["token"].as_str().expect("token").to_owned();

    let asked = get_as(&format!("{}/v1/bundles/{digest}", server.url), &mallory);
    assert_eq!(
        asked.status, 404,
        "the bundle's existence leaked: {}",
        asked.body
    );
    let mounted = answer(
        http()
            .post(&format!(
                "{}/v1/functions/steal/versions?mount={digest}:/loot",
                server.url
            ))
            .header("Authorization", &format!("Bearer {mallory}"))
            .send(&std::fs::read(guest("fs")).expect("guest")[..]),
    );
    assert_eq!(mounted.status, 400, "{}", mounted.body);
    assert!(mounted.body.contains("upload it first"), "{}", mounted.body);
}
