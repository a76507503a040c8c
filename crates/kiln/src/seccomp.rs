//! The seccomp filter `kiln up` installs once it has started: an allow-list of
//! the system calls a Kiln server makes, on every thread of the process
//! (`SECCOMP_FILTER_FLAG_TSYNC`), on top of `no_new_privs` and the dropped
//! capabilities (`privileges`). It is defence in depth: a guest cannot make a
//! system call at all, but a bug in the compiler, the runtime or a library that
//! let one run code in the server would find no way to start a program
//! (`execve`), trace or read another process, create namespaces, load kernel
//! code (`bpf`, modules) or reach the kernel's rarer corners (`io_uring`,
//! `userfaultfd`, `keyctl`, `perf_event_open`).
//!
//! A call outside the list fails with `EPERM` rather than killing the thread:
//! the server answers the request that made it with an error and keeps serving
//! every other tenant, and the operator sees the error. A few calls are allowed
//! only with some arguments: `socket` for IP and Unix sockets, `ioctl` for the
//! requests the standard library and tokio make, `prctl` for thread names,
//! `setpriority` for a thread lowering its own to the background compiles' nice,
//! `clone` without namespace flags, and `tgkill` to this process (abort).
//! `clone3` answers `ENOSYS` (its flags are in memory a filter cannot read), so
//! the C library falls back to `clone`, whose flags it can.
//!
//! Linux on x86-64 and aarch64 only: elsewhere `install` fails and `kiln up`
//! with it, unless given `--no-seccomp` (which is also the switch for
//! debugging).

use anyhow::Context;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// Namespace flags of `clone`: none may be asked for.
const CLONE_NAMESPACES: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// `PR_SET_VMA` from `<linux/prctl.h>` (naming anonymous mappings).
const PR_SET_VMA: u64 = 0x5356_4d41;
/// `PAGEMAP_SCAN` from `<linux/fs.h>` (`_IOWR('f', 16, struct pm_scan_arg)`):
/// wasmtime's instance pool asks `/proc/self/pagemap` which pages an instance
/// dirtied, to reset only those.
const PAGEMAP_SCAN: u64 = 0xc060_6610;

/// Calls allowed whatever their arguments, by what needs them.
fn allowed_calls() -> Vec<i64> {
    let calls = [
        // Memory: the allocator, wasmtime's instance pool (reset with madvise),
        // code published executable, and memory images from memfds.
        libc::SYS_brk,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        libc::SYS_memfd_create,
        libc::SYS_mincore,
        // Threads and their synchronisation. (`clone3` passes here and answers
        // ENOSYS from the filter installed before this one.)
        libc::SYS_clone3,
        libc::SYS_futex,
        libc::SYS_set_robust_list,
        libc::SYS_get_robust_list,
        libc::SYS_set_tid_address,
        libc::SYS_rseq,
        libc::SYS_sched_yield,
        // wasmtime on aarch64 makes new code visible to every core with it.
        libc::SYS_membarrier,
        libc::SYS_sched_getaffinity,
        libc::SYS_gettid,
        libc::SYS_getpid,
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_restart_syscall,
        // Signals: wasmtime's trap handlers, tokio's signal handling.
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        // Time.
        libc::SYS_clock_gettime,
        libc::SYS_clock_getres,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_gettimeofday,
        libc::SYS_getrusage,
        // Randomness, identity, limits.
        libc::SYS_getrandom,
        libc::SYS_getuid,
        libc::SYS_geteuid,
        libc::SYS_getgid,
        libc::SYS_getegid,
        libc::SYS_uname,
        libc::SYS_prlimit64,
        libc::SYS_sysinfo,
        // Files: the store, modules, artifacts, bundles, scratch, guests' WASI
        // calls made on their behalf.
        libc::SYS_openat,
        libc::SYS_openat2,
        libc::SYS_close,
        libc::SYS_read,
        libc::SYS_readv,
        libc::SYS_pread64,
        libc::SYS_preadv,
        libc::SYS_preadv2,
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_pwrite64,
        libc::SYS_pwritev,
        libc::SYS_pwritev2,
        libc::SYS_lseek,
        libc::SYS_fsync,
        libc::SYS_fdatasync,
        libc::SYS_ftruncate,
        libc::SYS_fallocate,
        libc::SYS_fcntl,
        libc::SYS_flock,
        libc::SYS_dup,
        libc::SYS_dup3,
        libc::SYS_newfstatat,
        libc::SYS_fstat,
        libc::SYS_statx,
        libc::SYS_statfs,
        libc::SYS_fstatfs,
        libc::SYS_faccessat,
        libc::SYS_faccessat2,
        libc::SYS_getdents64,
        libc::SYS_getcwd,
        libc::SYS_readlinkat,
        libc::SYS_mkdirat,
        libc::SYS_unlinkat,
        libc::SYS_renameat2,
        libc::SYS_linkat,
        libc::SYS_symlinkat,
        libc::SYS_fchmod,
        libc::SYS_fchmodat,
        // Writable copies are watched for changes (runtime's `copies.rs`).
        libc::SYS_inotify_init1,
        libc::SYS_inotify_add_watch,
        libc::SYS_inotify_rm_watch,
        libc::SYS_fchown,
        libc::SYS_utimensat,
        libc::SYS_copy_file_range,
        // A loaded artifact's private copy (kiln-runtime's `sealed_copy`).
        libc::SYS_sendfile,
        libc::SYS_umask,
        // Sockets and readiness: the listener, clients, PostgreSQL, S3, DNS,
        // guests' outbound requests.
        libc::SYS_socketpair,
        libc::SYS_bind,
        libc::SYS_listen,
        libc::SYS_accept4,
        libc::SYS_connect,
        libc::SYS_getsockname,
        libc::SYS_getpeername,
        libc::SYS_setsockopt,
        libc::SYS_getsockopt,
        libc::SYS_sendto,
        libc::SYS_sendmsg,
        libc::SYS_sendmmsg,
        libc::SYS_recvfrom,
        libc::SYS_recvmsg,
        libc::SYS_recvmmsg,
        libc::SYS_shutdown,
        libc::SYS_epoll_create1,
        libc::SYS_epoll_ctl,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
        libc::SYS_eventfd2,
        libc::SYS_pipe2,
        libc::SYS_ppoll,
    ];
    // The calls aarch64 never had: it has only their `*at` and `p*` forms.
    #[cfg(target_arch = "x86_64")]
    let legacy = [
        libc::SYS_arch_prctl,
        libc::SYS_epoll_wait,
        libc::SYS_poll,
        libc::SYS_open,
        libc::SYS_stat,
        libc::SYS_lstat,
        libc::SYS_access,
        libc::SYS_readlink,
        libc::SYS_mkdir,
        libc::SYS_rmdir,
        libc::SYS_unlink,
        libc::SYS_rename,
        libc::SYS_renameat,
        libc::SYS_chmod,
        libc::SYS_link,
        libc::SYS_symlink,
        libc::SYS_dup2,
    ];
    #[cfg(not(target_arch = "x86_64"))]
    let legacy: [libc::c_long; 0] = [];
    calls.into_iter().chain(legacy).collect()
}

