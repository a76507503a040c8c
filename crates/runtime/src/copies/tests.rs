//! The writable copies' own tests: what counts as a change, that a descriptor
//! still open keeps a whole copy from reuse (and what an overlay's does), the
//! bounds, and copies made ahead.

use super::*;

fn tree(root: &Path) -> PathBuf {
    let source = root.join("source");
    std::fs::create_dir_all(source.join("sub")).expect("mkdir");
    std::fs::write(source.join("a.txt"), "a").expect("write");
    std::fs::write(source.join("sub/b.txt"), "b").expect("write");
    source
}

/// What an invocation does: an unchanged idle copy, else a new one.
fn take(copies: &Arc<Copies>, source: &Path, fresh: PathBuf) -> Copy {
    match copies.take_idle(source) {
        Some(copy) => copy,
        None => copies.make(source, fresh).expect("make"),
    }
}

/// Gives `copy` back and does what is left to do, a replacement made
/// beside it.
fn give_back(copies: &Copies, copy: Copy, reusable: bool) {
    let returned = copies.give_back(copy, reusable);
    copies.settle(returned);
}

/// How copies are made: whole, or as overlays mounted by a helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Whole,
    Overlay,
}

const KINDS: [Kind; 2] = [Kind::Whole, Kind::Overlay];

/// Copies of `kind` (an overlay helper must start: this machine can mount).
fn copies_of(kind: Kind, max_idle_bytes: u64, root: &Path) -> Copies {
    let copies = Copies::new(max_idle_bytes, names_in(root));
    match kind {
        Kind::Whole => copies,
        Kind::Overlay => {
            let overlays = Overlays::start().expect("the overlay helper starts");
            let probe = std::path::absolute(root.join("probe")).expect("absolute");
            overlays
                .probe(&probe)
                .expect("the helper mounts an overlay");
            copies.overlaid(Arc::new(overlays))
        }
    }
}

/// Names for replacements, in `dir`.
fn names_in(dir: &Path) -> Arc<Names> {
    Arc::new(Names::new(dir.to_owned()))
}

fn counts(copies: &Copies) -> (u64, u64, u64) {
    let WritableCopies {
        made, reused, idle, ..
    } = copies.counts();
    (made, reused, idle)
}

/// Takes a copy, lets `touch` do something to it, gives it back as a
/// cleanly ended core module's, and says whether the next take reused it.
fn reused_after(kind: Kind, touch: impl FnOnce(&Path)) -> bool {
    let root = tempfile::tempdir().expect("tempdir");
    let source = tree(root.path());
    let copies = Arc::new(copies_of(kind, 1 << 20, root.path()));
    let copy = take(&copies, &source, root.path().join("c1"));
    let first = copy.path().to_owned();
    touch(&first);
    give_back(&copies, copy, true);
    let next = take(&copies, &source, root.path().join("c2"));
    // Whatever was reused is as the source is.
    assert_eq!(
        std::fs::read(next.path().join("a.txt")).expect("read"),
        b"a"
    );
    assert_eq!(
        std::fs::read(next.path().join("sub/b.txt")).expect("read"),
        b"b"
    );
    let reused = next.path() == first;
    // A changed copy was replaced ahead of the next take.
    assert_eq!(counts(&copies), if reused { (1, 1, 0) } else { (2, 1, 0) });
    reused
}

#[test]
fn a_copy_only_read_is_reused() {
    for kind in KINDS {
        let reused = reused_after(kind, |copy| {
            std::fs::read(copy.join("sub/b.txt")).expect("read");
            std::fs::read_dir(copy).expect("read_dir").count();
            std::fs::read_dir(copy.join("sub"))
                .expect("read_dir")
                .count();
            std::fs::metadata(copy.join("a.txt")).expect("stat");
        });
        assert!(reused, "{kind:?}");
    }
}

#[test]
fn a_copy_changed_in_any_way_is_not_reused() {
    for kind in KINDS {
        for (what, change) in changes() {
            // An overlay is a mount of its own: no hard link leaves it.
            if kind == Kind::Overlay && what.contains("outside") {
                continue;
            }
            assert!(!reused_after(kind, change), "{kind:?} reused after: {what}");
        }
    }
}

type Change = Box<dyn FnOnce(&Path)>;

