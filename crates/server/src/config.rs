//! How a server is set up: [`ServerConfig`], built from flags by `kiln up` (or by
//! an embedder), with its defaults, and the credentials a first start creates.

pub use crate::bundles::BundleLimits;
use crate::listen::ConnectionLimits;
pub use crate::tls::TlsFiles;
use kiln_api::{GIB, KvCaps, KvLimits, MIB, PriceList};
use kiln_runtime::{EngineConfig, Limits};
pub use kiln_store::S3Config;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

/// How a server is set up. Built from flags by `kiln up`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen for requests (port 0: any free port).
    pub listen: SocketAddr,
    /// The data directory: SQLite metadata, modules, compiled artifacts.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (`postgres://...`) holding the metadata instead of the
    /// data directory's SQLite file.
    pub database: Option<String>,
    /// An S3 bucket holding modules and shared artifacts instead of the data
    /// directory (whose `artifacts` stay this node's cache).
    pub s3: Option<S3Config>,
    /// Base URL for printed function URLs; default `http://<listen address>`.
    pub public_url: Option<String>,
    /// Largest module a deploy accepts (default 512 MiB).
    pub max_module_bytes: u64,
    /// Limits of a function that does not override them.
    pub default_limits: Limits,
    /// The sandbox's engine: instance pool and its ceilings.
    pub engine: EngineConfig,
    /// Functions kept loaded (artifact mapped, pre-linked) at once; the least
    /// recently used is evicted past it (default 1024).
    pub max_loaded_functions: NonZeroUsize,
    /// Bytes of artifacts the loaded functions may keep mapped (private copies
    /// the kernel cannot drop); the least recently used is evicted past them
    /// too (default: a quarter of the machine's memory, at least 256 MiB).
    pub max_loaded_code_bytes: u64,
    /// What metered units cost (default [`PriceList::default`]).
    pub prices: PriceList,
    /// Record usage of every invocation (default on). Off, there is no usage
    /// and only the concurrency quota applies.
    pub metering: bool,
    /// How often metered usage is written to the store: the most a `kill -9` can
    /// lose (default 1 s).
    pub usage_flush_interval: Duration,
    /// How often the key-value data each tenant stores is sampled for its
    /// bill (default 1 min; an hour is billed for the most seen in it).
    pub storage_meter_interval: Duration,
    /// Invocation log entries queued for the writer at most; past it entries
    /// are dropped and counted per function (default 16,384).
    pub log_buffer: usize,
    /// How long a blob must have been unreferenced before the collector
    /// deletes it (default 1 h).
    pub gc_grace: Duration,
    /// How often the collector runs on its own (default 1 h; the first pass
    /// at start-up); `None`: only when asked (`POST /v1/admin/gc`).
    pub gc_interval: Option<Duration>,
    /// The shortest interval between two ticks a schedule may have (default
    /// 1 minute): a deploy with a more frequent one is refused.
    pub schedule_min_interval: Duration,
    /// How long a console session lasts (default 12 h).
    pub session_ttl: Duration,
    /// The web console and who may sign up through it.
    pub console: ConsoleConfig,
    /// A separate address serving `GET /metrics` without a token. When `None`,
    /// the main listener serves it to admin tokens.
    pub metrics_listen: Option<SocketAddr>,
    /// Serve HTTPS with this certificate and key instead of plain HTTP
    /// (reloaded when the files change, or on SIGHUP).
    pub tls: Option<TlsFiles>,
    /// With `tls`: a plain HTTP address that redirects every request to HTTPS.
    pub http_redirect: Option<SocketAddr>,
    /// The longest any compile may take, waiting for a compiler slot included:
    /// a deploy's, a start-up's or a request's (default 60 s), plus
    /// `compile_time_per_mib` for each MiB of the module.
    pub compile_timeout: Duration,
    /// What each MiB of a module adds to its compile-time limit (default 1 s).
    /// Compile time grows with code size, so a large program gets the time it
    /// needs, while a small module built to be expensive to compile is still
    /// stopped near the base limit.
    pub compile_time_per_mib: Duration,
    /// Modules of at least this many bytes are served first on baseline code
    /// (Winch, compiled in seconds) while their optimized code is compiled in
    /// the background; `None` compiles every module optimized at deploy.
    /// Default 4 MiB.
    pub baseline_above: Option<u64>,
    /// What one client connection may hold of the server.
    pub connections: ConnectionLimits,
    /// What one uploaded file bundle may hold.
    pub bundle_limits: BundleLimits,
    /// Bytes every invocation's scratch directory and writable copies may hold
    /// together on this node (default 4 GiB): what guests can take of its disk.
    pub scratch_total_bytes: u64,
    /// Entries (files, directories) one invocation's scratch directory may
    /// hold (default 10,000).
    pub scratch_files: u64,
    /// Where invocations' scratch directories and writable copies are made
    /// (default: `scratch` in the data directory). A tmpfs makes them cheaper:
    /// creating and removing a directory is a metadata write on a disk.
    pub scratch_dir: Option<PathBuf>,
    /// The helper that mounts writable copies copy-on-write, started before
    /// the process dropped its capabilities (`kiln_runtime::Overlays`);
    /// `None`: the runtime starts one if it can.
    pub overlays: Option<std::sync::Arc<kiln_runtime::Overlays>>,
    /// Writable copies as copy-on-write overlays where the kernel allows
    /// (default); `false`: whole copies.
    pub copy_on_write: bool,
    /// Where the language runtimes are (`python.wasm`, `js.wasm`, built by
    /// `scripts/runtimes`); `None`: script functions cannot be deployed.
    pub runtimes: Option<PathBuf>,
    /// Where functions' outbound requests may connect besides the public
    /// internet (default: nowhere else).
    pub egress: kiln_runtime::EgressPolicy,
    /// Where compiled functions are cached one by one (wasmtime's incremental
    /// compilation cache); `None`: `compile-cache` in the data directory when
    /// the server has language runtimes, else no such cache (it costs a file
    /// write per function of every compile, and pays off only when binaries
    /// share code).
    pub compile_cache: Option<PathBuf>,
    /// The longest key, the largest value and a listing's page of the
    /// key-value store (default [`KvLimits::default`]: 1 KiB, 1 MiB, 1000).
    pub kv_limits: KvLimits,
    /// What a tenant may store in its buckets when its quota does not say
    /// (default [`KvCaps::default`]: a million keys, 1 GiB).
    pub kv_caps: KvCaps,
    /// The file holding the key that seals secrets (64 hex digits).
    pub secret_key_file: Option<PathBuf>,
    /// The key itself (`KILN_SECRET_KEY`), when there is no file. With
    /// neither, a server on its embedded store makes one in its data
    /// directory; a cluster node has none, and refuses secrets.
    pub secret_key: Option<String>,
}

