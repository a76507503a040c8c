//! wasmtime's incremental compilation cache, kept on disk: the machine code of
//! each function, keyed by a hash of its body and the compiler's settings. A
//! binary that shares most of its functions with one compiled before compiles
//! only what is new. That is how a language runtime is compiled once per node
//! rather than once per function: every deploy-time snapshot of it has the same
//! interpreter code and new data, so its compile is mostly cache hits.

use sha2::{Digest as _, Sha256};
use std::borrow::Cow;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// One file per compiled function, named by the sha256 of wasmtime's key.
#[derive(Debug)]
pub(crate) struct DiskCacheStore {
    dir: PathBuf,
    /// Distinguishes this process's temporary files from each other.
    next_temp: AtomicU64,
}

impl DiskCacheStore {
    /// Opens (creating) the cache directory.
    pub(crate) fn open(dir: PathBuf) -> std::io::Result<DiskCacheStore> {
        std::fs::create_dir_all(&dir)?;
        Ok(DiskCacheStore {
            dir,
            next_temp: AtomicU64::new(0),
        })
    }

    fn path(&self, key: &[u8]) -> PathBuf {
        let hash = Sha256::digest(key);
        let name: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(&name[..2]).join(&name[2..])
    }
}

impl wasmtime::CacheStore for DiskCacheStore {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        // A missing or unreadable entry is a miss: the function is compiled again.
        std::fs::read(self.path(key)).ok().map(Cow::Owned)
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        // Written whole under a temporary name and renamed, so that a reader (or a
        // crash) never sees half an entry; a failed write only costs a recompile.
        let path = self.path(key);
        let Some(parent) = path.parent() else {
            return false;
        };
        let temp = parent.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            self.next_temp.fetch_add(1, Ordering::Relaxed)
        ));
        let written = std::fs::create_dir_all(parent)
            .and_then(|()| std::fs::File::create(&temp))
            .and_then(|mut file| file.write_all(&value))
            .and_then(|()| std::fs::rename(&temp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written.is_ok()
    }
}
