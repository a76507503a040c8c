//! `/v1/kv`: a tenant's key-value buckets, as its functions see them.
//!
//! - `GET /v1/kv`: the buckets, with what the tenant stores and may store;
//! - `GET /v1/kv/{bucket}?cursor=N&limit=N`: a page of keys ([`KvKeys`]);
//! - `GET|PUT|DELETE /v1/kv/{bucket}/{key}`: a value, as raw bytes (the key
//!   is the rest of the path, percent-decoded: it may hold `/`);
//! - `DELETE /v1/kv/{bucket}`: every key of the bucket.
//!
//! Same limits as functions' calls; a write past the tenant's quota is a 403
//! `quota-exceeded` and changes nothing.

use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::kv::kv_error;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiln_api::{KvCaps, KvKeys, KvOverview, KvUsage, KvWrite, check_bucket};
use kiln_runtime::KvError;
use serde::Deserialize;
use std::sync::Arc;

pub(super) async fn buckets(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<KvOverview>> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    let KvCaps { keys, bytes } = state.kv.caps(tenant.id);
    Ok(Json(KvOverview {
        buckets: state.kv.store.kv_buckets(tenant.id).await?,
        used: state.kv.store.kv_usage(tenant.id).await?,
        quota: KvUsage { keys, bytes },
    }))
}

#[derive(Debug, Deserialize)]
pub(super) struct Page {
    cursor: Option<u64>,
    limit: Option<u32>,
}

pub(super) async fn keys(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(bucket): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult<Json<KvKeys>> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    check_bucket(&bucket)?;
    let limit = page
        .limit
        .unwrap_or(state.kv.limits.page_keys)
        .clamp(1, state.kv.limits.page_keys);
    Ok(Json(
        state
            .kv
            .store
            .kv_list(tenant.id, &bucket, page.cursor, limit)
            .await?,
    ))
}

pub(super) async fn delete_bucket(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(bucket): Path<String>,
) -> ApiResult<StatusCode> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    check_bucket(&bucket)?;
    match state.kv.store.kv_delete_bucket(tenant.id, &bucket).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found(format!(
            "bucket {bucket:?} holds no keys"
        ))),
    }
}

fn refused(e: KvError) -> ApiError {
    match e {
        KvError::Refused(m) | KvError::NotGranted(m) => ApiError::bad_request(m),
        KvError::Unavailable(m) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            kiln_api::ErrorCode::Unavailable,
            m,
        ),
    }
}

pub(super) async fn get_value(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((bucket, key)): Path<(String, String)>,
) -> ApiResult<Response> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    check_bucket(&bucket)?;
    state.kv.check_key(&key).map_err(refused)?;
    match state.kv.store.kv_get(tenant.id, &bucket, &key).await? {
        Some(value) => {
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response())
        }
        None => Err(ApiError::not_found(format!(
            "bucket {bucket:?} has no key {key:?}"
        ))),
    }
}

pub(super) async fn put_value(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((bucket, key)): Path<(String, String)>,
    value: Bytes,
) -> ApiResult<StatusCode> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    check_bucket(&bucket)?;
    let writes = vec![KvWrite::Set {
        key,
        value: value.to_vec(),
    }];
    state.kv.check_writes(&writes).map_err(refused)?;
    let caps = state.kv.caps(tenant.id);
    state
        .kv
        .store
        .kv_write(tenant.id, &bucket, writes, caps)
        .await
        .map_err(|e| match e {
            e @ kiln_store::StoreError::QuotaExceeded(_) => ApiError::from(e),
            e => refused(kv_error(e)),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn delete_value(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((bucket, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    check_bucket(&bucket)?;
    state.kv.check_key(&key).map_err(refused)?;
    let caps = state.kv.caps(tenant.id);
    state
        .kv
        .store
        .kv_write(tenant.id, &bucket, vec![KvWrite::Delete { key }], caps)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
