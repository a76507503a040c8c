//! Writes to stdout forever, until the output limit stops it.

use std::io::Write;

fn main() {
    let line = [b'x'; 4096];
    let mut out = std::io::stdout().lock();
    loop {
        if out.write_all(&line).is_err() {
            // Under Kiln the write that crosses the limit traps; should a host
            // report an error instead, stop here.
            std::process::exit(1);
        }
    }
}
