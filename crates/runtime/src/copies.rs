//! Writable copies of a shipped directory (`--dir HOST:GUEST:copy`), made once
//! and handed from one invocation to the next for as long as none changes them.
//!
//! Making a copy costs as much as the tree is big. A copy an invocation left
//! exactly as it found it is not deleted but kept for the next invocation of
//! the same tree, so a mount that is only read is copied once, not per
//! request. "Exactly as it found it" is what inotify reports on every directory
//! and file of the copy: not one change of content or metadata (a write or truncation,
//! a file closed after being opened for writing, an entry created, removed or
//! renamed, times or links changed), and no event lost to a full queue. Reads
//! report nothing, so reading costs nothing here.
//!
//! Only an invocation that ended by itself (it returned or exited) of a core
//! module gives its copy back for reuse: WASI preview 1 finishes every write
//! before the guest goes on, so once such a guest has ended and its descriptors
//! are closed, nothing can still change the copy. A component's filesystem
//! streams write in the background and may finish after the guest has ended,
//! and a guest stopped by a limit may leave a write under way: their copies are
//! deleted, as every changed copy is.
//!
//! Idle copies are bounded: [`MAX_IDLE_PER_TREE`] per tree (a copy given back
//! past that is deleted), and all together at most the byte bound given at
//! start (a quarter of the scratch budget; past it, the idle copies given back
//! longest ago, of any tree, are deleted to make room). They live in the scratch root under `<pid>-<n>`
//! names, so that a start after a crash removes them with the invocation
//! directories.

use crate::disk_usage::usage;
use rustix::fs::inotify::{self, ReadFlags, WatchFlags};
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Idle copies kept per tree, at most.
pub(crate) const MAX_IDLE_PER_TREE: usize = 8;

/// What a change to a watched directory or its entries reports.
const CHANGES: WatchFlags = WatchFlags::MODIFY
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::CREATE)
    .union(WatchFlags::DELETE)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO);

/// One invocation's private copy of a tree.
#[derive(Debug)]
pub(crate) struct Copy {
    id: u64,
    path: PathBuf,
    source: PathBuf,
    /// Bytes allocated and entries, as made ([`usage`]).
    usage: (u64, u64),
    /// inotify's watches of its directories; empty when they could not all be
    /// set (such a copy is never reused).
    watches: Vec<i32>,
    /// When it was last given back and kept (a count of such times).
    idled: u64,
}

