//! The storage-side nouns: what the store takes in and hands to the invoke path.
//! The nouns the API shows (tenants, tokens, versions, logs) are `kiln_api`'s.

use kiln_api::{Digest, FunctionConfig, Tenant, TenantId};

/// sha256 of an API token. Tokens themselves are never stored.
pub type TokenHash = [u8; 32];

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Tenant(Tenant),
}

/// A version about to be recorded.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub digest: Digest,
    pub size: u64,
    pub config: FunctionConfig,
}

/// What the invoke path needs to run a function.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub function_id: i64,
    pub tenant_id: TenantId,
    pub tenant: String,
    pub function: String,
    pub version: u32,
    pub digest: Digest,
    pub config: FunctionConfig,
}

/// One invocation, as logged: the per-invocation usage record next to its outcome.
#[derive(Debug, Clone, Default)]
pub struct NewLogEntry {
    pub function_id: i64,
    pub version: u32,
    pub at: i64,
    pub outcome: String,
    pub status: u16,
    pub wall_us: u64,
    pub stderr: String,
    pub cpu_us: u64,
    pub instantiation_us: u64,
    pub peak_memory_bytes: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}
