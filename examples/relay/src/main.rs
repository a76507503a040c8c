//! A streaming command: prints a first line at once, then reads stdin to its end
//! and prints what it read. Deployed with `--stream`, the client receives the first
//! line while it is still sending the body; with the argument `cgi` it prints CGI
//! headers first (for `--cgi`).

use std::io::{Read, Write};

fn main() {
    let mut stdout = std::io::stdout().lock();
    if std::env::args().any(|a| a == "cgi") {
        stdout
            .write_all(b"Status: 201 Created\r\nContent-Type: text/plain\r\nX-Relay: yes\r\n\r\n")
            .expect("stdout");
    }
    stdout.write_all(b"first line\n").expect("stdout");
    stdout.flush().expect("stdout");
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).expect("stdin");
    writeln!(stdout, "then {} bytes: {}", input.len(), String::from_utf8_lossy(&input))
        .expect("stdout");
}
