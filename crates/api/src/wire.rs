//! The JSON bodies of the control API (`/v1`), as the server writes them and the
//! CLI reads them. `docs/api.md` documents each route with these shapes.

use crate::digest::Digest;
use crate::function::FunctionConfig;
use serde::{Deserialize, Serialize};

/// A tenant's id in the metadata store.
pub type TenantId = i64;

/// An account: functions, tokens, usage and quotas belong to one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// The store's id.
    pub id: TenantId,
    /// Its name, as in `/fn/{tenant}/...`.
    pub name: String,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
}

/// An API token, without its secret (only its hash is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// What `DELETE /v1/tokens/{id}` takes.
    pub id: i64,
    /// A label chosen at creation.
    pub name: String,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// Revoked tokens are listed but authenticate nothing.
    pub revoked: bool,
}

/// `POST /v1/tenants` and `POST /v1/tokens`: the name of what to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewNamed {
    /// The tenant's or token's name.
    pub name: String,
}

/// Answer to `POST /v1/tokens`: the token and its secret, shown only here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    /// What is stored of it.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The secret.
    pub token: String,
}

/// Answer to `POST /v1/tenants`: the tenant and a first token, shown only here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedTenant {
    /// The new tenant.
    #[serde(flatten)]
    pub tenant: Tenant,
    /// Its first token's secret.
    pub token: String,
}

/// `GET /v1/whoami`: who the token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// An admin token.
    pub admin: bool,
    /// The tenant of a tenant token.
    pub tenant: Option<String>,
}

/// An immutable version of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// 1, 2, 3... per function.
    pub number: u32,
    /// The module's sha256.
    pub digest: Digest,
    /// The module's size in bytes.
    pub size: u64,
    /// How it runs.
    pub config: FunctionConfig,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// What kind of binary it is (absent for versions deployed before Kiln
    /// kept it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<BinaryKind>,
}

/// One function in `GET /v1/functions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSummary {
    /// Its name.
    pub name: String,
    /// The version it serves.
    pub current: Version,
    /// How many versions it has.
    pub versions: u32,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// Last deploy or rollback, seconds since the Unix epoch.
    pub updated_at: i64,
}

/// `GET /v1/functions/{name}`: a function and all its versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionDetail {
    /// Its name.
    pub name: String,
    /// The number of the version it serves.
    pub current_version: u32,
    /// Newest first.
    pub versions: Vec<Version>,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// Last deploy or rollback, seconds since the Unix epoch.
    pub updated_at: i64,
    /// Which compiler made the current version's code on the node that
    /// answered (`None`: not compiled there yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
}

/// `POST /v1/functions/{name}/rollback`: the version to serve (default: the one
/// before the current one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRequest {
    /// The version number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// Which compiler made a function's machine code on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Winch, wasmtime's baseline compiler: compiled in seconds at deploy,
    /// served until the optimized code is in.
    Baseline,
    /// Cranelift: the code every function ends up with.
    Optimized,
}