/// The web console (`/console`) and its open sign-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// Serve the console (default on). On, `/fn` answers carry a
    /// `Content-Security-Policy: sandbox` so that a function's page, which
    /// shares the console's origin, cannot act with a visitor's session.
    pub enabled: bool,
    /// Anyone may create a tenant from the console (default off).
    pub open_signup: bool,
    /// With open sign-up: tenants one client address may create per hour
    /// (default 3); the whole node allows ten times as many.
    pub signups_per_hour: u32,
}

impl Default for ConsoleConfig {
    fn default() -> ConsoleConfig {
        ConsoleConfig {
            enabled: true,
            open_signup: false,
            signups_per_hour: 3,
        }
    }
}

impl ServerConfig {
    /// Defaults for everything but where to listen and where to keep data.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            listen,
            data_dir: data_dir.into(),
            database: None,
            s3: None,
            public_url: None,
            max_module_bytes: 512 * MIB,
            default_limits: Limits::default(),
            engine: EngineConfig::default(),
            max_loaded_functions: NonZeroUsize::new(1024).expect("1024 is not zero"),
            max_loaded_code_bytes: default_max_loaded_code(),
            prices: PriceList::default(),
            metering: true,
            usage_flush_interval: Duration::from_secs(1),
            storage_meter_interval: Duration::from_secs(60),
            gc_grace: Duration::from_secs(3600),
            gc_interval: Some(Duration::from_secs(3600)),
            schedule_min_interval: Duration::from_secs(60),
            session_ttl: Duration::from_secs(12 * 3600),
            console: ConsoleConfig::default(),
            log_buffer: crate::logs::DEFAULT_CAPACITY,
            metrics_listen: None,
            tls: None,
            http_redirect: None,
            compile_timeout: Duration::from_secs(60),
            compile_time_per_mib: Duration::from_secs(1),
            baseline_above: Some(4 * kiln_api::MIB),
            connections: ConnectionLimits::default(),
            bundle_limits: BundleLimits::default(),
            scratch_total_bytes: 4 << 30,
            scratch_files: 10_000,
            scratch_dir: None,
            overlays: None,
            copy_on_write: true,
            runtimes: None,
            egress: Default::default(),
            compile_cache: None,
            kv_limits: KvLimits::default(),
            kv_caps: KvCaps::default(),
            secret_key_file: None,
            secret_key: None,
        }
    }
}

/// Tokens created on the first start of a data directory. They are stored only as
/// hashes, so this is the one time they can be shown.
#[derive(Debug, Clone)]
pub struct InitialCredentials {
    /// The admin token (manages tenants).
    pub admin_token: String,
    /// The default tenant's name.
    pub tenant: String,
    /// A token of the default tenant.
    pub tenant_token: String,
}

/// The default of [`ServerConfig::max_loaded_code_bytes`]: a quarter of the
/// machine's memory (`MemTotal` of `/proc/meminfo`), else 4 GiB where that
/// cannot be read; at least 256 MiB.
fn default_max_loaded_code() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|meminfo| mem_total(&meminfo));
    total.map_or(4 * GIB, |bytes| bytes / 4).max(256 * MIB)
}

/// `MemTotal` of a `/proc/meminfo`, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loaded_code_default_is_a_quarter_of_the_machines_memory() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total(meminfo), Some(24_576_000 * 1024));
        assert_eq!(mem_total("MemFree: 12 kB\n"), None);
        assert_eq!(mem_total("MemTotal: lots kB\n"), None);
        let here = default_max_loaded_code();
        assert!(here >= 256 * MIB, "{here}");
        if let Some(total) = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| mem_total(&m))
        {
            assert_eq!(here, (total / 4).max(256 * MIB));
        }
    }
}
