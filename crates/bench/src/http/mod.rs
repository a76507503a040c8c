//! `kiln-bench all`: the HTTP benchmark suite. It starts the release `kiln up` on
//! loopback, drives it over real HTTP (wrk for load, a plain client for single
//! requests), measures the peers in the same run, and prints one table.

mod big;
mod client;
mod cluster;
mod cold;
mod console;
mod density;
mod kiln;
mod kv;
mod modules;
mod neighbours;
mod nginx;
pub(crate) mod peer;
mod proxy;
mod real;
mod report;
mod schedule;
mod scripts;
mod switch;
mod tiers;
mod tls;
mod warm;
mod wrk;

use anyhow::Context;
use kiln::Kiln;
use report::Report;
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct SuiteArgs {
    /// Scenarios to run, comma-separated
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "cold,warm,metering,seccomp,tls,neighbours,wasi-http,density,big,cluster"
    )]
    only: Vec<Scenario>,
    /// Seconds of load for each wrk run
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Deploys (each followed by its first request) for cold-after-deploy
    #[arg(long, default_value_t = 30)]
    deploys: usize,
    /// Functions deployed before the restart for cold-after-restart
    #[arg(long, default_value_t = 200)]
    restart_functions: usize,
    /// Distinct functions for the density scenario
    #[arg(long, default_value_t = 10_000)]
    functions: usize,
    /// Size of the generated big module, in MiB
    #[arg(long, default_value_t = 20)]
    big_mib: usize,
    /// Real programs for the `real` scenario (repeatable) [default: CPython and
    /// yosys from the real-program cache, scripts/realworld/fetch]
    #[arg(long, value_name = "FILE.wasm")]
    real: Vec<std::path::PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    Cold,
    Warm,
    Metering,
    Seccomp,
    Tls,
    Neighbours,
    WasiHttp,
    Density,
    Big,
    Cluster,
    Real,
    Scripts,
    Kv,
    KvCluster,
    Schedule,
    Console,
    Tiers,
}

