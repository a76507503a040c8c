//! `kiln deploy --dir HOST[:GUEST][:copy]`: packing a directory into a bundle
//! and uploading it unless the server already has it from this tenant.
//!
//! The archive is deterministic (entries sorted, owners and modes normalized,
//! modification times kept), so an unchanged tree has the same digest and a
//! redeploy uploads nothing. A symbolic link is packed as what it points to
//! when that is inside the directory, and refused otherwise; sockets, devices
//! and FIFOs are refused: the server accepts only directories and files.

use super::progress::{Counted, Progress};
use crate::client::Client;
use anyhow::{Context, bail};
use kiln_api::{BundleInfo, ByteCount, Digest, Mount, MountMode, check_guest_path};
use sha2::{Digest as _, Sha256};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// A `--dir` option: which directory, where the guest sees it, how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirOption {
    host: PathBuf,
    guest: String,
    mode: MountMode,
    /// What messages call it, when not its path (a temporary copy).
    label: Option<String>,
}

impl DirOption {
    /// `host` seen read-only at `guest`, called `label` in messages.
    pub(crate) fn read_only(host: PathBuf, guest: &str, label: String) -> DirOption {
        DirOption {
            host,
            guest: guest.to_owned(),
            mode: MountMode::ReadOnly,
            label: Some(label),
        }
    }

    fn shown(&self) -> String {
        self.label
            .clone()
            .unwrap_or_else(|| self.host.display().to_string())
    }
}

/// Reads `HOST[:GUEST][:copy|:ro]`. Without GUEST, the guest sees the
/// directory at `/` and its name (`./fonts` at `/fonts`).
pub(crate) fn parse_dir_option(text: &str) -> Result<DirOption, String> {
    let (rest, mode) = match text.rsplit_once(':') {
        Some((rest, "copy")) => (rest, MountMode::Copy),
        Some((rest, "ro")) => (rest, MountMode::ReadOnly),
        _ => (text, MountMode::ReadOnly),
    };
    let (host, guest) = match rest.split_once(':') {
        Some((host, guest)) => (PathBuf::from(host), guest.to_owned()),
        None => {
            let host = PathBuf::from(rest);
            let name = std::fs::canonicalize(&host)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .ok_or_else(|| format!("cannot tell a guest path from {rest:?}: use HOST:GUEST"))?;
            (host, format!("/{name}"))
        }
    };
    if host.as_os_str().is_empty() {
        return Err(format!("expected HOST[:GUEST][:copy], got {text:?}"));
    }
    check_guest_path(&guest).map_err(|e| e.to_string())?;
    Ok(DirOption {
        host,
        guest,
        mode,
        label: None,
    })
}

/// A directory packed into a temporary tar file.
struct Packed {
    file: tempfile::NamedTempFile,
    digest: Digest,
    size: u64,
    entries: u64,
}

/// Writes through to a file while hashing and counting.
struct Hashing {
    file: std::fs::File,
    hasher: Sha256,
    size: u64,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn pack(root: &Path) -> anyhow::Result<Packed> {
    let canonical = std::fs::canonicalize(root)
        .with_context(|| format!("cannot read the directory {}", root.display()))?;
    if !canonical.is_dir() {
        bail!("{} is not a directory", root.display());
    }
    let file = tempfile::NamedTempFile::new().context("cannot create a temporary file")?;
    let writer = Hashing {
        file: file.reopen().context("cannot open the temporary file")?,
        hasher: Sha256::new(),
        size: 0,
    };
    let mut builder = tar::Builder::new(writer);
    let mut entries = 0u64;
    add_dir(
        &mut builder,
        &canonical,
        &canonical,
        Path::new(""),
        &mut entries,
    )?;
    let mut writer = builder.into_inner().context("cannot finish the archive")?;
    writer.flush()?;
    Ok(Packed {
        file,
        digest: Digest::from_bytes(writer.hasher.finalize().into()),
        size: writer.size,
        entries,
    })
}

/// Adds the children of `dir` (at `inside` in the archive), sorted by name.
fn add_dir(
    builder: &mut tar::Builder<Hashing>,
    root: &Path,
    dir: &Path,
    inside: &Path,
    entries: &mut u64,
) -> anyhow::Result<()> {
    let mut children: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let path = child.path();
        let name = inside.join(child.file_name());
        // A link is followed, if it stays inside the directory.
        let target = std::fs::canonicalize(&path)
            .with_context(|| format!("{} is a broken symbolic link", path.display()))?;
        if !target.starts_with(root) {
            bail!(
                "{} points to {}, outside {}: a bundle holds only what is inside its directory",
                path.display(),
                target.display(),
                root.display()
            );
        }
        let meta = std::fs::metadata(&target)?;
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(
            meta.modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs()),
        );
        *entries += 1;
        if meta.is_dir() {
            // A link to a directory that contains it would never end.
            if path.is_symlink() && dir.starts_with(&target) {
                bail!(
                    "{} is a symbolic link to a directory containing it",
                    path.display()
                );
            }
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder.append_data(&mut header, &name, std::io::empty())?;
            add_dir(builder, root, &target, &name, entries)?;
        } else if meta.is_file() {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(meta.len());
            let file = std::fs::File::open(&target)
                .with_context(|| format!("cannot read {}", target.display()))?;
            builder.append_data(&mut header, &name, file)?;
        } else {
            bail!(
                "{} is neither a file nor a directory (a socket, device or FIFO): \
                 a bundle cannot hold it",
                path.display()
            );
        }
    }
    Ok(())
}

