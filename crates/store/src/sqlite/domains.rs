//! Custom domains in SQLite (the contract is in `domains.rs`). One node: the
//! server reloads its routes after its own changes, so nothing is notified.

use super::{SqliteStore, internal};
use crate::domains::{
    DomainStore, StoredCertificate, StoredDomain, held_by_another, longest_first, may_change,
    not_granted,
};
use crate::error::{StoreError, StoreResult};
use async_trait::async_trait;
use kiln_api::{Route, TenantId};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// The tenant holding `domain`, if it is granted.
fn holder(conn: &Connection, domain: &str) -> StoreResult<Option<TenantId>> {
    conn.query_row(
        "SELECT tenant_id FROM domains WHERE name = ?1",
        [domain],
        |r| r.get(0),
    )
    .optional()
    .map_err(internal)
}

/// `NotFound` unless `domain` is granted to `tenant` (any tenant when `None`).
fn check_holder(conn: &Connection, tenant: Option<TenantId>, domain: &str) -> StoreResult<()> {
    match may_change(holder(conn, domain)?, tenant) {
        true => Ok(()),
        false => Err(not_granted(domain)),
    }
}

#[async_trait]
impl DomainStore for SqliteStore {
    async fn grant_domain(&self, domain: &str, tenant: TenantId) -> StoreResult<()> {
        let domain = domain.to_owned();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            match holder(&tx, &domain)? {
                Some(held) if held == tenant => return Ok(()),
                Some(_) => {
                    return Err(held_by_another(&domain));
                }
                None => {}
            }
            tx.execute(
                "INSERT INTO domains (name, tenant_id, created_at) VALUES (?1, ?2, ?3)",
                params![domain, tenant, crate::now()],
            )
            .map_err(internal)?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn revoke_domain(&self, domain: &str) -> StoreResult<bool> {
        let domain = domain.to_owned();
        self.with(move |conn| {
            let n = conn
                .execute("DELETE FROM domains WHERE name = ?1", [domain])
                .map_err(internal)?;
            Ok(n > 0)
        })
        .await
    }

    async fn put_route(
        &self,
        tenant: TenantId,
        domain: &str,
        route: Route,
        max_routes: usize,
    ) -> StoreResult<()> {
        let domain = domain.to_owned();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            check_holder(&tx, Some(tenant), &domain)?;
            let others: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM domain_routes WHERE domain = ?1 AND prefix != ?2",
                    params![domain, route.prefix],
                    |r| r.get(0),
                )
                .map_err(internal)?;
            if others >= max_routes as i64 {
                return Err(StoreError::Conflict(format!(
                    "domain {domain} has {others} routes, the most it may have"
                )));
            }
            tx.execute(
                "INSERT INTO domain_routes (domain, prefix, function) VALUES (?1, ?2, ?3)
                 ON CONFLICT (domain, prefix) DO UPDATE SET function = excluded.function",
                params![domain, route.prefix, route.function],
            )
            .map_err(internal)?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn delete_route(
        &self,
        tenant: TenantId,
        domain: &str,
        prefix: &str,
    ) -> StoreResult<bool> {
        let (domain, prefix) = (domain.to_owned(), prefix.to_owned());
        self.with(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM domain_routes WHERE domain = ?1 AND prefix = ?2
                     AND domain IN (SELECT name FROM domains WHERE tenant_id = ?3)",
                    params![domain, prefix, tenant],
                )
                .map_err(internal)?;
            Ok(n > 0)
        })
        .await
    }

    async fn put_certificate(
        &self,
        tenant: Option<TenantId>,
        domain: &str,
        certificate: StoredCertificate,
    ) -> StoreResult<()> {
        let domain = domain.to_owned();
        let names = serde_json::to_string(&certificate.names)
            .map_err(|e| StoreError::internal("certificate names", e))?;
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            check_holder(&tx, tenant, &domain)?;
            tx.execute(
                "INSERT INTO domain_certificates
                     (domain, chain_pem, key_sealed, names, not_after, source, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (domain) DO UPDATE SET chain_pem = excluded.chain_pem,
                     key_sealed = excluded.key_sealed, names = excluded.names,
                     not_after = excluded.not_after, source = excluded.source,
                     updated_at = excluded.updated_at",
                params![
                    domain,
                    certificate.chain_pem,
                    certificate.key_sealed,
                    names,
                    certificate.not_after,
                    certificate.source,
                    certificate.updated_at
                ],
            )
            .map_err(internal)?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn delete_certificate(
        &self,
        tenant: Option<TenantId>,
        domain: &str,
    ) -> StoreResult<bool> {
        let domain = domain.to_owned();
        self.with(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM domain_certificates WHERE domain = ?1 AND domain IN
                     (SELECT name FROM domains WHERE ?2 IS NULL OR tenant_id = ?2)",
                    params![domain, tenant],
                )
                .map_err(internal)?;
            Ok(n > 0)
        })
        .await
    }

    async fn domains(&self, tenant: Option<TenantId>) -> StoreResult<Vec<StoredDomain>> {
        self.with(move |conn| {
            let mut domains: Vec<StoredDomain> = {
                let mut statement = conn
                    .prepare(
                        "SELECT d.name, d.tenant_id, t.name FROM domains d
                         JOIN tenants t ON t.id = d.tenant_id
                         WHERE ?1 IS NULL OR d.tenant_id = ?1 ORDER BY d.name",
                    )
                    .map_err(internal)?;
                let rows = statement
                    .query_map([tenant], |r| {
                        Ok(StoredDomain {
                            domain: r.get(0)?,
                            tenant_id: r.get(1)?,
                            tenant: r.get(2)?,
                            routes: Vec::new(),
                            certificate: None,
                        })
                    })
                    .map_err(internal)?;
                rows.collect::<Result<_, _>>().map_err(internal)?
            };
            let mut routes = conn
                .prepare("SELECT prefix, function FROM domain_routes WHERE domain = ?1")
                .map_err(internal)?;
            let mut certificates = conn
                .prepare(
                    "SELECT chain_pem, key_sealed, names, not_after, source, updated_at
                     FROM domain_certificates WHERE domain = ?1",
                )
                .map_err(internal)?;
            for domain in &mut domains {
                domain.routes = routes
                    .query_map([&domain.domain], |r| {
                        Ok(Route {
                            prefix: r.get(0)?,
                            function: r.get(1)?,
                        })
                    })
                    .map_err(internal)?
                    .collect::<Result<_, _>>()
                    .map_err(internal)?;
                longest_first(&mut domain.routes);
                domain.certificate = certificates
                    .query_row([&domain.domain], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Vec<u8>>(1)?,
                            r.get::<_, String>(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                        ))
                    })
                    .optional()
                    .map_err(internal)?
                    .map(
                        |(chain_pem, key_sealed, names, not_after, source, updated_at)| {
                            Ok::<_, StoreError>(StoredCertificate {
                                chain_pem,
                                key_sealed,
                                names: serde_json::from_str(&names)
                                    .map_err(|e| StoreError::internal("certificate names", e))?,
                                not_after,
                                source,
                                updated_at,
                            })
                        },
                    )
                    .transpose()?;
            }
            Ok(domains)
        })
        .await
    }
}
