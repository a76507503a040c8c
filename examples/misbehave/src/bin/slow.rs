//! Sleeps for the number of milliseconds given on stdin (else in `SLEEP_MS`,
//! else 500), then says so. Sleeping is a WASI `poll_oneoff` on a clock: wall
//! time, not CPU.

use std::io::Read;

fn main() {
    let mut input = String::new();
    let _ = std::io::stdin().read_to_string(&mut input);
    let ms: u64 = input
        .trim()
        .parse()
        .ok()
        .or_else(|| std::env::var("SLEEP_MS").ok()?.parse().ok())
        .unwrap_or(500);
    std::thread::sleep(std::time::Duration::from_millis(ms));
    println!("slept {ms} ms");
}
