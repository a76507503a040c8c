//! What an invocation sees of a filesystem: host directories mounted read-only
//! (bundles unpacked on this node), private copies of them, and a scratch
//! directory. Copies and scratch directories both come from `copies.rs`, under
//! the runtime's scratch root: a scratch directory is a copy of an empty tree.
//! One left as it was made (a copy only read, a scratch directory not written
//! to) is handed to the next invocation; any other is removed when the
//! invocation ends (and at start-up, after a crash). Both count against the
//! invocation's bounds in bytes and in entries.
//!
//! wasmtime-wasi has no hook on writes, so the bounds are checked by walking
//! the invocation's changed directories: at every few epoch ticks while the guest runs
//! (less often when the walk is expensive: it may take a twentieth of the
//! guest's time at most), and once more when it ends. A guest past a bound is stopped with
//! [`crate::Outcome::ScratchLimit`]. Between two checks it can overshoot by what
//! it writes in that time; the host disk is protected by a server-wide budget
//! that every invocation reserves its bound from before it starts.

use crate::copies::{Copies, Copy, Names, WritableCopies, remove_tree};
use crate::overlay::Overlays;
use kiln_api::ByteCount;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// The directories of one function version's invocations. Built once per
/// deployment and shared by its requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Files {
    /// Host directories preopened under guest names.
    pub mounts: Vec<HostMount>,
    /// A scratch directory, if the function has one.
    pub scratch: Option<ScratchLimits>,
}

impl Files {
    /// Whether the invocation needs a directory of its own (scratch or copies).
    fn needs_own_dir(&self) -> bool {
        self.scratch.is_some() || self.mounts.iter().any(|m| m.copy)
    }
}

/// A host directory the guest sees under `guest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMount {
    /// The directory on this machine (never written by a guest).
    pub host: PathBuf,
    /// The preopen name the guest sees.
    pub guest: String,
    /// The guest gets a writable private copy instead of the directory itself.
    pub copy: bool,
}

/// The bounds of an invocation's own directory (its scratch and its copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScratchLimits {
    /// Most bytes its files may occupy on disk.
    pub bytes: u64,
    /// Most entries (files, directories, links) it may hold.
    pub entries: u64,
    /// The preopen name of the scratch directory.
    pub guest: String,
}

/// Where invocation directories are made, and how many bytes they may hold
/// together.
#[derive(Debug, Clone)]
pub struct ScratchConfig {
    /// The root of every invocation's directory. What a process that is gone
    /// left there is removed when a runtime opens it.
    pub dir: PathBuf,
    /// Bytes all invocation directories may reserve at once (default 4 GiB).
    pub total_bytes: u64,
    /// How long an invocation waits for its bytes when others hold the budget,
    /// before it is refused (default 5 s).
    pub wait: Duration,
    /// The helper that mounts writable copies as copy-on-write overlays,
    /// started before the process dropped its capabilities ([`Overlays`]);
    /// `None`: the runtime starts one, and if it cannot, copies are whole.
    pub overlays: Option<Arc<Overlays>>,
    /// Writable copies are copy-on-write overlays where the kernel allows
    /// (default); `false`: whole copies, and no helper.
    pub copy_on_write: bool,
}

impl ScratchConfig {
    /// Defaults for everything but where.
    pub fn new(dir: impl Into<PathBuf>) -> ScratchConfig {
        ScratchConfig {
            dir: dir.into(),
            total_bytes: 4 << 30,
            wait: Duration::from_secs(5),
            overlays: None,
            copy_on_write: true,
        }
    }
}

/// Why an invocation's files could not be prepared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FilesError {
    /// The scratch budget stayed taken for the whole wait.
    #[error("the scratch budget is taken")]
    Busy {
        /// What the invocation needs.
        bytes: u64,
        /// The whole budget.
        total: u64,
    },
    /// A directory could not be made, copied or opened.
    #[error("{0}")]
    Prepare(String),
}

/// Idle writable copies may hold this fraction of the scratch budget.
const IDLE_COPIES_SHARE: u64 = 4;

/// Idle scratch directories (empty) may hold this many bytes: what their
/// directories take on a disk that allocates blocks to them.
const IDLE_SCRATCH_BYTES: u64 = 1 << 20;

/// Invocation directories are reserved in units of this many bytes.
const UNIT: u64 = 1 << 10;

/// Epoch ticks between two checks of an invocation directory's size, at least.
const TICKS_PER_CHECK: u32 = 5;

/// A walk may take at most this share of a guest's time: after a walk that took
/// T, the next waits at least `WALK_SHARE` × T (a guest with thousands of files
/// is checked less often rather than slowed down).
const WALK_SHARE: u32 = 20;

