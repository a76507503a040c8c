//! File bundles: the tar archives of file trees a tenant uploads to mount into
//! its functions. An archive is checked entry by entry before anything is
//! stored ([`check`]): only directories and regular files, at relative paths
//! that stay inside the tree, each once, within the file-count and byte limits.
//! Checked archives are kept in the blob store by digest (S3 in a cluster), and
//! unpacked once per node under `<data>/bundles/<digest>/`, read-only, by
//! [`Bundles::ensure`]: on upload, on deploy, or on the first request a node
//! serves for a bundle another node received.

use crate::sync::lock;
use kiln_api::{ByteCount, Digest};
use kiln_store::{BlobKind, BlobStore, StoreError};
use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// What one bundle may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleLimits {
    /// Bytes of the archive (default 1 GiB).
    pub max_bytes: u64,
    /// Entries, files and directories together (default 100,000).
    pub max_files: u64,
}

impl Default for BundleLimits {
    fn default() -> BundleLimits {
        BundleLimits {
            max_bytes: 1 << 30,
            max_files: 100_000,
        }
    }
}

/// Longest path inside a bundle, in bytes.
const MAX_PATH_BYTES: usize = 1024;

/// Why an archive is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BundleError {
    /// An entry that cannot be in a bundle.
    #[error("bundle entry {path:?}: {why}")]
    BadEntry {
        /// The entry's path, as written in the archive.
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// More entries than the limit.
    #[error("the bundle has more than {0} files and directories")]
    TooManyFiles(u64),
    /// More bytes than the limit.
    #[error("the bundle is over the limit of {}", ByteCount(*.0))]
    TooLarge(u64),
    /// Not a tar archive, or a damaged one.
    #[error("not a readable tar archive: {0}")]
    NotTar(String),
}

/// What a checked archive holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Contents {
    /// Regular files.
    pub files: u64,
    /// Their bytes.
    pub file_bytes: u64,
}

/// Reads the whole archive at `archive` and refuses it unless every entry is a
/// directory or a regular file at a relative path without `..`, no path comes
/// twice, and it is within `limits`. Symbolic links, hard links, devices and
/// FIFOs are refused wherever they point: the CLI packs the files a link
/// points to instead, so a bundle needs none.
pub(crate) fn check(archive: &Path, limits: BundleLimits) -> Result<Contents, BundleError> {
    let not_tar = |e: std::io::Error| BundleError::NotTar(e.to_string());
    let size = std::fs::metadata(archive).map_err(not_tar)?.len();
    if size > limits.max_bytes {
        return Err(BundleError::TooLarge(limits.max_bytes));
    }
    let file = std::fs::File::open(archive).map_err(not_tar)?;
    let mut tar = tar::Archive::new(file);
    let mut seen = HashSet::new();
    let mut contents = Contents {
        files: 0,
        file_bytes: 0,
    };
    for entry in tar.entries().map_err(not_tar)? {
        let entry = entry.map_err(not_tar)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let bad = |why| BundleError::BadEntry {
            path: raw.clone(),
            why,
        };
        let kind = entry.header().entry_type();
        let is_file = match kind {
            tar::EntryType::Regular => true,
            tar::EntryType::Directory => false,
            tar::EntryType::Symlink => return Err(bad("symbolic links are not allowed")),
            tar::EntryType::Link => return Err(bad("hard links are not allowed")),
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(bad("device files are not allowed"));
            }
            tar::EntryType::Fifo => return Err(bad("FIFOs are not allowed")),
            _ => return Err(bad("only directories and regular files are allowed")),
        };
        let path = entry.path().map_err(not_tar)?;
        let normal = normalize(&path).map_err(bad)?;
        if normal.as_os_str().is_empty() {
            // `./`: the root itself.
            continue;
        }
        if normal.as_os_str().len() > MAX_PATH_BYTES {
            return Err(bad("the path is longer than 1024 bytes"));
        }
        if !seen.insert(normal) {
            return Err(bad("the path comes twice"));
        }
        if seen.len() as u64 > limits.max_files {
            return Err(BundleError::TooManyFiles(limits.max_files));
        }
        if is_file {
            contents.files += 1;
            contents.file_bytes += entry.size();
        }
    }
    Ok(contents)
}

/// `a/./b/` as `a/b`; refuses absolute paths and `..`.
fn normalize(path: &Path) -> Result<PathBuf, &'static str> {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => normal.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("`..` is not allowed in a path"),
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute paths are not allowed");
            }
        }
    }
    Ok(normal)
}

