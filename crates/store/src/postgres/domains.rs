//! Custom domains in PostgreSQL (the contract is in `domains.rs`). Every change
//! notifies the other nodes (`Change::Domains`) when its transaction commits.

use super::{CHANGES, DOMAINS_CHANGED, PostgresStore, pg};
use crate::domains::{
    DomainStore, StoredCertificate, StoredDomain, held_by_another, longest_first, may_change,
    not_granted,
};
use crate::error::{StoreError, StoreResult};
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use kiln_api::{Route, TenantId};
use std::collections::HashMap;

/// Tells the other nodes that domains changed, when the transaction commits.
async fn notify(client: &impl GenericClient) -> StoreResult<()> {
    client
        .execute("SELECT pg_notify($1, $2)", &[&CHANGES, &DOMAINS_CHANGED])
        .await
        .map_err(pg)?;
    Ok(())
}

/// The tenant holding `domain`, locked until the transaction ends.
async fn holder(client: &impl GenericClient, domain: &str) -> StoreResult<Option<TenantId>> {
    let row = client
        .query_opt(
            "SELECT tenant_id FROM domains WHERE name = $1 FOR UPDATE",
            &[&domain],
        )
        .await
        .map_err(pg)?;
    Ok(row.map(|r| r.get(0)))
}

/// `NotFound` unless `domain` is granted to `tenant` (any tenant when `None`).
async fn check_holder(
    client: &impl GenericClient,
    tenant: Option<TenantId>,
    domain: &str,
) -> StoreResult<()> {
    match may_change(holder(client, domain).await?, tenant) {
        true => Ok(()),
        false => Err(not_granted(domain)),
    }
}

#[async_trait]
impl DomainStore for PostgresStore {
    async fn grant_domain(&self, domain: &str, tenant: TenantId) -> StoreResult<()> {
        let client = self.client().await?;
        // One statement: two operators granting the same domain to two
        // tenants at once cannot both win.
        let row = client
            .query_one(
                "WITH inserted AS (
                     INSERT INTO domains (name, tenant_id, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO NOTHING RETURNING tenant_id)
                 SELECT COALESCE((SELECT tenant_id FROM inserted),
                                 (SELECT tenant_id FROM domains WHERE name = $1))",
                &[&domain, &tenant, &crate::now()],
            )
            .await
            .map_err(pg)?;
        let held: Option<TenantId> = row.get(0);
        match held {
            Some(held) if held != tenant => Err(held_by_another(domain)),
            _ => notify(&client).await,
        }
    }

