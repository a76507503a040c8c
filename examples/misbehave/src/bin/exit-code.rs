//! Answers through its exit status, as SAT solvers (10, 20) and `grep` (1) do:
//! reads a number N from stdin, prints `exiting with N` on stdout and a note on
//! stderr, and exits with N.

use std::io::Read;

fn main() {
    let mut input = String::new();
    let _ = std::io::stdin().read_to_string(&mut input);
    let code: i32 = input.trim().parse().unwrap_or(0);
    println!("exiting with {code}");
    eprintln!("exit-code: status {code} on purpose");
    std::process::exit(code);
}