/// The scratch root of a runtime.
pub(crate) struct ScratchRoot {
    config: ScratchConfig,
    budget: Arc<Semaphore>,
    names: Arc<Names>,
    /// Writable copies of mounted trees, reused while unchanged.
    copies: Arc<Copies>,
    /// Scratch directories: copies of `empty`, reused while untouched.
    scratches: Arc<Copies>,
    /// An empty directory, the tree scratch directories are copies of.
    empty: PathBuf,
}

impl ScratchRoot {
    /// Opens the root, removing what invocations of processes that are gone
    /// left there (a `kill -9` skips every cleanup). Directories are named
    /// `<pid>-<n>`: runtimes of live processes sharing the root keep theirs, and
    /// nothing else in the root is touched (it may be a shared tmpfs).
    pub(crate) fn open(config: ScratchConfig) -> std::io::Result<ScratchRoot> {
        std::fs::create_dir_all(&config.dir)?;
        let own = std::process::id();
        for entry in std::fs::read_dir(&config.dir)?.flatten() {
            let Some(pid) = invocation_dir_pid(&entry.file_name().to_string_lossy()) else {
                continue;
            };
            let alive = pid != own && Path::new("/proc").join(pid.to_string()).exists();
            if !alive {
                remove_tree(&entry.path())?;
            }
        }
        let units = (config.total_bytes / UNIT).min(Semaphore::MAX_PERMITS as u64);
        let names = Arc::new(Names::new(config.dir.clone()));
        // Named like an invocation's directory: removed with them after a crash.
        let empty = names.fresh();
        std::fs::create_dir(&empty)?;
        Ok(ScratchRoot {
            budget: Arc::new(Semaphore::new(units as usize)),
            copies: Arc::new(writable_copies(
                config.total_bytes / IDLE_COPIES_SHARE,
                &names,
                config.copy_on_write,
                config.overlays.clone(),
            )),
            scratches: Arc::new(Copies::new(IDLE_SCRATCH_BYTES, names.clone())),
            empty,
            names,
            config,
        })
    }

    /// Makes what `files` needs for one invocation: reserves its bytes, creates
    /// its directory and copies, and preopens everything in `wasi`.
    pub(crate) async fn prepare(
        &self,
        files: &Files,
        wasi: &mut WasiCtxBuilder,
    ) -> Result<Option<Arc<InvocationDir>>, FilesError> {
        let own = match &files.scratch {
            Some(limits) => Some(limits.clone()),
            // Copies without a scratch directory are bounded by the copies' own size.
            None if files.needs_own_dir() => Some(ScratchLimits {
                bytes: u64::MAX,
                entries: u64::MAX,
                guest: String::new(),
            }),
            None => None,
        };
        let dir = match own {
            Some(limits) => Some(Arc::new(self.invocation_dir(limits, files).await?)),
            None => None,
        };
        let unavailable = |path: &Path, e: std::io::Error| {
            FilesError::Prepare(format!("cannot open {}: {e}", path.display()))
        };
        for (i, mount) in files.mounts.iter().enumerate() {
            let copy = dir
                .as_ref()
                .filter(|_| mount.copy)
                .and_then(|d| d.copy_path(i));
            let (host, perms) = match copy {
                Some(copy) => (copy.to_owned(), FsPerms::ReadWrite),
                None => (mount.host.clone(), FsPerms::ReadOnly),
            };
            wasi.preopened_dir(&host, &mount.guest, perms)
                .map_err(|e| unavailable(&host, std::io::Error::other(e)))?;
        }
        if let (Some(path), Some(scratch)) =
            (dir.as_ref().and_then(|d| d.scratch_path()), &files.scratch)
        {
            wasi.preopened_dir(path, &scratch.guest, FsPerms::ReadWrite)
                .map_err(|e| unavailable(path, std::io::Error::other(e)))?;
        }
        Ok(dir)
    }

    /// Makes a writable copy of `tree` on the blocking pool, ahead of the
    /// invocation that will need it, unless one is idle or being made.
    pub(crate) fn make_copy_ahead(&self, tree: &Path) {
        if let Some(ahead) = self.copies.ahead(tree) {
            self.copies.settle_in_background(ahead);
        }
    }

    /// Writable copies made, reused and idle.
    pub(crate) fn copy_counts(&self) -> WritableCopies {
        self.copies.counts()
    }

    /// Scratch directories made, reused and idle.
    pub(crate) fn scratch_counts(&self) -> WritableCopies {
        self.scratches.counts()
    }

