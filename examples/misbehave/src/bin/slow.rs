//! Sleeps for the number of milliseconds given on stdin (default 500), then says so.
//! Sleeping is a WASI `poll_oneoff` on a clock: wall time, not CPU.

use std::io::Read;

fn main() {
    let mut input = String::new();
    let _ = std::io::stdin().read_to_string(&mut input);
    let ms: u64 = input.trim().parse().unwrap_or(500);
    std::thread::sleep(std::time::Duration::from_millis(ms));
    println!("slept {ms} ms");
}
