//! What an invocation sees of a filesystem: host directories mounted read-only
//! (bundles unpacked on this node), private copies of them, and a scratch
//! directory. Copies and scratch live in a directory made for the invocation
//! under the runtime's scratch root, bounded in bytes and in entries, and
//! removed when the invocation ends (and at start-up, after a crash).
//!
//! wasmtime-wasi has no hook on writes, so the bounds are checked by walking
//! the invocation's directory: at every few epoch ticks while the guest runs
//! (less often when the walk is expensive: it may take a twentieth of the
//! guest's time at most), and once more when it ends. A guest past a bound is stopped with
//! [`crate::Outcome::ScratchLimit`]. Between two checks it can overshoot by what
//! it writes in that time; the host disk is protected by a server-wide budget
//! that every invocation reserves its bound from before it starts.

use kiln_api::ByteCount;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
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
}

impl ScratchConfig {
    /// Defaults for everything but where.
    pub fn new(dir: impl Into<PathBuf>) -> ScratchConfig {
        ScratchConfig {
            dir: dir.into(),
            total_bytes: 4 << 30,
            wait: Duration::from_secs(5),
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
    next: AtomicU64,
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
        Ok(ScratchRoot {
            budget: Arc::new(Semaphore::new(units as usize)),
            config,
            next: AtomicU64::new(0),
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
            let (host, perms) = match (&dir, mount.copy) {
                (Some(dir), true) => (dir.copy_path(i), FsPerms::ReadWrite),
                _ => (mount.host.clone(), FsPerms::ReadOnly),
            };
            wasi.preopened_dir(&host, &mount.guest, perms)
                .map_err(|e| unavailable(&host, std::io::Error::other(e)))?;
        }
        if let (Some(dir), Some(scratch)) = (&dir, &files.scratch) {
            let path = dir.scratch_path();
            wasi.preopened_dir(&path, &scratch.guest, FsPerms::ReadWrite)
                .map_err(|e| unavailable(&path, std::io::Error::other(e)))?;
        }
        Ok(dir)
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
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.config.dir.join(format!("{}-{n}", std::process::id()));
        let dir = InvocationDir {
            path,
            limits,
            ticks: AtomicU32::new(0),
            skip: AtomicU32::new(0),
            _permit: permit,
        };
        let copies: Vec<(usize, PathBuf)> = files
            .mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| m.copy)
            .map(|(i, m)| (i, m.host.clone()))
            .collect();
        let root = dir.path.clone();
        let scratch = files.scratch.is_some();
        let make = move || -> std::io::Result<()> {
            std::fs::create_dir(&root)?;
            if scratch {
                std::fs::create_dir(root.join("scratch"))?;
            }
            for (i, host) in copies {
                copy_tree(&host, &root.join(format!("copy-{i}")))?;
            }
            Ok(())
        };
        let prepare_failed =
            |e| FilesError::Prepare(format!("cannot prepare the invocation's files: {e}"));
        if files.mounts.iter().any(|m| m.copy) {
            // Copying a tree is real work: off the executor.
            tokio::task::spawn_blocking(make)
                .await
                .map_err(|e| FilesError::Prepare(e.to_string()))?
                .map_err(prepare_failed)?;
            // The copies count against the bounds from the start.
            if let Err(over) = dir.check() {
                return Err(FilesError::Prepare(format!(
                    "the function's writable copies alone are over its scratch limit: {over}"
                )));
            }
        } else {
            // Two `mkdir`s cost less than a trip to the blocking pool.
            make().map_err(prepare_failed)?;
        }
        Ok(dir)
    }
}

/// One invocation's own directory: removed when the last reference goes.
pub(crate) struct InvocationDir {
    path: PathBuf,
    limits: ScratchLimits,
    ticks: AtomicU32,
    /// Ticks still to skip before the next walk (set from the last walk's cost).
    skip: AtomicU32,
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
    fn scratch_path(&self) -> PathBuf {
        self.path.join("scratch")
    }

    fn copy_path(&self, mount: usize) -> PathBuf {
        self.path.join(format!("copy-{mount}"))
    }

    /// Walks the directory: over a bound?
    pub(crate) fn check(&self) -> Result<(), ScratchLimitExceeded> {
        let (bytes, entries) = usage(&self.path);
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
        let path = std::mem::take(&mut self.path);
        let remove = move || {
            if let Err(e) = remove_tree(&path) {
                tracing::warn!(path = %path.display(), "cannot remove an invocation directory: {e}");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(remove)),
            Err(_) => remove(),
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

/// Removes a tree a guest may have left read-only (a copy it chmod-ed).
fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Bytes allocated on disk and entries under `dir` (not following links).
/// Entries that vanish while walked (the guest deleting them) are skipped.
fn usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0u64;
    let mut entries = 0u64;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in read.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            entries += 1;
            bytes = bytes.saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    (bytes, entries)
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

    #[test]
    fn only_invocation_directories_of_dead_processes_are_removed_at_start() {
        let root = tempfile::tempdir().expect("tempdir");
        let own = std::process::id();
        let dead = format!("{}-0", u32::MAX - 1);
        for name in [dead.as_str(), "1-0", "someone-else", "42", "notes.txt-x"] {
            std::fs::create_dir(root.path().join(name)).expect("mkdir");
        }
        std::fs::create_dir(root.path().join(format!("{own}-3"))).expect("mkdir");
        ScratchRoot::open(ScratchConfig::new(root.path())).expect("open");
        let mut left: Vec<String> = std::fs::read_dir(root.path())
            .expect("read_dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        // pid 1 is alive; this process's own leftovers and a dead pid's go;
        // names that are not invocation directories stay.
        assert_eq!(left, ["1-0", "42", "notes.txt-x", "someone-else"]);
    }
}
