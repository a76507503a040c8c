//! Copies stdin to stdout byte for byte. Deployed with `--cgi`, whatever a client
//! sends becomes the function's CGI output: for fuzzing the CGI parser end to end.

use std::io::{Read, Write};

fn main() {
    let mut input = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut input);
    let _ = std::io::stdout().write_all(&input);
}