impl Copy {
    /// Where the copy is on this machine.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// The copies of every tree: idle ones by tree, and what inotify has said
/// about each copy.
pub(crate) struct Copies {
    /// `None` where inotify is unavailable: then no copy is reused.
    inotify: Option<OwnedFd>,
    max_idle_bytes: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    idle: HashMap<PathBuf, Vec<Copy>>,
    idle_bytes: u64,
    /// Watch descriptor → the copy whose directory it watches.
    watched: HashMap<i32, u64>,
    /// Copies a change was reported for.
    changed: std::collections::HashSet<u64>,
    /// Copies kept idle so far (orders them, oldest first).
    given_back: u64,
    /// Counts copies made and copies reused (for tests and benchmarks).
    made: u64,
    reused: u64,
}

impl Copies {
    /// Copies whose idle ones hold at most `max_idle_bytes` together.
    pub(crate) fn new(max_idle_bytes: u64) -> Copies {
        let inotify = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .map_err(|e| {
                tracing::warn!("no inotify ({e}): writable copies are made for every invocation")
            })
            .ok();
        Copies {
            inotify,
            max_idle_bytes,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An unchanged idle copy of `source`, if there is one (a lock and a
    /// non-blocking read; changed idle copies found on the way, which only a
    /// lost event makes, are deleted on the blocking pool).
    pub(crate) fn take_idle(self: &Arc<Self>, source: &Path) -> Option<Copy> {
        let mut stale = Vec::new();
        let mut state = self.lock();
        self.drain(&mut state);
        let mut found = None;
        while let Some(copy) = state.idle.get_mut(source).and_then(Vec::pop) {
            state.idle_bytes -= copy.usage.0;
            if state.changed.contains(&copy.id) {
                stale.push(copy);
            } else {
                state.reused += 1;
                found = Some(copy);
                break;
            }
        }
        drop(state);
        if !stale.is_empty() {
            let copies = self.clone();
            let delete = move || copies.delete(stale);
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => drop(handle.spawn_blocking(delete)),
                Err(_) => delete(),
            }
        }
        found
    }

    /// A new copy of `source` at `fresh`, watched (blocking).
    pub(crate) fn make(&self, source: &Path, fresh: PathBuf) -> std::io::Result<Copy> {
        copy_tree(source, &fresh)?;
        let usage = usage(&fresh);
        // Watched before it is registered, outside the lock: walking a big
        // tree must not hold up the invocations taking and giving back
        // copies. Nothing else knows of this copy yet, so nothing changes it
        // in between.
        let watches = self.watch(&fresh);
        let mut state = self.lock();
        state.made += 1;
        let id = state.made;
        for wd in &watches {
            state.watched.insert(*wd, id);
        }
        Ok(Copy {
            id,
            path: fresh,
            source: source.to_owned(),
            usage,
            watches,
            idled: 0,
        })
    }

    /// Takes `copy` back from its invocation: kept for the next one if
    /// `reusable` (its invocation ended by itself, as a core module), nothing
    /// changed it and it fits the bounds, the idle copies given back longest
    /// ago (of any tree) making room for it (a lock and a non-blocking read:
    /// done before the invocation answers, so that the next one finds it).
    /// What is not kept is handed back, to [`Copies::delete`].
    #[must_use = "copies not kept are to be deleted"]
    pub(crate) fn give_back(&self, mut copy: Copy, reusable: bool) -> Vec<Copy> {
        let mut state = self.lock();
        self.drain(&mut state);
        let count = state.idle.get(&copy.source).map_or(0, Vec::len);
        let keep = reusable
            && !copy.watches.is_empty()
            && !state.changed.contains(&copy.id)
            && count < MAX_IDLE_PER_TREE
            && copy.usage.0 <= self.max_idle_bytes;
        if !keep {
            return vec![copy];
        }
        let mut evicted = Vec::new();
        while state.idle_bytes.saturating_add(copy.usage.0) > self.max_idle_bytes {
            // Each tree's list is in the order given back: its first is its oldest.
            let oldest = state
                .idle
                .iter()
                .filter_map(|(source, list)| Some((list.first()?.idled, source.clone())))
                .min();
            let Some((_, source)) = oldest else { break };
            let Some(list) = state.idle.get_mut(&source) else {
                break;
            };
            let old = list.remove(0);
            if list.is_empty() {
                state.idle.remove(&source);
            }
            state.idle_bytes -= old.usage.0;
            evicted.push(old);
        }
        state.given_back += 1;
        copy.idled = state.given_back;
        state.idle_bytes += copy.usage.0;
        state
            .idle
            .entry(copy.source.clone())
            .or_default()
            .push(copy);
        evicted
    }

    /// What `copy` takes on disk ([`usage`]) if inotify saw no change in it
    /// (a lock and a non-blocking read: no walk).
    pub(crate) fn unchanged_usage(&self, copy: &Copy) -> Option<(u64, u64)> {
        if copy.watches.is_empty() {
            return None;
        }
        let mut state = self.lock();
        self.drain(&mut state);
        (!state.changed.contains(&copy.id)).then_some(copy.usage)
    }

    /// Copies made and copies reused so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let state = self.lock();
        (state.made, state.reused)
    }

    /// Watches every directory of the copy at `root`; the watches, or none if
    /// one could not be set.
    fn watch(&self, root: &Path) -> Vec<i32> {
        let Some(inotify) = &self.inotify else {
            return Vec::new();
        };
        let mut watches = Vec::new();
        // Directories for their entries, and every file for itself: a file
        // can also be reached by a path outside the copy (a hard link a guest
        // made in its scratch directory), which no directory's watch sees.
        let mut pending = vec![root.to_owned()];
        let give_up = |watches: &[i32]| {
            for wd in watches {
                let _ = inotify::remove_watch(inotify, *wd);
            }
            Vec::new()
        };
        while let Some(dir) = pending.pop() {
            let flags = CHANGES | WatchFlags::DONT_FOLLOW | WatchFlags::ONLYDIR;
            match inotify::add_watch(inotify, &dir, flags) {
                Ok(wd) => watches.push(wd),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "cannot watch a writable copy ({e}): it will not be reused");
                    return give_up(&watches);
                }
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return give_up(&watches);
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    pending.push(entry.path());
                    continue;
                }
                let flags = CHANGES | WatchFlags::DONT_FOLLOW;
                match inotify::add_watch(inotify, entry.path(), flags) {
                    Ok(wd) => watches.push(wd),
                    Err(e) => {
                        tracing::warn!(file = %entry.path().display(), "cannot watch a writable copy ({e}): it will not be reused");
                        return give_up(&watches);
                    }
                }
            }
        }
        watches
    }

    fn unwatch(&self, watches: &[i32], state: &mut State) {
        for wd in watches {
            state.watched.remove(wd);
            if let Some(inotify) = &self.inotify {
                // Gone already if its directory was removed: nothing to do.
                let _ = inotify::remove_watch(inotify, *wd);
            }
        }
    }

    /// Forgets `copies` and removes their trees (blocking).
    pub(crate) fn delete(&self, copies: Vec<Copy>) {
        if copies.is_empty() {
            return;
        }
        {
            let mut state = self.lock();
            for copy in &copies {
                self.unwatch(&copy.watches, &mut state);
                state.changed.remove(&copy.id);
            }
        }
        for copy in copies {
            if let Err(e) = remove_tree(&copy.path) {
                tracing::warn!(path = %copy.path.display(), "cannot remove a writable copy: {e}");
            }
        }
    }

    /// Reads what inotify reported since the last time: every copy with a
    /// change is marked; a lost event marks them all.
    fn drain(&self, state: &mut State) {
        let Some(inotify) = &self.inotify else {
            return;
        };
        let mut buffer = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(inotify, &mut buffer);
        loop {
            match reader.next() {
                Ok(event) => {
                    let flags = event.events();
                    if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                        let all: Vec<u64> = state.watched.values().copied().collect();
                        state.changed.extend(all);
                    } else if let Some(id) = state.watched.get(&event.wd()) {
                        // Every event asked for is a change; `IGNORED` (a
                        // watch gone with its directory) is one too.
                        state.changed.insert(*id);
                    }
                }
                Err(rustix::io::Errno::AGAIN) => return,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    tracing::warn!("reading inotify: {e}: every writable copy counts as changed");
                    let all: Vec<u64> = state.watched.values().copied().collect();
                    state.changed.extend(all);
                    return;
                }
            }
        }
    }
}

