//! Burns CPU: the number on stdin (default 100) is how many million rounds of
//! integer arithmetic to do, with no host call in between. Its CPU cost is fixed
//! by the work, not by a clock, so it can be measured once and compared. For
//! metering tests.

use std::io::Read;

fn main() {
    let mut input = String::new();
    let _ = std::io::stdin().read_to_string(&mut input);
    let millions: u64 = input.trim().parse().unwrap_or(100);
    let mut n: u64 = 1;
    for _ in 0..millions * 1_000_000 {
        n = std::hint::black_box(n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
    println!("burned {millions} million rounds ({})", n % 10);
}
