//! `kiln-bench files`: what files cost an invocation. The hello guest, one
//! invocation at a time through `Runtime::invoke`, with no files, with one
//! read-only mount (a small tree of 20 files), with a scratch directory, and
//! with a writable copy of the same tree; the four take turns in rounds so that
//! the machine's drift falls on all of them alike. Reports each median and its
//! difference to no files, per round and over all rounds.

use crate::stats::{Summary, micros};
use anyhow::Context;
use kiln_runtime::{Files, HostMount, Limits, Request, Runtime, RuntimeConfig, ScratchLimits};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub(crate) struct FilesArgs {
    /// Rounds (each contender runs once per round)
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Invocations per contender per round
    #[arg(long, default_value_t = 2_000)]
    per_round: usize,
    /// Where scratch directories and copies are made [default: a temporary
    /// directory under $TMPDIR]; e.g. /dev/shm to measure a tmpfs
    #[arg(long, value_name = "DIR")]
    scratch_dir: Option<std::path::PathBuf>,
}

const INPUT: &[u8] = b"world";

pub(crate) fn run(args: FilesArgs) -> anyhow::Result<()> {
    let path = kiln_guests::path("hello");
    let wasm = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let dir = tempfile::tempdir()?;
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub"))?;
    for i in 0..10 {
        std::fs::write(tree.join(format!("file{i}.txt")), vec![b'x'; 4096])?;
        std::fs::write(tree.join(format!("sub/file{i}.txt")), vec![b'y'; 4096])?;
    }
    let mut config = RuntimeConfig::new(dir.path().join("kiln").join("artifacts"));
    let scratch_root = match &args.scratch_dir {
        Some(base) => tempfile::tempdir_in(base)?,
        None => tempfile::tempdir()?,
    };
    config.scratch.dir = scratch_root.path().to_owned();
    let runtime = Runtime::new(config)?;
    let compiled = runtime.compile(&wasm)?;
    let function = runtime.load(&compiled.digest)?;
    let mount = |copy| HostMount {
        host: tree.clone(),
        guest: "/assets".into(),
        copy,
    };
    let scratch = ScratchLimits {
        bytes: 1 << 20,
        entries: 1000,
        guest: "/tmp".into(),
    };
    let contenders: Vec<(&str, Arc<Files>)> = vec![
        ("no files", Arc::default()),
        (
            "one read-only mount",
            Arc::new(Files {
                mounts: vec![mount(false)],
                scratch: None,
            }),
        ),
        (
            "scratch directory (--tmp 1MiB)",
            Arc::new(Files {
                mounts: vec![],
                scratch: Some(scratch.clone()),
            }),
        ),
        (
            "writable copy of the mount (20 files, 80 KiB)",
            Arc::new(Files {
                mounts: vec![mount(true)],
                scratch: Some(scratch),
            }),
        ),
    ];
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let expected = b"Hello, world!\n";
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
    let mut round_medians: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
    tokio.block_on(async {
        for _ in 0..args.rounds {
            for (i, (_, files)) in contenders.iter().enumerate() {
                let mut round = Vec::with_capacity(args.per_round);
                for n in 0..args.per_round + args.per_round / 10 {
                    let request = Request {
                        stdin: INPUT.into(),
                        args: ["hello".to_owned()].into(),
                        limits: Limits::default(),
                        files: files.clone(),
                        ..Default::default()
                    };
                    let start = Instant::now();
                    let inv = runtime.invoke(&function, request).await?;
                    let took = start.elapsed();
                    anyhow::ensure!(&inv.stdout[..] == expected, "unexpected {:?}", inv.stdout);
                    // The first tenth of each round warms up.
                    if n >= args.per_round / 10 {
                        round.push(took);
                    }
                }
                round_medians[i].push(Summary::of(round.clone()).median);
                samples[i].extend(round);
            }
        }
        anyhow::Ok(())
    })?;

    println!(
        "guest: {} ({} bytes), Runtime::invoke one at a time, {} rounds x {} per contender, \
         scratch under {}\n",
        path.display(),
        wasm.len(),
        args.rounds,
        args.per_round,
        scratch_root.path().display()
    );
    println!("| files | median | p99 | over no files (median) | spread of round medians |");
    println!("|---|---:|---:|---:|---:|");
    let base = Summary::of(samples[0].clone()).median;
    for (i, (name, _)) in contenders.iter().enumerate() {
        let summary = Summary::of(samples[i].clone());
        let over = summary.median.as_secs_f64() - base.as_secs_f64();
        let rounds = &round_medians[i];
        let (low, high) = (
            rounds.iter().min().copied().unwrap_or_default(),
            rounds.iter().max().copied().unwrap_or_default(),
        );
        println!(
            "| {name} | {} | {} | {:+.1} µs | {} to {} |",
            micros(summary.median),
            micros(summary.p99),
            over * 1e6,
            micros(low),
            micros(high)
        );
    }
    Ok(())
}
