//! The load generator: `wrk` (Debian's package), driving POST requests over
//! keep-alive connections, and its report parsed into numbers.

use anyhow::{Context, bail};
use std::process::Command;
use std::time::Duration;

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
pub(super) struct Load {
    pub connections: u32,
    /// Responses received over the whole run.
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// Fails with how to install wrk if it is missing.
pub(super) fn check_installed() -> anyhow::Result<()> {
    match Command::new("wrk").arg("--version").output() {
        Ok(_) => Ok(()),
        Err(_) => bail!("wrk is not installed: `apt-get install wrk` (scripts/bench does it)"),
    }
}

/// `wrk` POSTing `body` to `url` for `duration` over `connections` connections.
/// Any non-2xx answer or socket error fails the run: a benchmark of errors is
/// no benchmark.
pub(super) fn run(
    url: &str,
    body: &str,
    connections: u32,
    duration: Duration,
) -> anyhow::Result<Load> {
    run_with(url, body, connections, duration, "")
}

/// [`run`] with a new connection for every request (`Connection: close`):
/// over HTTPS, a handshake per request.
pub(super) fn run_closing(
    url: &str,
    body: &str,
    connections: u32,
    duration: Duration,
) -> anyhow::Result<Load> {
    let close = "wrk.headers[\"Connection\"] = \"close\"\n";
    run_with(url, body, connections, duration, close)
}

fn run_with(
    url: &str,
    body: &str,
    connections: u32,
    duration: Duration,
    lua: &str,
) -> anyhow::Result<Load> {
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        format!("wrk.method = \"POST\"\nwrk.body = {body:?}\n{lua}"),
    )?;
    // One wrk thread drives 64 connections at these rates and leaves the second
    // core to the server: the load generator shares this machine with it.
    let output = Command::new("wrk")
        .arg("-t1")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg(url)
        .output()
        .context("running wrk")?;
    let report = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed: {report}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse(&report, connections)
}

fn parse(report: &str, connections: u32) -> anyhow::Result<Load> {
    if let Some(line) = report
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        bail!("wrk saw failures: {}\n{report}", line.trim());
    }
    let field = |prefix: &str| {
        report
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
            .with_context(|| format!("no {prefix:?} in wrk's report:\n{report}"))
    };
    let requests = report
        .lines()
        .map(str::trim)
        .find_map(|l| l.split_once(" requests in "))
        .and_then(|(n, _)| n.parse().ok())
        .with_context(|| format!("no request count in wrk's report:\n{report}"))?;
    Ok(Load {
        connections,
        requests,
        requests_per_sec: field("Requests/sec:")?.parse()?,
        p50: duration(field("50%")?)?,
        p99: duration(field("99%")?)?,
    })
}

/// wrk's `812.00us`, `3.25ms`, `1.02s`.
fn duration(text: &str) -> anyhow::Result<Duration> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        other => bail!("unknown unit {other:?} in {text:?}"),
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 5s test @ http://127.0.0.1:1/fn/default/hello
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.12ms    1.01ms  20.00ms   80.00%
    Req/Sec    10.00k   500.00    11.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    3.50ms
     90%    4.00ms
     99%    6.25ms
  100000 requests in 5.00s, 10.00MB read
Requests/sec:  20000.50
Transfer/sec:      2.00MB
";

    #[test]
    fn parses_throughput_and_percentiles() {
        let load = parse(REPORT, 64).unwrap();
        assert_eq!(load.requests_per_sec, 20000.5);
        assert_eq!(load.requests, 100_000);
        assert_eq!(load.p50, Duration::from_micros(812));
        assert_eq!(load.p99, Duration::from_micros(6250));
    }

    #[test]
    fn failures_fail_the_run() {
        let failed = REPORT.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 3\nRequests/sec",
        );
        assert!(
            parse(&failed, 64)
                .unwrap_err()
                .to_string()
                .contains("Non-2xx")
        );
    }
}
