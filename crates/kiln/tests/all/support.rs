//! Test support: a real `kiln up` process on an ephemeral loopback port with its
//! own data and config directories, the `kiln` CLI pointed at it, and plain HTTP.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

pub(crate) fn guest(name: &str) -> String {
    kiln_guests::path(name).display().to_string()
}

/// A home for one server: data, config (credentials) and scratch files.
pub(crate) struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub(crate) fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub(crate) fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// Starts `kiln up` on this home with extra flags.
    pub(crate) fn start(&self, extra: &[&str]) -> KilnServer {
        self.start_in(&[], extra)
    }

    /// Starts `kiln up` as the last arguments of `wrapper` (a command that sets
    /// something up, then execs its arguments, keeping the pid).
    pub(crate) fn start_in(&self, wrapper: &[&str], extra: &[&str]) -> KilnServer {
        let kiln = env!("CARGO_BIN_EXE_kiln");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(kiln);
                command
            }
            None => Command::new(kiln),
        };
        command
            .args(["up", "--listen", "127.0.0.1:0", "--data"])
            .arg(self.data())
            .args(extra)
            .env("XDG_CONFIG_HOME", self.config())
            .env("KILN_LOG", "warn");
        let kiln_guests::kiln_up::Started { child, url, lines } =
            kiln_guests::kiln_up::start(command, DEADLINE).unwrap_or_else(|e| panic!("{e}"));
        let metrics_url = extra.contains(&"--metrics-listen").then(|| {
            let line = lines
                .recv_timeout(DEADLINE)
                .expect("kiln up did not say where metrics are");
            line.strip_prefix("kiln metrics on ")
                .unwrap_or_else(|| panic!("unexpected line from kiln up: {line}"))
                .to_owned()
        });
        KilnServer {
            child: Some(child),
            url,
            metrics_url,
            config: self.config(),
        }
    }

    /// `kiln up` on this home with extra flags, expected to exit at once (a
    /// refused start): its output.
    pub(crate) fn start_and_exit(&self, extra: &[&str]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["up", "--listen", "127.0.0.1:0", "--data"])
            .arg(self.data())
            .args(extra)
            .env("XDG_CONFIG_HOME", self.config())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kiln up");
        eventually("kiln up to exit", || child.try_wait().expect("wait"));
        child.wait_with_output().expect("output")
    }

    /// The credentials `kiln up` wrote on first start.
    pub(crate) fn credentials(&self) -> serde_json::Value {
        let text = std::fs::read(self.config().join("kiln/credentials.json")).expect("credentials");
        serde_json::from_slice(&text).expect("credentials JSON")
    }

    pub(crate) fn token(&self) -> String {
        self.credentials()["token"].as_str().unwrap().to_owned()
    }

    pub(crate) fn admin_token(&self) -> String {
        self.credentials()["admin_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

pub(crate) struct KilnServer {
    child: Option<Child>,
    pub url: String,
    /// `http://ADDR/metrics` when started with `--metrics-listen`.
    pub metrics_url: Option<String>,
    config: PathBuf,
}

impl KilnServer {
    /// Runs the `kiln` CLI against this server (credentials from its home).
    pub(crate) fn cli(&self, args: &[&str], envs: &[(&str, &str)], stdin: &[u8]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .env("XDG_CONFIG_HOME", &self.config)
            .env("KILN_URL", &self.url)
            .env_remove("KILN_TOKEN")
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kiln");
        let _ = child.stdin.take().expect("stdin").write_all(stdin);
        child.wait_with_output().expect("kiln")
    }

    /// The CLI, which must succeed; returns its stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args, &[], b"");
        assert!(
            out.status.success(),
            "kiln {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn function_url(&self, tenant: &str, function: &str) -> String {
        format!("{}/fn/{tenant}/{function}", self.url)
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Sends SIGTERM and waits (with a deadline) for the server to exit.
    pub(crate) fn stop(mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait()
    }

    /// SIGKILL: the crash case.
    pub(crate) fn kill(mut self) {
        self.signal(libc::SIGKILL);
        self.wait();
    }

    pub(crate) fn signal(&mut self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe { libc::kill(self.pid(), signal) };
    }

    pub(crate) fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(start.elapsed() < DEADLINE, "kiln up did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for KilnServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP client that reports every status (no errors for 4xx/5xx) and does not
/// follow redirects: the `curl` of these tests.
pub(crate) fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

pub(crate) struct Answer {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub(crate) fn answer(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = result.expect("HTTP request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Answer {
        status,
        headers,
        body,
    }
}

pub(crate) fn post(url: &str, body: &str) -> Answer {
    answer(http().post(url).send(body))
}

pub(crate) fn get(url: &str) -> Answer {
    answer(http().get(url).call())
}

/// GET with a bearer token.
pub(crate) fn get_as(url: &str, token: &str) -> Answer {
    answer(
        http()
            .get(url)
            .header("Authorization", format!("Bearer {token}"))
            .call(),
    )
}

/// Polls `check` until it returns `Some`, failing at the deadline.
/// A `kiln` command that needs no server (`kiln admin ...`), which must
/// succeed: its trimmed stdout.
pub(crate) fn kiln_ok(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("kiln");
    assert!(
        out.status.success(),
        "kiln {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub(crate) fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Files directly in `dir` (none if it does not exist).
pub(crate) fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default()
}

/// POSTs `each` empty requests to every one of `urls`, each URL from a thread
/// of its own, and returns the answers (each must be a 200 whose body is a
/// number, a counter's total), sorted.
pub(crate) fn counts_from(urls: Vec<String>, each: usize) -> Vec<u64> {
    let threads: Vec<_> = urls
        .into_iter()
        .map(|url| {
            std::thread::spawn(move || {
                (0..each)
                    .map(|_| {
                        let got = post(&url, "");
                        assert_eq!(got.status, 200, "{url}: {}", got.body);
                        got.body.trim().parse::<u64>().expect("a count")
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut counts: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client thread"))
        .collect();
    counts.sort_unstable();
    counts
}

/// The value of the sample `name` (with its labels) in Prometheus text.
pub(crate) fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// `server`'s `/metrics`, read with the admin token.
pub(crate) fn metrics(server: &KilnServer, home: &Home) -> String {
    let answer = get_as(&format!("{}/metrics", server.url), &home.admin_token());
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

/// A WASI command that prints `text`, with `padding` (WAT functions) beside
/// its code: padding makes compiling it take a while.
pub(crate) fn printing_module(text: &str, padding: &str) -> Vec<u8> {
    printing_module_in(text, padding, 1)
}

/// [`printing_module`] with `bytes` of initialized data (not zeros) in its
/// memory: an artifact that big at least.
pub(crate) fn printing_module_with_data(text: &str, bytes: usize) -> Vec<u8> {
    let data = format!(r#"(data (i32.const 65536) "{}")"#, "kiln".repeat(bytes / 4));
    printing_module_in(text, &data, 2 + bytes / 65536)
}

fn printing_module_in(text: &str, padding: &str, pages: usize) -> Vec<u8> {
    let data: String = text.bytes().map(|b| format!("\\{b:02x}")).collect();
    wat::parse_str(format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") {pages})
          (data (i32.const 16) "{data}")
          {padding}
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 16))
            (i32.store (i32.const 4) (i32.const {len}))
            (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        len = text.len()
    ))
    .expect("wat")
}
