//! Prints its configuration as `wasi:config/store` gives it, one `KEY=VALUE`
//! line per pair, sorted; with a request body, prints only that key's value
//! (or `absent`). A WASI 0.2 command component.
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p show-config
//! kiln deploy target/wasm32-wasip2/release/show-config.wasm --env GREETING=hi --secret API_KEY
//! ```

use std::io::Read;
use std::process::ExitCode;

wit_bindgen::generate!({
    path: "../wit/config",
    world: "wasi:config/imports",
    generate_all,
});

use wasi::config::store;

fn main() -> ExitCode {
    let mut key = String::new();
    if std::io::stdin().read_to_string(&mut key).is_err() {
        return ExitCode::FAILURE;
    }
    let key = key.trim();
    if !key.is_empty() {
        match store::get(key) {
            Ok(Some(value)) => println!("{value}"),
            Ok(None) => println!("absent"),
            Err(e) => {
                eprintln!("wasi:config failed: {e:?}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    match store::get_all() {
        Ok(mut pairs) => {
            pairs.sort();
            for (k, v) in pairs {
                println!("{k}={v}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wasi:config failed: {e:?}");
            ExitCode::FAILURE
        }
    }
}