/// Every kind of change a guest can make to a copy.
fn changes() -> Vec<(&'static str, Change)> {
    use std::os::unix::fs::symlink;
    vec![
        (
            "write",
            Box::new(|c| std::fs::write(c.join("sub/b.txt"), "B").expect("w")),
        ),
        (
            "same bytes",
            Box::new(|c| std::fs::write(c.join("a.txt"), "a").expect("w")),
        ),
        (
            "opened for writing, nothing written",
            Box::new(|c| {
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(c.join("a.txt"))
                    .expect("open");
            }),
        ),
        (
            "new file",
            Box::new(|c| std::fs::write(c.join("sub/new"), "").expect("w")),
        ),
        (
            "new directory",
            Box::new(|c| std::fs::create_dir(c.join("d")).expect("mkdir")),
        ),
        (
            "removed",
            Box::new(|c| std::fs::remove_file(c.join("sub/b.txt")).expect("rm")),
        ),
        (
            "renamed",
            Box::new(|c| std::fs::rename(c.join("a.txt"), c.join("z")).expect("mv")),
        ),
        (
            "link",
            Box::new(|c| symlink("a.txt", c.join("l")).expect("ln")),
        ),
        (
            "hard link",
            Box::new(|c| std::fs::hard_link(c.join("a.txt"), c.join("h")).expect("ln")),
        ),
        (
            "written through a hard link outside the copy",
            Box::new(|c| {
                let outside = c.with_extension("outside");
                std::fs::hard_link(c.join("sub/b.txt"), &outside).expect("ln");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&outside)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, b"B"))
                    .expect("write");
                std::fs::remove_file(&outside).expect("rm");
            }),
        ),
        (
            "times",
            Box::new(|c| {
                let file = std::fs::File::open(c.join("sub/b.txt")).expect("open");
                file.set_modified(std::time::UNIX_EPOCH)
                    .expect("set_modified");
            }),
        ),
        (
            "permissions",
            Box::new(|c| {
                use std::os::unix::fs::PermissionsExt;
                let perms = std::fs::Permissions::from_mode(0o600);
                std::fs::set_permissions(c.join("a.txt"), perms).expect("chmod");
            }),
        ),
    ]
}

#[test]
fn a_whole_copy_with_a_descriptor_still_open_is_not_reused() {
    // Each keeps descriptors of the copy open while it is given back (as
    // work still under way would): opened twice with one closed, so that
    // two opens in a row would be merged if inotify could merge them.
    type Hold = Box<dyn Fn(&Path) -> Vec<std::fs::File>>;
    let twice_one_closed = |path: PathBuf| -> Hold {
        Box::new(move |c| {
            let open = || std::fs::File::open(c.join(&path)).expect("open");
            let (kept, closed) = (open(), open());
            drop(closed);
            vec![kept]
        })
    };
    let holds: Vec<(&str, Hold)> = vec![
        ("a file", twice_one_closed("a.txt".into())),
        (
            "a file in a subdirectory",
            twice_one_closed("sub/b.txt".into()),
        ),
        ("a subdirectory", twice_one_closed("sub".into())),
        ("the root", twice_one_closed(".".into())),
    ];
    // (An overlay copy needs no count: its own test below.)
    let kind = Kind::Whole;
    for (what, hold) in &holds {
        let root = tempfile::tempdir().expect("tempdir");
        let source = tree(root.path());
        let copies = Arc::new(copies_of(kind, 1 << 20, root.path()));
        let copy = take(&copies, &source, root.path().join("c1"));
        let first = copy.path().to_owned();
        let held = hold(&first);
        give_back(&copies, copy, true);
        let next = take(&copies, &source, root.path().join("c2"));
        assert_ne!(next.path(), first, "{kind:?} reused with {what} still open");
        drop(held);
        // Once closed, a copy only read is reused again.
        give_back(&copies, next, true);
        assert!(
            copies.take_idle(&source).is_some(),
            "{kind:?} not reused after {what} was closed"
        );
    }
}

#[test]
fn an_overlay_copy_held_open_for_writing_is_not_reused_and_one_held_for_reading_is() {
    // Opening a file for writing copies it up (the one watch, of the upper
    // directory, sees it): whatever a descriptor still open could do later,
    // the copy is already changed. One opened for reading cannot change it.
    let open = |path: &Path, write: bool| {
        std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .open(path)
            .expect("open")
    };
    for (what, write, reused) in [("reading", false, true), ("writing", true, false)] {
        for path in ["a.txt", "sub/b.txt"] {
            let root = tempfile::tempdir().expect("tempdir");
            let source = tree(root.path());
            let copies = Arc::new(copies_of(Kind::Overlay, 1 << 20, root.path()));
            let copy = take(&copies, &source, root.path().join("c1"));
            assert_eq!(copy.watches.len(), 1, "one watch, of the upper directory");
            let first = copy.path().to_owned();
            let held = open(&first.join(path), write);
            give_back(&copies, copy, true);
            let next = take(&copies, &source, root.path().join("c2"));
            assert_eq!(next.path() == first, reused, "{path} held open for {what}");
            drop(held);
        }
    }
}

