//! The guest examples of `examples/`, built on demand for tests and benchmarks: for
//! `wasm32-wasip1` (core modules, [`path`]) and for `wasm32-wasip2` (WASI 0.2
//! command components, [`component`]); and the wasi:http components of
//! `examples/http/`, for `wasm32-wasip2` only ([`http_component`]).
//!
//! Each target is built once per process (a no-op when nothing changed: cargo's own
//! freshness check) into `target/guests`, a target directory of its own so that it
//! never waits on the lock of the build that is running the tests.
//!
//! [`services`] starts the throwaway PostgreSQL and S3 server the cluster tests use;
//! [`kiln_up`] starts a real `kiln up` and reads where it listens.

pub mod browser;
pub mod kiln_up;
pub mod services;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The wasm32 target of the core-module examples.
pub const TARGET: &str = "wasm32-wasip1";
/// The wasm32 target of the component examples.
pub const COMPONENT_TARGET: &str = "wasm32-wasip2";

/// The repository root.
pub fn repo_root() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .ancestors()
        .nth(2)
        .unwrap_or(crate_dir)
        .to_path_buf()
}

/// Path to the built guest `name` (e.g. `"hello"`, `"spin"`), building the examples
/// first if this process has not yet. Panics with cargo's output if the build fails:
/// this is test support, and a test cannot go on without its guest.
pub fn path(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    built(&BUILT, TARGET, name)
}

/// Path to the guest `name` built for `wasm32-wasip2`: a `wasi:cli/command`
/// component. Builds like [`path`].
pub fn component(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    built(&BUILT, COMPONENT_TARGET, name)
}

/// Path to the wasi:http component `name` of `examples/http/` (e.g.
/// `"echo-http"`), built for `wasm32-wasip2` like [`path`].
pub fn http_component(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    // Libraries (cdylib) are named with underscores.
    built_from(&BUILT, "http", COMPONENT_TARGET, &name.replace('-', "_"))
}

/// The examples of `examples/state/`: `"counter"`, a core module importing
/// `kiln_kv` (built for `wasm32-wasip1`); `"counter-component"`, a component
/// importing `wasi:keyvalue`, and `"show-config"`, one reading `wasi:config`
/// (built for `wasm32-wasip2`).
pub fn state_example(name: &str) -> PathBuf {
    static CORE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static COMPONENT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let (cell, target, packages) = match name {
        "counter" => (&CORE, TARGET, &["counter"][..]),
        _ => (
            &COMPONENT,
            COMPONENT_TARGET,
            &["counter-component", "show-config"][..],
        ),
    };
    let dir = match cell.get_or_init(|| build_package("state", target, packages)) {
        Ok(dir) => dir,
        Err(message) => panic!("cannot build the state examples:\n{message}"),
    };
    dir.join(format!("{name}.wasm"))
}

/// Compiles `examples/c/<name>.c` with Debian's clang 14 and wasi-libc into
/// `out_dir`, as the README says; where clang 14 is missing, `scripts/runtimes`
/// installs it first (as it does for `scripts/test`). Panics with clang's
/// output if it fails.
pub fn c_example(name: &str, out_dir: &Path) -> PathBuf {
    let out = out_dir.join(format!("{name}.wasm"));
    let source = repo_root()
        .join("examples")
        .join("c")
        .join(format!("{name}.c"));
    let compile = || {
        Command::new("clang-14")
            .args(["--target=wasm32-wasi", "-O2", "-o"])
            .arg(&out)
            .arg(&source)
            .output()
    };
    let built = match compile() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            runtimes();
            compile()
        }
        attempt => attempt,
    }
    .unwrap_or_else(|e| panic!("cannot run clang-14 (scripts/runtimes installs it): {e}"));
    assert!(
        built.status.success(),
        "clang-14 failed on {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&built.stderr)
    );
    out
}

fn built(cell: &OnceLock<Result<PathBuf, String>>, target: &str, name: &str) -> PathBuf {
    built_from(cell, ".", target, name)
}

fn built_from(
    cell: &OnceLock<Result<PathBuf, String>>,
    workspace: &str,
    target: &str,
    name: &str,
) -> PathBuf {
    let dir = match cell.get_or_init(|| build_workspace(workspace, target)) {
        Ok(dir) => dir,
        Err(message) => panic!("cannot build the guest examples:\n{message}"),
    };
    let wasm = dir.join(format!("{name}.wasm"));
    assert!(
        wasm.is_file(),
        "no guest named {name:?} at {}",
        wasm.display()
    );
    wasm
}

/// The language runtimes (`js.wasm`, `python.wasm`, `python/`), built once per
/// process by `scripts/runtimes` into `target/runtimes` (fast when nothing
/// changed): the directory to give `kiln up --runtimes`. Panics with the
/// script's output if the build fails.
pub fn runtimes() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let root = repo_root();
        let out = root.join("target").join("runtimes");
        let output = Command::new(root.join("scripts").join("runtimes"))
            .arg(&out)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .output()
            .map_err(|e| format!("cannot run scripts/runtimes: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(out)
    });
    match built {
        Ok(dir) => dir.clone(),
        Err(message) => panic!("cannot build the language runtimes:\n{message}"),
    }
}

/// The components the standard toolchains build (`scripts/toolchains`:
/// componentize-py's `py-cli.wasm` and `py-http.wasm`, componentize-js's
/// `js-http.wasm`), built once per process; the directory holding them.
pub fn toolchains() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let output = Command::new(repo_root().join("scripts").join("toolchains"))
            .output()
            .map_err(|e| format!("cannot run scripts/toolchains: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(PathBuf::from(
            String::from_utf8_lossy(&output.stdout).trim(),
        ))
    });
    match built {
        Ok(dir) => dir.clone(),
        Err(message) => panic!("scripts/toolchains failed:\n{message}"),
    }
}

/// Builds every example for `target`; returns the directory holding the `.wasm` files.
pub fn build(target: &str) -> Result<PathBuf, String> {
    build_workspace(".", target)
}

/// Builds the examples workspace `examples/<workspace>` for `target`.
fn build_workspace(workspace: &str, target: &str) -> Result<PathBuf, String> {
    build_package(workspace, target, &[])
}

/// Builds `packages` of the examples workspace `examples/<workspace>` (all of
/// them when empty) for `target`.
fn build_package(workspace: &str, target: &str, packages: &[&str]) -> Result<PathBuf, String> {
    let root = repo_root();
    let target_dir = root.join("target").join("guests");
    let attempt = || {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command.args(["build", "--release", "--quiet", "--target", target]);
        for package in packages {
            command.args(["--package", package]);
        }
        command
            .arg("--manifest-path")
            .arg(root.join("examples").join(workspace).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            // Flags meant for the host build (coverage, sanitizers) would break a
            // wasm build.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))
    };
    let mut output = attempt()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && stderr.contains("target may not be installed") {
        let added = Command::new("rustup")
            .args(["target", "add", target])
            .status()
            .map_err(|e| format!("cannot run rustup to add {target}: {e}"))?;
        if !added.success() {
            return Err(format!("`rustup target add {target}` failed"));
        }
        output = attempt()?;
    }
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(target_dir.join(target).join("release"))
}
