//! Writable copies of a shipped directory (`--dir HOST:GUEST:copy`), made once
//! and handed from one invocation to the next for as long as none changes them.
//!
//! Where there are [`Overlays`], a copy is copy-on-write: an overlay whose
//! lower layer is the tree's base (one whole copy of the tree, made at its
//! first copy; counted with the idle copies against their bound, and removed
//! past it once no overlay uses it) and whose upper directory is
//! the copy's own, so a file is copied when it is first written and making a
//! copy costs a mount and one inotify watch, of its upper directory, whatever
//! the tree's size (`Copies::watch_upper` says why that one is enough).
//! Elsewhere, a copy is a whole copy of the tree, watched as follows.
//!
//! Making a copy still costs something. A copy an invocation left
//! exactly as it found it is not deleted but kept for the next invocation of
//! the same tree, so a mount that is only read is copied once, not per
//! request. "Exactly as it found it" is what inotify reports on every directory
//! and file of the copy: not one change of content or metadata (a write or truncation,
//! a file closed after being opened for writing, an entry created, removed or
//! renamed, times or links changed), and no event lost to a full queue. Reads
//! report nothing, so reading costs nothing here.
//!
//! "Left" also means that nothing can still change it. For a whole copy,
//! inotify reports every open and close of its files and directories, and it
//! is kept only when each open has had its close. A descriptor still open when the
//! invocation gives the copy back belongs to work under way (a component's file
//! stream writes on the blocking pool and may finish after the guest has ended;
//! a guest stopped by a limit may leave an operation running), and such a copy
//! is deleted. Every write goes through a descriptor, and its change is
//! reported before the descriptor's close, so a copy whose descriptors are all
//! closed and that reported no change is as it was made. The count is exact:
//! every object of a copy is watched both itself and from its parent
//! directory (the copy's root sits in a directory of its own for that), so no
//! two events in a row are ever identical, which is what inotify merges.
//! Only invocations that ended by themselves (they returned or exited) give a
//! copy back for reuse at all.
//!
//! A copy that is not kept because it changed is replaced on the blocking pool
//! once its invocation has answered, when its tree has no idle copy left and
//! no replacement under way: the next invocation of a function that writes to
//! its copy finds a fresh one ready instead of waiting for it. Every copy so
//! made serves one invocation (or stays idle within the bounds), so this moves
//! work off the request path without adding to it.
//!
//! A deploy has a copy of its tree made ahead the same way, so that the first
//! invocation finds one too. Scratch directories are copies of an empty tree,
//! from a `Copies` of their own (`files.rs`): one not written to serves again.
//!
//! Idle copies are bounded: [`MAX_IDLE_PER_TREE`] per tree (a copy given back
//! past that is deleted), and all together at most the byte bound given at
//! start (for writable copies a quarter of the scratch budget; past it, the idle copies given back
//! longest ago, of any tree, are deleted to make room). They live in the scratch root under `<pid>-<n>`
//! names, so that a start after a crash removes them with the invocation
//! directories.

mod trees;

use crate::disk_usage::usage;
use crate::overlay::Overlays;
use rustix::fs::inotify::{self, ReadFlags, WatchFlags};
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use trees::copy_tree;
pub(crate) use trees::{Names, remove_tree};

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

/// What a watch asks for: changes, and opens and closes to count descriptors.
const WATCHED: WatchFlags = CHANGES
    .union(WatchFlags::OPEN)
    .union(WatchFlags::CLOSE_NOWRITE)
    .union(WatchFlags::DONT_FOLLOW);

/// The events that are changes ([`CHANGES`]: inotify reads back the bits it
/// was asked for), and a watch gone with its object.
const CHANGED: ReadFlags = ReadFlags::from_bits_retain(CHANGES.bits()).union(ReadFlags::IGNORED);

/// The name of a copy's root inside the directory of its own that holds it.
const TREE: &str = "tree";

/// An overlay copy's upper directory (what was written to it), in its home.
const UPPER: &str = "upper";

