//! Counts its requests: adds one to `hits` (or to the key the request path
//! names) in the bucket `counter`, and prints the total. A WASI 0.2 command
//! component importing `wasi:keyvalue` (bindings made by wit-bindgen from
//! the WIT Kiln serves).
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p counter-component  # in examples/state
//! kiln deploy target/wasm32-wasip2/release/counter-component.wasm --kv counter
//! ```

use std::process::ExitCode;

wit_bindgen::generate!({
    path: "../../../crates/runtime/wit/keyvalue",
    world: "wasi:keyvalue/imports",
    generate_all,
});

use wasi::keyvalue::{atomics, store};

fn main() -> ExitCode {
    let path = std::env::var("PATH_INFO").unwrap_or_default();
    let key = match path.trim_matches('/') {
        "" => "hits",
        key => key,
    };
    let bucket = match store::open("counter") {
        Ok(bucket) => bucket,
        Err(e) => {
            eprintln!("cannot open bucket counter: {e:?}");
            return ExitCode::FAILURE;
        }
    };
    match atomics::increment(&bucket, key, 1) {
        Ok(total) => {
            println!("{total}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot increment {key}: {e:?}");
            ExitCode::FAILURE
        }
    }
}
