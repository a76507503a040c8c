//! `/v1/secrets`: a tenant's secrets. `PUT /v1/secrets/{name}` seals the body
//! (UTF-8, at most [`MAX_SECRET_BYTES`]) and stores it; `GET /v1/secrets` lists
//! names and times, never values; `DELETE /v1/secrets/{name}`. No route
//! returns a value: only the functions granted a secret see it.

use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use kiln_api::{MAX_SECRET_BYTES, SecretInfo, check_secret_name};
use std::sync::Arc;

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<SecretInfo>>> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    Ok(Json(state.store.list_secrets(tenant.id).await?))
}

pub(super) async fn set(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    value: Bytes,
) -> ApiResult<StatusCode> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    check_secret_name(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if value.len() > MAX_SECRET_BYTES {
        return Err(ApiError::bad_request(format!(
            "a secret's value is at most {} bytes; this one is {}",
            MAX_SECRET_BYTES,
            value.len()
        )));
    }
    if std::str::from_utf8(&value).is_err() || value.contains(&0) {
        return Err(ApiError::bad_request(
            "a secret's value is text (UTF-8, without NUL): it becomes an environment variable",
        ));
    }
    let sealed = state
        .secret_keys
        .seal(tenant.id, &name, &value)
        .map_err(|e| {
            ApiError::new(
                StatusCode::CONFLICT,
                kiln_api::ErrorCode::Conflict,
                e.to_string(),
            )
        })?;
    state.store.put_secret(tenant.id, &name, sealed).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    check_secret_name(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    match state.store.delete_secret(tenant.id, &name).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found(format!("no secret named {name:?}"))),
    }
}
