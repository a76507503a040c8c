//! Functions' key-value state on this node: [`KvService`] (the store, the
//! key and value limits, the tenants' storage quotas) and the [`KeyValue`]
//! each deployment's invocations reach, made once when the deployment enters
//! the cache: its tenant, and the buckets its configuration grants.
//!
//! Every call checks its bucket against the grant, and its keys and values
//! against the limits, before the store sees it; the store applies the quota
//! in the write's own transaction. A bucket name is always resolved inside the
//! deployment's tenant: no name reaches another tenant's data.

use crate::quota::QuotaBook;
use kiln_api::{KvCaps, KvKeys, KvLimits, KvWrite, TenantId};
use kiln_runtime::{KeyValue, KvError, KvGrant};
use kiln_store::{KvStore, StoreError};
use std::sync::Arc;

/// The key-value store as this node's functions and API use it.
pub(crate) struct KvService {
    pub(crate) store: Arc<dyn KvStore>,
    pub(crate) limits: KvLimits,
    /// A tenant's storage caps when its quota does not set them.
    pub(crate) default_caps: KvCaps,
    quotas: QuotaBook,
}

impl std::fmt::Debug for KvService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvService")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl KvService {
    pub(crate) fn new(
        store: Arc<dyn KvStore>,
        limits: KvLimits,
        default_caps: KvCaps,
        quotas: QuotaBook,
    ) -> KvService {
        KvService {
            store,
            limits,
            default_caps,
            quotas,
        }
    }

    /// What `tenant` may store now: its quota's caps, or the defaults.
    pub(crate) fn caps(&self, tenant: TenantId) -> KvCaps {
        let quota = self.quotas.quota(tenant);
        KvCaps {
            keys: quota.kv_keys.unwrap_or(self.default_caps.keys),
            bytes: quota.kv_bytes.unwrap_or(self.default_caps.bytes),
        }
    }

    /// Checks `writes` against the limits.
    pub(crate) fn check_writes(&self, writes: &[KvWrite]) -> Result<(), KvError> {
        for write in writes {
            self.check_key(write.key())?;
            if let KvWrite::Set { value, .. } = write {
                self.limits
                    .check_value(value.len())
                    .map_err(|e| KvError::Refused(e.to_string()))?;
            }
        }
        Ok(())
    }

    pub(crate) fn check_key(&self, key: &str) -> Result<(), KvError> {
        self.limits
            .check_key(key)
            .map_err(|e| KvError::Refused(e.to_string()))
    }

    /// What one deployment's invocations may reach: nothing without buckets.
    pub(crate) fn grant(self: &Arc<Self>, tenant: TenantId, buckets: &[String]) -> KvGrant {
        if buckets.is_empty() {
            return None;
        }
        Some(Arc::new(TenantKv {
            service: self.clone(),
            tenant,
            buckets: buckets.into(),
        }))
    }
}

/// A store error as a guest (or an API client) is told it.
pub(crate) fn kv_error(e: StoreError) -> KvError {
    match e {
        StoreError::QuotaExceeded(m) | StoreError::Invalid(m) => KvError::Refused(m),
        e @ (StoreError::Full { .. } | StoreError::Unavailable { .. }) => {
            KvError::Unavailable(format!("the key-value store cannot take this now: {e}"))
        }
        e => {
            tracing::warn!(error = %e, "key-value store failure");
            KvError::Unavailable(format!("the key-value store failed: {e}"))
        }
    }
}

/// One deployment's view: its tenant's granted buckets.
#[derive(Debug)]
struct TenantKv {
    service: Arc<KvService>,
    tenant: TenantId,
    buckets: Box<[String]>,
}

impl TenantKv {
    fn granted(&self, bucket: &str) -> Result<(), KvError> {
        match self.buckets.iter().any(|b| b == bucket) {
            true => Ok(()),
            false => Err(KvError::NotGranted(bucket.to_owned())),
        }
    }

    /// The service, once `bucket` is known to be granted.
    fn service(&self, bucket: &str) -> Result<&KvService, KvError> {
        self.granted(bucket)?;
        Ok(&self.service)
    }
}

#[async_trait::async_trait]
impl KeyValue for TenantKv {
    fn open(&self, bucket: &str) -> Result<(), KvError> {
        self.granted(bucket)
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let service = self.service(bucket)?;
        service.check_key(key)?;
        service
            .store
            .kv_get(self.tenant, bucket, key)
            .await
            .map_err(kv_error)
    }

    async fn get_many(
        &self,
        bucket: &str,
        keys: Vec<String>,
    ) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        let service = self.service(bucket)?;
        for key in &keys {
            service.check_key(key)?;
        }
        service
            .store
            .kv_get_many(self.tenant, bucket, keys)
            .await
            .map_err(kv_error)
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        let service = self.service(bucket)?;
        service.check_key(key)?;
        service
            .store
            .kv_exists(self.tenant, bucket, key)
            .await
            .map_err(kv_error)
    }

    async fn write(&self, bucket: &str, writes: Vec<KvWrite>) -> Result<(), KvError> {
        let service = self.service(bucket)?;
        service.check_writes(&writes)?;
        if writes.is_empty() {
            return Ok(());
        }
        let caps = service.caps(self.tenant);
        service
            .store
            .kv_write(self.tenant, bucket, writes, caps)
            .await
            .map_err(kv_error)
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        let service = self.service(bucket)?;
        service.check_key(key)?;
        let caps = service.caps(self.tenant);
        service
            .store
            .kv_increment(self.tenant, bucket, key, delta, caps)
            .await
            .map_err(kv_error)
    }

    async fn list(&self, bucket: &str, cursor: Option<u64>) -> Result<KvKeys, KvError> {
        let service = self.service(bucket)?;
        service
            .store
            .kv_list(self.tenant, bucket, cursor, service.limits.page_keys)
            .await
            .map_err(kv_error)
    }
}
