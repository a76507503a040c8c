//! Streaming an upload (a module, a file bundle) into a staged blob: hashed on
//! the way, cut off at its limit, never held in memory. Deploys and bundle
//! uploads share it.

use crate::body::stalled;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::http::StatusCode;
use futures_util::StreamExt;
use kiln_api::{ByteCount, ErrorCode};
use kiln_store::StagedBlob;

/// 413 for an upload of `what` over `max`.
pub(crate) fn too_large(what: &str, max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::TooLarge,
        format!(
            "{what} is over the maximum {what} size of {}",
            ByteCount(max)
        ),
    )
}

/// Streams `stream` into a new staged blob, refusing (413) as soon as it
/// crosses `max` and (400) an empty one.
pub(crate) async fn stage(
    state: &AppState,
    stream: &mut axum::body::BodyDataStream,
    what: &str,
    max: u64,
) -> ApiResult<StagedBlob> {
    let mut staged = state.blobs.stage().await?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match stalled(&e) {
            Some(stall) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::RequestTimeout,
                stall.to_string(),
            ),
            None => ApiError::bad_request(format!("upload interrupted: {e}")),
        })?;
        if staged.size() + chunk.len() as u64 > max {
            return Err(too_large(what, max));
        }
        staged.write(&chunk).await?;
    }
    if staged.size() == 0 {
        return Err(ApiError::bad_request(format!(
            "empty upload: send the {what} as the request body"
        )));
    }
    Ok(staged)
}
