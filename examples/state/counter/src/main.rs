//! Counts its requests: adds one to `hits` (or to the key the request path
//! names) in the bucket `counter`, and prints the total. A WASI preview 1
//! program that imports Kiln's `kiln_kv` host module directly: no SDK.
//!
//! ```text
//! cargo build --release --target wasm32-wasip1 -p counter  # in examples/state
//! kiln deploy target/wasm32-wasip1/release/counter.wasm --kv counter
//! ```

use std::process::ExitCode;

#[link(wasm_import_module = "kiln_kv")]
unsafe extern "C" {
    /// A handle on bucket `name`, or a negative error code.
    fn open(name: *const u8, name_len: usize) -> i32;
    /// Adds `delta` to the number `key` holds; the sum, or a negative error code.
    fn increment(bucket: i32, key: *const u8, key_len: usize, delta: i64) -> i64;
    /// Copies the last error's message; its length.
    fn error(buf: *mut u8, cap: usize) -> i32;
}

/// The last error's message.
fn last_error() -> String {
    let mut buf = [0u8; 512];
    // SAFETY: the host writes at most `buf.len()` bytes into `buf`.
    let len = unsafe { error(buf.as_mut_ptr(), buf.len()) };
    let len = usize::try_from(len).unwrap_or(0).min(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

fn main() -> ExitCode {
    let path = std::env::var("PATH_INFO").unwrap_or_default();
    let key = match path.trim_matches('/') {
        "" => "hits".to_owned(),
        key => key.to_owned(),
    };
    let bucket = "counter";
    // SAFETY: the pointers and lengths describe live strings.
    let handle = unsafe { open(bucket.as_ptr(), bucket.len()) };
    if handle < 0 {
        eprintln!("cannot open bucket {bucket}: {}", last_error());
        return ExitCode::FAILURE;
    }
    // SAFETY: as above.
    let total = unsafe { increment(handle, key.as_ptr(), key.len(), 1) };
    if total < 0 {
        eprintln!("cannot increment {key}: {}", last_error());
        return ExitCode::FAILURE;
    }
    println!("{total}");
    ExitCode::SUCCESS
}
