//! Directory trees in a scratch root: fresh names for new ones, whole
//! writable copies, and removal (of an overlay's work directory too).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Names for new directories in a scratch root, `<pid>-<n>`: removed at the
/// next start if this process is gone by then.
pub(crate) struct Names {
    dir: PathBuf,
    next: AtomicU64,
}

impl Names {
    /// Names in `dir`.
    pub(crate) fn new(dir: PathBuf) -> Names {
        Names {
            dir,
            next: AtomicU64::new(0),
        }
    }

    /// A name not given before.
    pub(crate) fn fresh(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{}-{n}", std::process::id()))
    }
}

/// Removes a tree, one with directories its owner cannot read or write
/// included (an overlay's work directory holds one): without
/// `CAP_DAC_OVERRIDE`, those are opened up first.
pub(crate) fn remove_tree(path: &Path) -> std::io::Result<()> {
    let removed = match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            open_up(path);
            std::fs::remove_dir_all(path)
        }
        removed => removed,
    };
    match removed {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        removed => removed,
    }
}

/// Gives the owner every permission on every directory of the tree at `dir`
/// (not following links); what cannot be changed is left to fail the removal.
fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(entry.path());
            }
        }
    }
}

/// Copies the tree at `from` (directories and regular files only, as bundles
/// hold) to `to`, writable.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
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
