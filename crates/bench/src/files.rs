//! `kiln-bench files`: what files cost an invocation. The hello guest, one
//! invocation at a time through `Runtime::invoke`, with no files, with one
//! read-only mount (a small tree of 20 files), with a scratch directory, and
//! with a writable copy of the same tree (left unchanged, so reused); then the
//! `fs` guest reading a file of the read-only mount, and appending to a file of
//! its writable copy (a changed copy: a new one for every invocation), back to
//! back and paced (each request waits until the copy made ahead of it is
//! ready, as sparse traffic finds it); then the `fs` guest as a WASI 0.2
//! component, reading from the read-only mount and from its writable copy.
//! Writable copies are copy-on-write overlays where this machine can mount
//! them; the appending rows run again on a second runtime whose copies are
//! whole (`copy_on_write: false`), and both kinds append to a copy of a big
//! tree too (128 files, 8 MiB). All take turns in rounds so that the
//! machine's drift falls on them alike.
//! Reports each median and its difference to its guest's first contender, per
//! round and over all rounds.

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

/// One way of running: a guest, its files, its input and what it must print.
struct Contender {
    name: &'static str,
    function: usize,
    files: Arc<Files>,
    input: &'static [u8],
    expected: &'static [u8],
    /// Waits before each request until a writable copy is ready (idle).
    paced: bool,
    /// Runs on the runtime with whole copies, not overlays.
    whole: bool,
}

