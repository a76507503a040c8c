//! A function version's configuration, and the one codec that carries it in a
//! deploy's query string (`POST /v1/functions/{name}/versions?memory=64MiB&cgi`):
//! the CLI encodes with [`FunctionConfig::to_query`], the server decodes with
//! [`FunctionConfig::from_query`]. What depends on the server (its memory
//! ceiling, host patterns, options against the binary's kind) is checked there.

use crate::files::{Mount, Scratch, check_mounts};
use crate::kv::check_bucket;
use crate::schedule::Schedule;
use crate::script::{APP_DIR, Script};
use crate::secrets::check_secret_name;
use crate::units::{ParseLimitError, parse_duration, parse_size};
use serde::{Deserialize, Serialize};

/// How a function version runs: fixed at deploy, immutable afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionConfig {
    /// Environment variables of every invocation (before the CGI ones, which win).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Arguments after the function name.
    #[serde(default)]
    pub args: Vec<String>,
    /// Linear memory limit in bytes; `None` = the server default.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// Wall-time limit in milliseconds; `None` = the server default.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Largest request body in bytes; `None` = the server default.
    #[serde(default)]
    pub max_input: Option<u64>,
    /// Largest response (stdout, or a wasi:http response body) in bytes; `None` =
    /// the server default.
    #[serde(default)]
    pub max_output: Option<u64>,
    /// The function prints CGI response headers before its body.
    #[serde(default)]
    pub cgi: bool,
    /// Invoking needs a token of the function's tenant.
    #[serde(default)]
    pub private: bool,
    /// Responses carry the invocation's usage (`Kiln-Cpu-Us`, `Kiln-Wall-Us`,
    /// `Kiln-Peak-Memory`).
    #[serde(default)]
    pub receipt: bool,
    /// A command's stdin is read from the request body as it arrives and its
    /// stdout sent as it is written (chunked), instead of both whole.
    #[serde(default)]
    pub stream: bool,
    /// Hosts (`HOST[:PORT]`, `*.DOMAIN[:PORT]`) a component may send HTTP requests
    /// to; empty: none.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Exit codes besides 0 that are answers, not failures (an SMT solver's 10
    /// and 20, `grep`'s 1): the invocation is answered with its output, as if it
    /// had exited 0, and the exit code rides in `Kiln-Exit-Code`. Sorted, each
    /// once, each in 1..=125 (the codes WASI can report).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ok_exit: Vec<i32>,
    /// Bundles mounted into every invocation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// A writable directory private to each invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmp: Option<Scratch>,
    /// The function is code in a language Kiln provides a runtime for, mounted
    /// at `/app`; its module is the runtime's deploy-time snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<Script>,
    /// Key-value buckets of the function's tenant it may open, sorted, each
    /// once (at most [`MAX_BUCKETS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv: Vec<String>,
    /// Secrets of the function's tenant it sees (as environment variables,
    /// and in `wasi:config` for components), sorted, each once: names only,
    /// the values stay in the store, encrypted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// When the function runs on its own, once per tick across the cluster
    /// (cron syntax, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
}

/// Most buckets one deployment may be granted.
pub const MAX_BUCKETS: usize = 16;

/// Most secrets one deployment may be granted.
pub const MAX_SECRETS: usize = 64;

/// The largest exit code a WASI program can report (wasmtime refuses 126 and
/// above, which shells reserve).
pub const MAX_EXIT_CODE: i32 = 125;

/// Longest wall-time limit a deploy may set (the most milliseconds a `u32` holds).
pub const MAX_TIMEOUT_MS: u64 = u32::MAX as u64;

/// The deploy options, as [`FunctionConfig::from_query`] reads them.
pub const DEPLOY_OPTIONS: &[&str] = &[
    "env",
    "arg",
    "memory",
    "timeout",
    "max_input",
    "max_output",
    "cgi",
    "private",
    "receipt",
    "stream",
    "allow_host",
    "ok_exit",
    "mount",
    "tmp",
    "script",
    "kv",
    "secret",
    "schedule",
];

