//! Tries every way out of the sandbox that the standard library offers: the host
//! filesystem (absolute paths, `..`, the working directory), creating files, the
//! network (TCP to the loopback address given on stdin, UDP, name lookup), and the
//! host's environment. Prints one line per attempt: `NAME: refused (ERROR)` when
//! the sandbox stopped it, `NAME: ESCAPED (...)` when it got through; then `env:`
//! and the names of the variables it was given.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};

fn report<T: std::fmt::Debug>(name: &str, attempt: std::io::Result<T>) {
    match attempt {
        Ok(got) => println!("{name}: ESCAPED ({got:?})"),
        Err(e) => println!("{name}: refused ({e})"),
    }
}

fn main() {
    let mut target = String::new();
    let _ = std::io::stdin().read_to_string(&mut target);
    let target = target.trim();

    for path in ["/etc/passwd", "../../../../etc/passwd", "etc/passwd", "/proc/self/environ"] {
        report(&format!("read {path}"), std::fs::read(path).map(|b| b.len()));
    }
    for dir in ["/", ".", "..", "/tmp"] {
        report(
            &format!("list {dir}"),
            std::fs::read_dir(dir).map(|entries| entries.count()),
        );
    }
    report(
        "create /tmp/kiln-escape",
        std::fs::File::create("/tmp/kiln-escape").and_then(|mut f| f.write_all(b"out")),
    );
    report(
        "working directory",
        std::env::current_dir().and_then(std::fs::read_dir).map(|d| d.count()),
    );
    report(&format!("connect {target}"), TcpStream::connect(target));
    report("bind udp", UdpSocket::bind("127.0.0.1:0"));
    report(
        "resolve localhost",
        ("localhost", 80).to_socket_addrs().map(|a| a.count()),
    );

    let names: Vec<String> = std::env::vars_os()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect();
    println!("env: {}", names.join(","));
}
