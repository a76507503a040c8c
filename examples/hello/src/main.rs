//! The hello function: reads its request body from stdin, answers `Hello, <body>!`.
//!
//! ```text
//! $ echo world | kiln run hello.wasm
//! Hello, world!
//! ```

use std::io::Read;

fn main() {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("hello: cannot read the request body: {e}");
        std::process::exit(1);
    }
    println!("Hello, {}!", input.trim());
}
