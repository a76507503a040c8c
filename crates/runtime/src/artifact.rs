//! The artifact cache: compiled modules on local disk, so that nothing is compiled twice.
//!
//! An artifact is the output of `Engine::precompile_module`, stored as
//! `<root>/<engine key>/<module sha256>.cwasm`. The engine key is a digest of the
//! engine's compatibility hash (wasmtime version, target, compiler settings), so an
//! upgrade or a config change simply starts a new directory instead of loading an
//! artifact the engine would reject. Files are written atomically (temp file, fsync,
//! rename, fsync of the directory): a reader sees a whole artifact or none.

use kiln_api::Digest;
use sha2::{Digest as _, Sha256};
use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A directory of compiled artifacts for one engine configuration.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// Opens (creating if needed) the cache under `root` for `engine`.
    pub fn open(root: &Path, engine: &wasmtime::Engine) -> io::Result<ArtifactCache> {
        let dir = root.join(engine_key(engine));
        fs::create_dir_all(&dir)?;
        Ok(ArtifactCache { dir })
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

    /// Whether the artifact of `digest` has been written.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
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
        let source = File::open(self.path(digest))?;
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
        // `copy_file_range` refuses to cross file systems; `sendfile` copies
        // from a file to any descriptor, in the kernel.
        let mut left = source.metadata()?.len();
        while left > 0 {
            let chunk = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
            // SAFETY: both descriptors are open files owned here; a null
            // offset reads from (and advances) the source's own position.
            let sent = unsafe {
                libc::sendfile(
                    copy.as_raw_fd(),
                    source.as_raw_fd(),
                    std::ptr::null_mut(),
                    chunk,
                )
            };
            match sent {
                0 => break, // cut short meanwhile: the copy will not load
                n if n > 0 => left = left.saturating_sub(n.unsigned_abs() as u64),
                _ => {
                    let error = io::Error::last_os_error();
                    if error.kind() != io::ErrorKind::Interrupted {
                        return Err(error);
                    }
                }
            }
        }
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

    /// Writes the artifact of `digest` atomically and durably, returning its path.
    /// Concurrent writers of the same digest are harmless: each renames a whole file.
    pub(crate) fn write(&self, digest: &Digest, artifact: &[u8]) -> io::Result<PathBuf> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = self.path(digest);
        let tmp = self.dir.join(format!(
            ".{digest}.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            file.write_all(artifact)?;
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
        match fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
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
