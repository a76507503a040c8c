//! Custom domains on this node: the table of domains and their routes that the
//! router consults by `Host` (longest prefix wins), and the domains' own
//! certificates, which the HTTPS resolver picks by SNI. Both are loaded from
//! the store, whole, at start, after every change made through this node, and
//! by `renewal.rs` on every other node's change (`Change::Domains`) and
//! periodically, and swapped in at once: a request sees one table.
//!
//! A request whose host is no custom domain gets the platform's own routes; a
//! custom domain's requests never reach them (its `/v1` is its function's).

use crate::certificates::{SniCertificates, open_certificate};
use crate::secrets::SecretKeys;
use crate::sync::lock;
use kiln_api::{Route, prefix_matches};
use kiln_store::{MetadataStore, StoredDomain};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What a request to a custom domain is served by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Routed {
    /// This tenant's function.
    Function { tenant: String, function: String },
    /// The domain has no route for the path.
    NoRoute,
}

/// One domain's routes, longest prefix first.
#[derive(Debug)]
struct DomainRoutes {
    tenant: String,
    routes: Vec<Route>,
}

/// The node's custom domains.
pub(crate) struct Domains {
    table: Mutex<Arc<HashMap<String, DomainRoutes>>>,
    /// The domains' certificates, shared with the HTTPS resolver.
    pub(crate) certificates: Arc<SniCertificates>,
}

impl Domains {
    pub(crate) fn new() -> Domains {
        Domains {
            table: Mutex::new(Arc::default()),
            certificates: Arc::default(),
        }
    }

    /// Who serves `path` on `host` (a `Host` header's value: a port and a
    /// trailing dot are ignored, case too); `None` if `host` is no custom
    /// domain.
    pub(crate) fn route(&self, host: &str, path: &str) -> Option<Routed> {
        let table = lock(&self.table).clone();
        if table.is_empty() {
            return None;
        }
        let name = host_name(host);
        let domain = match name.bytes().any(|b| b.is_ascii_uppercase()) {
            true => table.get(&name.to_ascii_lowercase()),
            false => table.get(name),
        }?;
        let route = domain
            .routes
            .iter()
            .find(|route| prefix_matches(&route.prefix, path));
        Some(match route {
            Some(route) => Routed::Function {
                tenant: domain.tenant.clone(),
                function: route.function.clone(),
            },
            None => Routed::NoRoute,
        })
    }

    /// Reads every domain, its routes and its certificate from the store and
    /// swaps them in. A certificate that cannot be opened (a key sealed by
    /// another secret key) is logged and left out: its domain gets the
    /// server's certificate.
    pub(crate) async fn reload(
        &self,
        store: &dyn MetadataStore,
        keys: &SecretKeys,
    ) -> kiln_store::StoreResult<Vec<StoredDomain>> {
        let stored = store.domains(None).await?;
        let mut table = HashMap::with_capacity(stored.len());
        let mut certificates = HashMap::new();
        for domain in &stored {
            if let Some(certificate) = &domain.certificate {
                match open_certificate(keys, domain.tenant_id, &domain.domain, certificate) {
                    Ok(certified) => {
                        certificates.insert(domain.domain.clone(), Arc::new(certified));
                    }
                    Err(e) => tracing::warn!(
                        domain = %domain.domain,
                        "cannot serve this domain's certificate ({e}); serving the server's"
                    ),
                }
            }
            table.insert(
                domain.domain.clone(),
                DomainRoutes {
                    tenant: domain.tenant.clone(),
                    routes: domain.routes.clone(),
                },
            );
        }
        *lock(&self.table) = Arc::new(table);
        self.certificates.replace(certificates);
        Ok(stored)
    }
}

/// The host name of a `Host` header's value: without a port or a trailing dot.
fn host_name(host: &str) -> &str {
    let name = match host.rsplit_once(':') {
        // `[::1]:8080` and `example.com:8080`, not the colons of a bare IPv6.
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    name.strip_suffix('.').unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A domain, its tenant, and its routes (prefix, function).
    type Entry<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

    fn domains(entries: &[Entry<'_>]) -> Domains {
        let domains = Domains::new();
        let table = entries
            .iter()
            .map(|(name, tenant, routes)| {
                let mut routes: Vec<Route> = routes
                    .iter()
                    .map(|(prefix, function)| Route {
                        prefix: (*prefix).into(),
                        function: (*function).into(),
                    })
                    .collect();
                kiln_store::longest_first(&mut routes);
                (
                    (*name).to_owned(),
                    DomainRoutes {
                        tenant: (*tenant).into(),
                        routes,
                    },
                )
            })
            .collect();
        *lock(&domains.table) = Arc::new(table);
        domains
    }

    fn served(tenant: &str, function: &str) -> Option<Routed> {
        Some(Routed::Function {
            tenant: tenant.into(),
            function: function.into(),
        })
    }

    #[test]
    fn the_longest_matching_prefix_serves_and_other_hosts_are_not_custom() {
        let d = domains(&[
            (
                "api.example.com",
                "acme",
                &[("/", "site"), ("/api", "api"), ("/api/v2", "v2")],
            ),
            ("only.example.com", "acme", &[("/docs", "docs")]),
        ]);
        assert_eq!(d.route("api.example.com", "/"), served("acme", "site"));
        assert_eq!(d.route("api.example.com", "/apix"), served("acme", "site"));
        assert_eq!(d.route("api.example.com", "/api"), served("acme", "api"));
        assert_eq!(
            d.route("API.example.com:8443", "/api/users"),
            served("acme", "api")
        );
        assert_eq!(
            d.route("api.example.com.", "/api/v2/x"),
            served("acme", "v2")
        );
        assert_eq!(d.route("only.example.com", "/"), Some(Routed::NoRoute));
        assert_eq!(d.route("other.example.com", "/"), None);
        assert_eq!(d.route("127.0.0.1:8080", "/fn/a/b"), None);
        assert_eq!(d.route("[::1]:8080", "/"), None);
        assert_eq!(Domains::new().route("api.example.com", "/"), None);
    }
}
