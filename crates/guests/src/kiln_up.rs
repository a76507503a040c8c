//! Starting a real `kiln up` for a test or a benchmark: the caller prepares the
//! command (binary, flags, environment), this spawns it with stdout piped and
//! waits, up to a deadline, for the line that says where it listens.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A `kiln up` that has said where it listens.
pub struct Started {
    /// The process (its stdout is read by a thread into `lines`).
    pub child: Child,
    /// `http://127.0.0.1:PORT`, from `kiln listening on URL ...`.
    pub url: String,
    /// The lines it printed after the first (e.g. `kiln metrics on URL`).
    pub lines: mpsc::Receiver<String>,
}

/// Spawns `command` (a `kiln up ...` with its flags and environment already set)
/// and waits up to `deadline` for its first line. On failure the child is killed
/// and the error says what went wrong.
pub fn start(mut command: Command, deadline: Duration) -> Result<Started, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        return Err("kiln up has no stdout".into());
    };
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = lines.recv_timeout(deadline).map_err(|_| {
        let _ = child.kill();
        format!("kiln up did not say where it listens within {deadline:?}")
    })?;
    let Some(url) = first
        .strip_prefix("kiln listening on ")
        .and_then(|rest| rest.split_whitespace().next())
    else {
        let _ = child.kill();
        return Err(format!("unexpected first line from kiln up: {first}"));
    };
    Ok(Started {
        url: url.to_owned(),
        child,
        lines,
    })
}
