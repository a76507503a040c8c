//! `GET` and `PUT /v1/bundles/{digest}`: the file trees a tenant mounts into
//! its functions (`kiln deploy --dir`). The CLI asks first whether the tenant
//! already uploaded a tree (a redeploy uploads nothing again), then puts the
//! tar archive, which is checked ([`crate::bundles::check`]) before anything is
//! stored. A tenant learns only of its own bundles: whether another tenant
//! stored the same bytes never shows.

use super::upload;
use crate::auth;
use crate::body::{declared_length, drain, worth_draining};
use crate::bundles::{BundleError, EnsureError, check};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use kiln_api::{BundleInfo, ByteCount, Digest, ErrorCode, FunctionConfig, MountMode, TenantId};
use kiln_store::BlobKind;
use std::sync::Arc;

fn parse_digest(text: &str) -> ApiResult<Digest> {
    text.parse()
        .map_err(|e| ApiError::bad_request(format!("bundle digest {text:?}: {e}")))
}

/// The bundle, if this tenant uploaded it.
pub(crate) async fn bundle(
    State(state): State<Arc<AppState>>,
    Path(digest): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<BundleInfo>> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    let digest = parse_digest(&digest)?;
    // The answer "stored" holds for the deploy that follows: the collector
    // keeps the bundle until a version mounts it (an hour at most).
    if state.store.bundle(tenant.id, &digest).await?.is_some() {
        state.collector.pin_for_upload(digest).await?;
    }
    // Asked again after the pin: a collection that ended meanwhile shows.
    match state.store.bundle(tenant.id, &digest).await? {
        Some(info) => Ok(Json(info)),
        None => Err(ApiError::not_found(format!("no bundle {digest}"))),
    }
}

/// Stores a bundle under its digest: the body must hash to it.
pub(crate) async fn upload(
    State(state): State<Arc<AppState>>,
    Path(digest): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<BundleInfo>)> {
    let mut stream = body.into_data_stream();
    let result = upload_from(&state, &digest, &headers, &mut stream).await;
    if result.is_err() && worth_draining(declared_length(&headers)) {
        drain(Body::from_stream(stream)).await;
    }
    result
}

async fn upload_from(
    state: &Arc<AppState>,
    digest: &str,
    headers: &HeaderMap,
    stream: &mut axum::body::BodyDataStream,
) -> ApiResult<(StatusCode, Json<BundleInfo>)> {
    let tenant = auth::tenant(&*state.store, headers).await?;
    let expected = parse_digest(digest)?;
    let max = state.bundles.limits().max_bytes;
    if declared_length(headers).is_some_and(|len| len > max) {
        return Err(upload::too_large("bundle", max));
    }
    let mut staged = upload::stage(state, stream, "bundle", max).await?;
    let digest = staged.finish().await?;
    if digest != expected {
        return Err(ApiError::bad_request(format!(
            "the upload hashes to {digest}, not to {expected}: it was changed or cut short"
        )));
    }
    // Kept for the deploy that mounts it (an hour at most), and not taken by
    // the collector while it is stored (`gc.rs`).
    state.collector.pin_for_upload(digest).await?;
    let limits = state.bundles.limits();
    let archive = staged.path().to_owned();
    let contents = tokio::task::spawn_blocking(move || check(&archive, limits))
        .await
        .map_err(ApiError::internal)?
        .map_err(refused)?;
    // Unpacked here from the staged file, then stored for the other nodes.
    state
        .bundles
        .ensure(digest, Some(staged.path()))
        .await
        .map_err(not_ready)?;
    let size = staged.size();
    state.blobs.commit(BlobKind::Bundle, staged).await?;
    let info = BundleInfo {
        digest,
        size,
        files: contents.files,
        file_bytes: contents.file_bytes,
    };
    state.store.add_bundle(tenant.id, &info).await?;
    tracing::info!(tenant = %tenant.name, %digest, files = info.files, "bundle stored");
    Ok((StatusCode::CREATED, Json(info)))
}

fn refused(error: BundleError) -> ApiError {
    let status = match error {
        BundleError::TooLarge(_) | BundleError::TooManyFiles(_) => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, ErrorCode::InvalidBundle, error.to_string())
}

fn not_ready(error: EnsureError) -> ApiError {
    match error {
        EnsureError::Refused { source, .. } => refused(source),
        EnsureError::Unpack { ref source, .. } if kiln_store::is_full(source) => {
            ApiError::storage_full(error)
        }
        other => ApiError::internal(other),
    }
}

/// A deploy's mounts: each a bundle this tenant uploaded, unpacked on this
/// node before the deploy answers (so that its first request finds it).
/// Writable copies are made in the invocation's scratch directory, so they
/// need one (`tmp`) that holds them all; one of each is made ahead, in the
/// background, for the first request.
pub(crate) async fn mounts_ready(
    state: &AppState,
    tenant: TenantId,
    config: &FunctionConfig,
) -> ApiResult<()> {
    let mut copied = 0u64;
    for mount in &config.mounts {
        let Some(bundle) = state.store.bundle(tenant, &mount.bundle).await? else {
            return Err(ApiError::bad_request(format!(
                "deploy option mount: no bundle {} (upload it first: PUT /v1/bundles/{{digest}}, \
                 which `kiln deploy --dir` does)",
                mount.bundle
            )));
        };
        if mount.mode == MountMode::Copy {
            copied = copied.saturating_add(bundle.file_bytes);
        }
    }
    if copied > 0 {
        let room = config.tmp.as_ref().map_or(0, |tmp| tmp.bytes);
        if copied >= room {
            return Err(ApiError::bad_request(format!(
                "deploy option mount: writable copies are made in the invocation's scratch \
                 directory, and theirs hold {}: deploy with a tmp larger than that (tmp=SIZE, \
                 kiln deploy --tmp SIZE)",
                ByteCount(copied)
            )));
        }
    }
    for mount in &config.mounts {
        state
            .bundles
            .ensure(mount.bundle, None)
            .await
            .map_err(not_ready)?;
        if mount.mode == MountMode::Copy {
            state
                .runtime
                .make_copy_ahead(&state.bundles.path(&mount.bundle));
        }
    }
    Ok(())
}