/// One condition on argument `arg` of a call.
fn arg(
    arg: u8,
    len: SeccompCmpArgLen,
    op: SeccompCmpOp,
    value: u64,
) -> anyhow::Result<SeccompRule> {
    let condition = SeccompCondition::new(arg, len, op, value)?;
    Ok(SeccompRule::new(vec![condition])?)
}

/// A rule per allowed value of argument `index`.
fn any_of(index: u8, len: SeccompCmpArgLen, values: &[u64]) -> anyhow::Result<Vec<SeccompRule>> {
    values
        .iter()
        .map(|&value| arg(index, len.clone(), SeccompCmpOp::Eq, value))
        .collect()
}

/// The filters, in the order they are installed: the one that makes `clone3`
/// answer `ENOSYS`, then the allow-list (which refuses `seccomp` itself, and
/// the `prctl` installing a filter makes first).
pub(crate) fn filters() -> anyhow::Result<[BpfProgram; 2]> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| anyhow::anyhow!("no seccomp filter for {}", std::env::consts::ARCH))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = allowed_calls()
        .into_iter()
        .map(|call| (call, vec![]))
        .collect();
    use SeccompCmpArgLen::{Dword, Qword};
    let conditional = [
        (
            libc::SYS_socket,
            any_of(
                0,
                Dword,
                &[libc::AF_UNIX, libc::AF_INET, libc::AF_INET6].map(|d| d as u64),
            )?,
        ),
        (
            libc::SYS_ioctl,
            any_of(
                1,
                Dword,
                &[
                    libc::FIONBIO,
                    libc::FIOCLEX,
                    libc::FIONCLEX,
                    libc::FIONREAD,
                    libc::TCGETS,
                    libc::TIOCGWINSZ,
                ]
                .into_iter()
                .chain([PAGEMAP_SCAN])
                .collect::<Vec<_>>(),
            )?,
        ),
        (
            libc::SYS_prctl,
            any_of(
                0,
                Dword,
                &[
                    libc::PR_SET_NAME as u64,
                    libc::PR_GET_NAME as u64,
                    PR_SET_VMA,
                ],
            )?,
        ),
        (
            libc::SYS_clone,
            vec![arg(0, Qword, SeccompCmpOp::MaskedEq(CLONE_NAMESPACES), 0)?],
        ),
        (
            // A background compile thread lowering its own priority, and
            // nothing else: no thread, process or user may be given a higher one.
            libc::SYS_setpriority,
            vec![SeccompRule::new(vec![
                SeccompCondition::new(0, Dword, SeccompCmpOp::Eq, libc::PRIO_PROCESS as u64)?,
                SeccompCondition::new(1, Dword, SeccompCmpOp::Eq, 0)?,
                SeccompCondition::new(
                    2,
                    Dword,
                    SeccompCmpOp::Eq,
                    kiln_runtime::BACKGROUND_NICE as u64,
                )?,
            ])?],
        ),
        (
            libc::SYS_tgkill,
            vec![arg(
                0,
                Dword,
                SeccompCmpOp::Eq,
                u64::from(std::process::id()),
            )?],
        ),
    ];
    for (call, call_rules) in conditional {
        rules.insert(call, call_rules);
    }
    let allow_list = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, vec![])]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    Ok([clone3.try_into()?, allow_list.try_into()?])
}