    async fn invocation_dir(
        &self,
        limits: ScratchLimits,
        files: &Files,
    ) -> Result<InvocationDir, FilesError> {
        let bounded = limits.bytes != u64::MAX;
        let permit = if bounded {
            let units = u32::try_from(limits.bytes.div_ceil(UNIT)).unwrap_or(u32::MAX);
            let acquire = self.budget.clone().acquire_many_owned(units);
            match tokio::time::timeout(self.config.wait, acquire).await {
                Ok(Ok(permit)) => Some(permit),
                _ => {
                    return Err(FilesError::Busy {
                        bytes: limits.bytes,
                        total: self.config.total_bytes,
                    });
                }
            }
        } else {
            None
        };
        let prepare_failed =
            |e| FilesError::Prepare(format!("cannot prepare the invocation's files: {e}"));
        // An untouched idle scratch directory, else a new one: two `mkdir`s
        // and two watches cost less than a trip to the blocking pool.
        let scratch = match files.scratch {
            Some(_) => Some(match self.scratches.take_idle(&self.empty) {
                Some(scratch) => scratch,
                None => self
                    .scratches
                    .make(&self.empty, self.names.fresh())
                    .map_err(prepare_failed)?,
            }),
            None => None,
        };
        let mut dir = InvocationDir {
            limits,
            ticks: AtomicU32::new(0),
            skip: AtomicU32::new(0),
            scratch,
            copies: Vec::new(),
            pool: self.copies.clone(),
            scratches: self.scratches.clone(),
            reusable: AtomicBool::new(false),
            _permit: permit,
        };
        let mut missing = Vec::new();
        for (i, mount) in files.mounts.iter().enumerate().filter(|(_, m)| m.copy) {
            match self.copies.take_idle(&mount.host) {
                Some(copy) => dir.copies.push((i, copy)),
                None => missing.push((i, mount.host.clone(), self.names.fresh())),
            }
        }
        let has_copies = !dir.copies.is_empty() || !missing.is_empty();
        if !missing.is_empty() {
            let pool = self.copies.clone();
            let made = tokio::task::spawn_blocking(move || {
                let mut made = Vec::new();
                for (i, source, fresh) in missing {
                    match pool.make(&source, fresh) {
                        Ok(copy) => made.push((i, copy)),
                        Err(e) => {
                            pool.delete(made.into_iter().map(|(_, copy)| copy).collect());
                            return Err(e);
                        }
                    }
                }
                Ok(made)
            })
            .await
            .map_err(|e| FilesError::Prepare(e.to_string()))
            .and_then(|made| made.map_err(prepare_failed));
            match made {
                Ok(made) => dir.copies.extend(made),
                Err(e) => {
                    // What was taken goes back unused (by `dir`'s drop).
                    dir.ended_cleanly();
                    return Err(e);
                }
            }
        }
        // The copies count against the bounds from the start.
        if has_copies && let Err(over) = dir.check() {
            return Err(FilesError::Prepare(format!(
                "the function's writable copies alone are over its scratch limit: {over}"
            )));
        }
        Ok(dir)
    }
}

impl Drop for ScratchRoot {
    fn drop(&mut self) {
        // Its idle scratch directories and copies go with their `Copies`.
        if let Err(e) = remove_tree(&self.empty) {
            tracing::warn!(path = %self.empty.display(), "cannot remove the empty tree: {e}");
        }
    }
}

/// One invocation's own directories, its scratch and its writable copies:
/// given back when the last reference goes.
pub(crate) struct InvocationDir {
    limits: ScratchLimits,
    ticks: AtomicU32,
    /// Ticks still to skip before the next walk (set from the last walk's cost).
    skip: AtomicU32,
    /// The scratch directory, if the function has one.
    scratch: Option<Copy>,
    /// The writable copies, by mount index.
    copies: Vec<(usize, Copy)>,
    pool: Arc<Copies>,
    scratches: Arc<Copies>,
    /// Set when the invocation ended in a way that lets its copies be reused.
    reusable: AtomicBool,
    _permit: Option<OwnedSemaphorePermit>,
}

/// A bound an invocation directory went past.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScratchLimitExceeded {
    /// Its files occupy more bytes than allowed.
    #[error("scratch limit of {} exceeded", ByteCount(*.limit))]
    Bytes {
        /// The limit.
        limit: u64,
    },
    /// It holds more entries than allowed.
    #[error("scratch limit of {limit} files exceeded")]
    Entries {
        /// The limit.
        limit: u64,
    },
}

impl InvocationDir {
    fn scratch_path(&self) -> Option<&Path> {
        self.scratch.as_ref().map(Copy::path)
    }

    fn copy_path(&self, mount: usize) -> Option<&Path> {
        self.copies
            .iter()
            .find_map(|(i, copy)| (*i == mount).then(|| copy.path()))
    }

    /// Lets the writable copies be reused by the next invocations if nothing
    /// changed them and nothing can still change them (`copies.rs`): for an
    /// invocation that ended by itself within its limits.
    pub(crate) fn ended_cleanly(&self) {
        self.reusable.store(true, Ordering::Relaxed);
    }

