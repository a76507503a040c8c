//! The files a function sees: bundles (file trees uploaded once, stored by
//! digest) mounted at guest paths, and a per-invocation scratch directory. The
//! deploy options `mount=DIGEST:GUEST[:copy]` and `tmp=SIZE[:GUEST]` carry them
//! (see [`crate::FunctionConfig`]).

use crate::digest::Digest;
use crate::units::{ByteCount, parse_size};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest guest path of a mount, in bytes.
pub const MAX_GUEST_PATH: usize = 256;

/// Mounts one function version may have.
pub const MAX_MOUNTS: usize = 16;

/// A bundle mounted into every invocation of a function version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The bundle (its tar archive's sha256).
    pub bundle: Digest,
    /// The preopen name the guest sees: absolute (`/assets`) or relative (`data`, `.`).
    pub guest: String,
    /// How the guest may use it.
    #[serde(default)]
    pub mode: MountMode,
}

/// Whether a mount can be written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MountMode {
    /// Read-only: every write fails (`EROFS`/`EPERM`/`EBADF`, as WASI reports it).
    #[default]
    ReadOnly,
    /// Writable, per invocation: the invocation gets a private copy of the tree,
    /// counted against its scratch limits and discarded when it ends.
    Copy,
}

/// A writable directory private to each invocation, emptied at its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scratch {
    /// The most bytes it may hold (its files' allocated size).
    pub bytes: u64,
    /// Its preopen name (default `/tmp`).
    pub guest: String,
}

/// The guest path of a scratch directory that does not name one.
pub const DEFAULT_SCRATCH_PATH: &str = "/tmp";

/// `GET`/`PUT /v1/bundles/{digest}`: a bundle the tenant has uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleInfo {
    /// The tar archive's sha256.
    pub digest: Digest,
    /// Bytes of the archive.
    pub size: u64,
    /// Regular files in it.
    pub files: u64,
    /// Bytes of those files.
    pub file_bytes: u64,
}

/// A guest path, mount or scratch option that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadFilesOption(String);

/// Checks a preopen name: not empty, at most [`MAX_GUEST_PATH`] bytes, no NUL,
/// no `..` component (a guest resolves paths against preopen names; one that
/// climbs would make the name ambiguous).
pub fn check_guest_path(path: &str) -> Result<(), BadFilesOption> {
    let bad = |why: &str| Err(BadFilesOption(format!("guest path {path:?}: {why}")));
    if path.is_empty() {
        return bad("is empty");
    }
    if path.len() > MAX_GUEST_PATH {
        return bad(&format!("is longer than {MAX_GUEST_PATH} bytes"));
    }
    if path.contains('\0') {
        return bad("contains a NUL byte");
    }
    if path.split('/').any(|part| part == "..") {
        return bad("contains `..`");
    }
    Ok(())
}

impl Mount {
    /// Reads `DIGEST:GUEST` or `DIGEST:GUEST:copy` (the query form).
    pub fn parse(text: &str) -> Result<Mount, BadFilesOption> {
        let (digest, rest) = text.split_once(':').ok_or_else(|| {
            BadFilesOption(format!("expected DIGEST:GUEST_PATH[:copy], got {text:?}"))
        })?;
        let bundle: Digest = digest
            .parse()
            .map_err(|e| BadFilesOption(format!("bundle digest {digest:?}: {e}")))?;
        let (guest, mode) = match rest.rsplit_once(':') {
            Some((guest, "copy")) => (guest, MountMode::Copy),
            Some((guest, "ro")) => (guest, MountMode::ReadOnly),
            _ => (rest, MountMode::ReadOnly),
        };
        check_guest_path(guest)?;
        Ok(Mount {
            bundle,
            guest: guest.to_owned(),
            mode,
        })
    }
}

impl fmt::Display for Mount {
    /// The query form [`Mount::parse`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.bundle, self.guest)?;
        if self.mode == MountMode::Copy {
            write!(f, ":copy")?;
        }
        Ok(())
    }
}