/// Installs the filters on every thread of the process; threads started later
/// inherit them. Irreversible.
pub(crate) fn install() -> anyhow::Result<()> {
    for filter in filters()? {
        seccompiler::apply_filter_all_threads(&filter)
            .context("cannot install the seccomp filter")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variable that makes the test binary, run again, the filtered process.
    const CHILD: &str = "KILN_SECCOMP_TEST_CHILD";

    /// The error of the last call that failed.
    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    /// Run in the child: installs the filter, then makes calls it refuses and
    /// calls Kiln needs, and prints what each did.
    fn child() {
        if let Err(e) = install() {
            panic!("install: {e:?}");
        }
        let mut report = Vec::new();
        let path = c"/bin/true";
        let argv = [path.as_ptr(), std::ptr::null()];
        let envp = [std::ptr::null()];
        // SAFETY: a NUL-terminated path and NULL-terminated argument and
        // environment arrays, alive across the call.
        let done = unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        report.push(format!("execve {done} {}", errno()));
        // SAFETY: unshare takes flags only.
        let done = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
        report.push(format!("unshare {done} {}", errno()));
        // SAFETY: socket takes integers only.
        let done = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        report.push(format!("packet-socket {done} {}", errno()));
        // SAFETY: ptrace(PTRACE_TRACEME) takes no memory.
        let done = unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
        report.push(format!("ptrace {done} {}", errno()));
        // SAFETY: clone3 with a NULL argument; the filter answers before the
        // kernel would read it.
        let done = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0) };
        report.push(format!("clone3 {done} {}", errno()));
        // A higher priority, or another process's: refused.
        // SAFETY: setpriority takes integers only.
        let done = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -5) };
        report.push(format!("raise-priority {done} {}", errno()));
        // SAFETY: getppid takes nothing; setpriority takes integers only.
        let done = unsafe {
            libc::setpriority(
                libc::PRIO_PROCESS,
                libc::getppid() as libc::id_t,
                kiln_runtime::BACKGROUND_NICE,
            )
        };
        report.push(format!("renice-other {done} {}", errno()));
        // What Kiln needs still works: threads (clone after clone3's ENOSYS),
        // a thread lowering its own priority, files, sockets.
        let thread = std::thread::spawn(|| {
            // SAFETY: setpriority takes integers only.
            let lowered =
                unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, kiln_runtime::BACKGROUND_NICE) };
            if lowered == 0 { 6 * 7 } else { errno() }
        })
        .join()
        .expect("thread");
        report.push(format!("thread {thread}"));
        let file = std::fs::read_to_string("/proc/self/status").expect("read a file");
        let seccomp = file
            .lines()
            .find(|l| l.starts_with("Seccomp:"))
            .unwrap_or("");
        report.push(seccomp.split_whitespace().collect::<Vec<_>>().join(" "));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        report.push(format!("listen {}", listener.local_addr().is_ok()));
        println!("REPORT {}", report.join(", "));
    }

    #[test]
    fn forbidden_calls_fail_with_eperm_and_kilns_own_calls_still_work() {
        if std::env::var_os(CHILD).is_some() {
            child();
            return;
        }
        // The filter is for the whole process and irreversible: it is installed
        // in a copy of this test binary running only this test.
        let output = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args([
                "--exact",
                "seccomp::tests::forbidden_calls_fail_with_eperm_and_kilns_own_calls_still_work",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD, "1")
            .output()
            .expect("run the test binary");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report = stdout
            .lines()
            .find_map(|line| line.split_once("REPORT ").map(|(_, report)| report))
            .unwrap_or_else(|| panic!("no report in {stdout}"));
        let (eperm, enosys) = (libc::EPERM, libc::ENOSYS);
        assert_eq!(
            report,
            format!(
                "execve -1 {eperm}, unshare -1 {eperm}, packet-socket -1 {eperm}, \
                 ptrace -1 {eperm}, clone3 -1 {enosys}, raise-priority -1 {eperm}, \
                 renice-other -1 {eperm}, thread 42, Seccomp: 2, listen true"
            )
        );
    }
}
