//! [`QuotaGrants`] in PostgreSQL: a row per tenant and period, read and
//! raised in one transaction under its row lock (`SELECT ... FOR UPDATE`), so
//! that nodes asking at once are served one after the other.

use super::{PostgresStore, pg};
use crate::error::StoreResult;
use crate::grants::QuotaGrants;
use async_trait::async_trait;
use kiln_api::TenantId;

/// Which counter: a month's requests (starting at the requests already
/// recorded in it) or a second's.
#[derive(Clone, Copy)]
enum Period {
    Month,
    Second,
}

#[async_trait]
impl QuotaGrants for PostgresStore {
    async fn grant_requests(
        &self,
        tenant: TenantId,
        month: i64,
        want: u64,
        cap: u64,
    ) -> StoreResult<u64> {
        self.grant(Period::Month, tenant, month, want, cap).await
    }

    async fn grant_rate(
        &self,
        tenant: TenantId,
        second: i64,
        want: u64,
        rate: u64,
    ) -> StoreResult<u64> {
        self.grant(Period::Second, tenant, second, want, rate).await
    }

    async fn forget_grants(&self, month: i64, second: i64) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM request_grants WHERE month < $1", &[&month])
            .await
            .map_err(pg)?;
        client
            .execute("DELETE FROM rate_grants WHERE second < $1", &[&second])
            .await
            .map_err(pg)?;
        Ok(())
    }
}

impl PostgresStore {
    async fn grant(
        &self,
        period: Period,
        tenant: TenantId,
        start: i64,
        want: u64,
        cap: u64,
    ) -> StoreResult<u64> {
        let (want, cap) = (clamp(want), clamp(cap));
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let create = match period {
            // A month's count starts at what the month already used, so that
            // a cap set mid-month counts the requests before it.
            Period::Month => {
                "INSERT INTO request_grants (tenant_id, month, granted)
                 SELECT $1, $2, COALESCE((SELECT SUM(requests) FROM usage
                                          WHERE tenant_id = $1 AND hour >= $2), 0)::BIGINT
                 ON CONFLICT DO NOTHING"
            }
            Period::Second => {
                "INSERT INTO rate_grants (tenant_id, second, granted) VALUES ($1, $2, 0)
                 ON CONFLICT DO NOTHING"
            }
        };
        tx.execute(create, &[&tenant, &start]).await.map_err(pg)?;
        let (read, write) = match period {
            Period::Month => (
                "SELECT granted FROM request_grants WHERE tenant_id = $1 AND month = $2 FOR UPDATE",
                "UPDATE request_grants SET granted = $3 WHERE tenant_id = $1 AND month = $2",
            ),
            Period::Second => (
                "SELECT granted FROM rate_grants WHERE tenant_id = $1 AND second = $2 FOR UPDATE",
                "UPDATE rate_grants SET granted = $3 WHERE tenant_id = $1 AND second = $2",
            ),
        };
        let granted: i64 = tx
            .query_one(read, &[&tenant, &start])
            .await
            .map_err(pg)?
            .get(0);
        let given = want.min((cap - granted).max(0));
        if given > 0 {
            tx.execute(write, &[&tenant, &start, &(granted + given)])
                .await
                .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(given as u64)
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