impl Scratch {
    /// Reads `SIZE` or `SIZE:GUEST` (`64MiB`, `1GiB:/work`).
    pub fn parse(text: &str) -> Result<Scratch, BadFilesOption> {
        let (size, guest) = text.split_once(':').unwrap_or((text, DEFAULT_SCRATCH_PATH));
        let bytes = parse_size(size).map_err(|e| BadFilesOption(e.to_string()))?;
        if bytes == 0 {
            return Err(BadFilesOption(
                "a scratch directory needs at least 1 byte".into(),
            ));
        }
        check_guest_path(guest)?;
        Ok(Scratch {
            bytes,
            guest: guest.to_owned(),
        })
    }
}

impl fmt::Display for Scratch {
    /// The query form [`Scratch::parse`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.bytes, self.guest)
    }
}

/// Checks a version's mounts and scratch directory together: at most
/// [`MAX_MOUNTS`], and no two with the same guest path.
pub fn check_mounts(mounts: &[Mount], scratch: Option<&Scratch>) -> Result<(), BadFilesOption> {
    if mounts.len() > MAX_MOUNTS {
        return Err(BadFilesOption(format!(
            "{} mounts: at most {MAX_MOUNTS} are allowed",
            mounts.len()
        )));
    }
    let mut seen: Vec<&str> = Vec::new();
    let guests = mounts.iter().map(|m| m.guest.as_str());
    for guest in guests.chain(scratch.map(|s| s.guest.as_str())) {
        let normal = guest.trim_end_matches('/');
        if seen.contains(&normal) {
            return Err(BadFilesOption(format!(
                "guest path {guest:?} is mounted twice"
            )));
        }
        seen.push(normal);
    }
    Ok(())
}

impl fmt::Display for BundleInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.files == 1 { "file" } else { "files" };
        write!(
            f,
            "{} {noun}, {} ({})",
            self.files,
            ByteCount(self.file_bytes),
            &self.digest.to_hex()[..12]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_round_trip_and_bad_ones_are_named() {
        let digest = Digest::of(b"tree");
        for text in [
            format!("{digest}:/assets"),
            format!("{digest}:data:copy"),
            format!("{digest}:."),
        ] {
            let mount = Mount::parse(&text).expect("valid");
            assert_eq!(mount.to_string(), text);
        }
        assert_eq!(
            Mount::parse(&format!("{digest}:/a:ro")).map(|m| m.mode),
            Ok(MountMode::ReadOnly)
        );
        for (text, expected) in [
            ("nocolon".to_owned(), "expected DIGEST:GUEST_PATH"),
            ("abc:/x".to_owned(), "bundle digest \"abc\""),
            (format!("{digest}:"), "is empty"),
            (format!("{digest}:/a/../b"), "contains `..`"),
            (format!("{digest}:/{}", "x".repeat(300)), "longer than 256"),
        ] {
            let err = Mount::parse(&text).expect_err(&text).to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn scratch_sizes_and_paths() {
        let scratch = Scratch::parse("64MiB").expect("valid");
        assert_eq!((scratch.bytes, scratch.guest.as_str()), (64 << 20, "/tmp"));
        let scratch = Scratch::parse("1KiB:work").expect("valid");
        assert_eq!(Scratch::parse(&scratch.to_string()), Ok(scratch));
        assert!(Scratch::parse("0").is_err());
        assert!(Scratch::parse("lots").is_err());
    }

    #[test]
    fn guest_paths_are_not_mounted_twice() {
        let mount = |guest: &str| Mount {
            bundle: Digest::of(b"t"),
            guest: guest.into(),
            mode: MountMode::ReadOnly,
        };
        assert!(check_mounts(&[mount("/a"), mount("/b")], None).is_ok());
        assert!(check_mounts(&[mount("/a"), mount("/a/")], None).is_err());
        let tmp = Scratch::parse("1MiB").expect("valid");
        assert!(check_mounts(&[mount("/tmp")], Some(&tmp)).is_err());
        let many: Vec<Mount> = (0..17).map(|i| mount(&format!("/m{i}"))).collect();
        assert!(check_mounts(&many, None).is_err());
    }
}
