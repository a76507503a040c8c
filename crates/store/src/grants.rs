//! Quotas that hold for a cluster as a whole ([`QuotaGrants`]): a shared
//! counter per tenant and period (a calendar month's requests, a second's) that
//! nodes take leases of requests from and then admit them locally. A counter
//! never grants past its cap, so the nodes together never admit more than it.
//! Only a store that nodes share has one ([`PostgresStore`](crate::PostgresStore)).

use crate::error::StoreResult;
use async_trait::async_trait;
use kiln_api::TenantId;

/// Leases of requests from counters every node shares.
#[async_trait]
pub trait QuotaGrants: Send + Sync + 'static {
    /// Grants up to `want` more of `tenant`'s requests in the month starting
    /// at `month` (seconds), never past `cap` for all nodes together; the
    /// count starts at the requests the month has recorded. How many were
    /// granted: 0 once the cap is reached.
    async fn grant_requests(
        &self,
        tenant: TenantId,
        month: i64,
        want: u64,
        cap: u64,
    ) -> StoreResult<u64>;
    /// Grants up to `want` of `tenant`'s requests in the second `second`,
    /// never past `rate` for all nodes together. How many were granted.
    async fn grant_rate(
        &self,
        tenant: TenantId,
        second: i64,
        want: u64,
        rate: u64,
    ) -> StoreResult<u64>;
    /// Drops the counters of months before `month` and seconds before
    /// `second`.
    async fn forget_grants(&self, month: i64, second: i64) -> StoreResult<()>;
}
