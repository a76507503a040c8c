//! The data directory is private to the user the server runs as: it holds
//! every tenant's deploy configuration, logs with guest output, usage, sealed
//! secrets and modules. It is created `0700`; an existing one that group or
//! others can write is refused (anyone who can write it can swap a module or
//! the database under the server), and one they can only read or enter, as an
//! earlier Kiln created it, is made private, with everything in it. Files the
//! server creates later are private by the process umask that `kiln up` sets.

use anyhow::{Context, bail};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Permission bits for group and others.
const NOT_OWNER: u32 = 0o077;
/// Write permission for group and others.
const OTHERS_WRITE: u32 = 0o022;

/// Creates `dir` private, or checks (and, if need be, tightens) the one there.
pub(crate) fn prepare(dir: &Path) -> anyhow::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot create the data directory {}", dir.display()));
        }
    }
    let metadata = std::fs::metadata(dir)
        .with_context(|| format!("cannot read the data directory {}", dir.display()))?;
    if !metadata.is_dir() {
        bail!("the data directory {} is not a directory", dir.display());
    }
    let mode = metadata.mode() & 0o777;
    if mode & OTHERS_WRITE != 0 {
        bail!(
            "the data directory {} can be written by {} (mode {mode:04o}): anyone who can write \
             it can replace a module or the database; make it private (chmod 0700) and run kiln \
             as a user of its own",
            dir.display(),
            match (mode & 0o020 != 0, mode & 0o002 != 0) {
                (true, true) => "its group and by others",
                (true, false) => "its group",
                _ => "others",
            }
        );
    }
    if mode & NOT_OWNER != 0 {
        let tightened = make_private(dir)
            .with_context(|| format!("cannot make the data directory {} private", dir.display()))?;
        tracing::warn!(
            dir = %dir.display(),
            was = format!("{mode:04o}"),
            entries = tightened,
            "the data directory could be read by other users; it is now private (0700, files 0600)"
        );
    }
    Ok(())
}

/// Takes group and others' permissions off `dir` and everything under it (not
/// following symbolic links); answers how many entries changed.
fn make_private(dir: &Path) -> std::io::Result<u64> {
    let mut changed = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path)?;
        if metadata.file_type().is_symlink() {
            continue;
        }
        let mode = metadata.mode() & 0o7777;
        if mode & NOT_OWNER != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !NOT_OWNER))?;
            changed += 1;
        }
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(changed)
}