/// Packs each `--dir`, uploads the bundles the server does not have from this
/// tenant, and returns the mounts to deploy with. Says on stderr what it did.
pub(crate) fn upload_dirs(client: &Client, dirs: &[DirOption]) -> anyhow::Result<Vec<Mount>> {
    let mut mounts = Vec::new();
    for dir in dirs {
        let packed = pack(&dir.host)?;
        let path = format!("/v1/bundles/{}", packed.digest);
        let info: BundleInfo = match client.get_if_found(&path)? {
            Some(info) => {
                eprintln!("{}: unchanged, not uploaded ({info})", dir.shown());
                info
            }
            None => {
                let (reader, sent) = Counted::new(std::fs::File::open(packed.file.path())?);
                let progress = std::io::stderr()
                    .is_terminal()
                    .then(|| Progress::start(sent, packed.size, "unpacking"));
                let uploaded = client.put_reader(&path, "application/x-tar", reader);
                if let Some(progress) = progress {
                    progress.stop();
                }
                let info: BundleInfo =
                    uploaded.with_context(|| format!("cannot upload {}", dir.shown()))?;
                eprintln!(
                    "{}: uploaded {} ({info})",
                    dir.shown(),
                    ByteCount(packed.size)
                );
                info
            }
        };
        debug_assert!(info.files <= packed.entries);
        mounts.push(Mount {
            bundle: packed.digest,
            guest: dir.guest.clone(),
            mode: dir.mode,
        });
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_options() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fonts = dir.path().join("fonts");
        std::fs::create_dir(&fonts).expect("mkdir");
        let text = fonts.display().to_string();
        assert_eq!(
            parse_dir_option(&text).map(|d| (d.guest, d.mode)),
            Ok(("/fonts".into(), MountMode::ReadOnly))
        );
        assert_eq!(
            parse_dir_option(&format!("{text}:data:copy")).map(|d| (d.guest, d.mode)),
            Ok(("data".into(), MountMode::Copy))
        );
        assert!(parse_dir_option(&format!("{text}:/a/../b")).is_err());
        assert!(parse_dir_option(":/x").is_err());
    }

    #[test]
    fn an_unchanged_tree_packs_to_the_same_digest_and_links_outside_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("tree");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::write(root.join("sub/a.txt"), "a").expect("write");
        std::fs::write(root.join("b.txt"), "b").expect("write");
        std::os::unix::fs::symlink("sub/a.txt", root.join("alias")).expect("symlink");
        let first = pack(&root).expect("pack");
        let second = pack(&root).expect("pack");
        assert_eq!(first.digest, second.digest);
        assert_eq!(first.entries, 4);

        std::os::unix::fs::symlink("/etc/passwd", root.join("escape")).expect("symlink");
        let refused = pack(&root).err().expect("refused").to_string();
        assert!(refused.contains("outside"), "{refused}");
    }
}
