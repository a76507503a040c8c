//! The storage-side nouns: what the store takes in and hands to the invoke path.
//! The nouns the API shows (tenants, tokens, versions, logs) are `kiln_api`'s.

use kiln_api::{BinaryKind, Digest, FunctionConfig, Tenant, TenantId, WhoAmI};

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
    /// The admin token: manages tenants, reads every tenant's usage.
    Admin,
    /// A token of this tenant.
    Tenant(Tenant),
}

impl Principal {
    /// Who a token row speaks for: its tenant's id, name and creation time
    /// (all `None` for an admin token, which has no tenant).
    pub(crate) fn of_token(
        tenant: Option<TenantId>,
        name: Option<String>,
        created_at: Option<i64>,
    ) -> Principal {
        match (tenant, name, created_at) {
            (Some(id), Some(name), Some(created_at)) => Principal::Tenant(Tenant {
                id,
                name,
                created_at,
            }),
            _ => Principal::Admin,
        }
    }

    /// What `GET /v1/whoami` and a console sign-in answer for it.
    pub fn who(&self) -> WhoAmI {
        match self {
            Principal::Admin => WhoAmI {
                admin: true,
                tenant: None,
            },
            Principal::Tenant(t) => WhoAmI {
                admin: false,
                tenant: Some(t.name.clone()),
            },
        }
    }
}

/// A version about to be recorded.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// The module's sha256 (its blob is already committed).
    pub digest: Digest,
    /// The module's size in bytes.
    pub size: u64,
    /// How the version runs.
    pub config: FunctionConfig,
    /// What kind of binary it is, as the deploy found.
    pub kind: BinaryKind,
}

/// What the invoke path needs to run a function.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The function's id in the store (what logs refer to).
    pub function_id: i64,
    /// Its tenant's id (what usage and quotas refer to).
    pub tenant_id: TenantId,
    /// Its tenant's name.
    pub tenant: String,
    /// The function's name.
    pub function: String,
    /// The number of the version it serves.
    pub version: u32,
    /// That version's module.
    pub digest: Digest,
    /// That version's configuration.
    pub config: FunctionConfig,
}

/// One invocation, as logged: the per-invocation usage record next to its outcome.
#[derive(Debug, Clone, Default)]
pub struct NewLogEntry {
    /// The function that ran.
    pub function_id: i64,
    /// Its version.
    pub version: u32,
    /// Seconds since the Unix epoch.
    pub at: i64,
    /// How it ended, in words.
    pub outcome: String,
    /// The HTTP status answered.
    pub status: u16,
    /// Wall time in µs.
    pub wall_us: u64,
    /// What the guest wrote to stderr.
    pub stderr: String,
    /// Guest CPU time in µs.
    pub cpu_us: u64,
    /// Time to create the instance, in µs.
    pub instantiation_us: u64,
    /// Peak linear memory in bytes.
    pub peak_memory_bytes: u64,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// The start of what a failed invocation wrote to stdout (empty for a
    /// success: its stdout was the answer).
    pub stdout: String,
}
