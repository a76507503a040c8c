//! A real `kiln up` for the benchmarks: the release binary, on an ephemeral loopback
//! port, with its own data and config directories. It is stopped with SIGTERM (a
//! graceful drain) and can be started again on the same data, as an operator would.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

const START_DEADLINE: Duration = Duration::from_secs(120);

/// The release `kiln` binary, built now if it is missing or stale; or the one
/// `KILN_BENCH_BINARY` names (another build, e.g. an earlier commit's, to compare
/// against this one on the same machine).
pub(super) fn binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("KILN_BENCH_BINARY") {
        return Ok(PathBuf::from(path));
    }
    let root = workspace_root();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "kiln"])
        .current_dir(&root)
        .status()
        .context("running cargo build for the kiln binary")?;
    if !status.success() {
        bail!("cargo build --release -p kiln failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("release").join("kiln"))
}

pub(super) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One running server.
pub(super) struct Kiln {
    child: Child,
    pub addr: SocketAddr,
    /// `http`, or `https` when started with a certificate.
    scheme: &'static str,
    pub token: String,
    pub admin_token: String,
    binary: PathBuf,
    home: PathBuf,
    extra: Vec<String>,
}

impl Kiln {
    /// Starts `kiln up` on a new data directory under `home`.
    pub(super) fn start(binary: &Path, home: &Path, extra: &[&str]) -> anyhow::Result<Kiln> {
        let mut node = Kiln::join(binary, home, extra, ("", ""))?;
        let credentials: serde_json::Value = serde_json::from_slice(
            &std::fs::read(home.join("config/kiln/credentials.json"))
                .context("reading the credentials kiln up wrote")?,
        )?;
        let field = |name: &str| {
            credentials[name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("credentials have no {name}"))
        };
        node.token = field("token")?;
        node.admin_token = field("admin_token")?;
        Ok(node)
    }

    /// Starts `kiln up` on a store another node bootstrapped (a cluster's
    /// database), using that node's `(token, admin token)`.
    pub(super) fn join(
        binary: &Path,
        home: &Path,
        extra: &[&str],
        tokens: (&str, &str),
    ) -> anyhow::Result<Kiln> {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, addr, scheme) = spawn(binary, home, &extra)?;
        Ok(Kiln {
            child,
            addr,
            scheme,
            token: tokens.0.to_owned(),
            admin_token: tokens.1.to_owned(),
            binary: binary.to_owned(),
            home: home.to_owned(),
            extra,
        })
    }

    /// SIGTERM, wait for the drain, start again on the same data directory.
    pub(super) fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.start_again()
    }

    /// After [`Kiln::stop`]: starts again on the same data directory and
    /// returns once it serves.
    pub(super) fn start_again(&mut self) -> anyhow::Result<()> {
        let (child, addr, scheme) = spawn(&self.binary, &self.home, &self.extra)?;
        self.child = child;
        self.addr = addr;
        self.scheme = scheme;
        Ok(())
    }

    /// [`Kiln::restart`] with `extra` flags added from now on.
    pub(super) fn restart_with(&mut self, extra: &[&str]) -> anyhow::Result<()> {
        self.extra.extend(extra.iter().map(|s| s.to_string()));
        self.restart()
    }

    pub(super) fn stop(&mut self) -> anyhow::Result<()> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait()?;
        if !status.success() {
            bail!("kiln up exited with {status}");
        }
        Ok(())
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn data_dir(&self) -> PathBuf {
        self.home.join("data")
    }

    /// Resident set size of the server process, in bytes.
    pub(super) fn rss(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .context("no VmRSS in /proc/PID/status")?;
        Ok(kib * 1024)
    }

    /// CPU time the server process has used so far (user + system).
    pub(super) fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // The fields after the command name (which may hold spaces), from field 3.
        let after_name = stat.rsplit_once(')').context("malformed /proc/PID/stat")?.1;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |i: usize| -> anyhow::Result<u64> {
            Ok(fields.get(i).context("short /proc/PID/stat")?.parse()?)
        };
        // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name.
        let total = ticks(11)? + ticks(12)?;
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_secs_f64(total as f64 / per_second as f64))
    }

    /// `path` on this server (`https://` when it serves TLS).
    pub(super) fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }
}

impl Drop for Kiln {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kiln up`: the process, its address and its URL's scheme.
fn spawn(
    binary: &Path,
    home: &Path,
    extra: &[String],
) -> anyhow::Result<(Child, SocketAddr, &'static str)> {
    let mut command = Command::new(binary);
    command
        .args(["up", "--listen", "127.0.0.1:0", "--data"])
        .arg(home.join("data"))
        .args(extra)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("KILN_LOG", "warn")
        // The key of the throwaway S3 server of the cluster scenario.
        .env("AWS_ACCESS_KEY_ID", kiln_guests::services::S3_ACCESS_KEY_ID)
        .env(
            "AWS_SECRET_ACCESS_KEY",
            kiln_guests::services::S3_SECRET_ACCESS_KEY,
        );
    let started =
        kiln_guests::kiln_up::start(command, START_DEADLINE).map_err(anyhow::Error::msg)?;
    let (scheme, rest) = started
        .url
        .split_once("://")
        .with_context(|| format!("not a URL: {}", started.url))?;
    let scheme = if scheme == "https" { "https" } else { "http" };
    Ok((started.child, rest.parse()?, scheme))
}
