//! Prints its arguments and environment, one per line: what a function sees of its
//! invocation (`ARG n=...`, then `ENV K=V` in the order given). Given the argument
//! `--stderr`, it prints them to stderr instead: what an invocation's log keeps
//! (a scheduled run has no client to read its stdout).

use std::io::Write;

fn main() {
    let to_stderr = std::env::args().any(|arg| arg == "--stderr");
    let mut out: Box<dyn Write> = match to_stderr {
        true => Box::new(std::io::stderr()),
        false => Box::new(std::io::stdout().lock()),
    };
    for (i, arg) in std::env::args().enumerate() {
        let _ = writeln!(out, "ARG {i}={arg}");
    }
    for (key, value) in std::env::vars() {
        let _ = writeln!(out, "ENV {key}={value}");
    }
}
