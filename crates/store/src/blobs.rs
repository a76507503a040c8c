//! Module blobs, content-addressed by sha256.
//!
//! Uploads are streamed into a [`StagedBlob`] (a temp file hashed as it is written),
//! validated by the caller, then committed under their digest: fsync, rename, fsync
//! of the directory — so a blob that metadata refers to is always whole.

use crate::error::{StoreError, StoreResult, is_full};
use async_trait::async_trait;
use kiln_api::Digest;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::AsyncWriteExt;

/// Where module bytes live.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// A fresh staging file to stream an upload into.
    async fn stage(&self) -> StoreResult<StagedBlob>;
    /// Makes a finished staged blob durable under its digest. Idempotent: committing
    /// bytes that are already stored keeps the stored copy.
    async fn commit(&self, staged: StagedBlob) -> StoreResult<Digest>;
    /// The bytes of a stored module.
    async fn read(&self, digest: &Digest) -> StoreResult<Vec<u8>>;
    /// Whether a module is stored under `digest`.
    async fn contains(&self, digest: &Digest) -> StoreResult<bool>;

    /// A compiled artifact another node shared under `key` (see
    /// `ArtifactCache::key`), if this store shares artifacts and has it.
    async fn shared_artifact(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let _ = key;
        Ok(None)
    }
    /// Shares a compiled artifact with the other nodes (a no-op for a store of
    /// one node, whose artifacts are already on its disk).
    async fn share_artifact(&self, key: &str, artifact: Vec<u8>) -> StoreResult<()> {
        let _ = (key, artifact);
        Ok(())
    }
}

/// An upload in progress: a local temp file and the running hash of its bytes.
/// Dropping it uncommitted deletes the file.
pub struct StagedBlob {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    hasher: Sha256,
    size: u64,
}

impl StagedBlob {
    /// A new staging file in `dir`, named so that no other upload of this
    /// process or another uses it.
    pub(crate) async fn create_in(dir: &Path) -> StoreResult<StagedBlob> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{}-{}.upload",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        StagedBlob::create(dir.join(name)).await
    }

    async fn create(path: PathBuf) -> StoreResult<StagedBlob> {
        let file = tokio::fs::File::create_new(&path)
            .await
            .map_err(|e| io_error(&path, e))?;
        Ok(StagedBlob {
            path,
            file: Some(file),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Appends `chunk`, hashing it on the way.
    pub async fn write(&mut self, chunk: &[u8]) -> StoreResult<()> {
        let file = self.file.as_mut().ok_or_else(|| closed(&self.path))?;
        file.write_all(chunk)
            .await
            .map_err(|e| io_error(&self.path, e))?;
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        Ok(())
    }

    /// Flushes and fsyncs the file; returns the digest of everything written.
    pub async fn finish(&mut self) -> StoreResult<Digest> {
        if let Some(mut file) = self.file.take() {
            file.flush().await.map_err(|e| io_error(&self.path, e))?;
            file.sync_all().await.map_err(|e| io_error(&self.path, e))?;
        }
        Ok(Digest::from_bytes(self.hasher.clone().finalize().into()))
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The staging file, for reading the bytes back before committing.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Blobs in a local directory: `<dir>/<sha256>.wasm`, staging in `<dir>/.staging`.
#[derive(Debug, Clone)]
pub struct LocalBlobs {
    dir: PathBuf,
}

impl LocalBlobs {
    /// Opens (creating) the directory and clears staging files left by a crash.
    pub fn open(dir: impl Into<PathBuf>) -> StoreResult<LocalBlobs> {
        let dir = dir.into();
        let staging = dir.join(".staging");
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(|e| io_error(&staging, e))?;
        Ok(LocalBlobs { dir })
    }

    /// Where the module of `digest` lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{digest}.wasm"))
    }
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn stage(&self) -> StoreResult<StagedBlob> {
        StagedBlob::create_in(&self.dir.join(".staging")).await
    }

    async fn commit(&self, mut staged: StagedBlob) -> StoreResult<Digest> {
        let digest = staged.finish().await?;
        let target = self.path(&digest);
        let source = std::mem::take(&mut staged.path);
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            if target.is_file() {
                let _ = std::fs::remove_file(&source);
                return Ok(());
            }
            std::fs::rename(&source, &target).map_err(|e| io_error(&target, e))?;
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error(&dir, e))
        })
        .await
        .map_err(|e| StoreError::internal("blob store worker", e))??;
        Ok(digest)
    }

    async fn read(&self, digest: &Digest) -> StoreResult<Vec<u8>> {
        let path = self.path(digest);
        tokio::fs::read(&path).await.map_err(|e| io_error(&path, e))
    }

    async fn contains(&self, digest: &Digest) -> StoreResult<bool> {
        Ok(tokio::fs::try_exists(self.path(digest))
            .await
            .unwrap_or(false))
    }
}

fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    let context = path.display().to_string();
    if is_full(&e) {
        StoreError::full(context, e)
    } else {
        StoreError::internal(context, e)
    }
}

fn closed(path: &Path) -> StoreError {
    StoreError::inconsistent(format!("{}: staged blob already finished", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stage_commit_read() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(dir.path()).unwrap();
        let mut staged = blobs.stage().await.unwrap();
        staged.write(b"hello ").await.unwrap();
        staged.write(b"world").await.unwrap();
        assert_eq!(staged.size(), 11);
        let digest = blobs.commit(staged).await.unwrap();
        assert_eq!(digest, Digest::of(b"hello world"));
        assert_eq!(blobs.read(&digest).await.unwrap(), b"hello world");
        assert!(blobs.contains(&digest).await.unwrap());
        let staging = std::fs::read_dir(dir.path().join(".staging"))
            .unwrap()
            .count();
        assert_eq!(staging, 0);
    }

    #[tokio::test]
    async fn an_abandoned_upload_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(dir.path()).unwrap();
        let mut staged = blobs.stage().await.unwrap();
        staged.write(b"partial").await.unwrap();
        drop(staged);
        let staging = std::fs::read_dir(dir.path().join(".staging"))
            .unwrap()
            .count();
        assert_eq!(staging, 0);
        assert!(!blobs.contains(&Digest::of(b"partial")).await.unwrap());
    }
}