pub(crate) fn run(args: SuiteArgs) -> anyhow::Result<()> {
    wrk::check_installed()?;
    // The wasmtime CLI is the peer of the warm and big-module scenarios.
    let wasmtime = if wants_any(
        &args.only,
        &[
            Scenario::Warm,
            Scenario::WasiHttp,
            Scenario::Big,
            Scenario::Real,
        ],
    ) {
        peer::wasmtime_cli()?
    } else {
        Default::default()
    };
    let binary = kiln::binary()?;
    let hello_path = kiln_guests::path("hello");
    let hello =
        std::fs::read(&hello_path).with_context(|| format!("reading {}", hello_path.display()))?;
    let mut report = Report::default();
    let wants = |s: Scenario| wants_any(&args.only, &[s]);

    // Each scenario gets a server of its own on a new data directory.
    let fresh = |extra: &[&str]| -> anyhow::Result<(tempfile::TempDir, Kiln)> {
        let home = tempfile::tempdir()?;
        let kiln = Kiln::start(&binary, home.path(), extra)?;
        Ok((home, kiln))
    };
    if wants(Scenario::Cold) {
        eprintln!(
            "cold: {} deploys, then {} functions across a restart",
            args.deploys, args.restart_functions
        );
        let (_home, mut kiln) = fresh(&[])?;
        cold::after_deploy(&kiln, &hello, args.deploys, &mut report)?;
        cold::after_restart(&mut kiln, &hello, args.restart_functions, &mut report)?;
    }
    if wants(Scenario::Warm) {
        eprintln!("warm: 6 wrk runs of {} s", args.seconds);
        let (_home, kiln) = fresh(&[])?;
        warm::run(
            &kiln,
            &hello_path,
            &wasmtime,
            Duration::from_secs(args.seconds),
            &mut report,
        )?;
    }
    // A feature on (the default) against a server started with `off`.
    let mut switched = |feature: switch::Feature, off: &[&str]| -> anyhow::Result<()> {
        eprintln!(
            "{}: 14 wrk runs of {} s, on and off",
            feature.scenario, args.seconds
        );
        let (_home_on, on) = fresh(&[])?;
        let (_home_off, off) = fresh(off)?;
        let seconds = Duration::from_secs(args.seconds);
        switch::run(feature, &on, &off, &hello, seconds, &mut report)
    };
    if wants(Scenario::Metering) {
        let feature = switch::Feature {
            scenario: "metering",
            name: "metering",
        };
        switched(feature, &["--metering", "off"])?;
    }
    if wants(Scenario::Seccomp) {
        let feature = switch::Feature {
            scenario: "seccomp",
            name: "the seccomp filter",
        };
        switched(feature, &["--no-seccomp"])?;
    }
    if wants(Scenario::Tls) {
        eprintln!(
            "tls: 20 wrk runs of {} s, HTTPS and HTTP, Kiln's TLS and nginx's",
            args.seconds
        );
        tls::run(
            &binary,
            &hello,
            Duration::from_secs(args.seconds),
            &mut report,
        )?;
    }
    if wants(Scenario::Neighbours) {
        eprintln!(
            "neighbours: 6 wrk runs of {} s, alone and beside a hog",
            args.seconds
        );
        let (_home, kiln) = fresh(&[])?;
        let burn_path = kiln_guests::path("burn");
        let burn = std::fs::read(&burn_path)
            .with_context(|| format!("reading {}", burn_path.display()))?;
        neighbours::run(
            &kiln,
            &hello,
            &burn,
            Duration::from_secs(args.seconds),
            &mut report,
        )?;
    }
    if wants(Scenario::WasiHttp) {
        eprintln!(
            "wasi-http: 6 wrk runs of {} s, kiln and wasmtime serve",
            args.seconds
        );
        let (_home, kiln) = fresh(&[])?;
        proxy::run(
            &kiln,
            &kiln_guests::http_component("hello-http"),
            &wasmtime,
            Duration::from_secs(args.seconds),
            &mut report,
        )?;
    }
    if wants(Scenario::Density) {
        eprintln!("density: {} functions", args.functions);
        // The collector runs only when the scenario asks, with no grace.
        let (_home, mut kiln) = fresh(&["--gc-grace", "0s", "--gc-interval", "0s"])?;
        density::run(&mut kiln, args.functions, &mut report)?;
    }
    if wants(Scenario::Big) {
        eprintln!("big module: {} MiB", args.big_mib);
        let (_home, mut kiln) = fresh(&[])?;
        big::run(&mut kiln, &wasmtime, args.big_mib << 20, &mut report)?;
    }
    if wants(Scenario::Real) {
        let programs = match args.real.is_empty() {
            true => real::default_programs(),
            false => args.real.clone(),
        };
        let (_home, kiln) = fresh(&[])?;
        real::run(&kiln, &wasmtime, &programs, &mut report)?;
    }
    if wants(Scenario::Tiers) {
        let cache = real::default_programs()
            .first()
            .and_then(|p| p.ancestors().nth(4).map(std::path::Path::to_owned))
            .context("no real-program cache")?;
        let (_tiered_home, tiered) = fresh(&[])?;
        let (_today_home, today) = fresh(&["--baseline-above", "off"])?;
        tiers::run(
            &tiered,
            &today,
            args.big_mib << 20,
            &cache,
            Duration::from_secs(args.seconds.min(5)),
            &mut report,
        )?;
    }
    if wants(Scenario::Kv) {
        eprintln!(
            "kv: get, set and a counter, {} s of load each",
            args.seconds
        );
        let (_home, kiln) = fresh(&[])?;
        kv::run(&kiln, Duration::from_secs(args.seconds), &mut report)?;
    }
    if wants(Scenario::Scripts) {
        eprintln!("scripts: Python and JavaScript hellos, then their peers");
        let runtimes = kiln_guests::runtimes().display().to_string();
        let (_home, mut kiln) = fresh(&["--runtimes", &runtimes])?;
        let cpython = real::default_programs()
            .into_iter()
            .next()
            .context("no CPython in the real-program cache")?;
        // The wasmtime CLI serves the toolchains' components beside Kiln when
        // it is installed (`scripts/bench` installs it).
        let cli = peer::wasmtime_cli().ok();
        scripts::run(
            &mut kiln,
            &binary,
            &cpython,
            cli.as_deref(),
            Duration::from_secs(args.seconds),
            &mut report,
        )?;
    }
    if wants(Scenario::Cluster) {
        eprintln!(
            "cluster: 6 wrk runs of {} s, 1 and 3 nodes behind nginx",
            args.seconds
        );
        cluster::run(
            &binary,
            &hello,
            Duration::from_secs(args.seconds),
            &mut report,
        )?;
    }
    if wants(Scenario::KvCluster) {
        eprintln!(
            "kv-cluster: get and a counter on 3 nodes, {} s of load each",
            args.seconds
        );
        kv::run_cluster(&binary, Duration::from_secs(args.seconds), &mut report)?;
    }
    if wants(Scenario::Schedule) {
        eprintln!("schedule: an every-minute schedule on 3 nodes, watched for 10 minutes");
        schedule::run(&binary, &mut report)?;
    }
    if wants(Scenario::Console) {
        eprintln!("console: the functions page in headless Chromium, with 10 and 1,000 functions");
        let (_home, kiln) = fresh(&[])?;
        console::run(&kiln, &hello, &mut report)?;
    }
    println!("{}", report.markdown());
    Ok(())
}

fn wants_any(chosen: &[Scenario], any: &[Scenario]) -> bool {
    any.iter().any(|s| chosen.contains(s))
}
