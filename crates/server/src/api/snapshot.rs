//! Snapshots at deploy. A script function (`kiln deploy app.py`, `app.js`):
//! the language's runtime is run once on the user's code, mounted at `/app`,
//! and the snapshot it leaves is what gets deployed, exactly like an uploaded
//! module (stored, compiled, shared with the cluster). A request starts a fresh
//! instance of that snapshot: the interpreter and the user's imports are
//! already loaded. An uploaded core module that exports `wizer-initialize`
//! gets the same treatment ([`initialize_module`]).

use crate::error::{ApiError, ApiResult};
use crate::languages::init_func;
use crate::state::{AppState, limits_of};
use axum::http::StatusCode;
use bytes::Bytes;
use kiln_api::{APP_DIR, ErrorCode, FunctionConfig, Script};
use kiln_runtime::{Snapshot, SnapshotError, SnapshotInit, WIZER_INITIALIZE, file_has_initializer};
use kiln_store::StagedBlob;
use std::path::PathBuf;
use std::sync::Arc;

/// Most lines of an initializer's stderr quoted in a failed deploy's answer
/// (the whole of it is a traceback's tail, where the error is).
const QUOTED_LINES: usize = 12;

/// Runs `script`'s runtime on its code (the bundle mounted at `/app`, unpacked
/// at `app`) and stages the snapshot as the version's module. A runtime that
/// finds a handler (a `fetch` export, a `handle` function) says so, and the
/// function then answers in CGI form: `config.cgi` is set.
pub(crate) async fn snapshot(
    state: &AppState,
    script: &Script,
    config: &mut FunctionConfig,
    app: PathBuf,
) -> ApiResult<StagedBlob> {
    let wasm = state.languages.wasm(script.language).await?;
    let mut env = config.env.clone();
    env.push(("KILN_ENTRY".into(), script.guest_entry()));
    let dirs = std::iter::once((app, APP_DIR.to_owned()))
        .chain(
            state
                .languages
                .mounts()
                .remove(&script.language)
                .unwrap_or_default()
                .into_iter()
                .map(|mount| (mount.host, mount.guest)),
        )
        .collect();
    let init = SnapshotInit {
        init_func: init_func(script.language).to_owned(),
        env,
        dirs,
        limits: limits_of(config, state.deployments.default_limits()),
    };
    let snapshot = take(state, wasm, init)
        .await?
        .map_err(|e| failed(&script.entry, e))?;
    // The runtime's answer: a component returns it, a core module prints it last.
    let printed = String::from_utf8_lossy(&snapshot.stdout);
    let style = snapshot.answer.as_deref().or(printed.lines().last());
    if style == Some("handler") {
        config.cgi = true;
    }
    stage(state, &snapshot.wasm).await
}

/// An uploaded core module that exports `wizer-initialize` is initialized
/// here, once, with the function's environment and mounts, and the snapshot is
/// deployed in its place; `None` for any other module.
pub(crate) async fn initialize_module(
    state: &AppState,
    config: &FunctionConfig,
    module: &std::path::Path,
) -> ApiResult<Option<StagedBlob>> {
    let path = module.to_owned();
    let asks = tokio::task::spawn_blocking(move || file_has_initializer(&path))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    if !asks {
        return Ok(None);
    }
    // Only a module that asks to be initialized is read whole: wizer rewrites it.
    let wasm: Arc<[u8]> = tokio::fs::read(module)
        .await
        .map_err(ApiError::internal)?
        .into();
    let init = SnapshotInit {
        init_func: WIZER_INITIALIZE.to_owned(),
        env: config.env.clone(),
        dirs: config
            .mounts
            .iter()
            .map(|m| (state.bundles.path(&m.bundle), m.guest.clone()))
            .collect(),
        limits: limits_of(config, state.deployments.default_limits()),
    };
    let snapshot = take(state, wasm, init)
        .await?
        .map_err(|e| failed(WIZER_INITIALIZE, e))?;
    stage(state, &snapshot.wasm).await.map(Some)
}

/// Takes a snapshot on a blocking thread (it compiles and runs guest code).
async fn take(
    state: &AppState,
    wasm: Arc<[u8]>,
    init: SnapshotInit,
) -> ApiResult<Result<Snapshot, SnapshotError>> {
    let runtime = state.runtime.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        handle.block_on(async move { runtime.snapshot(&wasm, &init).await })
    })
    .await
    .map_err(ApiError::internal)
}

async fn stage(state: &AppState, wasm: &[u8]) -> ApiResult<StagedBlob> {
    let mut staged = state.blobs.stage().await?;
    staged.write(wasm).await?;
    Ok(staged)
}

/// A failed initializer as the deploy's answer: the interpreter's own message.
fn failed(what: &str, error: SnapshotError) -> ApiError {
    match error {
        SnapshotError::Failed { reason, stderr, .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::ScriptFailed,
            format!(
                "{what} failed when it was loaded at deploy ({reason}){}",
                quoted(&stderr)
            ),
        ),
        SnapshotError::AtCapacity => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Busy,
            "every instance slot is busy; try the deploy again later",
        ),
        SnapshotError::Unsupported(why) => ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidModule,
            format!("cannot initialize this module at deploy: {why}"),
        ),
        other => ApiError::internal(other),
    }
}

/// The last lines of `stderr`, indented under the message ("" if empty).
fn quoted(stderr: &Bytes) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(QUOTED_LINES)..];
    tail.iter().map(|line| format!("\n  {line}")).collect()
}
