//! wasi:http components, streamed commands and outbound HTTP, end to end against
//! a real `kiln up` over real sockets.

use crate::support::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn http_guest(name: &str) -> String {
    kiln_guests::http_component(name).display().to_string()
}

/// The function's log entries, oldest first, as JSON.
fn logs(server: &KilnServer, token: &str, function: &str) -> Vec<serde_json::Value> {
    let answer = get_as(
        &format!("{}/v1/functions/{function}/logs", server.url),
        token,
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let parsed: serde_json::Value = serde_json::from_str(&answer.body).expect("logs JSON");
    parsed.as_array().cloned().expect("a list of entries")
}

/// Waits for a log entry of the function's that satisfies `wanted`.
fn log_where(
    server: &KilnServer,
    token: &str,
    function: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    eventually(&format!("a log entry of {function}"), || {
        logs(server, token, function).into_iter().find(&wanted)
    })
}

/// Waits for the function's first log entry.
fn first_log(server: &KilnServer, token: &str, function: &str) -> serde_json::Value {
    log_where(server, token, function, |_| true)
}

/// A raw HTTP/1.1 connection to the server, for requests whose body is sent in
/// steps while the response is read.
fn connect(server: &KilnServer) -> TcpStream {
    let address = server.url.trim_start_matches("http://");
    let stream = TcpStream::connect(address).expect("connect to kiln");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    stream
}

/// Reads the response head (status line and headers) from `reader`.
fn read_head(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            return (status, headers);
        }
        let (name, value) = line.split_once(':').expect("a header");
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
}

/// Reads one chunk of a chunked body; `None` at the last (empty) chunk.
fn read_chunk(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut size = String::new();
    reader.read_line(&mut size).expect("chunk size");
    let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk).expect("chunk");
    chunk.truncate(size);
    (size > 0).then_some(chunk)
}

#[test]
fn a_wasi_http_component_sees_method_path_query_headers_and_body() {
    let home = Home::new();
    let server = home.start(&[]);
    let said = server.ok(&["deploy", "--name", "echo", &http_guest("echo-http")]);
    assert!(
        said.starts_with("deployed echo v1 (wasi:http component, "),
        "{said}"
    );
    let url = server.function_url("default", "echo");

    let echoed = answer(
        http()
            .put(&format!("{url}/items/7?color=red&size=2"))
            .header("X-Custom", "custom value")
            .send("the body"),
    );
    assert_eq!(echoed.status, 200, "{}", echoed.body);
    assert_eq!(echoed.header("x-echo-method"), Some("PUT"));
    assert_eq!(
        echoed.header("x-echo-path"),
        Some("/items/7?color=red&size=2")
    );
    assert_eq!(echoed.header("x-echo-x-custom"), Some("custom value"));
    assert_eq!(echoed.header("kiln-outcome"), Some("success"));
    assert_eq!(echoed.body, "the body");

    // The function's root, and a method with no body.
    let root = get(&url);
    assert_eq!(root.header("x-echo-path"), Some("/"));
    assert_eq!(root.header("x-echo-method"), Some("GET"));
    assert_eq!(root.body, "");

    // A wasi:http hello, metered like any invocation.
    server.ok(&["deploy", "--name", "hello", &http_guest("hello-http")]);
    let hello = get(&server.function_url("default", "hello"));
    assert_eq!(
        (hello.status, hello.body.as_str()),
        (200, "Hello, world!\n")
    );
    assert_eq!(
        hello.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let entry = first_log(&server, &home.token(), "hello");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["bytes_out"], 14);
    assert!(
        entry["cpu_us"].as_u64().is_some_and(|cpu| cpu > 0),
        "{entry}"
    );

    // A private function's token is Kiln's, not the component's.
    server.ok(&[
        "deploy",
        "--name",
        "secret",
        "--private",
        &http_guest("echo-http"),
    ]);
    let own = answer(
        http()
            .post(&server.function_url("default", "secret"))
            .header("Authorization", &format!("Bearer {}", home.token()))
            .header("X-Kept", "yes")
            .send("x"),
    );
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.header("x-echo-x-kept"), Some("yes"));
    assert_eq!(
        get(&server.function_url("default", "secret")).status,
        401,
        "anonymous callers are refused before the component runs"
    );
}

