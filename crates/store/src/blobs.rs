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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

    /// The kind's name in words and in the store's tables.
    pub fn name(self) -> &'static str {
        match self {
            BlobKind::Module => "module",
            BlobKind::Bundle => "bundle",
        }
    }

    /// The kind named `name` ([`BlobKind::name`]).
    pub fn from_name(name: &str) -> Option<BlobKind> {
        [BlobKind::Module, BlobKind::Bundle]
            .into_iter()
            .find(|kind| kind.name() == name)
    }

    /// The kind whose blobs end in `.extension`.
    fn from_extension(extension: &str) -> Option<BlobKind> {
        [BlobKind::Module, BlobKind::Bundle]
            .into_iter()
            .find(|kind| kind.extension() == extension)
    }
}

/// One blob: what the collector lists, and what a deploy pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobRef {
    /// What it holds.
    pub kind: BlobKind,
    /// The sha256 of its bytes.
    pub digest: Digest,
}

impl BlobRef {
    /// A module blob.
    pub fn module(digest: Digest) -> BlobRef {
        BlobRef {
            kind: BlobKind::Module,
            digest,
        }
    }

    /// A bundle blob.
    pub fn bundle(digest: Digest) -> BlobRef {
        BlobRef {
            kind: BlobKind::Bundle,
            digest,
        }
    }

    /// The blob a file named `<sha256>.<extension>` holds, if the name is one.
    pub(crate) fn from_file_name(name: &str) -> Option<BlobRef> {
        let (hex, extension) = name.split_once('.')?;
        Some(BlobRef {
            kind: BlobKind::from_extension(extension)?,
            digest: hex.parse().ok()?,
        })
    }
}

/// A stored blob and its size, as the collector lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBlob {
    /// Which blob.
    pub blob: BlobRef,
    /// Its size in bytes.
    pub bytes: u64,
}

/// A compiled artifact shared in the bucket, as the collector lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedArtifact {
    /// Its key (`<engine key>/<sha256>.cwasm`).
    pub key: String,
    /// The module it was compiled from.
    pub module: Digest,
    /// Its size in bytes.
    pub bytes: u64,
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
    /// Every stored blob, with its size (for the collector).
    async fn list(&self) -> StoreResult<Vec<StoredBlob>>;
    /// Deletes a blob (only the collector does, holding the blob's lock:
    /// `MetadataStore::collect_blob`); one already gone is not an error.
    async fn delete(&self, blob: BlobRef) -> StoreResult<()>;
    /// Whether this store shares compiled artifacts between nodes: a store of
    /// one node does not, and a node then has nothing to read, hash or record
    /// after a compile.
    fn shares_artifacts(&self) -> bool {
        false
    }
    /// Every artifact shared with the other nodes (none for a store of one
    /// node).
    async fn shared_artifacts(&self) -> StoreResult<Vec<SharedArtifact>> {
        Ok(Vec::new())
    }
    /// Deletes the shared artifact `key`; one already gone is not an error.
    async fn delete_shared_artifact(&self, key: &str) -> StoreResult<()> {
        let _ = key;
        Ok(())
    }

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

    async fn list(&self) -> StoreResult<Vec<StoredBlob>> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut blobs = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(|e| io_error(&dir, e))? {
                let entry = entry.map_err(|e| io_error(&dir, e))?;
                let name = entry.file_name();
                let Some(blob) = name.to_str().and_then(BlobRef::from_file_name) else {
                    continue; // staging, or not Kiln's
                };
                let metadata = entry.metadata().map_err(|e| io_error(&entry.path(), e))?;
                if metadata.is_file() {
                    blobs.push(StoredBlob {
                        blob,
                        bytes: metadata.len(),
                    });
                }
            }
            Ok(blobs)
        })
        .await
        .map_err(|e| StoreError::internal("blob store worker", e))?
    }

    async fn delete(&self, blob: BlobRef) -> StoreResult<()> {
        let path = self.path(blob.kind, &blob.digest);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&path, e)),
        }
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