pub(crate) fn run(args: FilesArgs) -> anyhow::Result<()> {
    let read = |name: &str| -> anyhow::Result<Vec<u8>> {
        let path = kiln_guests::path(name);
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    };
    let component = kiln_guests::component("fs");
    let component =
        std::fs::read(&component).with_context(|| format!("reading {}", component.display()))?;
    let wasm = [read("hello")?, read("fs")?, component];
    let dir = tempfile::tempdir()?;
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub"))?;
    for i in 0..10 {
        std::fs::write(tree.join(format!("file{i}.txt")), vec![b'x'; 4096])?;
        std::fs::write(tree.join(format!("sub/file{i}.txt")), vec![b'y'; 4096])?;
    }
    let big = dir.path().join("big");
    std::fs::create_dir_all(&big)?;
    for i in 0..128 {
        std::fs::write(big.join(format!("file{i}.bin")), vec![b'z'; 64 << 10])?;
    }
    // Two runtimes, of one artifact directory but each with its own scratch
    // root (two runtimes must not share one): copy-on-write, and whole copies.
    let scratch_base = || match &args.scratch_dir {
        Some(base) => tempfile::tempdir_in(base),
        None => tempfile::tempdir(),
    };
    let (scratch_root, whole_root) = (scratch_base()?, scratch_base()?);
    let runtime_with = |root: &tempfile::TempDir, copy_on_write| {
        let mut config = RuntimeConfig::new(dir.path().join("kiln").join("artifacts"));
        config.scratch.dir = root.path().to_owned();
        config.scratch.copy_on_write = copy_on_write;
        Runtime::new(config)
    };
    let runtimes = [
        runtime_with(&scratch_root, true)?,
        runtime_with(&whole_root, false)?,
    ];
    let runtime = &runtimes[0];
    let functions = runtimes
        .iter()
        .map(|runtime| {
            wasm.iter()
                .map(|wasm| {
                    let compiled = runtime.compile(wasm)?;
                    Ok(runtime.load(&compiled.digest)?)
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mount = |copy| HostMount {
        host: tree.clone(),
        guest: "/assets".into(),
        copy,
    };
    let big_copy = Arc::new(Files {
        mounts: vec![HostMount {
            host: big.clone(),
            guest: "/assets".into(),
            copy: true,
        }],
        scratch: Some(ScratchLimits {
            bytes: 64 << 20,
            entries: 1000,
            guest: "/tmp".into(),
        }),
    });
    let scratch = ScratchLimits {
        bytes: 1 << 20,
        entries: 1000,
        guest: "/tmp".into(),
    };
    let read_only = Arc::new(Files {
        mounts: vec![mount(false)],
        scratch: None,
    });
    let copy = Arc::new(Files {
        mounts: vec![mount(true)],
        scratch: Some(scratch.clone()),
    });
    let hello = |name, files| Contender {
        name,
        function: 0,
        files,
        input: b"world",
        expected: b"Hello, world!\n",
        paced: false,
        whole: false,
    };
    let fs = |name, function, files: &Arc<Files>, input, expected, paced| Contender {
        name,
        function,
        files: files.clone(),
        input,
        expected,
        paced,
        whole: false,
    };
    let whole = |contender: Contender| Contender {
        whole: true,
        ..contender
    };
    let contenders = [
        hello("no files", Arc::default()),
        hello("one read-only mount", read_only.clone()),
        hello(
            "scratch directory (--tmp 1MiB)",
            Arc::new(Files {
                mounts: vec![],
                scratch: Some(scratch),
            }),
        ),
        hello(
            "writable copy of the mount (20 files, 80 KiB), left unchanged",
            copy.clone(),
        ),
        fs(
            "fs guest: reads a file of the read-only mount",
            1,
            &read_only,
            b"stat /assets/file0.txt",
            b"stat /assets/file0.txt -> file 4096 bytes",
            false,
        ),
        fs(
            "fs guest: appends to a file of its writable copy (changed: copied anew), back to back",
            1,
            &copy,
            b"append /assets/file0.txt z",
            b"append /assets/file0.txt z -> ok",
            false,
        ),
        fs(
            "fs guest: the same, paced (the copy made ahead is ready)",
            1,
            &copy,
            b"append /assets/file0.txt z",
            b"append /assets/file0.txt z -> ok",
            true,
        ),
        whole(fs(
            "fs guest: appends, back to back, whole copies",
            1,
            &copy,
            b"append /assets/file0.txt z",
            b"append /assets/file0.txt z -> ok",
            false,
        )),
        whole(fs(
            "fs guest: appends, paced, whole copies",
            1,
            &copy,
            b"append /assets/file0.txt z",
            b"append /assets/file0.txt z -> ok",
            true,
        )),
        fs(
            "fs guest: appends to a copy of a big tree (128 files, 8 MiB), back to back",
            1,
            &big_copy,
            b"append /assets/file0.bin z",
            b"append /assets/file0.bin z -> ok",
            false,
        ),
        whole(fs(
            "fs guest: the same, whole copies",
            1,
            &big_copy,
            b"append /assets/file0.bin z",
            b"append /assets/file0.bin z -> ok",
            false,
        )),
        fs(
            "fs component: reads a file of the read-only mount",
            2,
            &read_only,
            b"stat /assets/file0.txt",
            b"stat /assets/file0.txt -> file 4096 bytes",
            false,
        ),
        fs(
            "fs component: reads a file of its writable copy (unchanged: reused)",
            2,
            &copy,
            b"stat /assets/file0.txt",
            b"stat /assets/file0.txt -> file 4096 bytes",
            false,
        ),
    ];
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
    let mut round_medians: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
    tokio.block_on(async {
        for _ in 0..args.rounds {
            for (i, contender) in contenders.iter().enumerate() {
                let mut round = Vec::with_capacity(args.per_round);
                for n in 0..args.per_round + args.per_round / 10 {
                    let request = Request {
                        stdin: contender.input.into(),
                        args: ["guest".to_owned()].into(),
                        limits: Limits::default(),
                        files: contender.files.clone(),
                        ..Default::default()
                    };
                    let runtime = &runtimes[usize::from(contender.whole)];
                    if contender.paced {
                        let deadline = Instant::now() + Duration::from_secs(5);
                        while runtime.writable_copies().idle == 0 {
                            anyhow::ensure!(Instant::now() < deadline, "no copy made ahead");
                            tokio::time::sleep(Duration::from_micros(100)).await;
                        }
                    }
                    let start = Instant::now();
                    let inv = runtime
                        .invoke(
                            &functions[usize::from(contender.whole)][contender.function],
                            request,
                        )
                        .await?;
                    let took = start.elapsed();
                    anyhow::ensure!(
                        inv.stdout.starts_with(contender.expected),
                        "{}: unexpected {:?}",
                        contender.name,
                        inv.stdout
                    );
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

    let kiln_runtime::WritableCopies {
        made,
        overlaid,
        reused,
        ..
    } = runtime.writable_copies();
    let whole_made = runtimes[1].writable_copies().made;
    println!(
        "guests: hello and fs (examples/), Runtime::invoke one at a time, {} rounds x {} per \
         contender, scratch under {}; writable copies made {made} ({overlaid} as overlays), \
         reused {reused}; whole copies made on the second runtime {whole_made}\n",
        args.rounds,
        args.per_round,
        scratch_root.path().display()
    );
    println!(
        "| files | median | p99 | over its guest's first row (median) | spread of round medians |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (i, contender) in contenders.iter().enumerate() {
        let first = contenders
            .iter()
            .position(|c| c.function == contender.function)
            .unwrap_or(0);
        let base = Summary::of(samples[first].clone()).median;
        let summary = Summary::of(samples[i].clone());
        let over = summary.median.as_secs_f64() - base.as_secs_f64();
        let rounds = &round_medians[i];
        let (low, high) = (
            rounds.iter().min().copied().unwrap_or_default(),
            rounds.iter().max().copied().unwrap_or_default(),
        );
        println!(
            "| {} | {} | {} | {:+.1} µs | {} to {} |",
            contender.name,
            micros(summary.median),
            micros(summary.p99),
            over * 1e6,
            micros(low),
            micros(high)
        );
    }
    Ok(())
}
