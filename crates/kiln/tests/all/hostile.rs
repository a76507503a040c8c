//! Hostile clients against a real `kiln up`, over raw sockets: slow senders
//! (slowloris), clients that never read, oversized heads and bodies, more
//! connections than the server takes, modules that are expensive to compile, and a
//! tenant burning every core. Each is cut off with a clear answer while everyone
//! else keeps being served.

use crate::support::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

fn connect(server: &KilnServer) -> TcpStream {
    let stream = TcpStream::connect(server.url.trim_start_matches("http://")).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream
}

/// Everything the server sends until it closes the connection. Fails if it is
/// still open at the deadline.
fn until_closed(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 64 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// One response's head and body, read by its Content-Length; the connection
/// stays usable.
fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("response head");
        assert_eq!(n, 1, "connection closed in a response head: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().expect("length"))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("response body");
    (
        status_of(&head),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

fn status(server: &KilnServer, home: &Home) -> serde_json::Value {
    let answer = get_as(&format!("{}/v1/status", server.url), &home.admin_token());
    assert_eq!(answer.status, 200, "{}", answer.body);
    serde_json::from_str(&answer.body).expect("status JSON")
}

#[test]
fn slow_clients_are_cut_off_at_the_header_and_body_timeouts() {
    let home = Home::new();
    let server = home.start(&["--header-timeout", "300ms", "--body-timeout", "300ms"]);
    server.ok(&["deploy", &guest("hello")]);
    let path = "/fn/default/hello";

    // Connects and sends nothing.
    let mut silent = connect(&server);
    // Sends half a request head, then nothing.
    let mut half = connect(&server);
    half.write_all(format!("POST {path} HTTP/1.1\r\nHost: k\r\nX-Slow: ").as_bytes())
        .expect("write");
    // Starts an HTTP/2 preface and stops.
    let mut preface = connect(&server);
    preface.write_all(b"PRI * HTTP/2.0\r\n").expect("write");
    // Sends a whole request, reads the answer, then idles on the keep-alive.
    let mut idle = connect(&server);
    idle.write_all(
        format!("POST {path} HTTP/1.1\r\nHost: k\r\nContent-Length: 5\r\n\r\nworld").as_bytes(),
    )
    .expect("write");
    assert_eq!(read_response(&mut idle), (200, "Hello, world!\n".into()));
    // Sends a head announcing 100 bytes of body, then 10 of them, then nothing.
    let mut trickle = connect(&server);
    trickle
        .write_all(
            format!("POST {path} HTTP/1.1\r\nHost: k\r\nContent-Length: 100\r\n\r\n0123456789")
                .as_bytes(),
        )
        .expect("write");

    for stream in [&mut silent, &mut half, &mut preface, &mut idle] {
        let rest = until_closed(stream);
        assert!(rest.is_empty() || status_of(&rest) == 408, "{rest}");
    }
    let answer = until_closed(&mut trickle);
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(answer.contains("kiln-outcome: request-timeout"), "{answer}");
    assert!(
        answer.contains("no request body data for 300ms"),
        "{answer}"
    );

    // Nobody else noticed; the stalled request was never invoked.
    assert_eq!(
        post(&server.function_url("default", "hello"), "again").body,
        "Hello, again!\n"
    );
    eventually("both invocations in the log", || {
        let logs = server.ok(&["logs", "hello"]);
        (logs.matches("exited successfully").count() == 2).then_some(())
    });
    let logs = server.ok(&["logs", "hello"]);
    assert_eq!(
        logs.lines().filter(|l| l.contains(" v1 ")).count(),
        2,
        "{logs}"
    );
}

#[test]
fn oversized_heads_get_431_and_oversized_bodies_413_before_they_are_sent() {
    let home = Home::new();
    let server = home.start(&["--max-header-size", "8KiB"]);
    server.ok(&["deploy", &guest("hello"), "--max-input", "1KiB"]);
    let path = "/fn/default/hello";

    let mut big_header = connect(&server);
    let filler = "x".repeat(16 << 10);
    big_header
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: k\r\nX-Big: {filler}\r\n\r\n").as_bytes())
        .expect("write");
    assert_eq!(status_of(&until_closed(&mut big_header)), 431);

    let mut many_headers = connect(&server);
    let headers: String = (0..150).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    many_headers
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: k\r\n{headers}\r\n").as_bytes())
        .expect("write");
    assert_eq!(status_of(&until_closed(&mut many_headers)), 431);

    // A head announcing a body over the function's input limit is answered at
    // once: not one byte of the body has been sent.
    let mut huge = connect(&server);
    huge.write_all(
        format!("POST {path} HTTP/1.1\r\nHost: k\r\nContent-Length: 1073741824\r\n\r\n").as_bytes(),
    )
    .expect("write");
    let (status, body) = read_response(&mut huge);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("1 KiB"), "{body}");

    assert_eq!(
        post(&server.function_url("default", "hello"), "k").status,
        200
    );
}

#[test]
fn connections_past_the_limit_get_503_until_one_closes() {
    let home = Home::new();
    let server = home.start(&["--max-connections", "2"]);
    server.ok(&["deploy", &guest("hello")]);
    let request = "POST /fn/default/hello HTTP/1.1\r\nHost: k\r\nContent-Length: 1\r\n\r\nk";

    // The deploy's own connection holds a slot until the server has seen it
    // close: each of the two is served once that has happened.
    let served_within_the_limit = |what| {
        eventually(what, || {
            let mut stream = connect(&server);
            stream.write_all(request.as_bytes()).ok()?;
            let mut head = [0u8; 12];
            loop {
                match stream.peek(&mut head).ok()? {
                    0 => return None,
                    n if n >= head.len() => break,
                    _ => {}
                }
            }
            if status_of(&String::from_utf8_lossy(&head)) != 200 {
                return None;
            }
            assert_eq!(read_response(&mut stream).0, 200);
            Some(stream)
        })
    };
    let first = served_within_the_limit("a first connection served");
    let mut second = served_within_the_limit("a second connection served");
    let mut third = connect(&server);
    let refused = until_closed(&mut third);
    assert_eq!(status_of(&refused), 503, "{refused}");
    assert!(
        refused.contains("too many connections (limit 2)"),
        "{refused}"
    );

    drop(first);
    let served = eventually("a free connection slot", || {
        let mut next = connect(&server);
        next.write_all(request.as_bytes()).ok()?;
        let mut head = [0u8; 12];
        next.read_exact(&mut head).ok()?;
        (status_of(&String::from_utf8_lossy(&head)) == 200).then_some(next)
    });
    drop(served);
    second.write_all(request.as_bytes()).expect("write");
    assert_eq!(read_response(&mut second).0, 200);
}

#[test]
fn a_client_that_stops_reading_is_disconnected_at_the_send_timeout() {
    let home = Home::new();
    let server = home.start(&["--send-timeout", "300ms"]);
    server.ok(&[
        "deploy",
        &guest("stdout-flood"),
        "--stream",
        "--max-output",
        "4GiB",
        "--timeout",
        "10m",
    ]);
    let mut reader = connect(&server);
    reader
        .write_all(
            b"POST /fn/default/stdout-flood HTTP/1.1\r\nHost: k\r\nContent-Length: 0\r\n\r\n",
        )
        .expect("write");
    // The guest writes until the socket is full, then the server gives up on the
    // client: the invocation ends and the connection is closed.
    eventually("the stalled connection to be closed", || {
        let now = status(&server, &home);
        (now["connections"] == 1 && now["in_flight"] == 0).then_some(())
    });
    let received = until_closed(&mut reader);
    assert!(
        received.starts_with("HTTP/1.1 200"),
        "{}",
        &received[..received.len().min(200)]
    );
    let logs = eventually("the invocation in the log", || {
        let logs = server.ok(&["logs", "stdout-flood"]);
        logs.contains(" v1 ").then_some(logs)
    });
    assert!(!logs.contains("exited successfully"), "{logs}");
}

#[test]
fn a_module_too_expensive_to_compile_is_refused_at_the_compile_time_limit() {
    let home = Home::new();
    let server = home.start(&["--compile-timeout", "5s"]);
    server.ok(&["deploy", &guest("hello")]);
    // 400,000 empty functions: 1.6 MiB that keep Cranelift busy for longer
    // than its limit, 5 s + 1 s for its one whole MiB. (40,000 once sufficed;
    // an optimized Cranelift on a faster machine compiles them in 2 s.)
    let functions = "(func)".repeat(400_000);
    let bomb = wat::parse_str(format!(
        r#"(module (memory (export "memory") 1) {functions} (func (export "_start")))"#
    ))
    .expect("wat");
    let path = home.dir.path().join("bomb.wasm");
    std::fs::write(&path, &bomb).expect("write");

    let out = server.cli(&["deploy", &path.display().to_string()], &[], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(
        err.trim(),
        "kiln: module is too expensive to compile: it took longer than the compile-time limit of 6s (422)"
    );
    // Nothing stored, and the server goes on serving.
    let listed: serde_json::Value =
        serde_json::from_str(&server.ok(&["list", "--json"])).expect("list JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let modules = home.data().join("modules");
    assert_eq!(files_in(&modules).len(), 1, "{:?}", files_in(&modules));
    let hello = post(&server.function_url("default", "hello"), "");
    assert_eq!(hello.status, 200, "{}", hello.body);
}

#[test]
fn every_hello_is_served_while_another_tenant_burns_every_core() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let home = Home::new();
    // The shares divide one core: the hog, at its limit, always wants more
    // than the whole of it, however busy the machine running the test.
    let server = home.start(&["--cpu-cores", "1"]);
    server.ok(&["deploy", &guest("hello")]);
    let hog = server.ok(&["tenants", "create", "hog"]).trim().to_owned();
    let deployed = server.cli(&["deploy", &guest("burn")], &[("KILN_TOKEN", &hog)], b"");
    assert!(deployed.status.success());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let limit = 2 * cores;
    server.ok(&["quota", "hog", "--max-concurrent", &limit.to_string()]);

    // More hog clients than its limit: it is always at the limit, every core busy.
    let stop = Arc::new(AtomicBool::new(false));
    let (burned, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let burn = server.function_url("hog", "burn");
    let hogs: Vec<_> = (0..limit + 2)
        .map(|_| {
            let (stop, burned, refused, url) =
                (stop.clone(), burned.clone(), refused.clone(), burn.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let answer = post(&url, "30");
                    match answer.status {
                        200 => burned.fetch_add(1, Ordering::Relaxed),
                        429 => {
                            let expected =
                                format!("concurrency limit reached: {limit} instances at once\n");
                            assert_eq!(answer.body, expected);
                            refused.fetch_add(1, Ordering::Relaxed)
                        }
                        other => panic!("hog got {other}: {}", answer.body),
                    };
                }
            })
        })
        .collect();
    eventually("the hog at its limit", || {
        let status = status(&server, &home);
        (status["active_instances"].as_u64() == Some(limit as u64)).then_some(())
    });

    // Hello is served while the hog, over its share of CPU beside it, is
    // delayed at its epoch ticks (and never failed: every hog call above is a
    // 200 or a 429 of its concurrency limit).
    let hello = server.function_url("default", "hello");
    let delays = || metric(&metrics(&server, &home), "kiln_cpu_share_delays_total");
    let before = delays();
    let mut i = 0;
    eventually("the hog delayed for its share of CPU", || {
        let answer = post(&hello, &i.to_string());
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, format!("Hello, {i}!\n").as_str()),
            "request {i} beside the hog"
        );
        i += 1;
        (i >= 100 && delays() > before).then_some(())
    });
    // What the shares divide: some, and never more than `--cpu-cores`.
    let capacity = metric(&metrics(&server, &home), "kiln_cpu_share_capacity_cores");
    assert!(
        capacity > 0.0 && capacity <= 1.0,
        "capacity {capacity} with --cpu-cores 1"
    );
    stop.store(true, Ordering::Relaxed);
    for hog in hogs {
        hog.join().expect("hog client");
    }
    assert!(burned.load(Ordering::Relaxed) > 0, "the hog never ran");
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "the hog never hit its limit"
    );
}