#[test]
fn a_50_mib_body_streams_through_a_wasi_http_echo_in_bounded_server_memory() {
    const SIZE: usize = 50 << 20;
    let home = Home::new();
    let server = home.start(&[]);
    server.ok(&[
        "deploy",
        "--name",
        "echo",
        "--max-input",
        "64MiB",
        "--max-output",
        "64MiB",
        "--timeout",
        "120s",
        &http_guest("echo-http"),
    ]);
    let url = server.function_url("default", "echo");
    // Warm up: the first invocation maps the function and touches its pool slot.
    assert_eq!(post(&url, &"w".repeat(1 << 20)).body.len(), 1 << 20);
    let peak_before = peak_rss_kib(server.pid());

    let mut stream = connect(&server);
    write!(
        stream,
        "POST /fn/default/echo HTTP/1.1\r\nHost: kiln\r\nContent-Length: {SIZE}\r\n\r\n"
    )
    .expect("request head");
    let mut writer = stream.try_clone().expect("clone the socket");
    let sender = std::thread::spawn(move || {
        let mut block = vec![0u8; 1 << 16];
        for i in 0..SIZE / block.len() {
            block.fill((i % 251) as u8);
            writer.write_all(&block).expect("send the body");
        }
    });
    let mut reader = BufReader::new(stream);
    let (status, _) = read_head(&mut reader);
    assert_eq!(status, 200);
    let mut received = 0usize;
    while let Some(chunk) = read_chunk(&mut reader) {
        for (offset, byte) in chunk.iter().enumerate() {
            let position = received + offset;
            assert_eq!(
                *byte,
                ((position >> 16) % 251) as u8,
                "byte {position} differs"
            );
        }
        received += chunk.len();
    }
    sender.join().expect("sender thread");
    assert_eq!(received, SIZE);

    let grown_kib = peak_rss_kib(server.pid()).saturating_sub(peak_before);
    assert!(
        grown_kib < 16 << 10,
        "the server's peak memory grew by {grown_kib} KiB for a {} MiB body",
        SIZE >> 20
    );
    let entry = log_where(&server, &home.token(), "echo", |e| e["bytes_in"] != 1 << 20);
    assert_eq!(entry["bytes_in"], SIZE as u64);
    assert_eq!(entry["bytes_out"], SIZE as u64);
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status")
}

/// Sends half a body, sees the first chunk of the answer, then the rest: the guest
/// (blocked reading the rest of its stdin) cannot have finished before.
fn first_chunk_before_the_guest_ends(
    server: &KilnServer,
    function: &str,
) -> (u16, Vec<(String, String)>) {
    let mut stream = connect(server);
    write!(
        stream,
        "POST /fn/default/{function} HTTP/1.1\r\nHost: kiln\r\nContent-Length: 10\r\n\r\nhello"
    )
    .expect("request head and half the body");
    let mut reader = BufReader::new(stream.try_clone().expect("clone the socket"));
    let (status, headers) = read_head(&mut reader);
    assert_eq!(
        read_chunk(&mut reader).as_deref(),
        Some(&b"first line\n"[..]),
        "the first line arrives while the guest waits for the rest of its input"
    );
    stream.write_all(b"world").expect("the rest of the body");
    let mut rest = Vec::new();
    while let Some(chunk) = read_chunk(&mut reader) {
        rest.extend(chunk);
    }
    assert_eq!(
        String::from_utf8_lossy(&rest),
        "then 10 bytes: helloworld\n"
    );
    (status, headers)
}

