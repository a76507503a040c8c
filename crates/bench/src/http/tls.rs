//! HTTPS: hello at 64 keep-alive connections through Kiln serving TLS
//! itself, against the same server's plain HTTP twin (runs interleaved,
//! [`ROUNDS`] each, alternating which goes first; medians); then new
//! connections — one request each, a full handshake each — through Kiln's TLS
//! and through nginx terminating TLS in front of the plain server, the way
//! Kiln was deployed before it spoke HTTPS. The certificate is made for the
//! run (rcgen, ECDSA P-256: what an ACME issuer hands out by default).

use super::client::{self, expect};
use super::kiln::Kiln;
use super::nginx::{Nginx, free_address};
use super::report::{Report, median, runs};
use super::wrk;
use std::path::Path;
use std::time::Duration;

const ROUNDS: usize = 5;
/// Connections of the handshake runs: each makes a new one per request.
const HANDSHAKE_CONNECTIONS: u32 = 16;

pub(super) fn run(
    binary: &Path,
    hello: &[u8],
    duration: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, key.cert.pem())?;
    std::fs::write(&key_file, key.signing_key.serialize_pem())?;

    // The same function on both: deployed over plain HTTP, then the TLS
    // server restarted with its certificate.
    let path = "/fn/default/hello";
    let plain = Kiln::start(binary, &dir.path().join("plain"), &[])?;
    let mut tls = Kiln::start(binary, &dir.path().join("tls"), &[])?;
    for kiln in [&plain, &tls] {
        client::deploy(&client::agent(), kiln.addr, &kiln.token, "hello", hello)?;
        expect(kiln.addr, path, b"world", b"Hello, world!\n")?;
    }
    let (cert, key) = (
        cert_file.display().to_string(),
        key_file.display().to_string(),
    );
    tls.restart_with(&["--tls-cert", &cert, "--tls-key", &key])?;

    let keep_alive = |url: &str| Ok(wrk::run(url, "world", 64, duration)?.requests_per_sec);
    let (with, without) = interleaved(&tls.url(path), &plain.url(path), keep_alive)?;
    report.add(
        "tls",
        "HTTPS, keep-alive, 64 connections: req/s of the runs",
        runs(&with, 0),
    );
    report.add(
        "tls",
        "plain HTTP, same: req/s of the runs",
        runs(&without, 0),
    );
    let (with, without) = (median(with), median(without));
    let lost = (without - with) / without * 100.0;
    report.target(
        "tls",
        "throughput lost to TLS, keep-alive (medians)",
        format!("{lost:.1}% ({with:.0} vs {without:.0} req/s)"),
        "≤ 15%",
        lost <= 15.0,
    );

    // New connections: Kiln's TLS against nginx's in front of the plain one.
    let front = free_address()?;
    let http = format!(
        "    server {{ listen {front} ssl; ssl_certificate {cert}; ssl_certificate_key {key};\n\
         \x20       location / {{ proxy_pass http://{upstream}; proxy_http_version 1.1;\n\
         \x20       proxy_set_header Connection \"\"; }} }}\n",
        upstream = plain.addr,
    );
    let nginx_dir = dir.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir)?;
    let _nginx = Nginx::start(&nginx_dir, &http, &front)?;
    let closing = |url: &str| {
        let load = wrk::run_closing(url, "world", HANDSHAKE_CONNECTIONS, duration)?;
        Ok(load.requests_per_sec)
    };
    let nginx = format!("https://{front}{path}");
    let (kiln_rates, nginx_rates) = interleaved(&tls.url(path), &nginx, closing)?;
    report.add(
        "tls",
        "new connections (a handshake each), Kiln's TLS: per second of the runs",
        runs(&kiln_rates, 0),
    );
    report.add(
        "tls",
        "new connections, nginx's TLS in front of plain Kiln: per second of the runs",
        runs(&nginx_rates, 0),
    );
    let (kiln_rate, nginx_rate) = (median(kiln_rates), median(nginx_rates));
    report.add(
        "tls",
        "new connections per second, Kiln vs nginx in front (medians)",
        format!(
            "{kiln_rate:.0} vs {nginx_rate:.0}: {:.2}×",
            kiln_rate / nginx_rate
        ),
    );
    Ok(())
}

/// `measure` of `a` and of `b`, [`ROUNDS`] times each, alternating which goes
/// first: the runs of each.
fn interleaved(
    a: &str,
    b: &str,
    measure: impl Fn(&str) -> anyhow::Result<f64>,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let (mut of_a, mut of_b) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            of_a.push(measure(a)?);
            of_b.push(measure(b)?);
        } else {
            of_b.push(measure(b)?);
            of_a.push(measure(a)?);
        }
    }
    Ok((of_a, of_b))
}