impl Tier {
    /// Its name in answers and logs: `baseline` or `optimized`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Baseline => "baseline",
            Tier::Optimized => "optimized",
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of WASI binary a version is, detected at deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum BinaryKind {
    /// A WASI preview 1 core module with `_start`.
    Module,
    /// A WASI 0.2 `wasi:cli/command` component.
    Component,
    /// A WASI 0.2 `wasi:http/proxy` component.
    HttpComponent,
}

impl BinaryKind {
    /// Its name on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryKind::Module => "module",
            BinaryKind::Component => "component",
            BinaryKind::HttpComponent => "http-component",
        }
    }

    /// The kind of that name.
    pub fn from_name(name: &str) -> Option<BinaryKind> {
        [
            BinaryKind::Module,
            BinaryKind::Component,
            BinaryKind::HttpComponent,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// Answer to a deploy (`POST /v1/functions/{name}/versions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployed {
    /// The tenant it belongs to.
    pub tenant: String,
    /// The function's name.
    pub function: String,
    /// The new version's number.
    pub version: u32,
    /// The module's sha256.
    pub digest: Digest,
    /// The module's size in bytes.
    pub size: u64,
    /// Milliseconds spent compiling; `null` when the module was already compiled.
    pub compile_ms: Option<f64>,
    /// What kind of binary it is.
    pub kind: BinaryKind,
    /// Which compiler made the code it is served with now: `baseline` for a
    /// big module (the optimized code follows in the background).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// Why a big module was not given baseline code (a proposal the baseline
    /// compiler lacks), when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier_note: Option<String>,
    /// Where it is served.
    pub url: String,
}

/// One invocation in `GET /v1/functions/{name}/logs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Increasing; `?after=ID` pages from it.
    pub id: i64,
    /// The version that ran.
    pub version: u32,
    /// Seconds since the Unix epoch.
    pub at: i64,
    /// How it ended, in words (`success`, `exited with code 3`, ...).
    pub outcome: String,
    /// The HTTP status answered.
    pub status: u16,
    /// Wall time in µs.
    pub wall_us: u64,
    /// What the guest wrote to stderr (up to the stderr limit).
    pub stderr: String,
    /// Guest CPU time in µs.
    #[serde(default)]
    pub cpu_us: u64,
    /// Time to create the instance, in µs.
    #[serde(default)]
    pub instantiation_us: u64,
    /// Peak linear memory in bytes.
    #[serde(default)]
    pub peak_memory_bytes: u64,
    /// Request body bytes.
    #[serde(default)]
    pub bytes_in: u64,
    /// Response body bytes.
    #[serde(default)]
    pub bytes_out: u64,
    /// The start of what a failed invocation wrote to stdout (empty for a
    /// success: its stdout was the answer).
    #[serde(default)]
    pub stdout: String,
}

/// `GET /v1/status`: live counters of the node that answers (admin only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Invocations running now.
    pub in_flight: u64,
    /// Client connections open now.
    pub connections: u64,
    /// Instance slots in use.
    pub active_instances: u32,
    /// Modules compiled by this node since it started.
    pub compiles: u64,
    /// Compiled artifacts downloaded from the cluster's bucket instead.
    pub artifact_downloads: u64,
    /// Functions loaded in memory now.
    pub loaded_functions: usize,
    /// Functions loaded before the last restart that this node has still to
    /// load again, in the background (0 once done).
    #[serde(default)]
    pub rewarm_pending: usize,
    /// Function cache hits since start.
    pub function_cache_hits: u64,
    /// Function cache misses since start.
    pub function_cache_misses: u64,
    /// Functions evicted from the cache since start.
    pub function_cache_evictions: u64,
    /// What this node's blob collector found on its last pass (`None` before
    /// its first).
    pub gc: Option<GcSummary>,
}

/// `GET /v1/admin/nodes`: a node that served on this store, and what it last
/// reported of itself (every 10 s while it runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSeen {
    /// The node's name: the address it serves on (its host name and port when
    /// it listens on every address).
    pub node: String,
    /// When it started (seconds since the epoch).
    pub started_at: i64,
    /// When it last reported (seconds since the epoch).
    pub seen_at: i64,
    /// Whether it stopped cleanly since (a node that vanished just stops
    /// reporting).
    pub stopped: bool,
    /// Its counters then.
    pub status: NodeStatus,
}

/// The totals of one pass of the blob collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcSummary {
    /// When the pass ran (seconds since the epoch).
    pub at: i64,
    /// Whether it was a dry run (`kiln admin gc --dry-run`), which deletes
    /// nothing.
    pub dry_run: bool,
    /// Bytes nothing refers to that were still stored after the pass (deleted
    /// once unreferenced for the grace period): blobs, compiled artifacts,
    /// unpacked bundles.
    pub reclaimable_bytes: u64,
    /// Bytes the pass deleted (for a dry run: would have).
    pub deleted_bytes: u64,
}