#[test]
fn a_copy_is_reused_only_after_a_clean_end_and_within_the_bounds() {
    let root = tempfile::tempdir().expect("tempdir");
    let source = tree(root.path());
    let fresh = |n: u32| root.path().join(format!("c{n}"));
    // Not reusable (a guest stopped by a limit): deleted, and a new
    // copy made ahead for the next invocation.
    let copies = Arc::new(Copies::new(1 << 20, names_in(root.path())));
    let copy = take(&copies, &source, fresh(1));
    give_back(&copies, copy, false);
    assert!(!fresh(1).exists());
    assert_eq!(counts(&copies), (2, 0, 1));
    // Past the byte bound (a byte short of both copies here), the copy
    // given back longest ago, of whichever tree, makes room.
    let other = root.path().join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("c.txt"), "c").expect("write");
    let both = usage(&source).0 + usage(&other).0;
    let copies = Arc::new(Copies::new(both - 1, names_in(root.path())));
    let (a, b) = (
        take(&copies, &source, fresh(2)),
        take(&copies, &other, fresh(3)),
    );
    give_back(&copies, a, true);
    assert!(fresh(2).exists());
    give_back(&copies, b, true);
    assert!(!fresh(2).exists() && fresh(3).exists());
    assert!(copies.take_idle(&source).is_none());
    let again = copies
        .take_idle(&other)
        .expect("the other tree's copy is idle");
    assert_eq!(again.path(), fresh(3).join(TREE));
    // A copy bigger than the whole bound is not kept.
    let small = Arc::new(Copies::new(1, names_in(root.path())));
    let copy = take(&small, &source, fresh(4));
    give_back(&small, copy, true);
    assert!(!fresh(4).exists());
    assert_eq!(counts(&small), (1, 0, 0), "nothing made ahead");
    // At most MAX_IDLE_PER_TREE per tree.
    let copies = Arc::new(Copies::new(1 << 20, names_in(root.path())));
    let taken: Vec<Copy> = (0..=MAX_IDLE_PER_TREE as u32)
        .map(|n| take(&copies, &source, fresh(10 + n)))
        .collect();
    for copy in taken {
        give_back(&copies, copy, true);
    }
    let left = (0..=MAX_IDLE_PER_TREE as u32)
        .filter(|n| fresh(10 + n).exists())
        .count();
    assert_eq!(left, MAX_IDLE_PER_TREE);
    assert_eq!(
        counts(&copies).0,
        MAX_IDLE_PER_TREE as u64 + 1,
        "nothing made ahead"
    );
    // Idle copies go with their owner.
    drop(copies);
    assert!((0..=MAX_IDLE_PER_TREE as u32).all(|n| !fresh(10 + n).exists()));
}

/// Copies of a tree made in `root`, and two copies taken of it.
fn two_copies(kind: Kind, root: &Path) -> (Arc<Copies>, PathBuf, Copy, Copy) {
    let source = tree(root);
    let copies = Arc::new(copies_of(kind, 1 << 20, root));
    let (a, b) = (
        take(&copies, &source, root.join("a")),
        take(&copies, &source, root.join("b")),
    );
    (copies, source, a, b)
}

#[test]
fn a_changed_copy_is_replaced_ahead_once_per_tree() {
    for kind in KINDS {
        let root = tempfile::tempdir().expect("tempdir");
        let (copies, source, a, b) = two_copies(kind, root.path());
        for copy in [a, b] {
            std::fs::write(copy.path().join("a.txt"), "changed").expect("write");
            give_back(&copies, copy, true);
        }
        // One replacement: the second found it idle already.
        assert_eq!(counts(&copies), (3, 0, 1), "{kind:?}");
        let next = copies.take_idle(&source).expect("made ahead");
        assert_eq!(
            std::fs::read(next.path().join("a.txt")).expect("read"),
            b"a"
        );
        assert_eq!(counts(&copies), (3, 1, 0), "{kind:?}");
    }
}

#[test]
fn making_a_copy_reports_no_event() {
    // Else a drain racing with `make` could count a close without its
    // open (the watch not registered yet) and never reuse the copy.
    for kind in KINDS {
        let root = tempfile::tempdir().expect("tempdir");
        let source = tree(root.path());
        let copies = copies_of(kind, 1 << 20, root.path());
        let copy = copies.make(&source, root.path().join("c")).expect("make");
        assert!(!copy.watches.is_empty());
        assert_eq!(copy.mounted.is_some(), kind == Kind::Overlay);
        let inotify = copies.inotify.as_ref().expect("inotify");
        let mut buffer = [MaybeUninit::<u8>::uninit(); 256];
        let mut reader = inotify::Reader::new(inotify, &mut buffer);
        match reader.next() {
            Err(rustix::io::Errno::AGAIN) => {}
            other => panic!("{kind:?}: an event: {:?}", other.map(|e| e.events())),
        }
    }
}

