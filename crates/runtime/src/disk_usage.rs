//! How much of the disk a directory tree takes: the bound every scratch
//! directory and writable copy is checked against.

use std::path::Path;

/// Bytes allocated on disk and entries under `dir` (not following links).
/// Entries that vanish while walked (the guest deleting them) are skipped.
pub(crate) fn usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0u64;
    let mut entries = 0u64;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in read.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            entries += 1;
            bytes = bytes.saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    (bytes, entries)
}
