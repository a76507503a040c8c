//! What `kiln up` gives up before it starts any thread: the ability to gain
//! privileges (`PR_SET_NO_NEW_PRIVS`) and every Linux capability, but binding a
//! port below 1024 when it listens on one. Run as root, the server is then root
//! by name only: it reads and writes what its user owns and nothing else of the
//! machine. Capabilities belong to each thread, so this must happen while the
//! process still has one thread; every thread started afterwards inherits it.
//! Also the umask that keeps the files it creates private.

use std::io;

/// `CAP_NET_BIND_SERVICE` from `<linux/capability.h>`.
const CAP_NET_BIND_SERVICE: u32 = 10;
/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets, in two 32-bit words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// Past the highest capability any kernel defines.
const CAPABILITY_LIMIT: u32 = 64;

#[repr(C)]
struct CapabilityHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapabilityData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops every capability but `CAP_NET_BIND_SERVICE` when `bind_low_port`, and
/// forbids gaining any again.
pub(crate) fn drop_privileges(bind_low_port: bool) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only; no memory is passed.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let keep = |cap: u32| bind_low_port && cap == CAP_NET_BIND_SERVICE;
    for cap in (0..CAPABILITY_LIMIT).filter(|&c| !keep(c)) {
        // SAFETY: as above. EINVAL: no such capability on this kernel; EPERM:
        // the process was never privileged (no CAP_SETPCAP), nothing to drop.
        let _ = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    }
    // SAFETY: as above.
    let _ = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let mut data = [CapabilityData::default(); 2];
    if bind_low_port {
        data[0].effective = 1 << CAP_NET_BIND_SERVICE;
        data[0].permitted = 1 << CAP_NET_BIND_SERVICE;
    }
    let header = CapabilityHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: capset reads one header and two data structs, laid out as the
    // kernel's (repr(C)), which live until the call returns.
    let done = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if done != 0 {
        let error = io::Error::last_os_error();
        // Keeping CAP_NET_BIND_SERVICE needs having it; without it, drop it too.
        if bind_low_port && error.raw_os_error() == Some(libc::EPERM) {
            return drop_privileges(false);
        }
        return Err(error);
    }
    Ok(())
}

/// Files and directories the server creates are its user's alone (`0600`,
/// `0700`): the data directory holds every tenant's configuration, logs and
/// usage. A process-wide setting, so made before any thread starts.
pub(crate) fn private_files() {
    // SAFETY: umask takes a mode and cannot fail.
    unsafe { libc::umask(0o077) };
}
