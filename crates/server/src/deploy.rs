//! `POST /v1/functions/{name}/versions`: deploy a module as a new version.
//!
//! The body is streamed to a staging file (hashed on the way, cut off at the
//! maximum module size), mapped (never read into memory), validated and compiled
//! into the artifact cache (within the compile-time limit, on one of a bounded
//! number of compiler threads), and only then committed: blob first, then the metadata
//! row that refers to it. The compiled function goes into the function cache, so
//! that the first request after a deploy loads nothing. A deploy
//! that answers 201 is durable; one that fails leaves nothing behind.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::{auth, drain, names};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use futures_util::StreamExt;
use kiln_runtime::{
    ByteCount, Compiled, Digest, GIB, HostPattern, LoadError, MIB, ModuleKind, ParseHostError,
    parse_duration, parse_size,
};
use kiln_store::{FunctionConfig, NewVersion};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Serialize)]
pub struct Deployed {
    pub tenant: String,
    pub function: String,
    pub version: u32,
    pub digest: String,
    pub size: u64,
    /// Milliseconds spent compiling; `null` when the module was already compiled.
    pub compile_ms: Option<f64>,
    /// `module` (a WASI preview 1 core module) or `component` (a WASI 0.2
    /// `wasi:cli/command` component).
    pub kind: &'static str,
    pub url: String,
}

pub async fn deploy(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Deployed>)> {
    let mut stream = body.into_data_stream();
    let result = deploy_from(&state, name, query, &headers, &mut stream).await;
    if result.is_err() && drain::worth_draining(drain::declared_length(&headers)) {
        drain::drain(Body::from_stream(stream)).await;
    }
    result
}

async fn deploy_from(
    state: &Arc<AppState>,
    name: String,
    query: Option<String>,
    headers: &HeaderMap,
    stream: &mut axum::body::BodyDataStream,
) -> ApiResult<(StatusCode, Json<Deployed>)> {
    let tenant = auth::tenant(&*state.store, headers).await?;
    names::check("function", &name)?;
    let config = parse_config(query.as_deref().unwrap_or(""), state)?;
    let max = state.settings.max_module_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "module is over the maximum module size of {}",
                ByteCount(max)
            ),
        )
    };
    if drain::declared_length(headers).is_some_and(|len| len > max) {
        return Err(too_large());
    }

    let mut staged = state.blobs.stage().await?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match crate::listen::stalled(&e) {
            Some(stall) => ApiError::new(StatusCode::REQUEST_TIMEOUT, stall.to_string()),
            None => ApiError::bad_request(format!("upload interrupted: {e}")),
        })?;
        if staged.size() + chunk.len() as u64 > max {
            return Err(too_large());
        }
        staged.write(&chunk).await?;
    }
    if staged.size() == 0 {
        return Err(ApiError::bad_request(
            "empty upload: send the WebAssembly module as the request body",
        ));
    }
    let digest = staged.finish().await?;
    let size = staged.size();

    let compiled = compile(state, digest, staged.path().to_owned()).await?;
    check_config_fits(&config, compiled.info.kind)?;
    if let Some(took) = compiled.compile_time {
        state.counters.compiles.fetch_add(1, Ordering::Relaxed);
        state.metrics.add_compile_time(took);
        // Before the version exists, so that a node that sees it finds the artifact.
        crate::artifacts::share(&state.runtime, &*state.blobs, digest).await;
    }
    state.blobs.commit(staged).await?;
    let version = state
        .store
        .deploy(
            tenant.id,
            &name,
            NewVersion {
                digest,
                size,
                config,
            },
        )
        .await?;
    state.deployments.forget(&tenant.name, &name);
    // Its first request finds it loaded: no cold start after a deploy.
    state.functions.insert(compiled.function);
    tracing::info!(tenant = %tenant.name, function = %name, version = version.number, %digest, "deployed");
    Ok((
        StatusCode::CREATED,
        Json(Deployed {
            url: format!("{}/fn/{}/{}", state.settings.public_url, tenant.name, name),
            tenant: tenant.name,
            function: name,
            version: version.number,
            digest: digest.to_hex(),
            size,
            compile_ms: compiled.compile_time.map(|t| t.as_secs_f64() * 1e3),
            kind: match compiled.info.kind {
                ModuleKind::CoreCommand => "module",
                ModuleKind::ComponentCommand => "component",
                ModuleKind::HttpComponent => "http-component",
            },
        }),
    ))
}