impl Drop for Copies {
    fn drop(&mut self) {
        let idle: Vec<Copy> = self
            .lock()
            .idle
            .drain()
            .flat_map(|(_, copies)| copies)
            .collect();
        self.delete(idle);
    }
}

/// Removes a tree a guest may have left read-only (a copy it chmod-ed).
pub(crate) fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Copies the tree at `from` (directories and regular files only, as bundles
/// hold) to `to`, writable.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
            let mut perms = std::fs::metadata(&target)?.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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

    fn give_back(copies: &Copies, copy: Copy, reusable: bool) {
        let not_kept = copies.give_back(copy, reusable);
        copies.delete(not_kept);
    }

    /// Takes a copy, lets `touch` do something to it, gives it back as a
    /// cleanly ended core module's, and says whether the next take reused it.
    fn reused_after(touch: impl FnOnce(&Path)) -> bool {
        let root = tempfile::tempdir().expect("tempdir");
        let source = tree(root.path());
        let copies = Arc::new(Copies::new(1 << 20));
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
        assert_eq!(copies.counts(), if reused { (1, 1) } else { (2, 0) });
        reused
    }

    #[test]
    fn a_copy_only_read_is_reused() {
        assert!(reused_after(|copy| {
            std::fs::read(copy.join("sub/b.txt")).expect("read");
            std::fs::read_dir(copy.join("sub"))
                .expect("read_dir")
                .count();
            std::fs::metadata(copy.join("a.txt")).expect("stat");
        }));
    }

    #[test]
    fn a_copy_changed_in_any_way_is_not_reused() {
        use std::os::unix::fs::symlink;
        type Change = Box<dyn FnOnce(&Path)>;
        let changes: Vec<(&str, Change)> = vec![
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
        ];
        for (what, change) in changes {
            assert!(!reused_after(change), "reused after: {what}");
        }
    }

    #[test]
    fn a_copy_is_reused_only_after_a_clean_end_and_within_the_bounds() {
        let root = tempfile::tempdir().expect("tempdir");
        let source = tree(root.path());
        let fresh = |n: u32| root.path().join(format!("c{n}"));
        // Not reusable (a component's, or a guest stopped by a limit): deleted.
        let copies = Arc::new(Copies::new(1 << 20));
        let copy = take(&copies, &source, fresh(1));
        give_back(&copies, copy, false);
        assert!(!fresh(1).exists());
        // Past the byte bound (a byte short of both copies here), the copy
        // given back longest ago, of whichever tree, makes room.
        let other = root.path().join("other");
        std::fs::create_dir_all(&other).expect("mkdir");
        std::fs::write(other.join("c.txt"), "c").expect("write");
        let both = usage(&source).0 + usage(&other).0;
        let copies = Arc::new(Copies::new(both - 1));
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
        assert_eq!(again.path(), fresh(3));
        // A copy bigger than the whole bound is not kept.
        let small = Arc::new(Copies::new(1));
        let copy = take(&small, &source, fresh(4));
        give_back(&small, copy, true);
        assert!(!fresh(4).exists());
        // At most MAX_IDLE_PER_TREE per tree.
        let copies = Arc::new(Copies::new(1 << 20));
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
        // Idle copies go with their owner.
        drop(copies);
        assert!((0..=MAX_IDLE_PER_TREE as u32).all(|n| !fresh(10 + n).exists()));
    }
}