/// Unpacks a checked archive into `into` (which must not exist), then makes
/// the tree read-only: files 0444, directories 0555.
fn unpack(archive: &Path, into: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir(into)?;
    let mut tar = tar::Archive::new(std::fs::File::open(archive)?);
    let mut dirs = vec![into.to_owned()];
    for entry in tar.entries()? {
        let mut entry = entry?;
        let relative = normalize(&entry.path()?).map_err(std::io::Error::other)?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let target = into.join(&relative);
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(entry.header().mtime()?);
        if entry.header().entry_type() == tar::EntryType::Directory {
            std::fs::create_dir_all(&target)?;
            dirs.push(target);
            continue;
        }
        if let Some(parent) = target.parent()
            && !parent.exists()
        {
            std::fs::create_dir_all(parent)?;
            dirs.push(parent.to_owned());
        }
        let mut file = std::fs::File::create_new(&target)?;
        std::io::copy(&mut entry, &mut file)?;
        file.set_modified(mtime)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o444))?;
    }
    // Deepest first, so that a parent is still writable while its children change.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for dir in dirs {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555))?;
    }
    Ok(())
}

/// Why a bundle could not be made ready on this node.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EnsureError {
    /// The archive could not be had from the blob store.
    #[error("cannot fetch bundle {digest}")]
    Fetch {
        /// The bundle.
        digest: Digest,
        /// Why.
        source: StoreError,
    },
    /// The stored archive fails the checks (it was stored by something else).
    #[error("stored bundle {digest} is refused: {source}")]
    Refused {
        /// The bundle.
        digest: Digest,
        /// Why.
        source: BundleError,
    },
    /// Unpacking failed (a full disk, permissions).
    #[error("cannot unpack bundle {digest} into {path}")]
    Unpack {
        /// The bundle.
        digest: Digest,
        /// Where it was going.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A blocking task died.
    #[error("a bundle task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// This node's unpacked bundles.
pub(crate) struct Bundles {
    dir: PathBuf,
    blobs: Arc<dyn BlobStore>,
    limits: BundleLimits,
    /// One unpacking per digest at a time.
    flights: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    next: AtomicU64,
}

impl Bundles {
    /// Opens `dir`, removing unpackings a crash left half done.
    pub(crate) fn open(
        dir: PathBuf,
        blobs: Arc<dyn BlobStore>,
        limits: BundleLimits,
    ) -> std::io::Result<Bundles> {
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".unpack-") {
                make_writable(&entry.path());
                std::fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(Bundles {
            dir,
            blobs,
            limits,
            flights: Mutex::default(),
            next: AtomicU64::new(0),
        })
    }

    /// What a bundle may hold.
    pub(crate) fn limits(&self) -> BundleLimits {
        self.limits
    }

    /// Where the tree of `digest` is (or will be) on this node.
    pub(crate) fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.to_hex())
    }

    /// Makes sure the tree of `digest` is unpacked here, from `archive` (an
    /// upload the caller has checked) or else from the blob store (checked
    /// here: the bucket is shared), and returns where.
    pub(crate) async fn ensure(
        &self,
        digest: Digest,
        archive: Option<&Path>,
    ) -> Result<PathBuf, EnsureError> {
        let path = self.path(&digest);
        if path.is_dir() {
            return Ok(path);
        }
        let flight = {
            let mut flights = lock(&self.flights);
            flights.retain(|_, f| Arc::strong_count(f) > 1);
            flights.entry(digest).or_default().clone()
        };
        let _turn = flight.lock().await;
        if path.is_dir() {
            return Ok(path);
        }
        let fetched;
        let (archive, checked) = match archive {
            Some(archive) => (archive.to_owned(), true),
            None => {
                fetched = self
                    .blobs
                    .local(BlobKind::Bundle, &digest)
                    .await
                    .map_err(|source| EnsureError::Fetch { digest, source })?;
                (fetched.path().to_owned(), false)
            }
        };
        let temporary = self.dir.join(format!(
            ".unpack-{}-{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        ));
        let limits = self.limits;
        let target = path.clone();
        tokio::task::spawn_blocking(move || {
            if !checked {
                check(&archive, limits)
                    .map_err(|source| EnsureError::Refused { digest, source })?;
            }
            let unpacked =
                unpack(&archive, &temporary).and_then(|()| std::fs::rename(&temporary, &target));
            if let Err(source) = unpacked {
                make_writable(&temporary);
                let _ = std::fs::remove_dir_all(&temporary);
                return Err(EnsureError::Unpack {
                    digest,
                    path: target,
                    source,
                });
            }
            Ok(())
        })
        .await??;
        tracing::info!(%digest, "unpacked a bundle");
        Ok(path)
    }
}

/// The trees unpacked in `dir` (a [`Bundles`] directory): each bundle's digest
/// and the bytes of its files.
pub(crate) fn unpacked(dir: &Path) -> std::io::Result<Vec<(Digest, u64)>> {
    let mut trees = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(digest) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue; // an unpacking in progress, or one being removed
        };
        trees.push((digest, tree_bytes(&entry.path())?));
    }
    Ok(trees)
}