#[test]
fn a_full_queue_counts_as_a_change_for_every_copy() {
    let root = tempfile::tempdir().expect("tempdir");
    let (copies, source, a, b) = two_copies(Kind::Whole, root.path());
    // Reads of `a` fill the queue to the brim (an open and a close, each
    // reported by the file's watch and its directory's: four events), so
    // that the write to `b` after them is lost: only the overflow says so.
    let limit: u64 = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(16_384);
    for _ in 0..limit / 4 {
        std::fs::File::open(a.path().join("a.txt")).expect("open");
    }
    std::fs::write(b.path().join("a.txt"), "changed").expect("write");
    let (first_a, first_b) = (a.path().to_owned(), b.path().to_owned());
    give_back(&copies, b, true);
    give_back(&copies, a, true);
    let next = copies.take_idle(&source).expect("a copy made ahead");
    assert!(
        next.path() != first_a && next.path() != first_b,
        "a copy was kept after a lost event"
    );
    assert_eq!(counts(&copies), (3, 1, 0));
}

/// The helper's mounts (its `mountinfo`), by target.
fn helper_mounts(copies: &Copies) -> String {
    let overlays = copies.overlays.as_ref().expect("overlays");
    let info = overlays.seen(Path::new("/")).with_file_name("mountinfo");
    std::fs::read_to_string(info).expect("mountinfo")
}

