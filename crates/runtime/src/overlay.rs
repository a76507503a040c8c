//! Copy-on-write views of a tree (overlayfs), for writable copies that copy a
//! file only when it is first written, not the whole tree when it is made.
//!
//! Mounting needs `CAP_SYS_ADMIN`, which `kiln up` gives up for good (and its
//! seccomp filter forbids `mount` and namespaces). So the mounts belong to a
//! helper process that enters a user and mount namespace of its own, where it
//! may mount overlays (Linux 5.11 and later) but nothing it does reaches the
//! machine's mounts, and then only answers two requests over a socket: mount
//! an overlay of a lower tree with an upper and a work directory at a target,
//! and detach a target. This process reaches the mounts through
//! `/proc/<helper>/root`, which resolves paths in the helper's mount
//! namespace; as the owner of the helper's user namespace it may (no
//! capability needed).
//!
//! The helper maps its user to the same user outside (root to root for `kiln
//! up` run as root: files an overlay copies are this process's), and mapping
//! root needs `CAP_SETFCAP` when it unshares (Linux 5.12 and later). So `kiln
//! up` starts it first thing, before it drops its capabilities
//! ([`Overlays::start`]), and hands it to the runtime; a runtime given none
//! starts one itself, which works where the process still has them.
//!
//! Once in its namespaces the helper installs a seccomp filter of its own (no
//! new privileges; `recvfrom`, `sendto`, `mount`, `umount2` and the calls that
//! end it, anything else kills it), before it says it is ready.
//!
//! The helper was forked from a process that may have had other threads, so it
//! makes only async-signal-safe calls (system calls on memory prepared before
//! the fork, no allocation, no lock). It closes every descriptor but its
//! socket, and exits when the socket reaches end of file: when the runtime
//! drops its `Overlays`, or when this process dies however it dies (`kill -9`
//! included). Its mounts go with its namespace. Where the helper cannot start
//! (no user namespaces, no overlayfs), there are no `Overlays` and copies are
//! made whole.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The longest request: an operation, a target and the mount options.
const REQUEST_BYTES: usize = 16 * 1024;
/// Request: mount an overlay (`MOUNT`, target, options).
const MOUNT: u8 = b'm';
/// Request: detach the mount at a target (`UNMOUNT`, target).
const UNMOUNT: u8 = b'u';
/// How long this process waits for the helper's answer before it gives up on it.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// The helper that mounts copy-on-write copies, and the socket to it. It ends
/// when this is dropped (or this process ends).
#[derive(Debug)]
pub struct Overlays {
    helper: libc::pid_t,
    /// One request at a time.
    socket: Mutex<Option<OwnedFd>>,
    /// `/proc/<helper>/root`: where this process sees the helper's mounts.
    seen_from_here: PathBuf,
}

/// What the helper writes before it serves, and the seccomp filter it then
/// installs on itself, prepared before the fork.
struct Setup {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    filter: seccompiler::BpfProgram,
}

/// The only system calls the helper makes once it serves: its socket's, the
/// two of its requests, and ending. Any other kills it.
fn helper_filter() -> io::Result<seccompiler::BpfProgram> {
    use seccompiler::{SeccompAction, SeccompFilter, TargetArch};
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(io::Error::other)?;
    let calls = [
        libc::SYS_recvfrom,
        libc::SYS_sendto,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_exit_group,
        libc::SYS_exit,
        libc::SYS_rt_sigreturn,
    ];
    let filter = SeccompFilter::new(
        calls.into_iter().map(|call| (call, Vec::new())).collect(),
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )
    .map_err(io::Error::other)?;
    filter.try_into().map_err(io::Error::other)
}

