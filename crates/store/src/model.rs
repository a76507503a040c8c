//! The nouns of the store, as the server and the API see them.

use kiln_runtime::Digest;
use serde::{Deserialize, Serialize};

pub type TenantId = i64;

/// sha256 of an API token. Tokens themselves are never stored.
pub type TokenHash = [u8; 32];

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: i64,
}

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Tenant(Tenant),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub revoked: bool,
}

/// How a function version runs: fixed at deploy, immutable afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionConfig {
    #[serde(default)]
    pub env: Vec<(String, String)>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Linear memory limit in bytes; `None` = the server default.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// Wall-time limit in milliseconds; `None` = the server default.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Largest request body in bytes; `None` = the server default.
    #[serde(default)]
    pub max_input: Option<u64>,
    /// Largest response (stdout, or a wasi:http response body) in bytes; `None` =
    /// the server default.
    #[serde(default)]
    pub max_output: Option<u64>,
    /// The function prints CGI response headers before its body.
    #[serde(default)]
    pub cgi: bool,
    /// Invoking needs a token of the function's tenant.
    #[serde(default)]
    pub private: bool,
    /// Responses carry the invocation's usage (`Kiln-Cpu-Us`, `Kiln-Wall-Us`,
    /// `Kiln-Peak-Memory`).
    #[serde(default)]
    pub receipt: bool,
    /// A command's stdin is read from the request body as it arrives and its
    /// stdout sent as it is written (chunked), instead of both whole.
    #[serde(default)]
    pub stream: bool,
    /// Hosts (`HOST[:PORT]`, `*.DOMAIN[:PORT]`) a component may send HTTP requests
    /// to; empty: none.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
}

/// A version about to be recorded.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub digest: Digest,
    pub size: u64,
    pub config: FunctionConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub number: u32,
    pub digest: String,
    pub size: u64,
    pub config: FunctionConfig,
    pub created_at: i64,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionSummary {
    pub name: String,
    pub current: Version,
    pub versions: u32,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionDetail {
    pub name: String,
    pub current_version: u32,
    /// Newest first.
    pub versions: Vec<Version>,
    pub created_at: i64,
    pub updated_at: i64,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub id: i64,
    pub version: u32,
    pub at: i64,
    pub outcome: String,
    pub status: u16,
    pub wall_us: u64,
    pub stderr: String,
    #[serde(default)]
    pub cpu_us: u64,
    #[serde(default)]
    pub instantiation_us: u64,
    #[serde(default)]
    pub peak_memory_bytes: u64,
    #[serde(default)]
    pub bytes_in: u64,
    #[serde(default)]
    pub bytes_out: u64,
}