/// What the blob collector may delete: a stored blob, or a copy derived from
/// one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GcItemKind {
    /// An uploaded module (its digest).
    Module,
    /// An uploaded file bundle.
    Bundle,
    /// This node's compiled artifact of a module.
    Artifact,
    /// A compiled artifact shared with the cluster in the bucket.
    SharedArtifact,
    /// This node's unpacked copy of a bundle.
    UnpackedBundle,
}

impl GcItemKind {
    /// Its name in words, as `kiln admin gc` prints it.
    pub fn name(self) -> &'static str {
        match self {
            GcItemKind::Module => "module",
            GcItemKind::Bundle => "bundle",
            GcItemKind::Artifact => "artifact",
            GcItemKind::SharedArtifact => "shared artifact",
            GcItemKind::UnpackedBundle => "unpacked bundle",
        }
    }
}

/// One unreferenced thing the collector found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcItem {
    /// What it is.
    pub kind: GcItemKind,
    /// The digest of its module or bundle.
    pub digest: Digest,
    /// Its size in bytes.
    pub bytes: u64,
    /// Since when no version has referred to it, as the collector first saw it
    /// (seconds); derived copies have their blob's, or none when the blob is
    /// gone.
    pub unreferenced_since: Option<i64>,
    /// Whether the pass deleted it (for a dry run: would have).
    pub deleted: bool,
}

/// `POST /v1/admin/gc`: one pass of the blob collector on the node that
/// answers (admin only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Whether nothing was deleted (`?dry_run=true`).
    pub dry_run: bool,
    /// How long something must have been unreferenced to go, in seconds.
    pub grace_seconds: u64,
    /// Everything unreferenced it found, deleted or not yet.
    pub items: Vec<GcItem>,
    /// The totals.
    pub summary: GcSummary,
}

/// Every error of the control API, as a stable code a program can branch on;
/// the message beside it is for people and may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is malformed (a body, a query, an option).
    BadRequest,
    /// A tenant or function name outside the alphabet.
    InvalidName,
    /// The uploaded module is not one Kiln can run.
    InvalidModule,
    /// The uploaded file bundle is refused (a link, a `..` path, a device...).
    InvalidBundle,
    /// A script's code failed when its runtime loaded it at deploy (a syntax
    /// error, an exception at top level); the message carries the interpreter's.
    ScriptFailed,
    /// The server has no runtime for the script's language.
    NoRuntime,
    /// No token, or an invalid or revoked one.
    Unauthorized,
    /// The token may not do this.
    Forbidden,
    /// No such tenant, function, version or token.
    NotFound,
    /// It exists already.
    Conflict,
    /// The upload is over the maximum module or bundle size.
    TooLarge,
    /// The client stalled while sending.
    RequestTimeout,
    /// Compiling the module took longer than the compile-time limit.
    CompileLimit,
    /// Every compiler is busy; try again later.
    Busy,
    /// The server's storage is full; nothing was stored.
    StorageFull,
    /// The write would take the tenant past its storage quota; nothing was
    /// changed.
    QuotaExceeded,
    /// Too many requests of this kind from this client lately (open
    /// sign-ups); `Retry-After` says when to try again.
    RateLimited,
    /// A store the server depends on cannot be reached; try again later.
    Unavailable,
    /// Kiln itself failed; the server log has the cause.
    Internal,
}

/// The body of every control-API error: `{"error": "...", "code": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// One line for people.
    pub error: String,
    /// What went wrong, for programs.
    pub code: ErrorCode,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_codes_are_kebab_case_on_the_wire() {
        let json = serde_json::to_string(&BinaryKind::HttpComponent).unwrap();
        assert_eq!(json, "\"http-component\"");
        let body = ErrorBody {
            error: "no".into(),
            code: ErrorCode::InvalidName,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":"no","code":"invalid-name"}"#
        );
    }
}
