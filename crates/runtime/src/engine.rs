//! The wasmtime engine Kiln runs every function on, and the epoch ticker that
//! enforces wall-clock limits.
//!
//! One engine per process: pooling instance allocator (instances, memories, tables
//! and fiber stacks are pre-reserved slots, so instantiation is a few µs), copy-on-write
//! memory images (a module's data segments are mapped, not copied), and epoch
//! interruption (compiled code checks a counter at loop heads and calls, which a guest
//! cannot skip).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Engine-wide settings, fixed for the life of a [`crate::Runtime`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Instances that may be alive at once (pool slots). Default 1000.
    pub max_instances: u32,
    /// How long an invocation waits for a free instance slot when all are in use
    /// before it is refused with [`crate::InvokeError::AtCapacity`]. Default 5 s.
    pub instance_wait: Duration,
    /// The largest linear memory any function may be allowed (the pool's slot size).
    /// Per-function limits ([`crate::Limits::memory_bytes`]) must not exceed it.
    /// Default 4 GiB, the whole 32-bit address space.
    pub max_memory_bytes: u64,
    /// How often the epoch advances: the granularity of wall-time limits and of
    /// yielding a running guest back to the executor. Default 2 ms.
    pub epoch_tick: Duration,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            max_instances: 1000,
            instance_wait: Duration::from_secs(5),
            max_memory_bytes: 4 << 30,
            epoch_tick: Duration::from_millis(2),
        }
    }
}

/// Bytes of each pooled memory, table and stack kept mapped between instances.
const KEEP_RESIDENT: usize = 2 << 20;

pub(crate) fn build_engine(config: &EngineConfig) -> wasmtime::Result<Engine> {
    let max_memory = usize::try_from(config.max_memory_bytes)
        .map_err(|_| wasmtime::format_err!("max_memory_bytes does not fit in usize"))?;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(config.max_instances)
        .total_memories(config.max_instances)
        .total_tables(config.max_instances)
        .total_stacks(config.max_instances)
        .max_memory_size(max_memory)
        // Reset a finished instance's dirty pages in place (found with Linux's
        // PAGEMAP_SCAN where the kernel has it, 6.7+) instead of returning them to the
        // kernel: the next instance in the slot touches warm pages instead of
        // faulting in fresh ones. Past KEEP_RESIDENT dirty bytes, madvise as usual.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .async_stack_keep_resident(KEEP_RESIDENT);

    let mut wasm = Config::new();
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        .epoch_interruption(true)
        .parallel_compilation(true);
    Engine::new(&wasm)
}

/// Advances the engine's epoch every tick until dropped. The thread holds the
/// engine alive; dropping the ticker stops it within one tick.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("kiln-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