impl Overlays {
    /// Forks the helper and waits until it is in its namespaces: to be called
    /// before this process drops its capabilities (above).
    pub fn start() -> io::Result<Overlays> {
        let [here, there] = socket_pair()?;
        set_timeout(&here, ANSWER_WAIT)?;
        // SAFETY: getuid-like calls cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let setup = Setup {
            uid_map: format!("{uid} {uid} 1").into_bytes(),
            gid_map: format!("{gid} {gid} 1").into_bytes(),
            filter: helper_filter()?,
        };
        // SAFETY: the child runs `serve` only, which never returns and makes
        // only async-signal-safe calls on memory prepared above (see there).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: in the child, as above.
            unsafe { serve(there.as_raw_fd(), &setup) }
        }
        drop(there);
        let overlays = Overlays {
            helper: pid,
            socket: Mutex::new(Some(here)),
            seen_from_here: PathBuf::from(format!("/proc/{pid}/root")),
        };
        overlays.answer()?;
        Ok(overlays)
    }

    /// Mounts an empty overlay in `dir` (absolute, not there yet) and
    /// detaches it: whether this kernel lets the helper mount overlays with
    /// their layers on that file system at all, found before the first copy.
    pub(crate) fn probe(&self, dir: &Path) -> io::Result<()> {
        for name in ["lower", "upper", "work", "view"] {
            std::fs::create_dir_all(dir.join(name))?;
        }
        let mounted = self.mount(
            &dir.join("lower"),
            &dir.join("upper"),
            &dir.join("work"),
            &dir.join("view"),
        );
        let detached = mounted.and_then(|_| self.unmount(&dir.join("view")));
        let removed = remove_overlay_dirs(dir);
        detached.and(removed)
    }

    /// Mounts an overlay of `lower` (never changed) with `upper` and `work`
    /// (empty directories of one file system) at `target`; the path through
    /// which this process reaches it. Paths must be absolute.
    pub(crate) fn mount(
        &self,
        lower: &Path,
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> io::Result<PathBuf> {
        let mut options = Vec::new();
        for (key, dir) in [("lowerdir", lower), ("upperdir", upper), ("workdir", work)] {
            options.extend_from_slice(key.as_bytes());
            options.push(b'=');
            options.extend_from_slice(option_value(dir)?);
            options.push(b',');
        }
        options.extend_from_slice(b"userxattr");
        self.request(MOUNT, target, &options)?;
        Ok(self.seen(target))
    }

    /// Detaches the mount at `target`.
    pub(crate) fn unmount(&self, target: &Path) -> io::Result<()> {
        self.request(UNMOUNT, target, b"")
    }

    /// The helper's process id.
    #[cfg(test)]
    pub(crate) fn pid(&self) -> libc::pid_t {
        self.helper
    }

    /// Where this process reaches the helper's `path`.
    pub(crate) fn seen(&self, path: &Path) -> PathBuf {
        let relative = path.strip_prefix("/").unwrap_or(path);
        self.seen_from_here.join(relative)
    }

    fn request(&self, op: u8, target: &Path, options: &[u8]) -> io::Result<()> {
        let target = absolute_c(target)?;
        let mut message = vec![op];
        message.extend_from_slice(target.as_bytes_with_nul());
        message.extend_from_slice(options);
        message.push(0);
        if message.len() > REQUEST_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "overlay paths too long",
            ));
        }
        self.exchange(Some(&message))
    }

    fn answer(&self) -> io::Result<()> {
        self.exchange(None)
    }

    /// Sends `message` (if any) and reads the helper's answer: 0, or the
    /// errno of what it was asked. When the exchange itself fails (the
    /// helper gone, no answer within [`ANSWER_WAIT`]), the socket is closed:
    /// a late answer would be read as the next request's, so the helper is let
    /// go (it exits at end of file) and every later request fails.
    fn exchange(&self, message: Option<&[u8]>) -> io::Result<()> {
        let mut socket = self.socket.lock().unwrap_or_else(PoisonError::into_inner);
        let fd = socket.as_ref().ok_or_else(gone)?.as_raw_fd();
        let mut answer = [0u8; 4];
        let exchanged = message
            .map_or(Ok(()), |message| {
                // SAFETY: sends `message`, which lives until the call returns.
                let sent = retry(|| unsafe {
                    libc::send(
                        fd,
                        message.as_ptr().cast(),
                        message.len(),
                        libc::MSG_NOSIGNAL,
                    )
                });
                match sent {
                    n if n == message.len() as isize => Ok(()),
                    n if n < 0 => Err(io::Error::last_os_error()),
                    _ => Err(io::Error::other("a request sent in part")),
                }
            })
            .and_then(|()| {
                // SAFETY: reads at most 4 bytes into `answer`.
                match retry(|| unsafe { libc::recv(fd, answer.as_mut_ptr().cast(), 4, 0) }) {
                    4 => Ok(()),
                    0 => Err(gone()),
                    n if n < 0 => Err(io::Error::last_os_error()),
                    _ => Err(io::Error::other("a short answer")),
                }
            });
        if let Err(e) = exchanged {
            *socket = None;
            return Err(e);
        }
        match i32::from_ne_bytes(answer) {
            0 => Ok(()),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// `call` again for as long as a signal interrupts it.
fn retry(mut call: impl FnMut() -> isize) -> isize {
    loop {
        let done = call();
        if done >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return done;
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the overlay helper has exited")
}

impl Drop for Overlays {
    fn drop(&mut self) {
        // End of file on its socket ends the helper; its mounts go with it.
        drop(
            self.socket
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let mut status = 0;
        // SAFETY: waits for our own child; `status` lives until it returns.
        unsafe { libc::waitpid(self.helper, &mut status, 0) };
    }
}

/// A path's bytes for overlay's options, which separate values with `,` and
/// `:` (and escape with `\`): paths holding them are refused.
fn option_value(path: &Path) -> io::Result<&[u8]> {
    let bytes = path.as_os_str().as_bytes();
    if !path.is_absolute() || bytes.iter().any(|b| matches!(b, b',' | b':' | b'\\' | 0)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} cannot be an overlay layer", path.display()),
        ));
    }
    Ok(bytes)
}

fn absolute_c(path: &Path) -> io::Result<CString> {
    if !path.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "overlay targets are absolute paths",
        ));
    }
    CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Gives the owner the directory the kernel makes with no permissions at all
