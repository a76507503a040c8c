//! A module that asks to be initialized at deploy: it exports `wizer-initialize`,
//! which Kiln runs once when the module is deployed, then snapshots. Here the
//! initializer sieves the primes below a million (and reads a file of the
//! function's mounts, if it has one); every request starts from that state and
//! only looks them up.

use std::io::Read;
use std::sync::OnceLock;

/// Filled at deploy, by `wizer-initialize`; read by every request.
static PRIMES: OnceLock<Vec<u32>> = OnceLock::new();
/// The first line of `/data/motto.txt` at deploy, if the function mounts one.
static MOTTO: OnceLock<String> = OnceLock::new();

const LIMIT: usize = 1_000_000;

#[unsafe(export_name = "wizer-initialize")]
pub extern "C" fn initialize() {
    let mut composite = vec![false; LIMIT];
    let mut primes = Vec::new();
    for n in 2..LIMIT {
        if !composite[n] {
            primes.push(n as u32);
            // n * n would overflow a 32-bit usize past 65,535; past 1,000 it is
            // over the limit anyway.
            if n <= LIMIT / n {
                for multiple in (n * n..LIMIT).step_by(n) {
                    composite[multiple] = true;
                }
            }
        }
    }
    let _ = PRIMES.set(primes);
    if let Ok(motto) = std::fs::read_to_string("/data/motto.txt") {
        let _ = MOTTO.set(motto.lines().next().unwrap_or_default().to_owned());
    }
}

fn main() {
    let mut input = String::new();
    // An unreadable body counts as empty.
    let _ = std::io::stdin().read_to_string(&mut input);
    let Some(primes) = PRIMES.get() else {
        println!("not initialized");
        return;
    };
    let n: u32 = input.trim().parse().unwrap_or(100);
    let below = primes.partition_point(|&p| p < n);
    println!("initialized at deploy: {below} primes below {n}");
    if let Some(motto) = MOTTO.get() {
        println!("motto: {motto}");
    }
}
