//! `kiln run` and `kiln compile` as a user runs them: the real binary, real guest
//! programs built from `examples/`, stdin piped in, exit codes and output checked.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A `kiln` command with its own artifact cache.
struct Kiln {
    artifacts: tempfile::TempDir,
}

impl Kiln {
    fn new() -> Kiln {
        Kiln {
            artifacts: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .env("KILN_ARTIFACTS", self.artifacts.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kiln");
        let mut pipe = child.stdin.take().expect("stdin");
        // A guest may exit without reading stdin; a broken pipe is fine then.
        let _ = pipe.write_all(stdin);
        drop(pipe);
        child.wait_with_output().expect("wait for kiln")
    }

    fn artifact_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for engine_dir in std::fs::read_dir(self.artifacts.path()).unwrap() {
            for file in std::fs::read_dir(engine_dir.unwrap().path()).unwrap() {
                files.push(file.unwrap().path());
            }
        }
        files
    }
}

fn guest(name: &str) -> String {
    kiln_guests::path(name).display().to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn hello_greets_its_input() {
    let out = Kiln::new().run(&["run", &guest("hello")], b"world\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello, world!\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn the_guest_exit_code_becomes_kiln_exit_code() {
    let out = Kiln::new().run(&["run", &guest("exit3")], b"");
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("exit3: giving up with code 3"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_spinning_guest_stops_at_its_timeout() {
    let out = Kiln::new().run(&["run", "--timeout", "200ms", &guest("spin")], b"");
    assert_eq!(out.status.code(), Some(124));
    assert!(
        stderr(&out).contains("spin.wasm stopped: wall-time limit of 200ms exceeded"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_memory_hog_stops_at_its_memory_limit() {
    let out = Kiln::new().run(&["run", "--memory", "32MiB", &guest("memory-hog")], b"");
    assert_eq!(out.status.code(), Some(137));
    assert!(
        stderr(&out).contains("memory-hog.wasm stopped: memory limit of 32 MiB exceeded"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_stdout_flood_stops_at_its_output_limit() {
    let out = Kiln::new().run(
        &["run", "--max-output", "1MiB", &guest("stdout-flood")],
        b"",
    );
    assert_eq!(out.status.code(), Some(141));
    assert!(
        stderr(&out).contains("stdout-flood.wasm stopped: output limit of 1 MiB exceeded"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.len() <= 1 << 20);
    assert!(out.stdout.iter().all(|&b| b == b'x'));
}

#[test]
fn a_panic_is_a_trap() {
    let out = Kiln::new().run(&["run", &guest("trap")], b"");
    assert_eq!(out.status.code(), Some(134));
    let err = stderr(&out);
    assert!(err.contains("dividing by zero on purpose"), "{err}");
    assert!(
        err.contains("trap.wasm trapped: wasm `unreachable` instruction executed"),
        "{err}"
    );
}

#[test]
fn args_and_env_reach_the_guest_and_nothing_else_does() {
    let out = Kiln::new().run(
        &[
            "run",
            "--arg",
            "first",
            "--arg",
            "--second",
            "--env",
            "GREETING=hi there",
            "--env",
            "EMPTY=",
            &guest("echo-env"),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ARG 0=echo-env\nARG 1=first\nARG 2=--second\nENV GREETING=hi there\nENV EMPTY=\n"
    );
}

#[test]
fn a_second_process_loads_the_cached_artifact_instead_of_compiling() {
    let kiln = Kiln::new();
    let first = kiln.run(&["run", "--stats", &guest("hello")], b"one");
    assert!(
        stderr(&first).contains("artifact      compiled in"),
        "{}",
        stderr(&first)
    );
    let artifacts = kiln.artifact_files();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    let written = std::fs::metadata(&artifacts[0])
        .unwrap()
        .modified()
        .unwrap();

    let second = kiln.run(&["run", "--stats", &guest("hello")], b"two");
    assert_eq!(String::from_utf8_lossy(&second.stdout), "Hello, two!\n");
    let expected = format!("artifact      cached ({})", artifacts[0].display());
    assert!(stderr(&second).contains(&expected), "{}", stderr(&second));
    assert_eq!(kiln.artifact_files(), artifacts);
    let after = std::fs::metadata(&artifacts[0])
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(after, written, "the artifact was rewritten");
}

#[test]
fn compile_fills_the_cache_that_run_uses() {
    let kiln = Kiln::new();
    let hello = guest("hello");
    let out = kiln.run(&["compile", &hello], b"");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(said.starts_with(&format!("compiled {hello} (")), "{said}");
    assert!(said.contains(" ms -> "), "{said}");

    let again = kiln.run(&["compile", &hello], b"");
    assert!(String::from_utf8_lossy(&again.stdout).contains("is already compiled"));

    let run = kiln.run(&["run", "--stats", &hello], b"x");
    assert!(
        stderr(&run).contains("artifact      cached"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn stats_report_the_measurements() {
    let out = Kiln::new().run(&["run", "--stats", &guest("hello")], b"world");
    let err = stderr(&out);
    for line in [
        "instantiate ",
        "wall ",
        "cpu ",
        "peak memory ",
        "bytes in      5",
        "bytes out     14",
    ] {
        assert!(err.contains(line), "missing {line:?} in {err}");
    }
}

#[test]
fn a_file_that_is_not_wasm_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.wasm");
    std::fs::write(&file, "just some text").unwrap();
    let kiln = Kiln::new();
    let out = kiln.run(&["run", file.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "kiln: {}: not a WebAssembly binary: it does not start with the WebAssembly magic \
             bytes `\\0asm` (it starts with \"just som\")\n",
            file.display()
        )
    );
    assert!(kiln.artifact_files().is_empty());
}

#[test]
fn a_missing_file_is_named() {
    let out = Kiln::new().run(&["run", "/nonexistent/app.wasm"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("kiln: cannot read /nonexistent/app.wasm: "));
}

#[test]
fn stdin_over_the_input_limit_is_refused() {
    let out = Kiln::new().run(&["run", "--max-input", "4", &guest("hello")], b"world");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "kiln: stdin is over the input limit of 4 bytes (raise it with --max-input)\n"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_bad_limit_is_a_usage_error() {
    let out = Kiln::new().run(&["run", "--timeout", "soon", &guest("hello")], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("duration \"soon\" is not valid"),
        "{}",
        stderr(&out)
    );
    let out = Kiln::new().run(&["run", "--env", "NOEQUALS", &guest("hello")], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("expected KEY=VALUE"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_command_names_an_invalid_name_as_such_before_reaching_a_server() {
    let kiln = Kiln::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("Bad Module!.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").expect("write module");
    let module = module.to_str().expect("utf-8 path");
    let ok_module = dir.path().join("fine.wasm");
    std::fs::write(&ok_module, b"\0asm\x01\0\0\0").expect("write module");
    let ok_module = ok_module.to_str().expect("utf-8 path");
    // Port 9 on loopback: nothing listens, so any attempt to reach a server
    // would fail with "cannot reach", which the test rules out.
    let cases: &[(&[&str], &str)] = &[
        (
            &["info", "bad name!"],
            "invalid function name \"bad name!\"",
        ),
        (
            &["logs", "bad name!"],
            "invalid function name \"bad name!\"",
        ),
        (&["rm", "Bad"], "invalid function name \"Bad\""),
        (&["rollback", "a/b"], "invalid function name \"a/b\""),
        (
            &["deploy", ok_module, "--name", "bad name!"],
            "invalid function name \"bad name!\"",
        ),
        (&["deploy", module], "invalid function name \"Bad Module!\""),
        (
            &["usage", "--function", "bad name!"],
            "invalid function name \"bad name!\"",
        ),
        (
            &["usage", "--tenant", "Bad_Tenant"],
            "invalid tenant name \"Bad_Tenant\"",
        ),
        (&["quota", "Bad_T"], "invalid tenant name \"Bad_T\""),
        (
            &["tenants", "create", "bad name!"],
            "invalid tenant name \"bad name!\"",
        ),
    ];
    for (args, expected) in cases {
        let mut argv = args.to_vec();
        argv.extend(["--url", "http://127.0.0.1:9", "--token", "kiln_x"]);
        let out = kiln.run(&argv, b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{argv:?} succeeded");
        assert!(err.contains(expected), "{argv:?}: {err}");
        assert!(
            !err.contains("cannot reach"),
            "{argv:?} tried the server: {err}"
        );
    }
}