/// An overlay copy's work directory (the kernel's), in its home.
const WORK: &str = "work";

/// The lower layer of a tree's overlays: a whole copy of it, made once and
/// kept while an overlay of it is mounted (idle or in use), or while the idle
/// bound has room for it.
#[derive(Debug, Clone)]
struct Base {
    /// The directory holding the copy as [`TREE`].
    dir: PathBuf,
    /// The copy's [`usage`]: what each overlay of it counts as made.
    usage: (u64, u64),
    /// Overlays of it made and not yet deleted.
    overlays: usize,
}

/// One invocation's private copy of a tree.
#[derive(Debug)]
pub(crate) struct Copy {
    id: u64,
    /// The directory holding the copy (its parent is watched through it).
    home: PathBuf,
    /// The copy's root, `home/tree`.
    path: PathBuf,
    source: PathBuf,
    /// Bytes allocated and entries, as made ([`usage`]).
    usage: (u64, u64),
    /// Bytes it takes on disk while idle: its usage for a whole copy, its
    /// directories for an overlay.
    disk: u64,
    /// Where an overlay copy is mounted, in the helper's namespace.
    mounted: Option<PathBuf>,
    /// inotify's watches of its home and of every directory and file of it
    /// (an overlay: of its upper directory); empty when they could not all
    /// be set (such a copy is never reused).
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

/// What [`Copies::give_back`] leaves to do, on the blocking pool.
#[derive(Debug, Default)]
#[must_use = "copies not kept are to be deleted"]
pub(crate) struct Returned {
    /// Copies to [`Copies::delete`]: the one given back if not kept, or idle
    /// ones it displaced.
    pub(crate) delete: Vec<Copy>,
    /// A tree to make a new copy of, in [`Copies::settle`] (its copy was
    /// not kept).
    pub(crate) replace: Option<PathBuf>,
}

impl Returned {
    /// Nothing to delete or make.
    pub(crate) fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.replace.is_none()
    }
}

/// Writable copies made, reused and idle, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WritableCopies {
    /// Copies made so far (replacements included).
    pub made: u64,
    /// Of those, the copies made as copy-on-write overlays (the rest were
    /// copied whole).
    pub overlaid: u64,
    /// Times an invocation got a copy another had left unchanged, or a
    /// replacement made ahead of it, instead of a new one.
    pub reused: u64,
    /// Copies ready for the next invocation now.
    pub idle: u64,
}

/// The copies of every tree: idle ones by tree, and what inotify has said
/// about each copy.
pub(crate) struct Copies {
    /// `None` where inotify is unavailable: then no copy is reused.
    inotify: Option<OwnedFd>,
    /// Copies are overlays when there is a helper to mount them, else whole.
    overlays: Option<Arc<Overlays>>,
    /// Where replacements made ahead go.
    names: Arc<Names>,
    max_idle_bytes: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    idle: HashMap<PathBuf, Vec<Copy>>,
    idle_bytes: u64,
    /// Watch descriptor → the copy whose directory or file it watches.
    watched: HashMap<i32, u64>,
    /// Copies a change was reported for.
    changed: std::collections::HashSet<u64>,
    /// Per copy, opens reported less closes reported: descriptors open now.
    open: HashMap<u64, i64>,
    /// Trees a replacement copy is being made for.
    replacing: std::collections::HashSet<PathBuf>,
    /// Per tree, the directory holding its whole copy (as `TREE`) that its
    /// overlays have as their lower layer.
    bases: HashMap<PathBuf, Base>,
    /// Copies kept idle so far (orders them, oldest first).
    given_back: u64,
    /// Counts copies made (as overlays) and copies reused (for tests and
    /// benchmarks).
    made: u64,
    overlaid: u64,
    reused: u64,
}

impl Copies {
    /// Copies whose idle ones hold at most `max_idle_bytes` together, those
    /// made ahead named by `names`.
    pub(crate) fn new(max_idle_bytes: u64, names: Arc<Names>) -> Copies {
        let inotify = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .map_err(|e| {
                tracing::warn!("no inotify ({e}): writable copies are made for every invocation")
            })
            .ok();
        Copies {
            inotify,
            overlays: None,
            names,
            max_idle_bytes,
            state: Mutex::default(),
        }
    }

