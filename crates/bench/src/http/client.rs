//! The benchmark's own HTTP client for single requests: a new loopback connection
//! per request (what a first request from a new client costs), timed from before
//! `connect` to the last byte of the response. Deploys go through the control API.

use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A response and how long it took, end to end.
pub(super) struct Timed {
    pub status: u16,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

/// `POST path` with `body` on a fresh connection.
pub(super) fn post(addr: SocketAddr, path: &str, body: &[u8]) -> anyhow::Result<Timed> {
    let begin = Instant::now();
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request)?;
    let mut response = Vec::with_capacity(512);
    stream.read_to_end(&mut response)?;
    let elapsed = begin.elapsed();

    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("response without a header terminator")?;
    let head = std::str::from_utf8(&response[..head_end])?;
    let status = head
        .split_whitespace()
        .nth(1)
        .context("response without a status")?
        .parse()?;
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = &response[head_end + 4..];
    Ok(Timed {
        status,
        body: if chunked {
            dechunk(body)?
        } else {
            body.to_vec()
        },
        elapsed,
    })
}

/// The data of a chunked body.
fn dechunk(mut raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size without an end of line")?;
        let size = std::str::from_utf8(&raw[..line_end])?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size {size:?}"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = raw.get(..size).context("chunk cut short")?;
        body.extend_from_slice(chunk);
        raw = raw
            .get(size + 2..)
            .context("chunk without its end of line")?;
    }
}

/// `post`, insisting on a 200 whose body is `expected`.
pub(super) fn expect(
    addr: SocketAddr,
    path: &str,
    body: &[u8],
    expected: &[u8],
) -> anyhow::Result<Duration> {
    let answer = post(addr, path, body)?;
    if answer.status != 200 || answer.body != expected {
        bail!(
            "{path} answered {} {:?}, expected 200 {:?}",
            answer.status,
            String::from_utf8_lossy(&answer.body),
            String::from_utf8_lossy(expected)
        );
    }
    Ok(answer.elapsed)
}

/// What a deploy answered, and how long the client waited for it.
pub(super) struct Deployed {
    pub elapsed: Duration,
    /// Time the server spent compiling (`None` when the artifact existed).
    pub compile: Option<Duration>,
}

/// Deploys `wasm` as function `name` with the tenant `token`.
pub(super) fn deploy(
    agent: &ureq::Agent,
    addr: SocketAddr,
    token: &str,
    name: &str,
    wasm: &[u8],
) -> anyhow::Result<Deployed> {
    deploy_with(agent, addr, token, name, "", wasm)
}

/// Deploys `wasm` as function `name` with deploy options (`query`, with its
/// `?`, from `FunctionConfig::to_query`).
pub(super) fn deploy_with(
    agent: &ureq::Agent,
    addr: SocketAddr,
    token: &str,
    name: &str,
    query: &str,
    wasm: &[u8],
) -> anyhow::Result<Deployed> {
    let begin = Instant::now();
    let mut response = agent
        .post(&format!(
            "http://{addr}/v1/functions/{name}/versions{query}"
        ))
        .header("Authorization", &format!("Bearer {token}"))
        .send(wasm)
        .with_context(|| format!("deploying {name}"))?;
    let answer: serde_json::Value = response.body_mut().read_json()?;
    let elapsed = begin.elapsed();
    if answer.get("version").is_none() {
        bail!("deploy of {name} answered {answer}");
    }
    Ok(Deployed {
        elapsed,
        compile: answer["compile_ms"]
            .as_f64()
            .map(|ms| Duration::from_secs_f64(ms / 1e3)),
    })
}

/// An agent for the control API: no timeout shorter than a big compile, and error
/// statuses returned as errors with their bodies.
pub(super) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into()
}

/// Deletes function `name` with the tenant `token`.
pub(super) fn delete_function(
    agent: &ureq::Agent,
    addr: SocketAddr,
    token: &str,
    name: &str,
) -> anyhow::Result<()> {
    agent
        .delete(&format!("http://{addr}/v1/functions/{name}"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .with_context(|| format!("deleting {name}"))?;
    Ok(())
}

/// One blob collector pass (`POST /v1/admin/gc`): how long it took, and the
/// bytes it deleted.
pub(super) fn collect_garbage(
    agent: &ureq::Agent,
    addr: SocketAddr,
    admin: &str,
) -> anyhow::Result<(Duration, u64)> {
    let begin = Instant::now();
    let report: serde_json::Value = agent
        .post(&format!("http://{addr}/v1/admin/gc"))
        .header("Authorization", &format!("Bearer {admin}"))
        .send("")?
        .body_mut()
        .read_json()?;
    let deleted = report["summary"]["deleted_bytes"]
        .as_u64()
        .with_context(|| format!("a collector report without totals: {report}"))?;
    Ok((begin.elapsed(), deleted))
}

/// Admin `GET /v1/status` as JSON.
pub(super) fn status(
    agent: &ureq::Agent,
    addr: SocketAddr,
    admin: &str,
) -> anyhow::Result<serde_json::Value> {
    Ok(agent
        .get(&format!("http://{addr}/v1/status"))
        .header("Authorization", &format!("Bearer {admin}"))
        .call()?
        .body_mut()
        .read_json()?)
}
