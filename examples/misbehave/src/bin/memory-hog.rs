//! Allocates 1 MiB at a time and keeps all of it, until the memory limit stops it.

fn main() {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        kept.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&kept);
    }
}
