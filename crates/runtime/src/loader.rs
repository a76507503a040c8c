//! `kiln:runtime/loader`: the files a language runtime reads while it is
//! initialized at deploy, without WASI's filesystem. A component that opened a
//! WASI descriptor (a preopened directory, which wasi-libc caches) before the
//! snapshot would find it dangling in every request, whose instance never
//! received it; reading through this interface leaves no such trace. The
//! Python runtime imports the user's code and the standard library with it.
//!
//! Only a snapshot's store has files to read: the directories it mounts, by
//! guest path. In a request the interface answers `none` to everything.

use crate::function::ComponentHost;
use std::io::Read as _;
use std::path::{Component, Path, PathBuf};
use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

/// The interface, as components import it.
pub(crate) const INTERFACE: &str = "kiln:runtime/loader@0.1.0";

/// The largest file it reads (a source file or a library module, not data).
const MAX_FILE_BYTES: u64 = 16 << 20;

/// Defines `read-file: func(path: string) -> option<list<u8>>`.
pub(crate) fn add_to_linker(linker: &mut Linker<ComponentHost>) -> wasmtime::Result<()> {
    linker.instance(INTERFACE)?.func_wrap(
        "read-file",
        |store: StoreContextMut<'_, ComponentHost>, (path,): (String,)| {
            Ok((read(&store.data().wasi.loader, &path),))
        },
    )
}

/// The bytes of the regular file at guest path `path` under one of `roots`
/// (host directory, guest path), if there is one within the size limit. Paths
/// with `..`, and anything a symbolic link leads to, are not read.
fn read(roots: &[(PathBuf, String)], path: &str) -> Option<Vec<u8>> {
    let (host, rest) = roots.iter().find_map(|(host, guest)| {
        let rest = path.strip_prefix(guest.trim_end_matches('/'))?;
        let rest = rest.strip_prefix('/')?;
        Some((host, rest))
    })?;
    let relative = Path::new(rest);
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let full = host.join(relative);
    let meta = std::fs::symlink_metadata(&full).ok()?;
    if !meta.file_type().is_file() || meta.len() > MAX_FILE_BYTES {
        return None;
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).ok()?);
    std::fs::File::open(&full)
        .ok()?
        .take(MAX_FILE_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_regular_files_inside_its_roots() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("pkg")).expect("mkdir");
        std::fs::write(dir.path().join("pkg/mod.py"), "x = 1").expect("write");
        std::fs::write(dir.path().join("secret"), "no").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("pkg/link.py")).expect("link");
        let roots = vec![(dir.path().join("pkg"), "/app".to_owned())];
        assert_eq!(read(&roots, "/app/mod.py").as_deref(), Some(&b"x = 1"[..]));
        assert_eq!(read(&roots, "/app/../secret"), None);
        assert_eq!(read(&roots, "/app/link.py"), None);
        assert_eq!(read(&roots, "/app"), None);
        assert_eq!(read(&roots, "/apps/mod.py"), None);
        assert_eq!(read(&roots, "/etc/passwd"), None);
        assert_eq!(read(&[], "/app/mod.py"), None);
    }
}