#[test]
fn streaming_commands_send_output_while_they_run() {
    let home = Home::new();
    let server = home.start(&[]);
    server.ok(&["deploy", "--name", "relay", "--stream", &guest("relay")]);
    let (status, headers) = first_chunk_before_the_guest_ends(&server, "relay");
    assert_eq!(status, 200);
    assert!(
        headers.contains(&("transfer-encoding".into(), "chunked".into())),
        "{headers:?}"
    );

    // A component, with CGI headers first.
    let component = kiln_guests::component("relay").display().to_string();
    server.ok(&[
        "deploy",
        "--name",
        "relay-cgi",
        "--stream",
        "--cgi",
        "--arg",
        "cgi",
        &component,
    ]);
    let (status, headers) = first_chunk_before_the_guest_ends(&server, "relay-cgi");
    assert_eq!(status, 201);
    assert!(
        headers.contains(&("x-relay".into(), "yes".into())),
        "{headers:?}"
    );

    let entry = first_log(&server, &home.token(), "relay-cgi");
    assert_eq!(entry["bytes_in"], 10);
    assert_eq!(entry["status"], 201);
}

#[test]
fn a_streaming_guest_waits_for_a_slow_client_instead_of_filling_memory() {
    let home = Home::new();
    let server = home.start(&[]);
    server.ok(&[
        "deploy",
        "--name",
        "flood",
        "--stream",
        "--max-output",
        "4GiB",
        "--timeout",
        "3s",
        &guest("stdout-flood"),
    ]);
    let peak_before = peak_rss_kib(server.pid());
    // Ask, then read nothing: the guest can only write what the pipes and the
    // socket buffers hold.
    let mut stream = connect(&server);
    stream
        .write_all(b"POST /fn/default/flood HTTP/1.1\r\nHost: kiln\r\nContent-Length: 0\r\n\r\n")
        .expect("request");
    let entry = first_log(&server, &home.token(), "flood");
    assert!(
        entry["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("wall-time limit")),
        "{entry}"
    );
    let sent = entry["bytes_out"].as_u64().expect("bytes_out");
    assert!(
        sent < 64 << 20,
        "the guest wrote {sent} bytes to a client that read nothing"
    );
    let grown_kib = peak_rss_kib(server.pid()).saturating_sub(peak_before);
    assert!(grown_kib < 64 << 10, "the server grew by {grown_kib} KiB");
    drop(stream);
}

/// A one-connection-at-a-time HTTP server on loopback answering every request
/// with `response`, counting the connections it accepted.
fn serving(response: Vec<u8>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let port = listener.local_addr().expect("address").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = stream.write_all(&response);
        }
    });
    (port, accepted)
}

