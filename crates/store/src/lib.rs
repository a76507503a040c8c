//! Kiln's storage, behind two narrow traits so that the server never knows which
//! engine holds its data:
//!
//! - [`MetadataStore`]: tenants, hashed API tokens, functions, their immutable
//!   versions with a current-version pointer, and recent invocation logs.
//! - [`BlobStore`]: module bytes, content-addressed by sha256.
//!
//! The embedded default is [`SqliteStore`] (one SQLite file, WAL, synchronous commits)
//! and [`LocalBlobs`] (a directory, files written atomically). A cluster of nodes
//! shares [`PostgresStore`] for metadata and [`S3Blobs`] for modules.

mod blobs;
mod model;
mod postgres;
mod s3;
mod sqlite;
mod usage;

pub use blobs::{BlobStore, LocalBlobs, StagedBlob};
pub use model::*;
pub use postgres::PostgresStore;
pub use s3::{S3Blobs, S3Config};
pub use sqlite::SqliteStore;
pub use usage::*;

use async_trait::async_trait;

/// What can go wrong in a store. `Conflict` and `NotFound` are the caller's to
/// answer; `Internal` is the store's own failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("storage failure: {0}")]
    Internal(String),
    /// The disk (or quota) holding the store has no room left.
    #[error("storage is full: {0}")]
    Full(String),
    /// The store's server cannot be reached now (a cluster's PostgreSQL).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// Refuses a database whose schema has more migrations applied than this build
/// knows (`known`): a newer kiln wrote it.
fn check_schema(applied: usize, known: usize) -> StoreResult<()> {
    if applied > known {
        return Err(StoreError::Internal(format!(
            "the database schema is version {applied}, newer than this kiln knows ({known}): \
             upgrade kiln"
        )));
    }
    Ok(())
}

/// Whether an I/O error means the storage has no room left (ENOSPC, EDQUOT).
pub fn is_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Metadata: who may do what, what is deployed, what happened.
///
/// Every method that touches a function takes the tenant it belongs to, so a caller
/// cannot reach another tenant's data by accident.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// The principal a token hash belongs to, if it exists and is not revoked.
    async fn authenticate(&self, token_hash: TokenHash) -> StoreResult<Option<Principal>>;
    /// Whether the store has been bootstrapped (has an admin token).
    async fn has_admin(&self) -> StoreResult<bool>;

    async fn create_tenant(&self, name: &str) -> StoreResult<Tenant>;
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;
    async fn tenant(&self, name: &str) -> StoreResult<Option<Tenant>>;

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
    async fn list_functions(&self, tenant: TenantId) -> StoreResult<Vec<FunctionSummary>>;
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
    async fn referenced_digests(&self) -> StoreResult<Vec<kiln_runtime::Digest>>;

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
    /// Every tenant's quota (tenants without limits included, with `Quota::default()`).
    async fn quotas(&self) -> StoreResult<Vec<(TenantId, Quota)>>;
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
    Function { tenant: String, function: String },
    /// Changes may have been missed (the watch reconnected): forget everything.
    Everything,
}

/// Invocation logs kept per function; older ones are pruned as new ones arrive.
pub const LOGS_KEPT: u32 = 1000;
