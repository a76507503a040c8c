//! The per-invocation resource limiter: enforces the memory limit and records the
//! peak linear memory for metering.

use wasmtime::ResourceLimiter;

/// Raised (as a trap, or as an instantiation error) when a guest asks for more
/// linear memory than its limit.
#[derive(Debug, thiserror::Error)]
#[error("linear memory limit of {limit} bytes exceeded (the guest asked for {requested} bytes)")]
pub struct MemoryLimitExceeded {
    /// The limit, in bytes.
    pub limit: u64,
    /// The size the guest asked to grow to.
    pub requested: u64,
}

pub(crate) struct GuestLimiter {
    memory_limit: u64,
    peak_memory: u64,
}

impl GuestLimiter {
    pub(crate) fn new(memory_limit: u64) -> GuestLimiter {
        GuestLimiter {
            memory_limit,
            peak_memory: 0,
        }
    }

    /// The largest linear memory size granted so far, in bytes.
    pub(crate) fn peak_memory(&self) -> u64 {
        self.peak_memory
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let desired = desired as u64;
        if desired > self.memory_limit {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.memory_limit,
                requested: desired,
            }));
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Table sizes are bounded by the pooling allocator's slots.
        Ok(true)
    }
}