#[test]
fn an_overlay_copy_copies_a_file_when_it_is_first_written_and_leaves_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().expect("tempdir");
    let source = tree(root.path());
    let big = vec![7u8; 4 << 20];
    std::fs::write(source.join("big.bin"), &big).expect("write");
    // Unpacked bundles are read-only (`0444`, `0555`).
    for (path, mode) in [
        ("a.txt", 0o444),
        ("big.bin", 0o444),
        ("sub/b.txt", 0o444),
        ("sub", 0o555),
    ] {
        std::fs::set_permissions(source.join(path), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
    }
    let copies = Arc::new(copies_of(Kind::Overlay, 1 << 30, root.path()));
    let home = std::path::absolute(root.path().join("c")).expect("absolute");
    let copy = copies.make(&source, home.clone()).expect("make");
    let target = copy.mounted.clone().expect("an overlay");
    // The helper runs under its own seccomp filter, unable to gain privileges.
    let pid = copies.overlays.as_ref().expect("overlays").pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(status.contains("\nSeccomp:\t2\n"), "{status}");
    assert!(status.contains("\nNoNewPrivs:\t1\n"), "{status}");
    // It holds no descriptor of this process but its end of the socket pair.
    let fds: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .flatten()
        .map(|fd| std::fs::read_link(fd.path()).unwrap_or_default())
        .collect();
    assert_eq!(fds.len(), 1, "{fds:?}");
    assert!(fds[0].to_string_lossy().starts_with("socket:"), "{fds:?}");
    assert!(helper_mounts(&copies).contains(&target.display().to_string()));
    // One watch, whatever the tree's size.
    assert_eq!(copy.watches.len(), 1);
    // Made without copying: what it takes on disk is its directories'.
    assert!(copy.disk < 64 << 10, "{} bytes on disk", copy.disk);
    assert_eq!(
        std::fs::read(copy.path().join("big.bin")).expect("read"),
        big
    );
    let upper = home.join("upper");
    assert_eq!(std::fs::read_dir(&upper).expect("upper").count(), 0);
    // A second copy is made the same way, of the same base (the tree's one
    // whole copy on this node).
    let other = copies.make(&source, root.path().join("d")).expect("make");
    assert!(other.disk < 64 << 10, "{} bytes on disk", other.disk);
    assert_eq!(copies.lock().bases.len(), 1);
    // The first write copies that file, and only it; the tree is as it was.
    std::fs::write(copy.path().join("sub/b.txt"), "B").expect("write");
    std::fs::write(copy.path().join("sub/new"), "n").expect("write");
    let upper = upper.join(TREE);
    assert_eq!(std::fs::read(upper.join("sub/b.txt")).expect("upper"), b"B");
    assert!(!upper.join("big.bin").exists() && !upper.join("a.txt").exists());
    assert_eq!(
        std::fs::read(other.path().join("sub/b.txt")).expect("read"),
        b"b"
    );
    assert!(!other.path().join("sub/new").exists());
    give_back(&copies, other, true);
    assert_eq!(std::fs::read(source.join("sub/b.txt")).expect("read"), b"b");
    assert!(!source.join("sub/new").exists());
    // Given back changed: detached and removed, directories the kernel made
    // without permissions included; a replacement made ahead.
    give_back(&copies, copy, true);
    assert!(!home.exists(), "left: {}", home.display());
    assert!(!helper_mounts(&copies).contains(&target.display().to_string()));
    let next = copies.take_idle(&source).expect("made ahead");
    assert_eq!(
        std::fs::read(next.path().join("sub/b.txt")).expect("read"),
        b"b"
    );
    assert!(next.mounted.is_some());
    // The helper ends with its owner, its mounts with it.
    let helper = copies
        .overlays
        .as_ref()
        .expect("overlays")
        .seen(Path::new("/"));
    give_back(&copies, next, true);
    drop(Arc::into_inner(copies).expect("the last reference"));
    assert!(!helper.exists(), "the helper is still there");
    let left: Vec<_> = std::fs::read_dir(root.path())
        .expect("read_dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["source"], "copies, bases or probes left");
}

#[test]
fn copies_are_whole_once_the_helper_is_gone() {
    let root = tempfile::tempdir().expect("tempdir");
    let source = tree(root.path());
    let copies = Arc::new(copies_of(Kind::Overlay, 1 << 20, root.path()));
    let overlaid = copies.make(&source, root.path().join("c1")).expect("make");
    assert!(overlaid.mounted.is_some());
    let pid = copies.overlays.as_ref().expect("overlays").pid();
    // SAFETY: kill(2) on the helper this test's `Copies` forked.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    // The next copy cannot be mounted: it is made whole, and works.
    let whole = copies.make(&source, root.path().join("c2")).expect("make");
    assert!(whole.mounted.is_none());
    std::fs::write(whole.path().join("a.txt"), "changed").expect("write");
    assert_eq!(std::fs::read(source.join("a.txt")).expect("read"), b"a");
    // The overlay went with the helper; its directories are still removed.
    give_back(&copies, overlaid, false);
    give_back(&copies, whole, false);
    assert!(!root.path().join("c1").exists() && !root.path().join("c2").exists());
    assert_eq!(counts(&copies), (3, 0, 1), "two made, one made ahead");
    let ahead = copies.take_idle(&source).expect("made ahead");
    assert!(ahead.mounted.is_none(), "made whole");
}

#[test]
fn an_unused_base_is_removed_to_keep_within_the_idle_bound() {
    let root = tempfile::tempdir().expect("tempdir");
    let source = tree(root.path());
    let other = root.path().join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("c.txt"), "c").expect("write");
    // What a base and an overlay copy take here, measured on a first `Copies`.
    let (base_bytes, copy_disk) = {
        let copies = Arc::new(copies_of(Kind::Overlay, 1 << 30, root.path()));
        let copy = copies.make(&source, root.path().join("m")).expect("make");
        let base = copies.lock().bases[&source].usage.0;
        let disk = copy.disk;
        give_back(&copies, copy, true);
        (base, disk)
    };
    let other_base = usage(&other).0;
    // Room for both bases, or for one base and an idle copy of each tree,
    // but a byte short of both bases and an idle copy.
    let bound = base_bytes + other_base + copy_disk - 1;
    let copies = Arc::new(copies_of(Kind::Overlay, bound, root.path()));
    let a = take(&copies, &source, root.path().join("a"));
    give_back(&copies, a, true);
    // The other tree's base is made beside the first tree's, which its idle
    // copy still uses: over the bound until that copy goes.
    let b = take(&copies, &other, root.path().join("b"));
    assert_eq!(copies.lock().bases.len(), 2);
    let first_base = copies.lock().bases[&source].dir.clone();
    // Giving back the other tree's copy makes room: the first tree's idle
    // copy goes, and then its base, which nothing uses any more (the bases
    // and the idle copy left fit).
    give_back(&copies, b, true);
    assert!(!root.path().join("a").exists());
    assert!(!first_base.exists(), "the unused base is still there");
    assert_eq!(
        copies.lock().bases.keys().collect::<Vec<_>>(),
        [&other],
        "only the used base is left"
    );
    // The first tree is copied again from a new base.
    let again = take(&copies, &source, root.path().join("c"));
    assert_eq!(
        std::fs::read(again.path().join("a.txt")).expect("read"),
        b"a"
    );
    assert!(again.mounted.is_some());
}