/// The function's configuration, from the deploy's query string:
/// `env=K=V`, `arg=A` and `allow_host=HOST[:PORT]` (repeatable), `memory=64MiB`,
/// `timeout=5s`, `max_input=64MiB`, `max_output=64MiB`, `cgi`, `private`,
/// `receipt`, `stream`.
fn parse_config(query: &str, state: &AppState) -> ApiResult<FunctionConfig> {
    let mut config = FunctionConfig::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let bad = |why: String| ApiError::bad_request(format!("deploy option {key}: {why}"));
        match key.as_ref() {
            "env" => match value.split_once('=') {
                Some((k, v)) if !k.is_empty() => config.env.push((k.to_owned(), v.to_owned())),
                _ => return Err(bad(format!("expected KEY=VALUE, got {value:?}"))),
            },
            "arg" => config.args.push(value.into_owned()),
            "memory" => {
                let bytes = parse_size(&value).map_err(|e| bad(e.to_string()))?;
                let max = state.runtime.max_memory_bytes();
                if bytes == 0 || bytes > max {
                    return Err(bad(format!(
                        "memory limit must be between 1 byte and this server's maximum of {}",
                        ByteCount(max)
                    )));
                }
                config.memory_bytes = Some(bytes);
            }
            "timeout" => {
                let d = parse_duration(&value).map_err(|e| bad(e.to_string()))?;
                let ms = d.as_millis();
                if ms == 0 || ms > u128::from(u32::MAX) {
                    return Err(bad("timeout must be between 1ms and 49 days".into()));
                }
                config.timeout_ms = Some(ms as u64);
            }
            "max_input" => {
                config.max_input = Some(parse_size(&value).map_err(|e| bad(e.to_string()))?);
            }
            "max_output" => {
                config.max_output = Some(parse_size(&value).map_err(|e| bad(e.to_string()))?);
            }
            "cgi" => config.cgi = parse_flag(&value).map_err(bad)?,
            "private" => config.private = parse_flag(&value).map_err(bad)?,
            "receipt" => config.receipt = parse_flag(&value).map_err(bad)?,
            "stream" => config.stream = parse_flag(&value).map_err(bad)?,
            "allow_host" => {
                let pattern: HostPattern = value
                    .parse()
                    .map_err(|e: ParseHostError| bad(e.to_string()))?;
                config.allow_hosts.push(pattern.to_string());
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown deploy option {other:?} (known: env, arg, memory, timeout, max_input, \
                     max_output, cgi, private, receipt, stream, allow_host)"
                )));
            }
        }
    }
    Ok(config)
}

/// Largest `max_input` / `max_output` of a function that holds its whole body
/// and output in memory.
pub const MAX_BUFFERED_BYTES: u64 = 64 * MIB;
/// Largest `max_input` / `max_output` of a function that streams them.
pub const MAX_STREAMED_BYTES: u64 = 4 * GIB;

/// Refuses options that mean nothing for this kind of binary, rather than
/// ignoring them, and sizes over what the function's kind can hold.
fn check_config_fits(config: &FunctionConfig, kind: ModuleKind) -> ApiResult<()> {
    let refuse = |message: &str| Err(ApiError::bad_request(message.to_owned()));
    let streams = config.stream || kind == ModuleKind::HttpComponent;
    let max = if streams {
        MAX_STREAMED_BYTES
    } else {
        MAX_BUFFERED_BYTES
    };
    for (name, value) in [
        ("max_input", config.max_input),
        ("max_output", config.max_output),
    ] {
        if value.is_some_and(|v| v > max) {
            let why = if streams {
                String::new()
            } else {
                " for a function that does not stream (deploy it with stream to go higher)".into()
            };
            return Err(ApiError::bad_request(format!(
                "{name} is over the maximum of {}{why}",
                ByteCount(max)
            )));
        }
    }
    match kind {
        ModuleKind::HttpComponent if config.cgi || config.stream => refuse(
            "cgi and stream apply to commands: a wasi:http component writes its own \
             status and headers, and always streams",
        ),
        ModuleKind::HttpComponent if !config.args.is_empty() => {
            refuse("a wasi:http component takes no arguments")
        }
        ModuleKind::CoreCommand if !config.allow_hosts.is_empty() => {
            refuse("allow_host applies to components: a core module cannot make HTTP requests")
        }
        _ => Ok(()),
    }
}

fn parse_flag(value: &str) -> Result<bool, String> {
    match value {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

/// Validates and compiles the staged module within the compile-time limit,
/// waiting for a compiler slot first (the wait counts against the limit).
async fn compile(state: &AppState, digest: Digest, path: PathBuf) -> ApiResult<Compiled> {
    let limit = state.settings.compile_timeout;
    let deadline = tokio::time::Instant::now() + limit;
    let slot = tokio::time::timeout_at(deadline, state.compile_slots.clone().acquire_owned())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "every compiler is busy with other deploys; try again later",
            )
        })?;
    let runtime = state.runtime.clone();
    let abandoned = Arc::new(AtomicBool::new(false));
    let job = tokio::task::spawn_blocking({
        let abandoned = abandoned.clone();
        move || {
            let _slot = slot;
            let file = std::fs::File::open(&path)?;
            // SAFETY: the staging file is private to this deploy (a fresh name in
            // the store's staging directory) and nothing writes to it any more; if
            // the deploy gives up and removes it, the mapping stays valid.
            let wasm = unsafe { memmap2::Mmap::map(&file) }?;
            Ok::<_, std::io::Error>(runtime.compile_digested(digest, &wasm, &abandoned))
        }
    });
    let Ok(joined) = tokio::time::timeout_at(deadline, job).await else {
        abandoned.store(true, Ordering::Release);
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "module is too expensive to compile: it took longer than the compile-time limit of {}",
                humantime::format_duration(limit)
            ),
        ));
    };
    joined
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
        .map_err(|e| match e {
            LoadError::Invalid(v) => ApiError::bad_request(v.to_string()),
            LoadError::Compile(m) => ApiError::bad_request(format!("compilation failed: {m}")),
            unfit @ LoadError::Unfit(_) => ApiError::bad_request(unfit.to_string()),
            full @ LoadError::WriteArtifact { .. } if is_full_write(&full) => {
                ApiError::storage_full(full)
            }
            other => ApiError::internal(other),
        })
}

fn is_full_write(error: &LoadError) -> bool {
    matches!(error, LoadError::WriteArtifact { source, .. } if kiln_store::is_full(source))
}
