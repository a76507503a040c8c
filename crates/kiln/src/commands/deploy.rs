//! `kiln deploy FILE.wasm`: upload a module as a new version of a function and
//! print its URL. `kiln deploy app.py` / `app.js` (or a directory holding one):
//! upload the code as a bundle mounted at `/app`, for the server to run on its
//! language runtime and snapshot.

use super::bundle::{DirOption, parse_dir_option, upload_dirs};
use super::progress::{Counted, Progress};
use super::{LimitArgs, function_name};
use crate::client::{Client, Role, ServerArgs};
use anyhow::{Context, anyhow, bail};
use kiln_api::{
    APP_DIR, BinaryKind, ByteCount, Deployed, FunctionConfig, Language, Schedule, Scratch, Script,
    Tier, parse_env_pair,
};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Deploy a module (or Python or JavaScript code) as a new version of a function;
/// prints its URL
#[derive(clap::Args, Debug)]
pub(crate) struct DeployArgs {
    /// The WebAssembly module; or a .py, .js or .mjs file, or a directory of
    /// code with its entry file (app.py, main.py, index.js, app.js...)
    file: PathBuf,
    /// The entry file of a directory of code, relative to it
    #[arg(long, value_name = "FILE")]
    entry: Option<String>,
    /// Function name [default: the file name without .wasm]
    #[arg(long)]
    name: Option<String>,
    /// Environment variable for every invocation (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env_pair)]
    env: Vec<(String, String)>,
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
    /// Exit codes that are answers, not failures (e.g. 10,20 for a SAT solver):
    /// the output is returned as on exit 0, with the code in Kiln-Exit-Code
    #[arg(long = "ok-exit", value_name = "CODE,...", value_delimiter = ',',
          value_parser = clap::value_parser!(i32).range(0..=kiln_api::MAX_EXIT_CODE as i64))]
    ok_exit: Vec<i32>,
    /// A directory the function sees, read-only: `HOST:GUEST`, or just `HOST`
    /// (seen at /NAME), or `HOST:GUEST:copy` for a private writable copy per invocation
    /// (repeatable). Uploaded once; a redeploy of unchanged files uploads nothing
    #[arg(long = "dir", value_name = "HOST[:GUEST][:copy]", value_parser = parse_dir_option)]
    dirs: Vec<DirOption>,
    /// A writable scratch directory private to each invocation, of at most SIZE
    /// (e.g. 64MiB), at /tmp or at GUEST; emptied when the invocation ends
    #[arg(long, value_name = "SIZE[:GUEST]", value_parser = parse_tmp)]
    tmp: Option<Scratch>,
    /// A key-value bucket of this tenant the function may open (repeatable):
    /// `wasi:keyvalue` for components, the `kiln_kv` host module for core modules
    #[arg(long = "kv", value_name = "BUCKET")]
    kv: Vec<String>,
    /// A secret of this tenant the function sees (repeatable): an environment
    /// variable of that name, and for components `wasi:config` (`kiln secret set`)
    #[arg(long = "secret", value_name = "NAME")]
    secrets: Vec<String>,
    /// Run the function on its own at each tick of this cron schedule, in
    /// UTC ("*/5 * * * *", @hourly, @daily...): an empty POST with
    /// Kiln-Scheduled-Time, once per tick across the cluster (`kiln schedules`)
    #[arg(long, value_name = "CRON", value_parser = parse_schedule)]
    schedule: Option<Schedule>,
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

