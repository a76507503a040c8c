//! Grows its linear memory to exactly the number of MiB given on stdin (default
//! 64), touches the last page, and exits. For metering tests. It prints first: an
//! allocation after growing could make the allocator grow memory further.

use std::io::{Read, Write};

const PAGE: usize = 64 * 1024;

fn main() {
    let mut input = String::new();
    let _ = std::io::stdin().read_to_string(&mut input);
    let mib: usize = input.trim().parse().unwrap_or(64);
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "growing to {mib} MiB");
    let _ = stdout.flush();
    let want = mib * (1 << 20) / PAGE;
    let have = core::arch::wasm32::memory_size(0);
    if want > have && core::arch::wasm32::memory_grow(0, want - have) == usize::MAX {
        std::process::exit(1);
    }
    let last = (want * PAGE - 1) as *mut u8;
    // SAFETY: the byte is inside the memory just grown, which nothing else uses.
    unsafe { last.write_volatile(1) };
}
