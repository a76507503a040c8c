//! The project's throwaway services for tests (`scripts/services/`): a
//! PostgreSQL and an S3-compatible server (Garage) on loopback, each started on first use
//! (the scripts are safe to run many times, and at once), and a fresh database or
//! bucket for each caller.

use std::process::{Command, Stdio};

/// The S3 key `scripts/services/s3` gives its clients (a throwaway server on
/// loopback; the script holds the same two values).
pub const S3_ACCESS_KEY_ID: &str = "GK6b696c6e2d746573742d6b65";
pub const S3_SECRET_ACCESS_KEY: &str =
    "6b696c6e2d746573742d7365637265742d6f6e6c792d666f722d6c6f6f706261";
use std::sync::atomic::{AtomicU32, Ordering};

/// A name no other caller of this process or another has: `prefix`, the pid,
/// a counter, joined by `separator`.
fn unique(prefix: &str, separator: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{separator}{}{separator}{n}", std::process::id())
}

/// Runs `scripts/services/NAME ARGS...` (with `env` set) and returns what it
/// printed (a URL). Panics with the script's failure: a test cannot go on
/// without its service.
pub fn service(name: &str, env: &[(&str, &str)], args: &[&str]) -> String {
    let script = crate::repo_root().join("scripts/services").join(name);
    let out = Command::new(&script)
        .envs(env.iter().copied())
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(out.status.success(), "{} failed", script.display());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The URL of a new, empty database on the test PostgreSQL.
pub fn postgres_database(prefix: &str) -> String {
    service("postgres", &[], &["database", &unique(prefix, "_")])
}

/// A new, empty bucket on the test S3 server: (endpoint URL, bucket name).
pub fn s3_bucket(prefix: &str) -> (String, String) {
    let bucket = unique(prefix, "-");
    let endpoint = service("s3", &[], &["bucket", &bucket]);
    (endpoint, bucket)
}
