//! The sandbox micro-benchmark: hello guest, one invocation at a time.
//!
//! - kiln warm: `Runtime::invoke` of an already loaded `Function` (fresh instance from
//!   the pooling allocator + copy-on-write image, run, collect stdout).
//! - kiln cold: `Runtime::load` of the cached artifact (mmap + pre-link), then invoke.
//! - peer warm: plain wasmtime, default `Config` (on-demand allocation), a compiled
//!   `Module`, `Linker::instantiate_async` per request, same WASI context and pipes.
//! - peer cold: the same plain embedding loading the same kind of artifact with
//!   `Module::deserialize_file` per request.
//! - peer compile: plain wasmtime with no artifact cache, `Module::new` per request —
//!   what every cold start costs without one.

use crate::stats::{Summary, micros};
use anyhow::Context;
use kiln_runtime::{Limits, Request, Runtime, RuntimeConfig};
use std::time::Instant;
use wasmtime::{Config, Engine, Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

#[derive(clap::Args)]
pub(crate) struct MicroArgs {
    /// Warm invocations per contender
    #[arg(long, default_value_t = 20_000)]
    warm: usize,
    /// Cold invocations (artifact load + invoke) per contender
    #[arg(long, default_value_t = 2_000)]
    cold: usize,
    /// Invocations that compile from scratch (the no-cache peer)
    #[arg(long, default_value_t = 20)]
    compile: usize,
    /// Measure Kiln only, not the peers (for profiling)
    #[arg(long)]
    kiln_only: bool,
    /// The guest to run (a name from examples/)
    #[arg(long, default_value = "hello")]
    guest: String,
}

const INPUT: &[u8] = b"world";

pub(crate) fn run(args: MicroArgs) -> anyhow::Result<()> {
    let path = kiln_guests::path(&args.guest);
    let wasm = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let expected = format!("Hello, {}!\n", String::from_utf8_lossy(INPUT));
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let dir = tempfile::tempdir()?;

    // Kiln.
    let runtime = Runtime::new(RuntimeConfig::new(dir.path().join("kiln")))?;
    let compiled = runtime.compile(&wasm)?;
    let function = runtime.load(&compiled.digest)?;
    let request = || Request {
        stdin: INPUT.into(),
        args: [args.guest.clone()].into(),
        env: vec![],
        limits: Limits::default(),
        ..Default::default()
    };
    let check = |stdout: &[u8]| {
        anyhow::ensure!(
            stdout == expected.as_bytes(),
            "unexpected output {stdout:?}"
        );
        Ok(())
    };
    let kiln_warm = tokio.block_on(async {
        sample(args.warm, async || {
            let inv = runtime.invoke(&function, request()).await?;
            check(&inv.stdout)
        })
        .await
    })?;
    let kiln_cold = tokio.block_on(async {
        sample(args.cold, async || {
            let function = runtime.load(&compiled.digest)?;
            let inv = runtime.invoke(&function, request()).await?;
            check(&inv.stdout)
        })
        .await
    })?;

    if args.kiln_only {
        println!("kiln warm: {}", micros(kiln_warm.median));
        println!("kiln cold: {}", micros(kiln_cold.median));
        return Ok(());
    }

    // Plain wasmtime, default configuration.
    let peer = Peer::new()?;
    let module = Module::new(&peer.engine, &wasm)?;
    let artifact = dir.path().join("peer.cwasm");
    std::fs::write(&artifact, peer.engine.precompile_module(&wasm)?)?;
    let peer_warm = tokio.block_on(async {
        sample(args.warm, async || check(&peer.invoke(&module).await?)).await
    })?;
    let peer_cold = tokio.block_on(async {
        sample(args.cold, async || {
            // SAFETY: written by `precompile_module` of this engine just above.
            let module = unsafe { Module::deserialize_file(&peer.engine, &artifact)? };
            check(&peer.invoke(&module).await?)
        })
        .await
    })?;
    let peer_compile = tokio.block_on(async {
        sample(args.compile, async || {
            let module = Module::new(&peer.engine, &wasm)?;
            check(&peer.invoke(&module).await?)
        })
        .await
    })?;

    println!(
        "guest: {} ({} bytes), one invocation at a time, fresh instance each\n",
        path.display(),
        wasm.len()
    );
    println!("| path | contender | runs | median | p99 |");
    println!("|---|---|---:|---:|---:|");
    let row = |path: &str, who: &str, s: &Summary| {
        println!(
            "| {path} | {who} | {} | {} | {} |",
            s.count,
            micros(s.median),
            micros(s.p99)
        )
    };
    row("warm", "kiln (pooling, CoW, InstancePre)", &kiln_warm);
    row(
        "warm",
        "plain wasmtime (default Config, Linker::instantiate)",
        &peer_warm,
    );
    row(
        "cold, cached artifact",
        "kiln (Runtime::load + invoke)",
        &kiln_cold,
    );
    row(
        "cold, cached artifact",
        "plain wasmtime (deserialize_file + instantiate)",
        &peer_cold,
    );
    row(
        "cold, no cache",
        "plain wasmtime (Module::new + instantiate)",
        &peer_compile,
    );
    let ratio =
        |peer: &Summary, kiln: &Summary| peer.median.as_secs_f64() / kiln.median.as_secs_f64();
    println!();
    println!(
        "warm: kiln is {:.1}x faster than plain wasmtime (median)",
        ratio(&peer_warm, &kiln_warm)
    );
    println!(
        "cold: kiln is {:.1}x faster than plain wasmtime from the same artifact, {:.0}x faster than compiling (median)",
        ratio(&peer_cold, &kiln_cold),
        ratio(&peer_compile, &kiln_cold)
    );
    Ok(())
}

/// Runs `body` `count` times (after a short warm-up) and summarises the durations.
async fn sample(
    count: usize,
    mut body: impl AsyncFnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Summary> {
    for _ in 0..count.div_ceil(10).min(100) {
        body().await?;
    }
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        body().await?;
        samples.push(start.elapsed());
    }
    Ok(Summary::of(samples))
}

/// A plain wasmtime embedding: default config, WASI preview 1, nothing cached.
struct Peer {
    engine: Engine,
    linker: Linker<WasiP1Ctx>,
}

impl Peer {
    fn new() -> anyhow::Result<Peer> {
        let engine = Engine::new(&Config::new())?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |cx| cx)?;
        Ok(Peer { engine, linker })
    }

    async fn invoke(&self, module: &Module) -> anyhow::Result<Vec<u8>> {
        let stdout = MemoryOutputPipe::new(1 << 20);
        let wasi = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(INPUT))
            .stdout(stdout.clone())
            .args(&["hello"])
            .build_p1();
        let mut store = Store::new(&self.engine, wasi);
        let instance = self.linker.instantiate_async(&mut store, module).await?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call_async(&mut store, ()).await?;
        drop(store);
        Ok(stdout.contents().to_vec())
    }
}
