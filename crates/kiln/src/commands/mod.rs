//! One module per subcommand (or family of subcommands).

pub(crate) mod admin;
pub(crate) mod bundle;
pub(crate) mod compile;
pub(crate) mod deploy;
pub(crate) mod domain;
pub(crate) mod functions;
pub(crate) mod invoke;
pub(crate) mod kv;
pub(crate) mod logs;
pub(crate) mod progress;
pub(crate) mod run;
pub(crate) mod schedules;
pub(crate) mod secret;
pub(crate) mod up;
pub(crate) mod usage;

use kiln_api::{NameKind, check_name, parse_duration, parse_size};
use kiln_runtime::{EngineConfig, Runtime, RuntimeConfig, default_artifact_dir};
use std::path::PathBuf;
use std::time::Duration;

/// The per-function limits set on the command line (by `run` and `deploy`).
#[derive(clap::Args, Debug)]
pub(crate) struct LimitArgs {
    /// Linear memory limit, e.g. 64MiB [default: 128MiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Wall-time limit, e.g. 200ms or 30s [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Largest request body (stdin), e.g. 64MiB [default: 16MiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_input: Option<u64>,
    /// Largest response (stdout), e.g. 64MiB [default: 16MiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_output: Option<u64>,
}

/// Where compiled artifacts are cached, shared by the subcommands that compile.
#[derive(clap::Args, Debug)]
pub(crate) struct ArtifactArgs {
    /// Directory of compiled artifacts [default: $XDG_CACHE_HOME/kiln/artifacts,
    /// else ~/.cache/kiln/artifacts]
    #[arg(long, env = "KILN_ARTIFACTS", value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
}

impl ArtifactArgs {
    /// A runtime for one local invocation: a small instance pool is enough.
    pub(crate) fn runtime(&self) -> anyhow::Result<Runtime> {
        let dir = self.artifacts.clone().unwrap_or_else(default_artifact_dir);
        let config = RuntimeConfig {
            engine: EngineConfig {
                max_instances: 4,
                ..EngineConfig::default()
            },
            ..RuntimeConfig::new(dir)
        };
        Ok(Runtime::new(config)?)
    }
}

/// Reads a module file, naming it in the error.
pub(crate) fn read_module(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

/// Checks a function name given on the command line before it becomes part of
/// a URL: a bad one is named as such, not sent to the server.
pub(crate) fn function_name(name: &str) -> anyhow::Result<()> {
    Ok(check_name(NameKind::Function, name)?)
}

/// Checks a tenant name given on the command line, as [`function_name`] does.
pub(crate) fn tenant_name(name: &str) -> anyhow::Result<()> {
    Ok(check_name(NameKind::Tenant, name)?)
}
