//! `kiln deploy FILE.wasm`: upload a module as a new version of a function and
//! print its URL.

use super::LimitArgs;
use crate::client::{Client, Role, ServerArgs};
use crate::human_size;
use anyhow::Context;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

/// Deploy a module as a new version of a function; prints its URL
#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// The WebAssembly module
    file: PathBuf,
    /// Function name [default: the file name without .wasm]
    #[arg(long)]
    name: Option<String>,
    /// Environment variable for every invocation (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Argument after the function name (repeatable)
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    args: Vec<String>,
    #[command(flatten)]
    limits: LimitArgs,
    /// The function prints CGI headers (Status:, Content-Type:, ...) before its body
    #[arg(long)]
    cgi: bool,
    /// Stream: stdin is read from the request body as it arrives and stdout is
    /// sent (chunked) as it is written (commands; wasi:http components always stream)
    #[arg(long)]
    stream: bool,
    /// A host the function may send HTTP requests to: HOST, HOST:PORT, *.DOMAIN or
    /// *.DOMAIN:PORT (repeatable; components only; default: none)
    #[arg(long = "allow-host", value_name = "HOST[:PORT]")]
    allow_hosts: Vec<String>,
    /// Invoking needs a token of this tenant
    #[arg(long)]
    private: bool,
    /// Responses carry the invocation's usage: Kiln-Cpu-Us, Kiln-Wall-Us,
    /// Kiln-Peak-Memory headers
    #[arg(long)]
    receipt: bool,
    /// Print the server's JSON answer
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Deployed {
    tenant: String,
    function: String,
    version: u32,
    digest: String,
    size: u64,
    compile_ms: Option<f64>,
    #[serde(default)]
    kind: String,
    url: String,
}

pub fn run(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let name = match &args.name {
        Some(name) => name.clone(),
        None => args
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .context("cannot tell a function name from the file name; use --name")?,
    };
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let size = file.metadata()?.len();

    let mut query: Vec<(&str, String)> = Vec::new();
    query.extend(args.env.iter().map(|e| ("env", e.clone())));
    query.extend(args.args.iter().map(|a| ("arg", a.clone())));
    if let Some(m) = args.limits.memory {
        query.push(("memory", m.to_string()));
    }
    if let Some(t) = args.limits.timeout {
        query.push(("timeout", format!("{}ms", t.as_millis())));
    }
    if let Some(n) = args.limits.max_input {
        query.push(("max_input", n.to_string()));
    }
    if let Some(n) = args.limits.max_output {
        query.push(("max_output", n.to_string()));
    }
    if args.cgi {
        query.push(("cgi", "true".into()));
    }
    if args.stream {
        query.push(("stream", "true".into()));
    }
    query.extend(args.allow_hosts.iter().map(|h| ("allow_host", h.clone())));
    if args.receipt {
        query.push(("receipt", "true".into()));
    }
    if args.private {
        query.push(("private", "true".into()));
    }
    let query = encode(&query);

    let client = Client::new(&args.server, Role::Tenant)?;
    let show_progress = std::io::stderr().is_terminal() && size > 4 << 20;
    let body = Progress {
        inner: file,
        sent: 0,
        total: size,
        show: show_progress,
    };
    let deployed: Deployed =
        client.post_reader(&format!("/v1/functions/{name}/versions{query}"), body)?;
    if show_progress {
        eprintln!();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&deployed)?);
        return Ok(ExitCode::SUCCESS);
    }
    let compiled = match deployed.compile_ms {
        Some(ms) => format!("compiled in {ms:.0} ms"),
        None => "already compiled".into(),
    };
    let kind = match deployed.kind.as_str() {
        "component" => "component, ",
        "http-component" => "wasi:http component, ",
        _ => "",
    };
    println!(
        "deployed {} v{} ({kind}{}, {compiled})  ->  {}",
        deployed.function,
        deployed.version,
        human_size(deployed.size),
        deployed.url
    );
    Ok(ExitCode::SUCCESS)
}

/// `?k=v&k=v`, percent-encoded; empty when there is nothing.
fn encode(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect();
    format!("?{}", encoded.join("&"))
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Counts uploaded bytes and, on a terminal, shows how far the upload is.
struct Progress<R> {
    inner: R,
    sent: u64,
    total: u64,
    show: bool,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let before = self.sent * 100 / self.total.max(1);
        self.sent += n as u64;
        let after = self.sent * 100 / self.total.max(1);
        if self.show && after != before {
            let note = if after == 100 { ", compiling..." } else { "" };
            eprint!("\ruploading {after:3}% of {}{note}", human_size(self.total));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        let q = encode(&[("env", "A=b c&d".into()), ("arg", "--x".into())]);
        assert_eq!(q, "?env=A%3Db%20c%26d&arg=--x");
        assert_eq!(encode(&[]), "");
    }
}
