//! Burns CPU for the number of milliseconds given on stdin (default 100): a busy
//! loop that checks the monotonic clock, never sleeping. For metering tests.

use std::io::Read;
use std::time::{Duration, Instant};

fn main() {
    let mut input = String::new();
    let _ = std::io::stdin().read_to_string(&mut input);
    let ms: u64 = input.trim().parse().unwrap_or(100);
    let until = Instant::now() + Duration::from_millis(ms);
    let mut n: u64 = 0;
    while Instant::now() < until {
        for _ in 0..1000 {
            n = std::hint::black_box(n.wrapping_mul(31).wrapping_add(7));
        }
    }
    println!("burned {ms} ms");
}
