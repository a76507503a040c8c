//! Custom domains in the store: which tenant each domain is granted to (by an
//! operator), the routes that say which of its functions serves which path
//! prefix, and the domain's own certificate (the chain in clear, the private
//! key sealed by the server, never in clear here). Every node loads them all
//! (`domains(None)`) and reloads on [`crate::Change::Domains`].

use crate::error::{StoreError, StoreResult};
use async_trait::async_trait;
use kiln_api::{Route, TenantId};

/// A domain as stored, with what every node needs to serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDomain {
    /// The domain, canonical (`kiln_api::check_domain`).
    pub domain: String,
    /// The tenant it is granted to.
    pub tenant_id: TenantId,
    /// That tenant's name.
    pub tenant: String,
    /// Its routes, longest prefix first.
    pub routes: Vec<Route>,
    /// Its own certificate, if any.
    pub certificate: Option<StoredCertificate>,
}

/// A domain's certificate: what a certificate provider stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCertificate {
    /// The chain, PEM.
    pub chain_pem: String,
    /// The private key, sealed by the server (`SecretKeys`).
    pub key_sealed: Vec<u8>,
    /// The DNS names the certificate is for.
    pub names: Vec<String>,
    /// When it expires, seconds since the Unix epoch.
    pub not_after: i64,
    /// The provider that stored it (`upload`).
    pub source: String,
    /// When it was stored.
    pub updated_at: i64,
}

/// Domains, routes and certificates. A supertrait of
/// [`crate::MetadataStore`]; every change notifies the other nodes.
#[async_trait]
pub trait DomainStore: Send + Sync {
    /// Grants `domain` to `tenant` (again: a no-op). `Conflict` if another
    /// tenant holds it: an operator revokes it first.
    async fn grant_domain(&self, domain: &str, tenant: TenantId) -> StoreResult<()>;
    /// Revokes `domain`, with its routes and certificate. False if it was not
    /// granted.
    async fn revoke_domain(&self, domain: &str) -> StoreResult<bool>;
    /// Serves `prefix` of `tenant`'s `domain` with `function` (replacing the
    /// route of that prefix). `NotFound` if `domain` is not granted to
    /// `tenant`; `Conflict` past `max_routes` routes.
    async fn put_route(
        &self,
        tenant: TenantId,
        domain: &str,
        route: Route,
        max_routes: usize,
    ) -> StoreResult<()>;
    /// Removes the route of `prefix` from `tenant`'s `domain`; false if there
    /// was none.
    async fn delete_route(&self, tenant: TenantId, domain: &str, prefix: &str)
    -> StoreResult<bool>;
    /// Stores `domain`'s certificate (replacing any before). `NotFound` if
    /// `domain` is not granted to `tenant` (`None`: an operator, any domain).
    async fn put_certificate(
        &self,
        tenant: Option<TenantId>,
        domain: &str,
        certificate: StoredCertificate,
    ) -> StoreResult<()>;
    /// Removes `domain`'s certificate; false if it had none (or is not
    /// `tenant`'s).
    async fn delete_certificate(&self, tenant: Option<TenantId>, domain: &str)
    -> StoreResult<bool>;
    /// `tenant`'s domains (every domain when `None`), by name.
    async fn domains(&self, tenant: Option<TenantId>) -> StoreResult<Vec<StoredDomain>>;
}

/// Sorts routes longest prefix first (the order requests are matched in),
/// then by prefix.
pub fn longest_first(routes: &mut [Route]) {
    routes.sort_by(|a, b| {
        b.prefix
            .len()
            .cmp(&a.prefix.len())
            .then_with(|| a.prefix.cmp(&b.prefix))
    });
}

/// The refusal of a change to a domain the tenant does not hold.
pub(crate) fn not_granted(domain: &str) -> StoreError {
    StoreError::NotFound(format!(
        "domain {domain} is not granted to this tenant (an operator grants it: kiln admin domain grant)"
    ))
}

/// The refusal to grant a domain another tenant holds.
pub(crate) fn held_by_another(domain: &str) -> StoreError {
    StoreError::Conflict(format!("domain {domain} is granted to another tenant"))
}

/// Whether `tenant` (any tenant when `None`, the operator) may change a domain
/// held by `held`.
pub(crate) fn may_change(held: Option<TenantId>, tenant: Option<TenantId>) -> bool {
    match (held, tenant) {
        (Some(_), None) => true,
        (Some(held), Some(tenant)) => held == tenant,
        (None, _) => false,
    }
}
