//! The standard component toolchains, as their users build with them: a
//! `wasi:cli/command` and a `wasi:http/proxy` component from componentize-py
//! (PyPI) and a `wasi:http/proxy` component from componentize-js (npm), built by
//! `scripts/toolchains` from `crates/kiln/tests/toolchains/`, deployed to Kiln
//! unchanged and called. Part of the real-program lane: the builds take minutes
//! the first time.

use crate::support::*;

/// Where `scripts/toolchains` left the components (built once per process).
fn built(name: &str) -> String {
    kiln_guests::toolchains().join(name).display().to_string()
}

/// A server whose compile-time limit leaves room for a debug build compiling
/// 13–18 MiB components while the lane's other tests compile beside it (the
/// limit is not what these tests check: `hostile::` tests do).
fn serve(home: &Home) -> KilnServer {
    home.start(&["--compile-timeout", "10m"])
}

fn deploy(server: &KilnServer, args: &[&str]) {
    let out = server.cli(&[&["deploy"], args].concat(), &[], b"");
    assert!(
        out.status.success(),
        "deploy {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "real-program lane: scripts/test --realworld"]
fn componentize_py_command_and_http_components_serve_unchanged() {
    let home = Home::new();
    let server = serve(&home);
    deploy(&server, &["--name", "pycli", &built("py-cli.wasm")]);
    deploy(&server, &["--name", "pyhttp", &built("py-http.wasm")]);
    let cli = post(&server.function_url("default", "pycli"), "Kiln");
    assert_eq!(
        (cli.status, cli.body.as_str()),
        (200, "Hello, Kiln! (componentize-py command)\n")
    );
    let url = server.function_url("default", "pyhttp");
    let http = get(&format!("{url}/a/b?c=d"));
    assert_eq!(http.status, 200, "{}", http.body);
    assert_eq!(http.header("content-type"), Some("text/plain"));
    assert_eq!(http.body, "Hello from componentize-py at /a/b?c=d\n");
}

#[test]
#[ignore = "real-program lane: scripts/test --realworld"]
fn a_componentize_js_http_component_serves_unchanged() {
    let home = Home::new();
    let server = serve(&home);
    deploy(&server, &["--name", "jshttp", &built("js-http.wasm")]);
    let url = server.function_url("default", "jshttp");
    let http = get(&format!("{url}/x"));
    assert_eq!(http.status, 200, "{}", http.body);
    assert_eq!(http.body, "Hello from componentize-js at /x\n");
}
