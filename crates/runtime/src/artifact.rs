//! The artifact cache: compiled modules on local disk, so that nothing is compiled twice.
//!
//! An artifact is the output of `Engine::precompile_module`, stored as
//! `<root>/<engine key>/<module sha256>.cwasm`. The engine key is a digest of the
//! engine's compatibility hash (wasmtime version, target, compiler settings), so an
//! upgrade or a config change simply starts a new directory instead of loading an
//! artifact the engine would reject. Files are written atomically (temp file, fsync,
//! rename, fsync of the directory): a reader sees a whole artifact or none.
//!
//! A module compiled here is loaded from memory at once and its file written
//! behind ([`ArtifactCache::write_behind`]): a deploy answers without waiting
//! for hundreds of MiB to reach the disk. The file is a cache, not the deploy's
//! record: one lost to a crash is compiled again from the stored module.

use kiln_api::Digest;
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// A directory of compiled artifacts for one engine configuration.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    behind: Arc<WritesBehind>,
}

/// The artifacts whose file is being written behind, and a signal for each
/// one finished.
#[derive(Debug, Default)]
struct WritesBehind {
    pending: Mutex<HashSet<Digest>>,
    finished: Condvar,
}

impl WritesBehind {
    fn pending(&self) -> MutexGuard<'_, HashSet<Digest>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits while `still` holds of the pending set.
    fn wait_while(&self, still: impl FnMut(&mut HashSet<Digest>) -> bool) {
        drop(
            self.finished
                .wait_while(self.pending(), still)
                .unwrap_or_else(PoisonError::into_inner),
        );
    }

    fn finished(&self, digest: &Digest) {
        self.pending().remove(digest);
        self.finished.notify_all();
    }
}

impl ArtifactCache {
    /// Opens (creating if needed) the cache under `root` for `engine`.
    pub fn open(root: &Path, engine: &wasmtime::Engine) -> io::Result<ArtifactCache> {
        let dir = root.join(engine_key(engine));
        fs::create_dir_all(&dir)?;
        remove_stale_temporaries(&dir);
        Ok(ArtifactCache {
            dir,
            behind: Arc::default(),
        })
    }

    /// The directory holding this engine's artifacts.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the artifact of `digest` lives (whether or not it exists yet).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{digest}.cwasm"))
    }

    /// The artifact's name relative to the cache root, `<engine key>/<sha256>.cwasm`:
    /// the same on every machine with the same engine, so that nodes can share it.
    pub fn key(&self, digest: &Digest) -> String {
        let engine = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{engine}/{digest}.cwasm")
    }

    /// Whether the artifact of `digest` has been written, or is being written
    /// behind.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.is_behind(digest) || self.path(digest).is_file()
    }

    fn is_behind(&self, digest: &Digest) -> bool {
        self.behind.pending().contains(digest)
    }

    /// Waits until the artifact of `digest` is not being written behind.
    pub(crate) fn settle(&self, digest: &Digest) {
        self.behind.wait_while(|pending| pending.contains(digest));
    }

    /// Waits until every artifact written behind is on disk (or failed).
    pub fn flush(&self) {
        self.behind.wait_while(|pending| !pending.is_empty());
    }

    /// The artifact of `digest` as bytes (to share it with other nodes).
    pub fn read(&self, digest: &Digest) -> io::Result<Vec<u8>> {
        self.settle(digest);
        fs::read(self.path(digest))
    }

    /// The size in bytes of the file of the artifact of `digest`, if there is
    /// one; `None` too while it is being written behind (this never waits).
    pub fn file_len(&self, digest: &Digest) -> Option<u64> {
        if self.is_behind(digest) {
            return None;
        }
        fs::metadata(self.path(digest)).ok().map(|meta| meta.len())
    }

    /// A private, sealed in-memory copy of the artifact of `digest`, to be
    /// mapped by wasmtime instead of the file itself: the copy is made by the
    /// kernel (`sendfile` into a memfd, no page of it touched by this
    /// process), then sealed against shrinking and growing, so that no change
    /// to the file on disk — cut short, rewritten, deleted — can reach the
    /// loaded code or raise SIGBUS on a page past a new end. Being a file,
    /// the copy is paged in lazily and its data segments serve wasmtime's
    /// copy-on-write memory images directly.
    pub(crate) fn sealed_copy(&self, digest: &Digest) -> io::Result<File> {
        self.settle(digest);
        let source = File::open(self.path(digest))?;
        sealed(|copy| send_all(&source, copy))
    }

    /// A sealed in-memory artifact holding `bytes` (see
    /// [`ArtifactCache::sealed_copy`]): what a compile loads before its file is
    /// written.
    pub(crate) fn seal(bytes: &[u8]) -> io::Result<File> {
        sealed(|mut copy| copy.write_all(bytes))
    }

    /// Writes the sealed artifact `sealed` as the file of `digest` on a thread
    /// of its own; meanwhile the artifact counts as present, and whatever reads
    /// its file waits for it. A write that fails is logged and leaves no file:
    /// the module is compiled again when next needed.
    pub(crate) fn write_behind(&self, digest: &Digest, sealed: &File) -> io::Result<()> {
        let source = sealed.try_clone()?;
        self.behind.pending().insert(*digest);
        let cache = self.clone();
        let digest = *digest;
        let spawned = std::thread::Builder::new()
            .name("kiln-artifact-write".into())
            .spawn(move || cache.finish_behind(digest, &source));
        if spawned.is_err() {
            // No thread to spare: written now.
            self.finish_behind(digest, sealed);
        }
        Ok(())
    }

    /// The write of [`ArtifactCache::write_behind`], then its end signalled.
    fn finish_behind(&self, digest: Digest, source: &File) {
        if let Err(error) = self.write_with(&digest, |file| send_all(source, file)) {
            tracing::warn!(%digest, %error, "cannot write a compiled artifact");
        }
        self.behind.finished(&digest);
    }

    /// Writes the artifact of `digest` atomically and durably, returning its path.
    /// Concurrent writers of the same digest are harmless: each renames a whole file.
    pub(crate) fn write(&self, digest: &Digest, artifact: &[u8]) -> io::Result<PathBuf> {
        self.settle(digest);
        self.write_with(digest, |mut file| file.write_all(artifact))
    }

    /// Writes the artifact of `digest` with `fill` into a fresh temporary file,
    /// then makes it durable and renames it into place.
    fn write_with(
        &self,
        digest: &Digest,
        fill: impl FnOnce(&File) -> io::Result<()>,
    ) -> io::Result<PathBuf> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = self.path(digest);
        let tmp = self.dir.join(format!(
            ".{digest}.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            fill(&file)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| path)
    }

    /// Every artifact in the cache: the digest of its module, and its size.
    pub fn list(&self) -> io::Result<Vec<(Digest, u64)>> {
        let mut artifacts = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(digest) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".cwasm"))
                .and_then(|hex| hex.parse().ok())
            else {
                continue; // a temporary file, or not Kiln's
            };
            artifacts.push((digest, entry.metadata()?.len()));
        }
        Ok(artifacts)
    }

    /// Deletes the artifact of `digest`, e.g. one the engine refused to load.
    pub fn remove(&self, digest: &Digest) -> io::Result<()> {
        self.settle(digest);
        match fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Deletes the temporary files in `dir` of writes that cannot finish: those
/// of processes that are gone (killed while writing behind). A temporary
/// file's name carries its writer's process id (`ArtifactCache::write_with`).
fn remove_stale_temporaries(dir: &Path) {
    // Without /proc, a live writer cannot be told from a dead one: keep all.
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(writer) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".tmp"))
            .and_then(|n| n.split('.').nth(2))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{writer}")).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A new memfd filled by `fill`, then sealed against shrinking and growing