/// A deploy option that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeployOptionError {
    /// The option exists but its value is wrong.
    #[error("deploy option {option}: {why}")]
    Invalid {
        /// The option's name.
        option: String,
        /// What is wrong with its value.
        why: String,
    },
    /// No such option.
    #[error("unknown deploy option {0:?} (known: {known})", known = DEPLOY_OPTIONS.join(", "))]
    Unknown(String),
}

/// Splits `KEY=VALUE` (an environment variable given to `--env` or `env=`).
///
/// ```
/// assert_eq!(kiln_api::parse_env_pair("A=b=c"), Ok(("A".into(), "b=c".into())));
/// assert!(kiln_api::parse_env_pair("=x").is_err());
/// ```
pub fn parse_env_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

fn parse_flag(value: &str) -> Result<bool, String> {
    match value {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

impl FunctionConfig {
    /// Whether a command that exited with `code` answered (0, or one of
    /// [`FunctionConfig::ok_exit`]) rather than failed.
    pub fn exit_is_answer(&self, code: i32) -> bool {
        code == 0 || self.ok_exit.binary_search(&code).is_ok()
    }

    /// The query string carrying this configuration, with its `?` (empty when
    /// everything is default). [`FunctionConfig::from_query`] reads it back.
    pub fn to_query(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in &self.env {
            query.append_pair("env", &format!("{key}={value}"));
        }
        for arg in &self.args {
            query.append_pair("arg", arg);
        }
        let numbers = [
            ("memory", self.memory_bytes, ""),
            ("timeout", self.timeout_ms, "ms"),
            ("max_input", self.max_input, ""),
            ("max_output", self.max_output, ""),
        ];
        for (name, value, unit) in numbers {
            if let Some(value) = value {
                query.append_pair(name, &format!("{value}{unit}"));
            }
        }
        let flags = [
            ("cgi", self.cgi),
            ("private", self.private),
            ("receipt", self.receipt),
            ("stream", self.stream),
        ];
        for (name, _) in flags.iter().filter(|(_, on)| *on) {
            query.append_pair(name, "true");
        }
        for host in &self.allow_hosts {
            query.append_pair("allow_host", host);
        }
        if !self.ok_exit.is_empty() {
            let codes: Vec<String> = self.ok_exit.iter().map(i32::to_string).collect();
            query.append_pair("ok_exit", &codes.join(","));
        }
        for mount in &self.mounts {
            query.append_pair("mount", &mount.to_string());
        }
        if let Some(tmp) = &self.tmp {
            query.append_pair("tmp", &tmp.to_string());
        }
        if let Some(script) = &self.script {
            query.append_pair("script", &script.to_string());
        }
        for bucket in &self.kv {
            query.append_pair("kv", bucket);
        }
        for secret in &self.secrets {
            query.append_pair("secret", secret);
        }
        if let Some(schedule) = &self.schedule {
            query.append_pair("schedule", schedule.as_str());
        }
        match query.finish() {
            query if query.is_empty() => query,
            query => format!("?{query}"),
        }
    }

    /// Reads a deploy's query string (without its `?`): `env=K=V`, `arg=A` and
    /// `allow_host=HOST[:PORT]` (repeatable), `memory=64MiB`, `timeout=5s`,
    /// `max_input=64MiB`, `max_output=64MiB`, `ok_exit=10,20` (repeatable), and
    /// the flags `cgi`, `private`, `receipt`, `stream`. Host patterns are kept as given, for the server to check.
    pub fn from_query(query: &str) -> Result<FunctionConfig, DeployOptionError> {
        let mut config = FunctionConfig::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let invalid = |why: String| DeployOptionError::Invalid {
                option: key.clone().into_owned(),
                why,
            };
            let size = |value: &str| parse_size(value).map_err(|e| invalid(e.to_string()));
            match key.as_ref() {
                "env" => config.env.push(parse_env_pair(&value).map_err(invalid)?),
                "arg" => config.args.push(value.into_owned()),
                "memory" => {
                    let bytes = size(&value)?;
                    if bytes == 0 {
                        return Err(invalid("memory limit must be at least 1 byte".into()));
                    }
                    config.memory_bytes = Some(bytes);
                }
                "timeout" => {
                    let duration = parse_duration(&value)
                        .map_err(|e: ParseLimitError| invalid(e.to_string()))?;
                    let ms = duration.as_millis();
                    if ms == 0 || ms > u128::from(MAX_TIMEOUT_MS) {
                        return Err(invalid("timeout must be between 1ms and 49 days".into()));
                    }
                    config.timeout_ms = Some(ms as u64);
                }
                "max_input" => config.max_input = Some(size(&value)?),
                "max_output" => config.max_output = Some(size(&value)?),
                "cgi" => config.cgi = parse_flag(&value).map_err(invalid)?,
                "private" => config.private = parse_flag(&value).map_err(invalid)?,
                "receipt" => config.receipt = parse_flag(&value).map_err(invalid)?,
                "stream" => config.stream = parse_flag(&value).map_err(invalid)?,
                "allow_host" => config.allow_hosts.push(value.into_owned()),
                "ok_exit" => {
                    for code in value.split(',').map(str::trim) {
                        let code = code
                            .parse::<i32>()
                            .ok()
                            .filter(|c| (0..=MAX_EXIT_CODE).contains(c))
                            .ok_or_else(|| {
                                invalid(format!(
                                    "expected exit codes from 0 to {MAX_EXIT_CODE} separated by \
                                     commas, got {code:?}"
                                ))
                            })?;
                        // 0 is always success.
                        if code != 0 {
                            config.ok_exit.push(code);
                        }
                    }
                    config.ok_exit.sort_unstable();
                    config.ok_exit.dedup();
                }
                "mount" => config
                    .mounts
                    .push(Mount::parse(&value).map_err(|e| invalid(e.to_string()))?),
                "tmp" => {
                    config.tmp = Some(Scratch::parse(&value).map_err(|e| invalid(e.to_string()))?)
                }
                "script" => config.script = Some(Script::parse(&value).map_err(invalid)?),
                "kv" => {
                    check_bucket(&value).map_err(|e| invalid(e.to_string()))?;
                    config.kv.push(value.into_owned());
                }
                "secret" => {
                    check_secret_name(&value).map_err(|e| invalid(e.to_string()))?;
                    config.secrets.push(value.into_owned());
                }
                "schedule" => {
                    config.schedule =
                        Some(Schedule::parse(&value).map_err(|e| invalid(e.to_string()))?)
                }
                other => return Err(DeployOptionError::Unknown(other.to_owned())),
            }
        }
        config.kv.sort_unstable();
        config.kv.dedup();
        config.secrets.sort_unstable();
        config.secrets.dedup();
        if config.secrets.len() > MAX_SECRETS {
            return Err(DeployOptionError::Invalid {
                option: "secret".into(),
                why: format!("at most {MAX_SECRETS} secrets per function"),
            });
        }
        if config.kv.len() > MAX_BUCKETS {
            return Err(DeployOptionError::Invalid {
                option: "kv".into(),
                why: format!("at most {MAX_BUCKETS} buckets per function"),
            });
        }
        check_mounts(&config.mounts, config.tmp.as_ref()).map_err(|e| {
            DeployOptionError::Invalid {
                option: "mount".into(),
                why: e.to_string(),
            }
        })?;
        if config.script.is_some() && !config.mounts.iter().any(|m| m.guest == APP_DIR) {
            return Err(DeployOptionError::Invalid {
                option: "script".into(),
                why: format!(
                    "a script's code is a bundle mounted at {APP_DIR} (mount=DIGEST:{APP_DIR})"
                ),
            });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_round_trips_through_the_query_string() {
        let config = FunctionConfig {
            env: vec![("A".into(), "b c&d=e".into()), ("Z".into(), String::new())],
            args: vec!["--x".into(), "ünï code".into()],
            memory_bytes: Some(64 << 20),
            timeout_ms: Some(1500),
            max_input: Some(1),
            max_output: Some(2 << 30),
            cgi: true,
            private: true,
            receipt: true,
            stream: true,
            allow_hosts: vec!["*.example.com:443".into(), "localhost".into()],
            ok_exit: vec![1, 10, 20],
            mounts: vec![
                Mount::parse(&format!("{}:/assets", crate::Digest::of(b"a"))).expect("mount"),
                Mount::parse(&format!("{}:data:copy", crate::Digest::of(b"b"))).expect("mount"),
            ],
            tmp: Some(Scratch::parse("64MiB:/scratch").expect("scratch")),
            script: None,
            kv: vec!["cache".into(), "sessions".into()],
            secrets: vec!["API_KEY".into(), "DB_PASSWORD".into()],
            schedule: Some(Schedule::parse("*/5 * * * *").expect("schedule")),
        };
        let query = config.to_query();
        assert!(query.starts_with('?'), "{query}");
        assert_eq!(FunctionConfig::from_query(&query[1..]), Ok(config));
        assert_eq!(FunctionConfig::default().to_query(), "");
        assert_eq!(
            FunctionConfig::from_query(""),
            Ok(FunctionConfig::default())
        );
    }

    #[test]
    fn buckets_are_checked_sorted_and_bounded() {
        let config = FunctionConfig::from_query("kv=sessions&kv=cache&kv=sessions").expect("kv");
        assert_eq!(config.kv, ["cache", "sessions"]);
        let err = FunctionConfig::from_query("kv=Other%2Fbucket").unwrap_err();
        assert!(err.to_string().contains("invalid bucket name"), "{err}");
        let many: Vec<String> = (0..=MAX_BUCKETS).map(|i| format!("kv=b{i}")).collect();
        let err = FunctionConfig::from_query(&many.join("&")).unwrap_err();
        assert!(err.to_string().contains("at most 16 buckets"), "{err}");
    }

    #[test]
    fn human_forms_and_bare_flags_are_read() {
        let config = FunctionConfig::from_query("memory=64MiB&timeout=2s&cgi&stream=false")
            .expect("valid options");
        assert_eq!(config.memory_bytes, Some(64 << 20));
        assert_eq!(config.timeout_ms, Some(2000));
        assert!(config.cgi && !config.stream);
        let codes = FunctionConfig::from_query("ok_exit=20,10,0&ok_exit=10")
            .expect("exit codes")
            .ok_exit;
        assert_eq!(codes, [10, 20]);
    }

    #[test]
    fn bad_options_are_named() {
        for (query, expected) in [
            ("memory=lots", "deploy option memory: size \"lots\""),
            (
                "memory=0",
                "deploy option memory: memory limit must be at least 1 byte",
            ),
            ("timeout=0ms", "timeout must be between 1ms and 49 days"),
            ("timeout=50d", "deploy option timeout: duration"),
            ("timeout=2000h", "timeout must be between 1ms and 49 days"),
            ("env=novalue", "expected KEY=VALUE"),
            ("cgi=maybe", "expected true or false"),
            ("ok_exit=126", "expected exit codes from 0 to 125"),
            ("ok_exit=1,x", "got \"x\""),
            ("ok_exit=-1", "got \"-1\""),
            (
                "schedule=61+*+*+*+*",
                "deploy option schedule: invalid schedule",
            ),
            (
                "color=blue",
                "unknown deploy option \"color\" (known: env, arg",
            ),
        ] {
            let err = FunctionConfig::from_query(query).unwrap_err().to_string();
            assert!(err.contains(expected), "{query}: {err}");
        }
    }
}
