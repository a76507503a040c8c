//! How a node gets the compiled artifact of a deployed module it lacks: from the
//! cluster's object store when another node has shared it, else by compiling the
//! module's blob (and sharing the result, so that the cluster compiles each
//! module once). With the embedded store nothing is shared: a missing artifact
//! is compiled from the local blob.

use crate::metrics::Metrics;
use crate::state::{AppState, Counters};
use anyhow::Context;
use kiln_runtime::{Digest, Function, LoadError, Runtime};
use kiln_store::BlobStore;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Digests being fetched or compiled now: the requests that find one missing
/// at once wait for one fetch instead of each doing its own.
fn fetching(digest: Digest) -> Arc<tokio::sync::Mutex<()>> {
    static FETCHING: OnceLock<Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>> =
        OnceLock::new();
    let mut map = FETCHING
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    // Entries nobody waits on any more are dropped on the way.
    map.retain(|_, lock| Arc::strong_count(lock) > 1);
    map.entry(digest).or_default().clone()
}

/// The loaded function of `digest`, from the function cache, else from the
/// artifact on disk, else from the cluster or a compilation.
pub async fn function(state: &AppState, digest: Digest) -> anyhow::Result<Function> {
    match state.functions.get(&state.runtime, digest).await {
        Err(LoadError::NotCompiled(_)) => {
            let lock = fetching(digest);
            let _fetching = lock.lock().await;
            ensure_local(
                &state.runtime,
                &*state.blobs,
                &state.counters,
                &state.metrics,
                digest,
            )
            .await?;
            Ok(state.functions.get(&state.runtime, digest).await?)
        }
        other => Ok(other?),
    }
}

/// Makes sure this node's artifact cache holds `digest`'s artifact: downloaded
/// if shared, else compiled from the blob and shared.
pub async fn ensure_local(
    runtime: &Arc<Runtime>,
    blobs: &dyn BlobStore,
    counters: &Counters,
    metrics: &Metrics,
    digest: Digest,
) -> anyhow::Result<()> {
    if runtime.artifacts().contains(&digest) {
        return Ok(());
    }
    let key = runtime.artifacts().key(&digest);
    if let Some(artifact) = blobs.shared_artifact(&key).await? {
        let runtime = runtime.clone();
        tokio::task::spawn_blocking(move || runtime.artifacts().write(&digest, &artifact))
            .await?
            .with_context(|| format!("cannot store the artifact of {digest}"))?;
        counters.artifact_downloads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%digest, "downloaded a compiled artifact shared by another node");
        return Ok(());
    }
    tracing::info!(%digest, "compiling a deployed module with no artifact");
    let wasm = blobs.read(&digest).await?;
    let compiler = runtime.clone();
    let compiled = tokio::task::spawn_blocking(move || {
        compiler.compile_digested(digest, &wasm, &AtomicBool::new(false))
    })
    .await?
    .with_context(|| format!("cannot compile deployed module {digest}"))?;
    if let Some(took) = compiled.compile_time {
        counters.compiles.fetch_add(1, Ordering::Relaxed);
        metrics.add_compile_time(took);
    }
    share(runtime, blobs, digest).await;
    Ok(())
}

/// Offers this node's artifact of `digest` to the others. A failure costs the
/// others a compilation, nothing else: it is logged, not returned.
pub async fn share(runtime: &Runtime, blobs: &dyn BlobStore, digest: Digest) {
    let key = runtime.artifacts().key(&digest);
    let shared = match tokio::fs::read(runtime.artifacts().path(&digest)).await {
        Ok(artifact) => blobs
            .share_artifact(&key, artifact)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(error) = shared {
        tracing::warn!(%digest, %error, "cannot share a compiled artifact");
    }
}