/// An upstream answering `pong`.
fn upstream() -> (u16, Arc<AtomicUsize>) {
    serving(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\npong\n".to_vec())
}

#[test]
fn outbound_requests_reach_allowed_hosts_only() {
    let (allowed_port, allowed_hits) = upstream();
    let (other_port, other_hits) = upstream();
    let home = Home::new();
    // The upstreams are on loopback, which only an operator can open.
    let server = home.start(&["--outbound-allow-net", "127.0.0.1"]);
    let allowed = format!("127.0.0.1:{allowed_port}");
    server.ok(&[
        "deploy",
        "--name",
        "fetch",
        "--allow-host",
        &allowed,
        &http_guest("fetch"),
    ]);
    let url = server.function_url("default", "fetch");
    let fetch = |target: &str| answer(http().get(&url).header("x-fetch-url", target).call());

    let ok = fetch(&format!("http://127.0.0.1:{allowed_port}/ping"));
    assert_eq!(
        (ok.status, ok.body.as_str()),
        (200, "upstream status 200\npong\n")
    );
    assert_eq!(allowed_hits.load(Ordering::SeqCst), 1);

    for denied in [
        format!("http://127.0.0.1:{other_port}/"),
        format!("http://localhost:{allowed_port}/"),
        "https://example.com/".to_owned(),
    ] {
        let refused = fetch(&denied);
        assert_eq!(refused.status, 502, "{denied}: {}", refused.body);
        assert_eq!(
            refused.body, "outbound request failed: ErrorCode::HttpRequestDenied\n",
            "{denied}"
        );
    }
    assert_eq!(other_hits.load(Ordering::SeqCst), 0);
    assert_eq!(allowed_hits.load(Ordering::SeqCst), 1);
    let entry = eventually("the denial in the log", || {
        logs(&server, &home.token(), "fetch").into_iter().find(|e| {
            e["stderr"]
                .as_str()
                .is_some_and(|s| s.contains("example.com:443"))
        })
    });
    assert!(
        entry["stderr"]
            .as_str()
            .is_some_and(|s| s.contains("outbound request to example.com:443 denied")),
        "{entry}"
    );

    // Without --allow-host, nothing goes out.
    server.ok(&["deploy", "--name", "closed", &http_guest("fetch")]);
    let closed = answer(
        http()
            .get(&server.function_url("default", "closed"))
            .header("x-fetch-url", &format!("http://127.0.0.1:{allowed_port}/"))
            .call(),
    );
    assert_eq!(closed.status, 502, "{}", closed.body);
    assert_eq!(allowed_hits.load(Ordering::SeqCst), 1);
}

#[test]
fn deploy_options_that_do_not_fit_the_kind_are_refused_and_change_nothing() {
    let home = Home::new();
    let server = home.start(&[]);
    let refused = |args: &[&str], expected: &str| {
        let out = server.cli(args, &[], b"");
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    };
    let echo = http_guest("echo-http");
    refused(
        &["deploy", "--name", "f", "--cgi", &echo],
        "cgi and stream apply to commands",
    );
    refused(
        &["deploy", "--name", "f", "--stream", &echo],
        "cgi and stream apply to commands",
    );
    refused(
        &[
            "deploy",
            "--name",
            "f",
            "--allow-host",
            "example.com",
            &guest("hello"),
        ],
        "allow_host applies to components",
    );
    refused(
        &[
            "deploy",
            "--name",
            "f",
            "--allow-host",
            "http://example.com/",
            &echo,
        ],
        "invalid allowed host \"http://example.com/\": give a host and optional port, not a URL",
    );
    refused(
        &[
            "deploy",
            "--name",
            "f",
            "--max-input",
            "100MiB",
            &guest("hello"),
        ],
        "max_input is over the maximum of 64 MiB for a function that does not stream",
    );
    assert_eq!(get(&server.function_url("default", "f")).status, 404);
}

#[test]
fn shutdown_finishes_streamed_responses_in_flight_and_keeps_their_usage() {
    let home = Home::new();
    let mut server = home.start(&[]);
    server.ok(&["deploy", "--name", "relay", "--stream", &guest("relay")]);
    server.ok(&["deploy", "--name", "echo", &http_guest("echo-http")]);

    // A streamed command, blocked on the second half of its input...
    let mut relay = connect(&server);
    relay
        .write_all(
            b"POST /fn/default/relay HTTP/1.1\r\nHost: kiln\r\nContent-Length: 10\r\n\r\nhello",
        )
        .expect("half the body");
    let mut relay_reader = BufReader::new(relay.try_clone().expect("clone"));
    assert_eq!(read_head(&mut relay_reader).0, 200);
    assert_eq!(
        read_chunk(&mut relay_reader).as_deref(),
        Some(&b"first line\n"[..])
    );
    // ...and a wasi:http echo, blocked on the rest of its body.
    let mut echo = connect(&server);
    echo.write_all(b"POST /fn/default/echo HTTP/1.1\r\nHost: kiln\r\nContent-Length: 6\r\n\r\nabc")
        .expect("half the body");
    let mut echo_reader = BufReader::new(echo.try_clone().expect("clone"));
    assert_eq!(read_head(&mut echo_reader).0, 200);

    server.signal(libc::SIGTERM);
    relay.write_all(b"world").expect("the rest, after SIGTERM");
    echo.write_all(b"def").expect("the rest, after SIGTERM");
    let mut relayed = Vec::new();
    while let Some(chunk) = read_chunk(&mut relay_reader) {
        relayed.extend(chunk);
    }
    assert_eq!(
        String::from_utf8_lossy(&relayed),
        "then 10 bytes: helloworld\n"
    );
    let mut echoed = Vec::new();
    while let Some(chunk) = read_chunk(&mut echo_reader) {
        echoed.extend(chunk);
    }
    assert_eq!(echoed, b"abcdef");
    assert!(server.wait().success());

    // Both were settled before the final flush: their usage is stored.
    let server = home.start(&[]);
    let answer = get_as(
        &format!("{}/v1/usage?by=function", server.url),
        &home.token(),
    );
    let report: serde_json::Value = serde_json::from_str(&answer.body).expect("usage JSON");
    let units = &report["total"]["units"];
    assert_eq!(units["requests"], 2, "{report}");
    assert_eq!(units["bytes_in"], 16, "{report}");
    assert_eq!(units["bytes_out"], 26 + 11 + 6, "{report}");
}

/// An upstream answering a redirect to `location`.
fn redirector(location: String) -> u16 {
    let response = format!(
        "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    serving(response.into_bytes()).0
}

#[test]
fn an_allowed_name_that_resolves_to_a_private_address_is_not_reached() {
    let (port, hits) = upstream();
    let home = Home::new();
    let server = home.start(&[]);
    // The allow-list names the host: `localhost` resolves to loopback, as a
    // rebinding name would; 127.0.0.1 and the metadata address are literal.
    server.ok(&[
        "deploy",
        "--name",
        "fetch",
        "--allow-host",
        &format!("localhost:{port}"),
        "--allow-host",
        &format!("127.0.0.1:{port}"),
        "--allow-host",
        "169.254.169.254",
        &http_guest("fetch"),
    ]);
    let url = server.function_url("default", "fetch");
    let fetch = |target: &str| answer(http().get(&url).header("x-fetch-url", target).call());
    for target in [
        format!("http://localhost:{port}/"),
        format!("http://127.0.0.1:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ] {
        let refused = fetch(&target);
        assert_eq!(refused.status, 502, "{target}: {}", refused.body);
        assert_eq!(
            refused.body, "outbound request failed: ErrorCode::DestinationIpProhibited\n",
            "{target}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let entry = eventually("the refusal in the log", || {
        logs(&server, &home.token(), "fetch").into_iter().find(|e| {
            e["stderr"]
                .as_str()
                .is_some_and(|s| s.contains("localhost"))
        })
    });
    let said = entry["stderr"].as_str().unwrap_or("");
    assert!(
        said.contains(&format!(
            "outbound request to localhost:{port} denied: it resolves to "
        )) && said.contains("which is not a public address"),
        "{entry}"
    );
    drop(server);

    // The operator opens loopback: the same name now reaches it. A redirect
    // to a host the function may not call is answered, not followed.
    let (other, other_hits) = upstream();
    let bounce = redirector(format!("http://127.0.0.1:{other}/"));
    let server = home.start(&["--outbound-allow-net", "127.0.0.0/8"]);
    server.ok(&[
        "deploy",
        "--name",
        "fetch",
        "--allow-host",
        &format!("localhost:{port}"),
        "--allow-host",
        &format!("localhost:{bounce}"),
        &http_guest("fetch"),
    ]);
    let url = server.function_url("default", "fetch");
    let fetch = |target: &str| answer(http().get(&url).header("x-fetch-url", target).call());
    let ok = fetch(&format!("http://localhost:{port}/ping"));
    assert_eq!(
        (ok.status, ok.body.as_str()),
        (200, "upstream status 200\npong\n")
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let redirected = fetch(&format!("http://localhost:{bounce}/"));
    assert_eq!(redirected.status, 200, "{}", redirected.body);
    assert!(
        redirected.body.starts_with("upstream status 302"),
        "{}",
        redirected.body
    );
    assert_eq!(other_hits.load(Ordering::SeqCst), 0);
}
