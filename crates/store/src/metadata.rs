//! The metadata store's trait: who may do what, what is deployed, what happened.
//! Implemented by [`crate::SqliteStore`] and [`crate::PostgresStore`].

use crate::domains::DomainStore;
use crate::error::StoreResult;
use crate::gc::BlobCollection;
use crate::model::{Deployment, NewLogEntry, NewVersion, Principal, TokenHash};
use crate::nodes::NodeStore;
use crate::schedules::ScheduleStore;
use crate::sessions::SessionStore;
use crate::usage::{UsageDelta, UsageQuery, UsageRow};
use async_trait::async_trait;
use kiln_api::{
    BundleInfo, Digest, FunctionDetail, FunctionSummary, LogEntry, Quota, SecretInfo, Tenant,
    TenantId, TokenInfo, UsageTotals, Version,
};

/// Metadata: who may do what, what is deployed, what happened.
///
/// Every method that touches a function takes the tenant it belongs to, so a caller
/// cannot reach another tenant's data by accident.
#[async_trait]
pub trait MetadataStore:
    BlobCollection + DomainStore + NodeStore + ScheduleStore + SessionStore + Send + Sync + 'static
{
    /// The principal a token hash belongs to, if it exists and is not revoked.
    async fn authenticate(&self, token_hash: TokenHash) -> StoreResult<Option<Principal>>;
    /// Whether the store has been bootstrapped (has an admin token).
    async fn has_admin(&self) -> StoreResult<bool>;

    /// Creates a tenant; `Conflict` if the name is taken.
    async fn create_tenant(&self, name: &str) -> StoreResult<Tenant>;
    /// Every tenant, oldest first.
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;
    /// The tenant named `name`, if any.
    async fn tenant(&self, name: &str) -> StoreResult<Option<Tenant>>;
    /// Deletes the tenant named `name` and everything it owns, in one
    /// transaction: tokens, functions with their versions and logs, usage,
    /// quota, bundles, key-value buckets, secrets. Answers the names of the
    /// functions it had (for caches to forget), or `None` if there is no such
    /// tenant. Module blobs stay for the blob collector.
    async fn delete_tenant(&self, name: &str) -> StoreResult<Option<Vec<String>>>;

    /// Stores a new token for `tenant` (or an admin token when `None`).
    async fn create_token(
        &self,
        tenant: Option<TenantId>,
        name: &str,
        hash: TokenHash,
    ) -> StoreResult<TokenInfo>;
    /// Tokens of `tenant` (admin tokens when `None`), revoked ones included.
    async fn list_tokens(&self, tenant: Option<TenantId>) -> StoreResult<Vec<TokenInfo>>;
    /// Revokes token `id` if it belongs to `tenant`. False if there is no such token.
    async fn revoke_token(&self, tenant: Option<TenantId>, id: i64) -> StoreResult<bool>;

    /// Records a new immutable version of `function` and makes it current, in one
    /// transaction. The module blob must already be stored.
    async fn deploy(
        &self,
        tenant: TenantId,
        function: &str,
        version: NewVersion,
    ) -> StoreResult<Version>;
    /// What `/fn/{tenant}/{function}` runs now.
    async fn resolve(&self, tenant: &str, function: &str) -> StoreResult<Option<Deployment>>;
    /// `tenant`'s functions, each with its current version.
    async fn list_functions(&self, tenant: TenantId) -> StoreResult<Vec<FunctionSummary>>;
    /// One function of `tenant` and all its versions, if it exists.
    async fn function(&self, tenant: TenantId, name: &str) -> StoreResult<Option<FunctionDetail>>;
    /// Points `function` at `version` (default: the one before the current one).
    async fn rollback(
        &self,
        tenant: TenantId,
        function: &str,
        version: Option<u32>,
    ) -> StoreResult<Version>;
    /// Deletes `function`, its versions and its logs. False if it did not exist.
    async fn delete_function(&self, tenant: TenantId, function: &str) -> StoreResult<bool>;
    /// Every module digest some version refers to (to tell orphan blobs).
    async fn referenced_digests(&self) -> StoreResult<Vec<Digest>>;
    /// Records the sha256 of the compiled artifact a node shared under `key`
    /// (the bucket is not trusted to keep it unchanged; the store is).
    async fn record_artifact(&self, key: &str, sha256: Digest) -> StoreResult<()>;
    /// The sha256 recorded for the shared artifact `key`, if any.
    async fn artifact_sha256(&self, key: &str) -> StoreResult<Option<Digest>>;

    /// Appends invocation logs, keeping the newest [`LOGS_KEPT`] per function.
    async fn append_logs(&self, entries: Vec<NewLogEntry>) -> StoreResult<()>;
    /// Logs of `function` with id greater than `after`, oldest first, at most `limit`
    /// (the newest `limit` when `after` is `None`).
    async fn logs(
        &self,
        tenant: TenantId,
        function: &str,
        after: Option<i64>,
        limit: u32,
    ) -> StoreResult<Option<Vec<LogEntry>>>;

    /// Adds metered usage to its tenant × function × hour totals, all in one
    /// transaction: either every delta is stored or none is.
    async fn add_usage(&self, deltas: Vec<UsageDelta>) -> StoreResult<()>;
    /// Stored usage rows matching `query`, by tenant, function, hour.
    async fn usage(&self, query: UsageQuery) -> StoreResult<Vec<UsageRow>>;
    /// Every tenant's totals from `since` (seconds) on: what quotas count against.
    async fn usage_by_tenant(&self, since: i64) -> StoreResult<Vec<(TenantId, UsageTotals)>>;
    /// Records that `tenant` uploaded `bundle` (again: a no-op). A tenant may
    /// mount only the bundles it uploaded, and learns only of those that a
    /// bundle is stored: whether another tenant uploaded the same tree is not
    /// its business.
    async fn add_bundle(&self, tenant: TenantId, bundle: &BundleInfo) -> StoreResult<()>;
    /// The bundle `digest`, if `tenant` uploaded it.
    async fn bundle(&self, tenant: TenantId, digest: &Digest) -> StoreResult<Option<BundleInfo>>;

    /// Stores `tenant`'s secret `name`, sealed by the server (the store never
    /// sees a value in clear), replacing any before.
    async fn put_secret(&self, tenant: TenantId, name: &str, sealed: Vec<u8>) -> StoreResult<()>;
    /// The sealed values of those of `names` that `tenant` has, by name.
    async fn secrets(
        &self,
        tenant: TenantId,
        names: Vec<String>,
    ) -> StoreResult<Vec<(String, Vec<u8>)>>;
    /// `tenant`'s secrets by name, without their values.
    async fn list_secrets(&self, tenant: TenantId) -> StoreResult<Vec<SecretInfo>>;
    /// Deletes `tenant`'s secret `name`; false if there was none.
    async fn delete_secret(&self, tenant: TenantId, name: &str) -> StoreResult<bool>;

    /// Every tenant's quota (tenants without limits included, with `Quota::default()`).
    async fn quotas(&self) -> StoreResult<Vec<(TenantId, Quota)>>;
    /// Replaces `tenant`'s quota.
    async fn set_quota(&self, tenant: TenantId, quota: Quota) -> StoreResult<()>;

    /// Deploys, rollbacks and deletes made by any node sharing this store, as
    /// they commit; `None` for a store that only this node uses (it knows its own
    /// changes).
    async fn watch(&self) -> StoreResult<Option<tokio::sync::mpsc::UnboundedReceiver<Change>>> {
        Ok(None)
    }
}

/// A change to what a function serves, seen through [`MetadataStore::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `tenant`'s `function` was deployed, rolled back or deleted.
    Function {
        /// The tenant's name.
        tenant: String,
        /// The function's name.
        function: String,
    },
    /// A custom domain, its routes or its certificate changed.
    Domains,
    /// Changes may have been missed (the watch reconnected): forget everything.
    Everything,
}

/// Invocation logs kept per function; older ones are pruned as new ones arrive.
pub const LOGS_KEPT: u32 = 1000;
