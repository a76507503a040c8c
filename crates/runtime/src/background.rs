//! Compiling for later, not for anyone waiting. A module served on baseline code
//! gets its optimized code compiled in the background; that compile is parallel
//! (wasmtime splits it over a rayon pool) and, on the global pool, would take
//! every core from the requests being served meanwhile, the module's own first
//! requests among them. Background compiles run on a pool of their own whose
//! threads lower their CPU priority to [`BACKGROUND_NICE`] when they start, so
//! they get the CPU time requests leave, and next to nothing of a saturated
//! machine (the scheduler still gives them a sliver: they finish, later).
//! Compiles someone waits for (a deploy, a request whose function has no code
//! yet) keep the normal priority.

use std::sync::OnceLock;

/// The nice value of background compile threads: the lowest priority. The
/// seccomp filter of `kiln up` allows a thread to set exactly this on itself.
pub const BACKGROUND_NICE: i32 = 19;

/// Whether someone waits for a compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompilePriority {
    /// A deploy or a request waits for it: the normal priority, every core.
    Waited,
    /// Nobody waits (optimized code made while baseline code serves): the
    /// background pool, at [`BACKGROUND_NICE`].
    Background,
}

/// The background pool, built on first use (most runtimes never tier up).
#[derive(Default)]
pub(crate) struct BackgroundPool {
    pool: OnceLock<Option<rayon::ThreadPool>>,
}

impl BackgroundPool {
    /// Runs `work` at `priority`: on the calling thread (whose parallel parts
    /// use rayon's global pool) when waited for, else inside the background
    /// pool, so that its parallel parts run there too. Should the pool's
    /// threads fail to start, background work runs as waited-for work does.
    pub(crate) fn run<T: Send>(
        &self,
        priority: CompilePriority,
        work: impl FnOnce() -> T + Send,
    ) -> T {
        match (priority, self.pool()) {
            (CompilePriority::Background, Some(pool)) => pool.install(work),
            _ => work(),
        }
    }

    fn pool(&self) -> Option<&rayon::ThreadPool> {
        self.pool
            .get_or_init(|| {
                rayon::ThreadPoolBuilder::new()
                    .thread_name(|index| format!("kiln-optimize-{index}"))
                    .start_handler(|_| lower_priority())
                    .build()
                    .inspect_err(|e| {
                        tracing::warn!(error = %e, "cannot start the background compile threads: background compiles run at the normal priority");
                    })
                    .ok()
            })
            .as_ref()
    }
}

/// Lowers the calling thread's priority to [`BACKGROUND_NICE`] (on Linux a nice
/// value is per thread). A failure leaves the thread as it was, and is logged.
fn lower_priority() {
    // SAFETY: setpriority reads no memory of the caller; `who` 0 with
    // PRIO_PROCESS is the calling thread.
    let set = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE) };
    if set != 0 {
        let error = std::io::Error::last_os_error();
        tracing::warn!(%error, "cannot lower a background compile thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's nice value.
    fn nice() -> i32 {
        // SAFETY: getpriority reads no memory of the caller.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[test]
    fn background_work_and_its_parallel_parts_run_at_the_lowest_priority() {
        use rayon::prelude::*;
        let pool = BackgroundPool::default();
        let waited = pool.run(CompilePriority::Waited, nice);
        assert_eq!(
            waited,
            nice(),
            "waited-for work stays on the calling thread"
        );
        assert_ne!(waited, BACKGROUND_NICE);
        let nices: Vec<i32> = pool.run(CompilePriority::Background, || {
            (0..64).into_par_iter().map(|_| nice()).collect()
        });
        assert_eq!(nices, vec![BACKGROUND_NICE; 64]);
        // The global pool, which waited-for compiles use, is untouched.
        let global: Vec<i32> = (0..64).into_par_iter().map(|_| nice()).collect();
        assert!(global.iter().all(|&n| n != BACKGROUND_NICE), "{global:?}");
    }
}
