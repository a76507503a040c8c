//! `POST /v1/functions/{name}/versions`: deploy a module as a new version.
//!
//! The body is streamed to a staging file (hashed on the way, cut off at the
//! maximum module size), mapped (never read into memory), validated and compiled
//! into the artifact cache (within the compile-time limit, on one of a bounded
//! number of compiler threads), and only then committed: blob first, then the metadata
//! row that refers to it. The compiled function goes into the function cache, so
//! that the first request after a deploy loads nothing. A deploy
//! that answers 201 is durable; one that fails leaves nothing behind.

use super::{bundles, snapshot, upload};
use crate::auth;
use crate::body::{declared_length, drain, worth_draining};
use crate::error::{ApiError, ApiResult};
use crate::functions::FunctionError;
use crate::functions::Made;
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use kiln_api::{
    APP_DIR, BinaryKind, ByteCount, Deployed, ErrorCode, FunctionConfig, GIB, MIB, NameKind,
    check_name,
};
use kiln_runtime::{Compiled, HostPattern, LoadError, ModuleKind, Tier};
use kiln_store::{BlobKind, BlobRef, NewVersion, Pin};
use std::sync::Arc;

pub(crate) async fn deploy(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Deployed>)> {
    let mut stream = body.into_data_stream();
    let mut pins = Vec::new();
    let result = deploy_from(&state, name, query, &headers, &mut stream, &mut pins).await;
    // The version refers to its blobs now, or the deploy failed: either way
    // the collector (`gc.rs`) may have them back.
    for pin in pins {
        state.collector.unpin(pin).await;
    }
    if result.is_err() && worth_draining(declared_length(&headers)) {
        drain(Body::from_stream(stream)).await;
    }
    result
}

async fn deploy_from(
    state: &Arc<AppState>,
    name: String,
    query: Option<String>,
    headers: &HeaderMap,
    stream: &mut axum::body::BodyDataStream,
    pins: &mut Vec<Pin>,
) -> ApiResult<(StatusCode, Json<Deployed>)> {
    let tenant = auth::tenant(&*state.store, headers).await?;
    check_name(NameKind::Function, &name)?;
    let mut config = parse_config(query.as_deref().unwrap_or(""), state)?;
    let max = state.settings.max_module_bytes;
    if declared_length(headers).is_some_and(|len| len > max) {
        return Err(upload::too_large("module", max));
    }
    // Pinned before they are looked for: the collector cannot take them from
    // under this deploy (`gc.rs`).
    let mounted: Vec<_> = config
        .mounts
        .iter()
        .map(|m| BlobRef::bundle(m.bundle))
        .collect();
    pins.push(state.collector.pin_for_deploy(mounted.clone()).await?);
    bundles::mounts_ready(state, tenant.id, &config).await?;
    let mut staged = match config.script.clone() {
        Some(script) => {
            if declared_length(headers).is_some_and(|len| len > 0) {
                return Err(ApiError::bad_request(format!(
                    "a script's deploy has no body: its code is the bundle mounted at {APP_DIR}"
                )));
            }
            let app = config
                .mounts
                .iter()
                .find(|m| m.guest == APP_DIR)
                .map(|m| state.bundles.path(&m.bundle))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("a script needs a mount at {APP_DIR}"))
                })?;
            snapshot::snapshot(state, &script, &mut config, app).await?
        }
        None => upload::stage(state, stream, "module", max).await?,
    };
    let mut digest = staged.finish().await?;
    if config.script.is_none()
        && let Some(initialized) =
            snapshot::initialize_module(state, &config, staged.path()).await?
    {
        staged = initialized;
        digest = staged.finish().await?;
    }
    let size = staged.size();
    let module = vec![BlobRef::module(digest)];
    pins.push(state.collector.pin_for_deploy(module).await?);

    // A new artifact is shared before the version exists, so that a node that
    // sees the version finds it.
    let Made {
        compiled,
        tier_note,
    } = state
        .functions
        .compile_upload(digest, staged.path().to_owned())
        .await
        .map_err(compile_failed)?;
    check_config_fits(&config, compiled.info.kind)?;
    let kind = match compiled.info.kind {
        ModuleKind::CoreCommand => BinaryKind::Module,
        ModuleKind::ComponentCommand => BinaryKind::Component,
        ModuleKind::HttpComponent => BinaryKind::HttpComponent,
    };
    state.blobs.commit(BlobKind::Module, staged).await?;
    let version = state
        .store
        .deploy(
            tenant.id,
            &name,
            NewVersion {
                digest,
                size,
                config,
                kind,
            },
        )
        .await?;
    state.deployments.forget(&tenant.name, &name);
    state.schedules_changed.notify_one();
    // Mounted by a version now: what their uploads pinned is released.
    state.collector.mounted(mounted).await;
    // Its first request finds it loaded: no cold start after a deploy.
    let Compiled {
        function,
        compile_time,
        ..
    } = compiled;
    let tier = function.tier();
    state.functions.insert(function);
    // Baseline code now, optimized code once compiled in the background (from
    // the stored blob, hence after the commit).
    if tier == Tier::Baseline {
        state.functions.optimize_later(digest);
    }
    tracing::info!(tenant = %tenant.name, function = %name, version = version.number, %digest, "deployed");
    Ok((
        StatusCode::CREATED,
        Json(Deployed {
            url: format!("{}/fn/{}/{}", state.settings.public_url, tenant.name, name),
            tenant: tenant.name,
            function: name,
            version: version.number,
            digest,
            size,
            compile_ms: compile_time.map(|t| t.as_secs_f64() * 1e3),
            kind,
            tier: Some(tier),
            tier_note,
        }),
    ))
}

