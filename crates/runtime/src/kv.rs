//! Key-value state for functions: [`KeyValue`] is what a function's calls
//! reach. The server implements it over its store, bound to one tenant, the
//! buckets a deployment was granted and the limits in force; an invocation
//! carries it as its [`KvGrant`]. Two faces give guests access:
//! [`crate::kv_component`] (`wasi:keyvalue` for components) and
//! [`crate::kv_core`] (the `kiln_kv` host module for core modules).

use kiln_api::{KvKeys, KvWrite};
use std::fmt;
use std::sync::Arc;

/// Why a key-value call failed, as the guest is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The bucket is not one the deployment was granted.
    #[error("no bucket {0:?} is granted to this function (kiln deploy --kv NAME)")]
    NotGranted(String),
    /// The call is refused and changed nothing: a key or value over its limit,
    /// a quota, a value that is not a number.
    #[error("{0}")]
    Refused(String),
    /// The store failed or cannot be reached now; nothing is known to have
    /// changed.
    #[error("{0}")]
    Unavailable(String),
}

/// What a function's key-value calls reach: one tenant's buckets, those the
/// deployment was granted. Every method checks its bucket's grant and its keys
/// and values against the limits.
#[async_trait::async_trait]
pub trait KeyValue: Send + Sync + fmt::Debug + 'static {
    /// Whether `bucket` may be opened.
    fn open(&self, bucket: &str) -> Result<(), KvError>;
    /// The value of `key`.
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// The values of `keys`, in order.
    async fn get_many(
        &self,
        bucket: &str,
        keys: Vec<String>,
    ) -> Result<Vec<Option<Vec<u8>>>, KvError>;
    /// Whether `key` is set.
    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError>;
    /// Applies `writes`, all or none, durably.
    async fn write(&self, bucket: &str, writes: Vec<KvWrite>) -> Result<(), KvError>;
    /// Adds `delta` to the number `key` holds; the sum.
    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError>;
    /// A page of keys after `cursor`.
    async fn list(&self, bucket: &str, cursor: Option<u64>) -> Result<KvKeys, KvError>;
}

/// What an invocation may reach, if anything.
pub type KvGrant = Option<Arc<dyn KeyValue>>;

/// Key-value operations an invocation made, for its bill: each key read
/// (`get`, `exists`, each key of a `get-many`, a page of `list-keys`) and
/// each key written (`set`, `delete`, `increment`, each key of a batch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KvOps {
    pub(crate) reads: u64,
    pub(crate) writes: u64,
}

/// A core module's open buckets and last error ([`crate::kv_core`]).
#[derive(Default)]
pub(crate) struct CoreKv {
    /// Bucket names by handle (handles are never reused).
    pub(crate) buckets: Vec<String>,
    /// The message `error()` copies out.
    pub(crate) last_error: String,
}
