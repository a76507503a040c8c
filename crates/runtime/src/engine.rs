//! The wasmtime engine Kiln runs every function on (its ticker, which
//! enforces wall-clock limits, is `ticker.rs`).
//!
//! One engine per process: pooling instance allocator (instances, memories, tables
//! and fiber stacks are pre-reserved slots, so instantiation is a few µs), copy-on-write
//! memory images (a module's data segments are mapped, not copied), and epoch
//! interruption (compiled code checks a counter at loop heads and calls, which a guest
//! cannot skip).

use std::sync::Arc;
use std::time::Duration;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, WasmFeatures,
};

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
    /// The cores tenants share ([`crate::CpuShares`]). Default: the cores this
    /// process may run on.
    pub cpu_cores: usize,
    /// Keep a second engine compiling with Winch, wasmtime's baseline compiler
    /// (an order of magnitude faster to compile, slower code), for
    /// [`crate::Tier::Baseline`]. Default on.
    pub baseline: bool,
    /// The per-slot shape of the instance pool: what the largest instance may
    /// hold. A module over any of these is refused at deploy.
    pub slot: SlotLimits,
    /// Dirty bytes of a pooled memory reset in place (copied back from the
    /// module's image) when its instance ends, instead of being handed back to
    /// the kernel; the next instance in the slot finds them mapped and writes
    /// without a page fault. Default 2 MiB (BENCHMARKS.md, "Pages kept
    /// resident": 16 MiB measured no gain for CPython's snapshot).
    pub keep_resident_bytes: usize,
}

/// What one pooled instance slot holds. Every slot is reserved (as address space,
/// not memory) at this size, so these bound the largest program Kiln runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLimits {
    /// Elements of one table (function pointers, for C and C++ programs one per
    /// address-taken function and virtual method). Default 1,000,000 (8 MB of
    /// address space per table): large compilers and synthesis tools need
    /// several 10,000s.
    pub table_elements: usize,
    /// Tables one module may define. Default 4.
    pub tables_per_module: u32,
    /// Linear memories one module may define (multi-memory). Default 1.
    pub memories_per_module: u32,
    /// Bytes of one core instance's own state (its globals, function and table
    /// references). Default 4 MiB.
    pub core_instance_bytes: usize,
}

impl Default for SlotLimits {
    fn default() -> SlotLimits {
        SlotLimits {
            table_elements: 1_000_000,
            tables_per_module: 4,
            memories_per_module: 1,
            core_instance_bytes: 4 << 20,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            max_instances: 1000,
            instance_wait: Duration::from_secs(5),
            max_memory_bytes: 4 << 30,
            epoch_tick: Duration::from_millis(2),
            cpu_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            baseline: true,
            slot: SlotLimits::default(),
            keep_resident_bytes: DEFAULT_KEEP_RESIDENT,
        }
    }
}

/// Bytes of each pooled memory kept mapped between instances, by default
/// ([`EngineConfig::keep_resident_bytes`]).
const DEFAULT_KEEP_RESIDENT: usize = 2 << 20;

/// Bytes of each pooled table and stack kept mapped between instances.
const TABLE_AND_STACK_KEEP_RESIDENT: usize = 2 << 20;

/// The engine of `tier`: the same pool and proposals for both (a proposal
/// Winch cannot compile is left off its engine, so such a module fails its
/// baseline compile and is compiled with Cranelift instead); the incremental
/// compilation cache is Cranelift's.
pub(crate) fn build_engine(
    config: &EngineConfig,
    compile_cache: Option<crate::compile_cache::DiskCacheStore>,
    tier: crate::Tier,
) -> wasmtime::Result<Engine> {
    let max_memory = usize::try_from(config.max_memory_bytes)
        .map_err(|_| wasmtime::format_err!("max_memory_bytes does not fit in usize"))?;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(config.max_instances)
        .total_memories(config.max_instances)
        .total_tables(config.max_instances)
        .total_stacks(config.max_instances)
        .total_gc_heaps(config.max_instances)
        .max_memory_size(max_memory)
        .table_elements(config.slot.table_elements)
        .max_tables_per_module(config.slot.tables_per_module)
        .max_memories_per_module(config.slot.memories_per_module)
        .max_core_instance_size(config.slot.core_instance_bytes)
        // Reset a finished instance's dirty pages in place (found with Linux's
        // PAGEMAP_SCAN where the kernel has it, 6.7+) instead of returning them to the
        // kernel: the next instance in the slot touches warm pages instead of
        // faulting in fresh ones. Past that many dirty bytes, madvise as usual.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(config.keep_resident_bytes)
        .table_keep_resident(TABLE_AND_STACK_KEEP_RESIDENT)
        .async_stack_keep_resident(TABLE_AND_STACK_KEEP_RESIDENT);

    // The proposals are wasmtime's defaults (WebAssembly 3.0: exception handling,
    // GC, tail calls, typed function references, memory64, multi-memory, relaxed
    // SIMD), except those in [`KEPT_OFF`].
    let mut wasm = Config::new();
    for (feature, _) in KEPT_OFF {
        wasm.wasm_features(*feature, false);
    }
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        .epoch_interruption(true)
        .parallel_compilation(true);
    match tier {
        crate::Tier::Baseline => {
            // Winch compiles the functions; Cranelift still compiles one
            // entry trampoline per function the host or a table may call
            // (tens of thousands in a large C++ program). Those are a few
            // moves each: optimizing them, or allocating their registers
            // the careful way, is compile time the baseline is there to save.
            wasm.strategy(wasmtime::Strategy::Winch)
                .cranelift_opt_level(wasmtime::OptLevel::None)
                .cranelift_regalloc_algorithm(wasmtime::RegallocAlgorithm::SinglePass);
        }
        crate::Tier::Optimized => {
            if let Some(cache) = compile_cache {
                wasm.enable_incremental_compilation(Arc::new(cache))?;
            }
        }
    }
    Engine::new(&wasm)
}

/// The WebAssembly proposals Kiln's engine refuses, with the name a refusal
/// gives them; they are off in stock `wasmtime run` too. (Threads are on: C and
/// C++ programs built with atomics run single-threaded; only a shared memory is
/// refused, by validation, because it cannot live in a pool slot.)
pub(crate) const KEPT_OFF: &[(WasmFeatures, &str)] = &[
    (
        WasmFeatures::SHARED_EVERYTHING_THREADS,
        "shared-everything threads",
    ),
    (
        WasmFeatures::LEGACY_EXCEPTIONS,
        "legacy exception handling (`try`/`catch`; rebuild with a current toolchain, \
         which emits the standard `try_table`)",
    ),
    (WasmFeatures::STACK_SWITCHING, "stack switching"),
    (WasmFeatures::CUSTOM_PAGE_SIZES, "custom page sizes"),
    (WasmFeatures::WIDE_ARITHMETIC, "wide arithmetic"),
];