    /// Walks the scratch directory and the copies that changed: over a bound?
    pub(crate) fn check(&self) -> Result<(), ScratchLimitExceeded> {
        let (mut bytes, mut entries) = (0u64, 0u64);
        let scratch = self.scratch.iter().map(|copy| (&self.scratches, copy));
        let copies = self.copies.iter().map(|(_, copy)| (&self.pool, copy));
        for (pool, copy) in scratch.chain(copies) {
            let (b, e) = pool.usage(copy);
            bytes = bytes.saturating_add(b);
            entries = entries.saturating_add(e);
        }
        if bytes > self.limits.bytes {
            return Err(ScratchLimitExceeded::Bytes {
                limit: self.limits.bytes,
            });
        }
        if entries > self.limits.entries {
            return Err(ScratchLimitExceeded::Entries {
                limit: self.limits.entries,
            });
        }
        Ok(())
    }

    /// [`InvocationDir::check`] at every [`TICKS_PER_CHECK`]th call (an epoch
    /// tick), or less often when walking the directory is expensive.
    pub(crate) fn check_on_tick(
        &self,
        tick: std::time::Duration,
    ) -> Result<(), ScratchLimitExceeded> {
        let ticks = self.ticks.fetch_add(1, Ordering::Relaxed) + 1;
        if ticks < TICKS_PER_CHECK.max(self.skip.load(Ordering::Relaxed)) {
            return Ok(());
        }
        self.ticks.store(0, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let checked = self.check();
        let cost = started.elapsed() * WALK_SHARE;
        let skip = cost.as_nanos() / tick.as_nanos().max(1);
        self.skip
            .store(u32::try_from(skip).unwrap_or(u32::MAX), Ordering::Relaxed);
        checked
    }
}

impl Drop for InvocationDir {
    fn drop(&mut self) {
        let reusable = self.reusable.load(Ordering::Relaxed);
        // Given back here, before the invocation answers: the next one finds
        // an untouched scratch directory or copy. Deleting, and replacing a
        // changed one, wait for the blocking pool (not taken when there is
        // nothing to do).
        if let Some(scratch) = self.scratch.take() {
            let back = self.scratches.give_back(scratch, reusable);
            self.scratches.settle_in_background(back);
        }
        for (_, copy) in std::mem::take(&mut self.copies) {
            let back = self.pool.give_back(copy, reusable);
            self.pool.settle_in_background(back);
        }
    }
}

/// The `Copies` of writable mounts: overlays where the helper `given` (or one
/// started here) proves it can mount one in a directory of the root, else
/// whole copies; whole copies only when not `copy_on_write`.
fn writable_copies(
    max_idle_bytes: u64,
    names: &Arc<Names>,
    copy_on_write: bool,
    given: Option<Arc<Overlays>>,
) -> Copies {
    let copies = Copies::new(max_idle_bytes, names.clone());
    if !copy_on_write {
        return copies;
    }
    let probe = names.fresh();
    let started = given
        .map_or_else(|| Overlays::start().map(Arc::new), Ok)
        .and_then(|overlays| {
            std::path::absolute(&probe)
                .and_then(|probe| overlays.probe(&probe))
                .map(|()| overlays)
        });
    let _ = remove_tree(&probe);
    match started {
        Ok(overlays) => copies.overlaid(overlays),
        Err(e) => {
            tracing::info!("writable copies are made whole (no copy-on-write overlays: {e})");
            copies
        }
    }
}

/// The pid in the name of an invocation directory (`<pid>-<n>`), or `None` for
/// a name that is not one.
fn invocation_dir_pid(name: &str) -> Option<u32> {
    let (pid, n) = name.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_invocation_directories_of_dead_processes_are_removed_at_start() {
        let root = tempfile::tempdir().expect("tempdir");
        let own = std::process::id();
        let dead = format!("{}-0", u32::MAX - 1);
        for name in [dead.as_str(), "1-0", "someone-else", "42", "notes.txt-x"] {
            std::fs::create_dir(root.path().join(name)).expect("mkdir");
        }
        std::fs::create_dir(root.path().join(format!("{own}-3"))).expect("mkdir");
        let _open = ScratchRoot::open(ScratchConfig::new(root.path())).expect("open");
        let mut left: Vec<String> = std::fs::read_dir(root.path())
            .expect("read_dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        // pid 1 is alive; this process's own leftovers and a dead pid's go;
        // names that are not invocation directories stay. The new root's
        // empty tree (for scratch directories) is the first of its names.
        let template = format!("{own}-0");
        let mut expected = vec!["1-0", "42", "notes.txt-x", "someone-else", &template];
        expected.sort();
        assert_eq!(left, expected);
    }
}
