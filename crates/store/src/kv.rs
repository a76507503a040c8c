//! The key-value store's trait: a tenant's buckets of keys and byte values,
//! implemented by [`crate::SqliteStore`] and [`crate::PostgresStore`] beside
//! their metadata.
//!
//! What it guarantees, on both backends (`crates/store/tests/contract.rs`
//! checks each point):
//! - a write that returned is committed durably (SQLite: WAL with synchronous
//!   commits, several writers' operations share one commit; PostgreSQL:
//!   `synchronous_commit`), and every later read, from any node sharing the
//!   store, sees it;
//! - [`KvStore::kv_increment`] is atomic: N increments add exactly N, whatever
//!   node makes them;
//! - [`KvStore::kv_write`] applies all its operations or none;
//! - [`KvStore::kv_list`] pages by a cursor in the order keys were first set: a
//!   key present for the whole listing appears exactly once;
//! - a write that would take the tenant past its [`KvCaps`] changes nothing
//!   and fails with [`StoreError::QuotaExceeded`](crate::StoreError).
//!
//! Keys and values are checked against [`kiln_api::KvLimits`] by the caller;
//! bucket names by the caller too.

use crate::error::StoreResult;
use async_trait::async_trait;
pub use kiln_api::KvWrite;
use kiln_api::{KvBucket, KvCaps, KvKeys, KvUsage, TenantId};

/// Key-value buckets of tenants.
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// The value of `key`, if set.
    async fn kv_get(
        &self,
        tenant: TenantId,
        bucket: &str,
        key: &str,
    ) -> StoreResult<Option<Vec<u8>>>;
    /// The values of `keys`, in their order, as one consistent read.
    async fn kv_get_many(
        &self,
        tenant: TenantId,
        bucket: &str,
        keys: Vec<String>,
    ) -> StoreResult<Vec<Option<Vec<u8>>>>;
    /// Whether `key` is set.
    async fn kv_exists(&self, tenant: TenantId, bucket: &str, key: &str) -> StoreResult<bool>;
    /// Applies `writes` in order, all or none, within `caps`.
    async fn kv_write(
        &self,
        tenant: TenantId,
        bucket: &str,
        writes: Vec<KvWrite>,
        caps: KvCaps,
    ) -> StoreResult<()>;
    /// Adds `delta` to the decimal number `key` holds (0 when absent) and
    /// returns the sum; `Invalid` if the value is not a number or the sum
    /// overflows a u64.
    async fn kv_increment(
        &self,
        tenant: TenantId,
        bucket: &str,
        key: &str,
        delta: u64,
        caps: KvCaps,
    ) -> StoreResult<u64>;
    /// At most `limit` keys set after `cursor` (from the start when `None`).
    async fn kv_list(
        &self,
        tenant: TenantId,
        bucket: &str,
        cursor: Option<u64>,
        limit: u32,
    ) -> StoreResult<KvKeys>;
    /// The tenant's buckets that hold keys, by name.
    async fn kv_buckets(&self, tenant: TenantId) -> StoreResult<Vec<KvBucket>>;
    /// What the tenant stores, against its quota.
    async fn kv_usage(&self, tenant: TenantId) -> StoreResult<KvUsage>;
    /// Deletes every key of `bucket`; false if it held none.
    async fn kv_delete_bucket(&self, tenant: TenantId, bucket: &str) -> StoreResult<bool>;
    /// Meters stored data: for every tenant that stores key-value data, the
    /// usage of `hour` (its start) under the function name
    /// [`kiln_api::STORAGE`] keeps in `kv_byte_hours` the most bytes any call
    /// saw stored in that hour. Idempotent, so any node may call it, as often
    /// as it likes. Answers how many tenants it saw.
    async fn kv_meter_storage(&self, hour: i64) -> StoreResult<u64>;
}

/// The decimal number an increment reads: absent is 0.
pub(crate) fn counter_value(value: Option<&[u8]>) -> StoreResult<u64> {
    let Some(value) = value else { return Ok(0) };
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            crate::StoreError::Invalid(
                "the key's value is not a decimal number: it cannot be incremented".into(),
            )
        })
}

/// `current + delta`, or `Invalid` on overflow.
pub(crate) fn counter_sum(current: u64, delta: u64) -> StoreResult<u64> {
    current
        .checked_add(delta)
        .ok_or_else(|| crate::StoreError::Invalid("the increment overflows a u64".into()))
}

/// Whether adding `keys` and `bytes` to `used` stays within `caps`, or the
/// error that says which cap it crosses.
pub(crate) fn check_caps(used: KvUsage, caps: KvCaps) -> StoreResult<()> {
    if used.keys > caps.keys {
        return Err(crate::StoreError::QuotaExceeded(format!(
            "the tenant's key-value quota allows {} keys",
            caps.keys
        )));
    }
    if used.bytes > caps.bytes {
        return Err(crate::StoreError::QuotaExceeded(format!(
            "the tenant's key-value quota allows {} of keys and values",
            kiln_api::ByteCount(caps.bytes)
        )));
    }
    Ok(())
}