fn tree_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        bytes += match metadata.is_dir() {
            true => tree_bytes(&entry.path())?,
            false => metadata.len(),
        };
    }
    Ok(bytes)
}

/// Removes the unpacked tree of `digest` from `dir`: renamed aside first (an
/// `ensure` finds it whole or not at all), then deleted.
pub(crate) fn remove(dir: &Path, digest: &Digest) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let aside = dir.join(format!(
        ".unpack-removed-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    match std::fs::rename(dir.join(digest.to_hex()), &aside) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        renamed => renamed?,
    }
    make_writable(&aside);
    std::fs::remove_dir_all(&aside)
}

/// Gives the owner write permission on a tree again, so that it can be removed.
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    for entry in read.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            make_writable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive of `entries`, each (path, type, data), written raw so that
    /// anything a hostile client could send can be.
    fn archive(dir: &Path, entries: &[(&str, tar::EntryType, &[u8])]) -> PathBuf {
        let path = dir.join("bundle.tar");
        let mut builder = tar::Builder::new(std::fs::File::create(&path).expect("create"));
        for (name, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            // Raw bytes: `set_path` itself refuses `..`.
            let raw = &mut header.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            if *kind == tar::EntryType::Symlink || *kind == tar::EntryType::Link {
                header.set_link_name("target").expect("link name");
            }
            header.set_cksum();
            builder.append(&header, *data).expect("append");
        }
        builder.finish().expect("finish");
        path
    }

    #[test]
    fn a_tree_of_files_and_directories_is_accepted_and_unpacked_read_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = archive(
            dir.path(),
            &[
                ("./", tar::EntryType::Directory, b""),
                ("fonts/", tar::EntryType::Directory, b""),
                ("fonts/a.ttf", tar::EntryType::Regular, b"abc"),
                ("deep/er/b.txt", tar::EntryType::Regular, b"hello"),
            ],
        );
        let contents = check(&path, BundleLimits::default()).expect("accepted");
        assert_eq!(
            contents,
            Contents {
                files: 2,
                file_bytes: 8
            }
        );
        let into = dir.path().join("tree");
        unpack(&path, &into).expect("unpack");
        assert_eq!(
            std::fs::read(into.join("deep/er/b.txt")).expect("read"),
            b"hello"
        );
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&into.join("fonts/a.ttf")), 0o444);
        assert_eq!(mode(&into.join("deep/er")), 0o555);
        make_writable(&into);
    }

    #[test]
    fn every_dangerous_entry_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, kind, expected) in [
            (
                "../etc/passwd",
                tar::EntryType::Regular,
                "`..` is not allowed",
            ),
            ("a/../../x", tar::EntryType::Regular, "`..` is not allowed"),
            ("/etc/passwd", tar::EntryType::Regular, "absolute paths"),
            (
                "link",
                tar::EntryType::Symlink,
                "symbolic links are not allowed",
            ),
            ("hard", tar::EntryType::Link, "hard links are not allowed"),
            ("tty", tar::EntryType::Char, "device files are not allowed"),
            (
                "disk",
                tar::EntryType::Block,
                "device files are not allowed",
            ),
            ("pipe", tar::EntryType::Fifo, "FIFOs are not allowed"),
        ] {
            let path = archive(dir.path(), &[(name, kind, b"")]);
            let refused = check(&path, BundleLimits::default()).expect_err(name);
            assert!(refused.to_string().contains(expected), "{name}: {refused}");
        }
        let twice = archive(
            dir.path(),
            &[
                ("a", tar::EntryType::Regular, b"1"),
                ("./a", tar::EntryType::Regular, b"2"),
            ],
        );
        let refused = check(&twice, BundleLimits::default()).expect_err("twice");
        assert!(refused.to_string().contains("comes twice"), "{refused}");
        let text = dir.path().join("notes.txt");
        std::fs::write(
            &text,
            "not a tar archive, but long enough to be read as one? no".repeat(20),
        )
        .expect("write");
        assert!(matches!(
            check(&text, BundleLimits::default()),
            Err(BundleError::NotTar(_))
        ));
    }

    #[test]
    fn file_count_and_size_limits_are_crossed_clearly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = archive(
            dir.path(),
            &[
                ("a", tar::EntryType::Regular, b"1"),
                ("b", tar::EntryType::Regular, b"2"),
                ("c", tar::EntryType::Regular, b"3"),
            ],
        );
        let limits = BundleLimits {
            max_files: 2,
            ..BundleLimits::default()
        };
        assert_eq!(check(&path, limits), Err(BundleError::TooManyFiles(2)));
        let limits = BundleLimits {
            max_bytes: 1024,
            ..BundleLimits::default()
        };
        assert_eq!(check(&path, limits), Err(BundleError::TooLarge(1024)));
        assert!(check(&path, BundleLimits::default()).is_ok());
    }
}