/// in an overlay's `work` directory, which a process without
/// `CAP_DAC_OVERRIDE` could not empty or remove otherwise (nothing if absent).
pub(crate) fn open_work_dir(work: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(work.join("work"), std::fs::Permissions::from_mode(0o700));
}

/// Removes an overlay's directories once it is detached.
fn remove_overlay_dirs(dir: &Path) -> io::Result<()> {
    open_work_dir(&dir.join("work"));
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        done => done,
    }
}

fn socket_pair() -> io::Result<[OwnedFd; 2]> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair writes two descriptors into `fds`.
    let done = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if done != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just made and are owned by nothing else.
    Ok(fds.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn set_timeout(socket: &OwnedFd, wait: Duration) -> io::Result<()> {
    let timeout = libc::timeval {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: passes `timeout`, of the size given, for the kernel to copy.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if done != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The helper: enters its namespaces, says whether it could, then answers
/// requests until end of file. Never returns.
///
/// # Safety
/// To be called in a child just forked, only: it makes async-signal-safe calls
/// only (raw system calls on `setup`, its stack and `socket`), then `_exit`s.
unsafe fn serve(socket: RawFd, setup: &Setup) -> ! {
    // SAFETY: the whole body makes system calls on this function's own
    // stack buffers, `setup`'s bytes (copied into this process by the fork)
    // and constant C strings; each buffer passed lives until its call returns.
    unsafe {
        let mut status = close_all_but(socket);
        if status == 0 && libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
            status = errno();
        }
        for (file, contents) in [
            (c"/proc/self/setgroups", &b"deny"[..]),
            (c"/proc/self/uid_map", &setup.uid_map),
            (c"/proc/self/gid_map", &setup.gid_map),
        ] {
            if status == 0 {
                status = write_file(file, contents);
            }
        }
        // Nothing mounted here is to reach any other namespace.
        if status == 0
            && libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
        {
            status = errno();
        }
        // From here on it makes only the calls of its filter.
        if status == 0 && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            status = errno();
        }
        let program = libc::sock_fprog {
            len: setup.filter.len() as libc::c_ushort,
            filter: setup.filter.as_ptr().cast_mut().cast(),
        };
        if status == 0
            && libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &raw const program,
            ) != 0
        {
            status = errno();
        }
        reply(socket, status);
        if status != 0 {
            libc::_exit(1);
        }
        let mut buffer = [0u8; REQUEST_BYTES];
        loop {
            let got = libc::recv(socket, buffer.as_mut_ptr().cast(), buffer.len(), 0);
            if got < 0 && errno() == libc::EINTR {
                continue;
            }
            if got <= 0 {
                libc::_exit(0);
            }
            let request = &buffer[..got as usize];
            reply(socket, carry_out(request));
        }
    }
}

