//! The control API under `/v1` (JSON, bearer tokens), documented in
//! `docs/api.md`: this file has the routes, who-am-I, node status, functions,
//! logs, tokens and tenants; deploying, usage, key-value buckets and metrics
//! have files of their own.
//! Bodies are `kiln_api`'s wire types; errors are [`ApiError`]s with a code.

mod bundles;
mod deploy;
mod domains;
mod kv;
pub(crate) mod metrics;
mod schedules;
mod secrets;
mod snapshot;
mod upload;
mod usage;

use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use kiln_api::{
    CreatedTenant, CreatedToken, FunctionDetail, FunctionSummary, GcReport, LogEntry, NameKind,
    NewNamed, NodeSeen, NodeStatus, RollbackRequest, Tenant, TokenInfo, Version, WhoAmI,
    check_name,
};
use kiln_store::Principal;
use serde::Deserialize;
use std::sync::Arc;

/// Every `/v1` route, and `/metrics` for admin tokens.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/whoami", get(whoami))
        .route("/v1/status", get(status))
        .route("/v1/admin/nodes", get(nodes))
        .route("/v1/admin/gc", post(collect_garbage))
        .route("/v1/functions", get(list_functions))
        .route(
            "/v1/functions/{name}",
            get(function).delete(delete_function),
        )
        .route("/v1/functions/{name}/versions", post(deploy::deploy))
        .route(
            "/v1/bundles/{digest}",
            get(bundles::bundle).put(bundles::upload),
        )
        .route("/v1/functions/{name}/rollback", post(rollback))
        .route("/v1/functions/{name}/logs", get(logs))
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/v1/tenants", get(list_tenants).post(create_tenant))
        .route("/v1/tenants/{name}", axum::routing::delete(delete_tenant))
        .route(
            "/v1/tenants/{name}/quota",
            get(usage::tenant_quota).put(usage::set_tenant_quota),
        )
        .route("/v1/usage", get(usage::usage))
        .route("/v1/quota", get(usage::own_quota))
        .route("/v1/kv", get(kv::buckets))
        .route("/v1/kv/{bucket}", get(kv::keys).delete(kv::delete_bucket))
        .route(
            "/v1/kv/{bucket}/{*key}",
            get(kv::get_value)
                .put(kv::put_value)
                .delete(kv::delete_value),
        )
        .route("/v1/secrets", get(secrets::list))
        .route(
            "/v1/secrets/{name}",
            axum::routing::put(secrets::set).delete(secrets::delete),
        )
        .route("/v1/domains", get(domains::list))
        .route(
            "/v1/domains/{domain}/routes",
            axum::routing::put(domains::put_route).delete(domains::delete_route),
        )
        .route(
            "/v1/domains/{domain}/certificate",
            axum::routing::put(domains::put_certificate).delete(domains::delete_certificate),
        )
        .route(
            "/v1/admin/domains/{domain}",
            axum::routing::put(domains::grant).delete(domains::revoke),
        )
        .route("/v1/schedules", get(schedules::list))
        .route("/v1/schedules/{function}", get(schedules::runs))
        .route("/metrics", get(metrics::admin_metrics))
}

async fn whoami(State(state): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<WhoAmI>> {
    Ok(Json(auth::require(&*state.store, &headers).await?.who()))
}

/// Live counters of this node (admin only).
async fn status(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<NodeStatus>> {
    auth::admin(&*state.store, &headers).await?;
    Ok(Json(crate::nodes::status(&state)))
}

/// `GET /v1/admin/nodes` (admin): every node serving on this store, with what
/// it last reported.
async fn nodes(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<NodeSeen>>> {
    auth::admin(&*state.store, &headers).await?;
    Ok(Json(state.store.nodes().await?))
}

#[derive(Deserialize)]
struct GcQuery {
    #[serde(default)]
    dry_run: bool,
}

/// One pass of the blob collector on this node, now (admin only); with
/// `?dry_run=true` it only says what would go.
async fn collect_garbage(
    State(state): State<Arc<AppState>>,
    Query(query): Query<GcQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<GcReport>> {
    auth::admin(&*state.store, &headers).await?;
    Ok(Json(state.collector.pass(query.dry_run).await?))
}

/// Most functions one page of `GET /v1/functions?limit=` holds.
const MAX_PAGE: usize = 1000;

/// `GET /v1/functions?limit=N&after=NAME`: a page of the list, in name order.
#[derive(Deserialize)]
struct FunctionsPage {
    limit: Option<usize>,
    after: Option<String>,
}

async fn list_functions(
    State(state): State<Arc<AppState>>,
    Query(page): Query<FunctionsPage>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<FunctionSummary>>> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    let limit = match page.limit {
        None => usize::MAX,
        Some(n @ 1..=MAX_PAGE) => n,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "limit {n} is out of range: 1 to {MAX_PAGE}"
            )));
        }
    };
    let mut functions = state.store.list_functions(tenant.id).await?;
    // Byte order, whatever the store's collation: `after` must cut the same list.
    functions.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let page = functions
        .into_iter()
        .filter(|f| page.after.as_ref().is_none_or(|after| f.name > *after))
        .take(limit)
        .collect();
    Ok(Json(page))
}