pub(crate) fn run(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let name = match &args.name {
        Some(name) => {
            function_name(name)?;
            name.clone()
        }
        None => {
            let stem = args
                .file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .context("cannot tell a function name from the file name; use --name")?;
            function_name(&stem).map_err(|e| {
                anyhow::anyhow!(
                    "{e} (named after the file {}; use --name)",
                    args.file.display()
                )
            })?;
            stem
        }
    };
    let source = Source::of(&args.file, args.entry.as_deref())?;
    let config = FunctionConfig {
        env: args.env.clone(),
        args: args.args.clone(),
        memory_bytes: args.limits.memory,
        timeout_ms: args
            .limits
            .timeout
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        max_input: args.limits.max_input,
        max_output: args.limits.max_output,
        cgi: args.cgi,
        private: args.private,
        receipt: args.receipt,
        stream: args.stream,
        allow_hosts: args.allow_hosts.clone(),
        ok_exit: args.ok_exit.clone(),
        mounts: Vec::new(),
        tmp: args.tmp.clone(),
        script: None,
        kv: args.kv.clone(),
        secrets: args.secrets.clone(),
        schedule: args.schedule.clone(),
    };
    let client = Client::new(&args.server, Role::Tenant)?;
    let mut dirs = args.dirs.clone();
    let (file, size, script) = match &source {
        Source::Binary(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let size = file.metadata()?.len();
            (Some(file), size, None)
        }
        Source::Script { dir, script, .. } => {
            dirs.push(DirOption::read_only(
                dir.clone(),
                APP_DIR,
                args.file.display().to_string(),
            ));
            (None, 0, Some(script.clone()))
        }
    };
    let config = FunctionConfig {
        mounts: upload_dirs(&client, &dirs)?,
        script,
        ..config
    };
    let query = config.to_query();

    let body: Box<dyn std::io::Read + Send> = match file {
        Some(file) => Box::new(file),
        None => Box::new(std::io::empty()),
    };
    let (body, sent) = Counted::new(body);
    // On a terminal, a deploy that takes more than a second says how it goes.
    let progress = std::io::stderr()
        .is_terminal()
        .then(|| Progress::start(sent, size, "compiling"));
    let deployed: anyhow::Result<Deployed> =
        client.post_reader(&format!("/v1/functions/{name}/versions{query}"), body, size);
    if let Some(progress) = progress {
        progress.stop();
    }
    let deployed = deployed?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&deployed)?);
        return Ok(ExitCode::SUCCESS);
    }
    let compiled = match deployed.compile_ms {
        Some(ms) => format!("compiled in {ms:.0} ms"),
        None => "already compiled".into(),
    };
    let kind = match (&source, deployed.kind) {
        (Source::Script { script, .. }, _) => match script.language {
            Language::Python => "python, snapshot ",
            Language::Js => "javascript, snapshot ",
        },
        (_, BinaryKind::Component) => "component, ",
        (_, BinaryKind::HttpComponent) => "wasi:http component, ",
        _ => "",
    };
    println!(
        "deployed {} v{} ({kind}{}, {compiled})  ->  {}",
        deployed.function,
        deployed.version,
        ByteCount(deployed.size),
        deployed.url
    );
    if deployed.tier == Some(Tier::Baseline) {
        println!(
            "serving baseline code (Winch) now; the optimized code (Cranelift) is compiling \
             in the background and takes over when ready (`kiln info` shows the tier)"
        );
    }
    if let Some(note) = &deployed.tier_note {
        println!("note: {note}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What `kiln deploy` was given.
enum Source {
    /// A WebAssembly binary, uploaded as the module.
    Binary(PathBuf),
    /// Code for a language runtime: the directory uploaded as the bundle at `/app`.
    Script {
        dir: PathBuf,
        script: Script,
        /// A single file is deployed from a directory of its own, removed after.
        _copy: Option<tempfile::TempDir>,
    },
}

impl Source {
    fn of(path: &Path, entry: Option<&str>) -> anyhow::Result<Source> {
        if path.is_dir() {
            let entry = match entry {
                Some(entry) => entry.to_owned(),
                None => Language::ALL
                    .iter()
                    .flat_map(|l| l.default_entries())
                    .find(|name| path.join(name).is_file())
                    .map(|name| (*name).to_owned())
                    .with_context(|| {
                        format!(
                            "{} has no app.py, main.py, index.js or app.js: name the entry \
                             file with --entry",
                            path.display()
                        )
                    })?,
            };
            let language = Language::of_file(&entry)
                .with_context(|| format!("{entry}: not a .py, .js or .mjs file"))?;
            if !path.join(&entry).is_file() {
                bail!("{} has no file {entry}", path.display());
            }
            let script = Script::parse(&format!("{language}:{entry}")).map_err(|e| anyhow!(e))?;
            return Ok(Source::Script {
                dir: path.to_owned(),
                script,
                _copy: None,
            });
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(language) = name.as_deref().and_then(Language::of_file) else {
            if entry.is_some() {
                bail!("--entry is for a directory of Python or JavaScript code");
            }
            return Ok(Source::Binary(path.to_owned()));
        };
        let name = name.unwrap_or_default();
        let copy = tempfile::tempdir()?;
        std::fs::copy(path, copy.path().join(&name))
            .with_context(|| format!("cannot read {}", path.display()))?;
        let script = Script::parse(&format!("{language}:{name}")).map_err(|e| anyhow!(e))?;
        Ok(Source::Script {
            dir: copy.path().to_owned(),
            script,
            _copy: Some(copy),
        })
    }
}

fn parse_tmp(text: &str) -> Result<Scratch, String> {
    Scratch::parse(text).map_err(|e| e.to_string())
}

fn parse_schedule(text: &str) -> Result<Schedule, String> {
    Schedule::parse(text).map_err(|e| e.to_string())
}