/// Does one request: 0 or an errno.
///
/// # Safety
/// As `serve`'s: async-signal-safe calls only.
unsafe fn carry_out(request: &[u8]) -> i32 {
    let Some((&op, rest)) = request.split_first() else {
        return libc::EINVAL;
    };
    let Some(end) = rest.iter().position(|&b| b == 0) else {
        return libc::EINVAL;
    };
    let target = rest[..=end].as_ptr().cast::<libc::c_char>();
    let options = &rest[end + 1..];
    // SAFETY: `target` and `options` are NUL-terminated within `request`
    // (checked), which lives until the calls return.
    let done = unsafe {
        match op {
            MOUNT if options.last() == Some(&0) => libc::mount(
                c"overlay".as_ptr(),
                target,
                c"overlay".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr().cast(),
            ),
            UNMOUNT => libc::umount2(target, libc::MNT_DETACH),
            _ => return libc::EINVAL,
        }
    };
    if done == 0 { 0 } else { errno() }
}

/// Closes every descriptor but `keep` (the parent's, inherited by the fork):
/// 0, or an errno (`close_range` is Linux 5.9; a helper holding the server's
/// listeners and files must not serve).
///
/// # Safety
/// Async-signal-safe; to be called in the helper only.
unsafe fn close_all_but(keep: RawFd) -> i32 {
    let keep = keep as libc::c_uint;
    // SAFETY: close_range takes integers only.
    unsafe {
        if keep > 0 && libc::syscall(libc::SYS_close_range, 0, keep - 1, 0) != 0 {
            return errno();
        }
        if libc::syscall(libc::SYS_close_range, keep + 1, libc::c_uint::MAX, 0) != 0 {
            return errno();
        }
    }
    0
}

/// Writes `contents` to `file`: 0 or an errno.
///
/// # Safety
/// Async-signal-safe.
unsafe fn write_file(file: &std::ffi::CStr, contents: &[u8]) -> i32 {
    // SAFETY: `file` is NUL-terminated, `contents` lives until write returns.
    unsafe {
        let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return errno();
        }
        let written = libc::write(fd, contents.as_ptr().cast(), contents.len());
        let status = match written {
            n if n == contents.len() as isize => 0,
            n if n < 0 => errno(),
            _ => libc::EIO,
        };
        libc::close(fd);
        status
    }
}

/// Sends a 4-byte status.
///
/// # Safety
/// Async-signal-safe.
unsafe fn reply(socket: RawFd, status: i32) {
    let bytes = status.to_ne_bytes();
    // SAFETY: `bytes` lives until send returns.
    unsafe { libc::send(socket, bytes.as_ptr().cast(), 4, libc::MSG_NOSIGNAL) };
}

fn errno() -> i32 {
    // SAFETY: the calling thread's errno, always valid to read.
    unsafe { *libc::__errno_location() }
}
