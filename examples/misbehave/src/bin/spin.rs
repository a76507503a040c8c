//! Never returns: a busy loop that only a wall-time limit can stop.

fn main() {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