    async fn revoke_domain(&self, domain: &str) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let n = tx
            .execute("DELETE FROM domains WHERE name = $1", &[&domain])
            .await
            .map_err(pg)?;
        notify(&tx).await?;
        tx.commit().await.map_err(pg)?;
        Ok(n > 0)
    }

    async fn put_route(
        &self,
        tenant: TenantId,
        domain: &str,
        route: Route,
        max_routes: usize,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        check_holder(&tx, Some(tenant), domain).await?;
        let others: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM domain_routes WHERE domain = $1 AND prefix != $2",
                &[&domain, &route.prefix],
            )
            .await
            .map_err(pg)?
            .get(0);
        if others >= max_routes as i64 {
            return Err(StoreError::Conflict(format!(
                "domain {domain} has {others} routes, the most it may have"
            )));
        }
        tx.execute(
            "INSERT INTO domain_routes (domain, prefix, function) VALUES ($1, $2, $3)
             ON CONFLICT (domain, prefix) DO UPDATE SET function = excluded.function",
            &[&domain, &route.prefix, &route.function],
        )
        .await
        .map_err(pg)?;
        notify(&tx).await?;
        tx.commit().await.map_err(pg)
    }

    async fn delete_route(
        &self,
        tenant: TenantId,
        domain: &str,
        prefix: &str,
    ) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let n = tx
            .execute(
                "DELETE FROM domain_routes WHERE domain = $1 AND prefix = $2
                 AND domain IN (SELECT name FROM domains WHERE tenant_id = $3)",
                &[&domain, &prefix, &tenant],
            )
            .await
            .map_err(pg)?;
        notify(&tx).await?;
        tx.commit().await.map_err(pg)?;
        Ok(n > 0)
    }

    async fn put_certificate(
        &self,
        tenant: Option<TenantId>,
        domain: &str,
        certificate: StoredCertificate,
    ) -> StoreResult<()> {
        let names = serde_json::to_string(&certificate.names)
            .map_err(|e| StoreError::internal("certificate names", e))?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        check_holder(&tx, tenant, domain).await?;
        tx.execute(
            "INSERT INTO domain_certificates
                 (domain, chain_pem, key_sealed, names, not_after, source, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (domain) DO UPDATE SET chain_pem = excluded.chain_pem,
                 key_sealed = excluded.key_sealed, names = excluded.names,
                 not_after = excluded.not_after, source = excluded.source,
                 updated_at = excluded.updated_at",
            &[
                &domain,
                &certificate.chain_pem,
                &certificate.key_sealed,
                &names,
                &certificate.not_after,
                &certificate.source,
                &certificate.updated_at,
            ],
        )
        .await
        .map_err(pg)?;
        notify(&tx).await?;
        tx.commit().await.map_err(pg)
    }

    async fn delete_certificate(
        &self,
        tenant: Option<TenantId>,
        domain: &str,
    ) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let n = tx
            .execute(
                "DELETE FROM domain_certificates WHERE domain = $1 AND domain IN
                 (SELECT name FROM domains WHERE $2::BIGINT IS NULL OR tenant_id = $2)",
                &[&domain, &tenant],
            )
            .await
            .map_err(pg)?;
        notify(&tx).await?;
        tx.commit().await.map_err(pg)?;
        Ok(n > 0)
    }

    async fn domains(&self, tenant: Option<TenantId>) -> StoreResult<Vec<StoredDomain>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT d.name, d.tenant_id, t.name FROM domains d
                 JOIN tenants t ON t.id = d.tenant_id
                 WHERE $1::BIGINT IS NULL OR d.tenant_id = $1 ORDER BY d.name",
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        let mut domains: Vec<StoredDomain> = rows
            .iter()
            .map(|r| StoredDomain {
                domain: r.get(0),
                tenant_id: r.get(1),
                tenant: r.get(2),
                routes: Vec::new(),
                certificate: None,
            })
            .collect();
        let names: Vec<&str> = domains.iter().map(|d| d.domain.as_str()).collect();
        let mut routes: HashMap<String, Vec<Route>> = HashMap::new();
        for r in client
            .query(
                "SELECT domain, prefix, function FROM domain_routes WHERE domain = ANY($1)",
                &[&names],
            )
            .await
            .map_err(pg)?
        {
            routes.entry(r.get(0)).or_default().push(Route {
                prefix: r.get(1),
                function: r.get(2),
            });
        }
        let mut certificates: HashMap<String, StoredCertificate> = HashMap::new();
        for r in client
            .query(
                "SELECT domain, chain_pem, key_sealed, names, not_after, source, updated_at
                 FROM domain_certificates WHERE domain = ANY($1)",
                &[&names],
            )
            .await
            .map_err(pg)?
        {
            let names: String = r.get(3);
            certificates.insert(
                r.get(0),
                StoredCertificate {
                    chain_pem: r.get(1),
                    key_sealed: r.get(2),
                    names: serde_json::from_str(&names)
                        .map_err(|e| StoreError::internal("certificate names", e))?,
                    not_after: r.get(4),
                    source: r.get(5),
                    updated_at: r.get(6),
                },
            );
        }
        for domain in &mut domains {
            domain.routes = routes.remove(&domain.domain).unwrap_or_default();
            longest_first(&mut domain.routes);
            domain.certificate = certificates.remove(&domain.domain);
        }
        Ok(domains)
    }
}
