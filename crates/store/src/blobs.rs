//! Blobs, content-addressed by sha256: modules, and the file bundles functions
//! mount ([`BlobKind`]).
//!
//! Uploads are streamed into a [`StagedBlob`] (a temp file hashed as it is written),
//! validated by the caller, then committed under their digest: fsync, rename, fsync
//! of the directory — so a blob that metadata refers to is always whole. Reading
//! one back gives a local file ([`LocalBlob`]), never the bytes in memory.

use crate::error::{StoreError, StoreResult, is_full};
use async_trait::async_trait;
use kiln_api::Digest;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::AsyncWriteExt;

/// What a blob holds. Each kind has its own names, so a digest of one kind never
/// finds a blob of the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobKind {
    /// A WebAssembly binary (`<sha256>.wasm`).
    Module,
    /// A file tree a function mounts, as a tar archive (`<sha256>.tar`).
    Bundle,
}

impl BlobKind {
    /// The file extension of this kind's blobs.
    pub fn extension(self) -> &'static str {
        match self {
            BlobKind::Module => "wasm",
            BlobKind::Bundle => "tar",
        }
    }
}

/// Where modules and bundles live.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// A fresh staging file to stream an upload into.
    async fn stage(&self) -> StoreResult<StagedBlob>;
    /// Makes a finished staged blob durable under its digest. Idempotent: committing
    /// bytes that are already stored keeps the stored copy.
    async fn commit(&self, kind: BlobKind, staged: StagedBlob) -> StoreResult<Digest>;
    /// A stored blob as a local file: the store's own, or a download that is
    /// deleted when the [`LocalBlob`] is dropped.
    async fn local(&self, kind: BlobKind, digest: &Digest) -> StoreResult<LocalBlob>;
    /// Whether a blob of `kind` is stored under `digest`.
    async fn contains(&self, kind: BlobKind, digest: &Digest) -> StoreResult<bool>;

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

/// A stored blob on this machine's disk, to read from [`LocalBlob::path`].
pub struct LocalBlob {
    path: PathBuf,
    /// A download: removed with this value.
    _download: Option<StagedBlob>,
}

impl LocalBlob {
    /// The file (read-only to the caller).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The blob read into memory, for the small ones (tests, artifacts).
    pub async fn read(&self) -> StoreResult<Vec<u8>> {
        tokio::fs::read(&self.path)
            .await
            .map_err(|e| io_error(&self.path, e))
    }

    /// A blob that lives at `path` in the store itself.
    pub(crate) fn stored(path: PathBuf) -> LocalBlob {
        LocalBlob {
            path,
            _download: None,
        }
    }

    /// A blob downloaded into a staging file.
    pub(crate) fn downloaded(staged: StagedBlob) -> LocalBlob {
        LocalBlob {
            path: staged.path.clone(),
            _download: Some(staged),
        }
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

/// Blobs in a local directory: `<dir>/<sha256>.wasm` and `<dir>/<sha256>.tar`,
/// staging in `<dir>/.staging`.
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

    /// Where the blob of `digest` lives (whether or not it exists).
    pub fn path(&self, kind: BlobKind, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{digest}.{}", kind.extension()))
    }
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn stage(&self) -> StoreResult<StagedBlob> {
        StagedBlob::create_in(&self.dir.join(".staging")).await
    }

    async fn commit(&self, kind: BlobKind, mut staged: StagedBlob) -> StoreResult<Digest> {
        let digest = staged.finish().await?;
        let target = self.path(kind, &digest);
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

    async fn local(&self, kind: BlobKind, digest: &Digest) -> StoreResult<LocalBlob> {
        let path = self.path(kind, digest);
        match tokio::fs::metadata(&path).await {
            Ok(_) => Ok(LocalBlob::stored(path)),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    async fn contains(&self, kind: BlobKind, digest: &Digest) -> StoreResult<bool> {
        Ok(tokio::fs::try_exists(self.path(kind, digest))
            .await
            .unwrap_or(false))
    }
}

pub(crate) fn io_error(path: &Path, e: std::io::Error) -> StoreError {
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
        let digest = blobs.commit(BlobKind::Module, staged).await.unwrap();
        assert_eq!(digest, Digest::of(b"hello world"));
        let local = blobs.local(BlobKind::Module, &digest).await.unwrap();
        assert_eq!(local.read().await.unwrap(), b"hello world");
        assert!(blobs.contains(BlobKind::Module, &digest).await.unwrap());
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
        let partial = Digest::of(b"partial");
        assert!(!blobs.contains(BlobKind::Module, &partial).await.unwrap());
    }
}
