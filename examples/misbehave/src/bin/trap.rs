//! Panics, which in WebAssembly aborts with an `unreachable` trap.

fn main() {
    let divisor = std::hint::black_box(0u32);
    if divisor == 0 {
        panic!("trap: dividing by zero on purpose");
    }
}