/// The function's configuration, from the deploy's query string (the one codec,
/// `FunctionConfig::from_query`), then checked against this server: memory
/// within its maximum, host patterns well formed.
fn parse_config(query: &str, state: &AppState) -> ApiResult<FunctionConfig> {
    let mut config =
        FunctionConfig::from_query(query).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let max = state.runtime.max_memory_bytes();
    if config.memory_bytes.is_some_and(|bytes| bytes > max) {
        return Err(ApiError::bad_request(format!(
            "deploy option memory: memory limit must be between 1 byte and this server's maximum of {}",
            ByteCount(max)
        )));
    }
    for host in &mut config.allow_hosts {
        let pattern: HostPattern = host
            .parse()
            .map_err(|e| ApiError::bad_request(format!("deploy option allow_host: {e}")))?;
        *host = pattern.to_string();
    }
    if let Some(schedule) = &config.schedule {
        let every = schedule.shortest_interval(kiln_store::now());
        let least = state.settings.schedule_min_interval;
        if every < least {
            return Err(ApiError::bad_request(format!(
                "deploy option schedule: \"{schedule}\" runs every {} at times, more often than \
                 this server allows ({}; kiln up --schedule-min-interval)",
                humantime::format_duration(every),
                humantime::format_duration(least)
            )));
        }
    }
    Ok(config)
}

/// Largest `max_input` / `max_output` of a function that holds its whole body
/// and output in memory.
pub(crate) const MAX_BUFFERED_BYTES: u64 = 64 * MIB;
/// Largest `max_input` / `max_output` of a function that streams them.
pub(crate) const MAX_STREAMED_BYTES: u64 = 4 * GIB;

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

/// A compile that failed, as the deploy answers it.
fn compile_failed(error: FunctionError) -> ApiError {
    match error {
        FunctionError::Busy => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Busy,
            "every compiler is busy with other deploys; try again later",
        ),
        too_slow @ FunctionError::TooSlow(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::CompileLimit,
            too_slow.to_string(),
        ),
        FunctionError::Load(e) => match e {
            LoadError::Invalid(v) => invalid_module(v.to_string()),
            compile @ LoadError::Compile(_) => {
                invalid_module(crate::error::FailureCause::of(&compile).to_string())
            }
            unfit @ LoadError::Unfit(_) => invalid_module(unfit.to_string()),
            LoadError::WriteArtifact { ref source, .. } if kiln_store::is_full(source) => {
                ApiError::storage_full(e)
            }
            other => ApiError::internal(other),
        },
        other => ApiError::internal(other),
    }
}

fn invalid_module(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidModule, message)
}