fn no_function(name: &str) -> ApiError {
    ApiError::not_found(format!("no function named {name:?}"))
}

async fn function(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<FunctionDetail>> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    let mut detail = state
        .store
        .function(tenant.id, &name)
        .await?
        .ok_or_else(|| no_function(&name))?;
    detail.tier = detail
        .versions
        .iter()
        .find(|v| v.number == detail.current_version)
        .and_then(|v| state.functions.tier_of(v.digest));
    Ok(Json(detail))
}

async fn delete_function(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    if !state.store.delete_function(tenant.id, &name).await? {
        return Err(no_function(&name));
    }
    state.deployments.forget(&tenant.name, &name);
    state.schedules_changed.notify_one();
    tracing::info!(tenant = %tenant.name, function = %name, "deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn rollback(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Version>> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    let request: RollbackRequest = if body.is_empty() {
        RollbackRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid rollback request: {e}")))?
    };
    if state.store.function(tenant.id, &name).await?.is_none() {
        return Err(no_function(&name));
    }
    let version = state
        .store
        .rollback(tenant.id, &name, request.version)
        .await?;
    state.deployments.forget(&tenant.name, &name);
    state.schedules_changed.notify_one();
    tracing::info!(tenant = %tenant.name, function = %name, version = version.number, "rolled back");
    Ok(Json(version))
}

#[derive(Deserialize)]
struct LogsQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

/// How long a read of the logs waits for this node's queued entries.
const LOG_FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

async fn logs(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<LogsQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<LogEntry>>> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    let limit = query.limit.unwrap_or(20).clamp(1, kiln_store::LOGS_KEPT);
    // What this node has queued is written first: a request that answered
    // is in its logs.
    state.logs.flush(LOG_FLUSH_WAIT).await;
    let entries = state
        .store
        .logs(tenant.id, &name, query.after, limit)
        .await?;
    entries.map(Json).ok_or_else(|| no_function(&name))
}

/// The tenant a token-management request acts for (`None` = the admin tokens).
async fn token_owner(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<i64>> {
    Ok(match auth::require(&*state.store, headers).await? {
        Principal::Admin => None,
        Principal::Tenant(t) => Some(t.id),
    })
}

async fn list_tokens(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<TokenInfo>>> {
    let owner = token_owner(&state, &headers).await?;
    Ok(Json(state.store.list_tokens(owner).await?))
}

async fn create_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let owner = token_owner(&state, &headers).await?;
    let request: NewNamed = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"name\": \"...\"}}: {e}")))?;
    if request.name.is_empty() || request.name.len() > 100 {
        return Err(ApiError::bad_request(
            "token name must be 1 to 100 characters",
        ));
    }
    let (token, hash) = auth::generate().map_err(ApiError::internal)?;
    let info = state.store.create_token(owner, &request.name, hash).await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { info, token })))
}

async fn revoke_token(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let owner = token_owner(&state, &headers).await?;
    if !state.store.revoke_token(owner, id).await? {
        return Err(ApiError::not_found(format!("no active token with id {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn list_tenants(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<Tenant>>> {
    auth::admin(&*state.store, &headers).await?;
    Ok(Json(state.store.list_tenants().await?))
}

/// Deletes a tenant and everything it owns (admin): its functions stop
/// answering on every node, its tokens stop working, its buckets, secrets,
/// usage and quota are gone.
async fn delete_tenant(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    auth::admin(&*state.store, &headers).await?;
    check_name(NameKind::Tenant, &name)?;
    let Some(functions) = state.store.delete_tenant(&name).await? else {
        return Err(ApiError::not_found(format!("no tenant named {name:?}")));
    };
    for function in &functions {
        state.deployments.forget(&name, function);
        state.schedules_changed.notify_one();
    }
    tracing::info!(tenant = %name, functions = functions.len(), "tenant deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn create_tenant(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<CreatedTenant>)> {
    auth::admin(&*state.store, &headers).await?;
    let request: NewNamed = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"name\": \"...\"}}: {e}")))?;
    let created = new_tenant(&state, &request.name).await?;
    tracing::info!(tenant = %created.tenant.name, "tenant created");
    Ok((StatusCode::CREATED, Json(created)))
}

/// A new tenant (default quotas) and its first token, for the admin's
/// `POST /v1/tenants` and the console's open sign-up.
pub(crate) async fn new_tenant(state: &AppState, name: &str) -> ApiResult<CreatedTenant> {
    check_name(NameKind::Tenant, name)?;
    let tenant = state.store.create_tenant(name).await?;
    let (token, hash) = auth::generate().map_err(ApiError::internal)?;
    state
        .store
        .create_token(Some(tenant.id), "initial", hash)
        .await?;
    Ok(CreatedTenant { tenant, token })
}
