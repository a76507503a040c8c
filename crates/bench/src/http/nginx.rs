//! nginx as the benchmarks run it (Debian's package): started in the
//! foreground on a configuration written for the run, stopped when dropped.

use anyhow::{Context, bail};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx.
pub(super) struct Nginx {
    child: Child,
}

/// A free loopback address for nginx to listen on.
pub(super) fn free_address() -> anyhow::Result<String> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string())
}

impl Nginx {
    /// Starts nginx with `http` as the body of its `http` block (its files in
    /// `dir`), and waits until `ready` (one of its addresses) accepts.
    pub(super) fn start(dir: &Path, http: &str, ready: &str) -> anyhow::Result<Nginx> {
        let config = format!(
            "worker_processes auto;\npid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n    access_log off;\n{http}}}\n",
            dir = dir.display(),
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, config)?;
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .spawn()
            .context("starting nginx (apt-get install nginx; scripts/bench does it)")?;
        let nginx = Nginx { child };
        let begin = Instant::now();
        while std::net::TcpStream::connect(ready).is_err() {
            if begin.elapsed() > Duration::from_secs(10) {
                bail!("nginx did not start; see {}/nginx-error.log", dir.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }
}

impl Drop for Nginx {
    /// SIGTERM, not SIGKILL: nginx's master then stops its workers (killed, it
    /// would leave them running, and listening).
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the pid of a child we own and have not reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let _ = self.child.wait();
    }
}