    /// The same, its copies overlays mounted by `overlays` (each falls back
    /// to a whole copy where mounting fails).
    pub(crate) fn overlaid(mut self, overlays: Arc<Overlays>) -> Copies {
        self.overlays = Some(overlays);
        self
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
            state.idle_bytes -= copy.disk;
            if state.changed.contains(&copy.id) {
                stale.push(copy);
            } else {
                state.reused += 1;
                found = Some(copy);
                break;
            }
        }
        drop(state);
        self.settle_in_background(Returned {
            delete: stale,
            replace: None,
        });
        found
    }

    /// A new copy of `source` in the new directory `home`, watched
    /// (blocking): an overlay where it can be mounted, else a whole copy.
    pub(crate) fn make(&self, source: &Path, home: PathBuf) -> std::io::Result<Copy> {
        std::fs::create_dir(&home)?;
        let mut made = Err(std::io::ErrorKind::Unsupported.into());
        if let Some(overlays) = &self.overlays {
            made = self.mount(overlays, source, &home);
            if let Err(e) = &made {
                tracing::warn!(tree = %source.display(), "cannot mount a copy-on-write copy, copying it whole: {e}");
                let _ = remove_tree(&home).and_then(|()| std::fs::create_dir(&home));
            }
        }
        let (parent, mounted, usage) = match made {
            Ok((parent, target, usage)) => (parent, Some(target), usage),
            Err(_) => match copy_tree(source, &home.join(TREE)) {
                Ok(()) => (home.clone(), None, usage(&home.join(TREE))),
                Err(e) => {
                    let _ = remove_tree(&home);
                    return Err(e);
                }
            },
        };
        let fresh = parent.join(TREE);
        let disk = match mounted {
            Some(_) => crate::disk_usage::usage(&home).0,
            None => usage.0,
        };
        // Watched before it is registered, outside the lock: walking a big
        // tree must not hold up the invocations taking and giving back
        // copies. Nothing else knows of this copy yet, so nothing changes it
        // in between.
        let watches = match mounted {
            Some(_) => self.watch_upper(&home.join(UPPER)),
            None => self.watch(&parent),
        };
        let mut state = self.lock();
        state.made += 1;
        state.overlaid += u64::from(mounted.is_some());
        let id = state.made;
        for wd in &watches {
            state.watched.insert(*wd, id);
        }
        Ok(Copy {
            id,
            home,
            path: fresh,
            source: source.to_owned(),
            usage,
            disk,
            mounted,
            watches,
            idled: 0,
        })
    }

    /// Takes `copy` back from its invocation: kept for the next one if
    /// `reusable` (its invocation ended by itself), nothing changed it, none of
    /// its descriptors is still open and it fits the bounds, the idle copies
    /// given back longest ago (of any tree) making room for it (a lock and a
    /// non-blocking read: done before the invocation answers, so that the next
    /// one finds it). What is not kept is to be deleted, and a changed copy
    /// replaced ([`Returned`]).
    pub(crate) fn give_back(&self, mut copy: Copy, reusable: bool) -> Returned {
        let mut state = self.lock();
        self.drain(&mut state);
        let count = state.idle.get(&copy.source).map_or(0, Vec::len);
        let fits = count < MAX_IDLE_PER_TREE && copy.disk <= self.max_idle_bytes;
        let as_made = reusable
            && !copy.watches.is_empty()
            && !state.changed.contains(&copy.id)
            && state.open.get(&copy.id).copied().unwrap_or(0) == 0;
        if !(as_made && fits) {
            let replace = (fits
                && count == 0
                && self.inotify.is_some()
                && state.replacing.insert(copy.source.clone()))
            .then(|| copy.source.clone());
            return Returned {
                delete: vec![copy],
                replace,
            };
        }
        let mut evicted = Vec::new();
        while state.idle_bytes.saturating_add(copy.disk) > self.max_idle_bytes {
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
            state.idle_bytes -= old.disk;
            evicted.push(old);
        }
        state.given_back += 1;
        copy.idled = state.given_back;
        state.idle_bytes += copy.disk;
        state
            .idle
            .entry(copy.source.clone())
            .or_default()
            .push(copy);
        Returned {
            delete: evicted,
            replace: None,
        }
    }

    /// A copy of `source` to make ahead of its first invocation (at deploy),
    /// unless one is idle or being made: for [`Copies::settle`].
    pub(crate) fn ahead(&self, source: &Path) -> Option<Returned> {
        let mut state = self.lock();
        self.drain(&mut state);
        let wanted = self.inotify.is_some()
            && state.idle.get(source).is_none_or(Vec::is_empty)
            && state.replacing.insert(source.to_owned());
        wanted.then(|| Returned {
            delete: Vec::new(),
            replace: Some(source.to_owned()),
        })
    }

    /// [`Copies::settle`] on the blocking pool (here, outside a Tokio
    /// runtime); nothing at all when there is nothing to do.
    pub(crate) fn settle_in_background(self: &Arc<Self>, returned: Returned) {
        if returned.is_empty() {
            return;
        }
        let copies = self.clone();
        let settle = move || copies.settle(returned);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(settle)),
            Err(_) => settle(),
        }
    }

    /// Deletes and replaces what [`Copies::give_back`] returned (blocking):
    /// a replacement is made under a fresh name and kept idle.
    pub(crate) fn settle(&self, returned: Returned) {
        self.delete(returned.delete);
        let Some(source) = returned.replace else {
            return;
        };
        let made = self.make(&source, self.names.fresh());
        self.lock().replacing.remove(&source);
        match made {
            Ok(copy) => {
                let Returned { delete, .. } = self.give_back(copy, true);
                self.delete(delete);
            }
            Err(e) => {
                tracing::warn!(tree = %source.display(), "cannot make a writable copy ahead: {e}");
            }
        }
    }

    /// What `copy` counts against its invocation's bounds ([`usage`]): as
    /// made if inotify saw no change in it (a lock and a non-blocking read);
    /// else an overlay counts its tree and what was written to it (a walk of
    /// its upper directory only: a file it removed still counts), and a whole
    /// copy what a walk finds.
    pub(crate) fn usage(&self, copy: &Copy) -> (u64, u64) {
        if !copy.watches.is_empty() {
            let mut state = self.lock();
            self.drain(&mut state);
            if !state.changed.contains(&copy.id) {
                return copy.usage;
            }
        }
        match copy.mounted {
            Some(_) => {
                let (bytes, entries) = usage(&copy.home.join(UPPER));
                (
                    copy.usage.0.saturating_add(bytes),
                    copy.usage.1.saturating_add(entries),
                )
            }
            None => usage(&copy.path),
        }
    }

    /// Copies made, reused and idle.
    pub(crate) fn counts(&self) -> WritableCopies {
        let state = self.lock();
        WritableCopies {
            made: state.made,
            overlaid: state.overlaid,
            reused: state.reused,
            idle: state.idle.values().map(|list| list.len() as u64).sum(),
        }
    }

    /// Mounts an overlay copy of `source` in `home`: `upper` and `work`
    /// beside `view`, where the overlay is mounted; the copy's root is
    /// `view/tree` (so that it has a parent to watch it from, as a whole
    /// copy's has). The copy's parent as this process reaches it, and the
    /// mount's target in the helper's namespace, and the copy's usage as made
    /// (its base's).
    ///
    /// The lower layer is not the tree itself but the tree's base: a whole
    /// copy of it, made once per tree (in a directory holding it as `tree`),
    /// writable by this process (an overlay shows its lower layer's modes,
    /// a tree is unpacked read-only, and `kiln up` has no
    /// `CAP_DAC_OVERRIDE`) and changed by nothing.
    fn mount(
        &self,
        overlays: &Overlays,
        source: &Path,
        home: &Path,
    ) -> std::io::Result<(PathBuf, PathBuf, (u64, u64))> {
        let base = self.base(source)?;
        let mounted = std::path::absolute(home).and_then(|home| {
            let (upper, work, view) = (home.join(UPPER), home.join(WORK), home.join("view"));
            for dir in [&upper, &work, &view] {
                std::fs::create_dir(dir)?;
            }
            let parent = overlays.mount(&base.dir, &upper, &work, &view)?;
            Ok((parent, view, base.usage))
        });
        if mounted.is_err() {
            self.release_base(source);
        }
        mounted
    }

    /// One overlay of `source`'s base fewer: a base left without any is
    /// removed when the bases and idle copies are over the idle bound.
    fn release_base(&self, source: &Path) {
        let mut state = self.lock();
        if let Some(base) = state.bases.get_mut(source) {
            base.overlays = base.overlays.saturating_sub(1);
        }
        let unused = self.unused_bases(&mut state);
        drop(state);
        remove_bases(unused);
    }

    /// Takes out of `state`, while the bases and idle copies are over the
    /// idle bound, bases that no overlay uses: for [`remove_bases`].
    fn unused_bases(&self, state: &mut State) -> Vec<PathBuf> {
        let mut unused = Vec::new();
        while state.idle_bytes > self.max_idle_bytes {
            let Some(source) = state
                .bases
                .iter()
                .find_map(|(source, base)| (base.overlays == 0).then(|| source.clone()))
            else {
                break;
            };
            if let Some(base) = state.bases.remove(&source) {
                state.idle_bytes -= base.usage.0;
                unused.push(base.dir);
            }
        }
        unused
    }

    /// The base of `source`'s overlays, made on first use (blocking).
    /// Counts the overlay about to be made of it; [`Copies::release_base`]
    /// when that overlay is deleted (or could not be made).
    fn base(&self, source: &Path) -> std::io::Result<Base> {
        if let Some(base) = self.lock().bases.get_mut(source) {
            base.overlays += 1;
            return Ok(base.clone());
        }
        let dir = std::path::absolute(self.names.fresh())?;
        std::fs::create_dir(&dir)?;
        if let Err(e) = copy_tree(source, &dir.join(TREE)) {
            let _ = remove_tree(&dir);
            return Err(e);
        }
        let base = Base {
            usage: usage(&dir.join(TREE)),
            dir,
            overlays: 1,
        };
        let mut state = self.lock();
        if let Some(made) = state.bases.get_mut(source) {
            // Made meanwhile by another copy of the same tree.
            made.overlays += 1;
            let made = made.clone();
            drop(state);
            let _ = remove_tree(&base.dir);
            return Ok(made);
        }
        // Bases count against the idle bound: unused ones of other trees
        // make room for this one.
        state.idle_bytes += base.usage.0;
        state.bases.insert(source.to_owned(), base.clone());
        let unused = self.unused_bases(&mut state);
        drop(state);
        remove_bases(unused);
        Ok(base)
    }

    /// Watches the copy's `home`, and every directory and file of the copy in
    /// it; the watches, or none if one could not be set.
    ///
    /// Everything is listed first and watched after: setting a watch opens
    /// nothing, so no event comes of it. (Reading a directory already watched
    /// would report an open and a close, which a drain racing with this one,
    /// before the watches are registered, would see only in part.)
    fn watch(&self, home: &Path) -> Vec<i32> {
        let Some(inotify) = &self.inotify else {
            return Vec::new();
        };
        let give_up = |watches: &[i32], path: &Path, e: &dyn std::fmt::Display| {
            tracing::warn!(path = %path.display(), "cannot watch a writable copy ({e}): it will not be reused");
            for wd in watches {
                let _ = inotify::remove_watch(inotify, *wd);
            }
            Vec::new()
        };
        // Directories for their entries, and every file for itself: a file
        // can also be reached by a path outside the copy (a hard link a guest
        // made in its scratch directory), which no directory's watch sees.
        // Each object is so seen twice, which keeps inotify from merging two
        // of its opens (or closes) in a row into one event.
        let mut objects = vec![(home.to_owned(), true)];
        let mut next = 0;
        while let Some((dir, is_dir)) = objects.get(next).cloned() {
            next += 1;
            if !is_dir {
                continue;
            }
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) => return give_up(&[], &dir, &e),
            };
            for entry in entries.flatten() {
                objects.push((entry.path(), entry.file_type().is_ok_and(|t| t.is_dir())));
            }
        }
        let mut watches = Vec::with_capacity(objects.len());
        for (path, is_dir) in objects {
            let flags = if is_dir {
                WATCHED | WatchFlags::ONLYDIR
            } else {
                WATCHED
            };
            match inotify::add_watch(inotify, &path, flags) {
                Ok(wd) => watches.push(wd),
                Err(e) => return give_up(&watches, &path, &e),
            }
        }
        watches
    }

    /// Watches an overlay copy's upper directory for changes: its one watch,
    /// or none if it could not be set.
    ///
    /// The overlay changes nothing in its lower layer: before a file or
    /// directory of the copy changes in any way (content, times, modes,
    /// links, entries), and when a file is opened for writing, the kernel
    /// copies it (and its directories) up into the upper directory, or puts a
    /// whiteout there for an entry removed, and what it makes there first is
    /// a new entry of the upper directory itself. So one watch sees every
    /// first change, whatever the tree's size. Opens need no counting: what
    /// outlives a guest that ended by itself (the only one whose copy may be
    /// kept) is its file streams' reads and writes, and a file written through
    /// a stream was opened for writing, so copied up, before the guest ended.
    fn watch_upper(&self, upper: &Path) -> Vec<i32> {
        let Some(inotify) = &self.inotify else {
            return Vec::new();
        };
        match inotify::add_watch(inotify, upper, CHANGES | WatchFlags::ONLYDIR) {
            Ok(wd) => vec![wd],
            Err(e) => {
                tracing::warn!(path = %upper.display(), "cannot watch a copy-on-write copy ({e}): it will not be reused");
                Vec::new()
            }
        }
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
                state.open.remove(&copy.id);
            }
        }
        for copy in copies {
            if let (Some(target), Some(overlays)) = (&copy.mounted, &self.overlays) {
                if let Err(e) = overlays.unmount(target) {
                    tracing::warn!(path = %target.display(), "cannot detach a copy-on-write copy: {e}");
                }
                // The kernel made it with no permissions: opened up here, so
                // that the removal needs no second walk.
                crate::overlay::open_work_dir(&copy.home.join(WORK));
            }
            if let Err(e) = remove_tree(&copy.home) {
                tracing::warn!(path = %copy.home.display(), "cannot remove a writable copy: {e}");
            }
            if copy.mounted.is_some() {
                self.release_base(&copy.source);
            }
        }
    }

    /// Reads what inotify reported since the last time: every copy with a
    /// change is marked, its opens and closes counted; a lost event marks
    /// them all.
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
                    } else if let Some(&id) = state.watched.get(&event.wd()) {
                        if flags.intersects(CHANGED) {
                            state.changed.insert(id);
                        }
                        // Counted once per object: where its own watch
                        // reports it (no name), not its parent's.
                        if event.file_name().is_none_or(|name| name.is_empty()) {
                            let step =
                                i64::from(flags.contains(ReadFlags::OPEN))
                                    - i64::from(flags.intersects(
                                        ReadFlags::CLOSE_WRITE | ReadFlags::CLOSE_NOWRITE,
                                    ));
                            *state.open.entry(id).or_default() += step;
                        }
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
        // Their overlays detached, the bases can go.
        let bases: Vec<PathBuf> = self.lock().bases.drain().map(|(_, b)| b.dir).collect();
        remove_bases(bases);
    }
}

/// Removes the bases in `dirs` (blocking).
fn remove_bases(dirs: Vec<PathBuf>) {
    for dir in dirs {
        if let Err(e) = remove_tree(&dir) {
            tracing::warn!(path = %dir.display(), "cannot remove a copy's base: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