/// and rewound: see [`ArtifactCache::sealed_copy`].
fn sealed(fill: impl FnOnce(&File) -> io::Result<()>) -> io::Result<File> {
    // SAFETY: a NUL-terminated name and valid flags; the call returns a
    // new descriptor or -1 and touches no memory of ours.
    let fd = unsafe {
        libc::memfd_create(
            c"kiln-artifact".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let copy = unsafe { File::from_raw_fd(fd) };
    fill(&copy)?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor this function owns; it reads no memory.
    let sealed = unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, seals) };
    if sealed != 0 {
        return Err(io::Error::last_os_error());
    }
    // Read from its start, like a file just opened.
    io::Seek::rewind(&mut &copy)?;
    Ok(copy)
}

/// Copies all of `source`, from its start, to the end of `target`, in the
/// kernel (`sendfile`: `copy_file_range` refuses to cross file systems).
/// `source`'s own position is neither used nor moved, so a descriptor shared
/// with a reader can be copied from.
fn send_all(source: &File, target: &File) -> io::Result<()> {
    let len = source.metadata()?.len();
    let mut offset: libc::off_t = 0;
    loop {
        let done = u64::try_from(offset).unwrap_or(u64::MAX);
        if done >= len {
            return Ok(());
        }
        let chunk = usize::try_from((len - done).min(1 << 30)).unwrap_or(1 << 30);
        // SAFETY: both descriptors are open files owned by the caller; the
        // kernel reads from `offset`, advances it, and touches no other memory.
        let sent =
            unsafe { libc::sendfile(target.as_raw_fd(), source.as_raw_fd(), &mut offset, chunk) };
        match sent {
            0 => return Ok(()), // cut short meanwhile: the copy will not load
            n if n > 0 => {}
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
}

/// 16 hex digits naming the engine's compatibility class.
fn engine_key(engine: &wasmtime::Engine) -> String {
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            unreachable!("only the sha256 state is read")
        }
    }
    let mut hasher = Sha(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hasher.0.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_copy_keeps_the_bytes_whatever_happens_to_the_file_and_cannot_be_resized() {
        let root = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(root.path(), &wasmtime::Engine::default()).unwrap();
        let digest = Digest::of(b"module");
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        cache.write(&digest, &bytes).unwrap();
        let copy = cache.sealed_copy(&digest).unwrap();
        // The file cut short, then removed: the copy is what was loaded.
        fs::write(cache.path(&digest), b"").unwrap();
        cache.remove(&digest).unwrap();
        let mut read = Vec::new();
        io::Read::read_to_end(&mut &copy, &mut read).unwrap();
        assert_eq!(read, bytes);
        assert_eq!(copy.metadata().unwrap().len(), bytes.len() as u64);
        for len in [0, 1000, bytes.len() as u64 + 1] {
            let refused = copy.set_len(len).unwrap_err();
            assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied, "{len}");
        }
        assert_eq!(copy.metadata().unwrap().len(), bytes.len() as u64);
        assert!(cache.sealed_copy(&digest).is_err(), "copied a missing file");
    }

    #[test]
    fn an_artifact_written_behind_counts_as_present_and_lands_whole() {
        let root = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(root.path(), &wasmtime::Engine::default()).unwrap();
        let digest = Digest::of(b"module");
        // Big enough that the write is still going when the call returns.
        let bytes: Vec<u8> = (0..64u32 << 20).map(|i| (i % 253) as u8).collect();
        let sealed = ArtifactCache::seal(&bytes).unwrap();
        // What is loaded is sealed: it cannot be cut short or grown.
        assert_eq!(
            sealed.set_len(10).unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
        cache.write_behind(&digest, &sealed).unwrap();
        assert!(cache.contains(&digest), "present from the start");
        // Whatever reads the file waits for it, and never sees part of it.
        assert_eq!(cache.read(&digest).unwrap(), bytes);
        cache.flush();
        assert_eq!(cache.file_len(&digest), Some(bytes.len() as u64));
        let copy = cache.sealed_copy(&digest).unwrap();
        assert_eq!(copy.metadata().unwrap().len(), bytes.len() as u64);
        // The sealed original is untouched by the copy made from it: a reader
        // of it starts at its beginning.
        let mut again = Vec::new();
        io::Read::read_to_end(&mut &sealed, &mut again).unwrap();
        assert_eq!(again, bytes);
        // No temp file is left behind, and another cache on the same
        // directory (a restart) finds the artifact.
        let names: Vec<_> = fs::read_dir(cache.dir()).unwrap().collect();
        assert_eq!(names.len(), 1);
        let restarted = ArtifactCache::open(root.path(), &wasmtime::Engine::default()).unwrap();
        assert!(restarted.contains(&digest));
    }

    #[test]
    fn a_write_behind_that_fails_leaves_no_artifact_and_no_waiter() {
        let root = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(root.path(), &wasmtime::Engine::default()).unwrap();
        let digest = Digest::of(b"module");
        let sealed = ArtifactCache::seal(b"artifact").unwrap();
        // The directory is gone: the write fails.
        fs::remove_dir_all(cache.dir()).unwrap();
        cache.write_behind(&digest, &sealed).unwrap();
        cache.flush();
        assert!(!cache.contains(&digest));
        assert!(cache.read(&digest).is_err());
        assert_eq!(cache.file_len(&digest), None);
    }

    #[test]
    fn the_temporary_files_of_writers_that_are_gone_are_removed_on_open() {
        let root = tempfile::tempdir().unwrap();
        let engine = wasmtime::Engine::default();
        let cache = ArtifactCache::open(root.path(), &engine).unwrap();
        let digest = Digest::of(b"module");
        // Above the kernel's largest process id: no such process.
        let dead = cache.dir().join(format!(".{digest}.4194305.0.tmp"));
        let alive = cache
            .dir()
            .join(format!(".{digest}.{}.0.tmp", std::process::id()));
        let other = cache.dir().join("notes.txt");
        for path in [&dead, &alive, &other] {
            fs::write(path, b"partial").unwrap();
        }
        ArtifactCache::open(root.path(), &engine).unwrap();
        assert!(!dead.exists());
        assert!(alive.exists(), "a live writer's file was removed");
        assert!(other.exists());
    }

    #[test]
    fn writes_atomically_and_keys_by_engine() {
        let root = tempfile::tempdir().unwrap();
        let engine = wasmtime::Engine::default();
        let cache = ArtifactCache::open(root.path(), &engine).unwrap();
        let digest = Digest::of(b"module");
        assert!(!cache.contains(&digest));
        let path = cache.write(&digest, b"artifact").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"artifact");
        assert!(cache.contains(&digest));
        assert_eq!(cache.list().unwrap(), vec![(digest, 8)]);
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(cache.dir()).unwrap().collect();
        assert_eq!(names.len(), 1);

        // The same engine configuration finds the same directory; another does not.
        let again = ArtifactCache::open(root.path(), &engine).unwrap();
        assert_eq!(again.dir(), cache.dir());
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let other = wasmtime::Engine::new(&config).unwrap();
        let other = ArtifactCache::open(root.path(), &other).unwrap();
        assert_ne!(other.dir(), cache.dir());

        cache.remove(&digest).unwrap();
        cache.remove(&digest).unwrap();
        assert!(!cache.contains(&digest));
    }
}
