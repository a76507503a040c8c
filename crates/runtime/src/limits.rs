//! Per-invocation limits: what one run of a function may use before Kiln stops it.
//!
//! Every limit has a default (documented on [`Limits::default`]) and can be overridden
//! per function. Sizes and durations are parsed from the human forms users type
//! (`128MiB`, `200ms`) by `kiln_api::parse_size` and `kiln_api::parse_duration`.

use kiln_api::MIB;
use std::time::Duration;

/// The resources one invocation may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory the guest may grow to, in bytes (default 128 MiB).
    /// Growing past it stops the guest with [`crate::Outcome::MemoryLimit`].
    pub memory_bytes: u64,
    /// Wall-clock time from the start of instantiation to the guest's exit
    /// (default 10 s). Crossing it stops the guest with [`crate::Outcome::WallTimeLimit`],
    /// whether it is computing or blocked in a WASI call.
    pub wall_time: Duration,
    /// Most bytes the guest may write to stdout (default 16 MiB). Writing more stops
    /// it with [`crate::Outcome::OutputLimit`].
    pub stdout_bytes: u64,
    /// Most bytes of stderr kept for the logs (default 1 MiB). Stderr past it is
    /// dropped, not fatal: logging too much should not fail a request.
    pub stderr_bytes: u64,
    /// Largest request body accepted as stdin (default 16 MiB). A larger one is
    /// refused before the guest runs ([`crate::InvokeError::StdinTooLarge`]).
    pub stdin_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory_bytes: 128 * MIB,
            wall_time: Duration::from_secs(10),
            stdout_bytes: 16 * MIB,
            stderr_bytes: MIB,
            stdin_bytes: 16 * MIB,
        }
    }
}
