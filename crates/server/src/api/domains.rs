//! `/v1/domains` and `/v1/admin/domains`: custom domains.
//!
//! An operator grants a domain to one tenant (`PUT /v1/admin/domains/{domain}`)
//! once it has checked that the tenant controls it, the way it would for any
//! name it points at its servers; the tenant then routes path prefixes of it
//! to its functions (`PUT /v1/domains/{domain}/routes`) and may upload its
//! certificate (`PUT /v1/domains/{domain}/certificate`). A tenant cannot take
//! a domain another holds, route to another tenant's function, or claim the
//! platform's own host. Every change reloads this node's table at once (and
//! the other nodes', through the store's notifications).

use crate::auth;
use crate::certificates::{UPLOADED, seal_certificate};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use kiln_api::{
    CertificateInfo, CertificateUpload, DomainGrant, DomainInfo, MAX_ROUTES, NameKind, Route,
    RouteRequest, check_domain, check_name, check_prefix,
};
use kiln_store::{Principal, StoredDomain};
use std::collections::HashMap;
use std::sync::Arc;

/// The domain of a path, canonical, or a 400.
fn domain_of(name: &str) -> ApiResult<String> {
    check_domain(name).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Reloads this node's domains now (other nodes are notified by the store).
async fn reload(state: &AppState) -> ApiResult<()> {
    state
        .domains
        .reload(&*state.store, &state.secret_keys)
        .await?;
    Ok(())
}

fn info(domain: StoredDomain) -> DomainInfo {
    DomainInfo {
        domain: domain.domain,
        tenant: domain.tenant,
        routes: domain.routes,
        certificate: domain.certificate.map(|c| CertificateInfo {
            names: c.names,
            not_after: c.not_after,
            source: c.source,
            updated_at: c.updated_at,
        }),
    }
}

/// `GET /v1/domains`: the tenant's domains (every domain for the admin).
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<DomainInfo>>> {
    let tenant = match auth::require(&*state.store, &headers).await? {
        Principal::Admin => None,
        Principal::Tenant(t) => Some(t.id),
    };
    let domains = state.store.domains(tenant).await?;
    Ok(Json(domains.into_iter().map(info).collect()))
}

/// `PUT /v1/admin/domains/{domain}`: grants the domain to a tenant.
pub(super) async fn grant(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(domain): Path<String>,
    Json(grant): Json<DomainGrant>,
) -> ApiResult<StatusCode> {
    auth::admin(&*state.store, &headers).await?;
    let domain = domain_of(&domain)?;
    if Some(domain.as_str()) == state.settings.public_host() {
        return Err(ApiError::bad_request(format!(
            "{domain} is this server's own host: its routes are the platform's"
        )));
    }
    check_name(NameKind::Tenant, &grant.tenant)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let tenant = state
        .store
        .tenant(&grant.tenant)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no tenant named {:?}", grant.tenant)))?;
    state.store.grant_domain(&domain, tenant.id).await?;
    reload(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/admin/domains/{domain}`: revokes it, routes and certificate too.
pub(super) async fn revoke(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(domain): Path<String>,
) -> ApiResult<StatusCode> {
    auth::admin(&*state.store, &headers).await?;
    let domain = domain_of(&domain)?;
    if !state.store.revoke_domain(&domain).await? {
        return Err(ApiError::not_found(format!(
            "domain {domain} is not granted"
        )));
    }
    reload(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/domains/{domain}/routes`: serves a prefix with a function of the
/// domain's tenant.
pub(super) async fn put_route(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(domain): Path<String>,
    Json(request): Json<RouteRequest>,
) -> ApiResult<StatusCode> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    let domain = domain_of(&domain)?;
    let prefix = check_prefix(&request.prefix).map_err(|e| ApiError::bad_request(e.to_string()))?;
    check_name(NameKind::Function, &request.function)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if state
        .store
        .function(tenant.id, &request.function)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "no function named {:?} in tenant {}",
            request.function, tenant.name
        )));
    }
    let route = Route {
        prefix,
        function: request.function,
    };
    state
        .store
        .put_route(tenant.id, &domain, route, MAX_ROUTES)
        .await?;
    reload(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/domains/{domain}/routes?prefix=/api` (default `/`).
pub(super) async fn delete_route(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(domain): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<StatusCode> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    let domain = domain_of(&domain)?;
    let prefix = check_prefix(query.get("prefix").map_or("/", String::as_str))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !state
        .store
        .delete_route(tenant.id, &domain, &prefix)
        .await?
    {
        return Err(ApiError::not_found(format!(
            "domain {domain} of this tenant has no route {prefix}"
        )));
    }
    reload(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who may change `domain`'s certificate: its tenant, or the operator. The
/// tenant holding it (whose id the key is sealed with).
async fn holder_of(
    state: &AppState,
    headers: &HeaderMap,
    domain: &str,
) -> ApiResult<(Option<i64>, i64)> {
    let principal = auth::require(&*state.store, headers).await?;
    let asking = match principal {
        Principal::Admin => None,
        Principal::Tenant(t) => Some(t.id),
    };
    let held = state
        .store
        .domains(asking)
        .await?
        .into_iter()
        .find(|d| d.domain == domain)
        .ok_or_else(|| {
            ApiError::not_found(format!("domain {domain} is not granted to this tenant"))
        })?;
    Ok((asking, held.tenant_id))
}

/// `PUT /v1/domains/{domain}/certificate`: the domain's own certificate,
/// checked, its key sealed, stored for every node.
pub(super) async fn put_certificate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(domain): Path<String>,
    Json(upload): Json<CertificateUpload>,
) -> ApiResult<StatusCode> {
    let domain = domain_of(&domain)?;
    let (asking, holder) = holder_of(&state, &headers, &domain).await?;
    let stored = seal_certificate(
        &state.secret_keys,
        holder,
        &domain,
        &upload,
        UPLOADED,
        kiln_store::now(),
    )
    .map_err(ApiError::bad_request)?;
    state.store.put_certificate(asking, &domain, stored).await?;
    reload(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/domains/{domain}/certificate`: back to the server's certificate.
pub(super) async fn delete_certificate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(domain): Path<String>,
) -> ApiResult<StatusCode> {
    let domain = domain_of(&domain)?;
    let (asking, _) = holder_of(&state, &headers, &domain).await?;
    if !state.store.delete_certificate(asking, &domain).await? {
        return Err(ApiError::not_found(format!(
            "domain {domain} has no certificate of its own"
        )));
    }
    reload(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}
