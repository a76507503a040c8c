//! `kiln up`: serve Kiln on this machine with the embedded store.

use crate::credentials::{self, Credentials};
use anyhow::Context;
use kiln_api::{GIB, KIB, MIB, parse_duration, parse_size};
use kiln_server::{Server, ServerConfig};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Serve Kiln: the HTTP endpoint of every function, and the control API
#[derive(clap::Args, Debug)]
pub(crate) struct UpArgs {
    /// Address to listen on
    #[arg(long, env = "KILN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Data directory: metadata, modules, compiled artifacts
    /// [default: $XDG_DATA_HOME/kiln, else ~/.local/share/kiln]
    #[arg(long, env = "KILN_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
    /// Keep metadata, usage and logs in this PostgreSQL database
    /// (`postgres://USER@HOST:PORT/DB`) instead of the data directory's SQLite file
    #[arg(long, env = "KILN_DATABASE", value_name = "URL", value_parser = parse_database_url)]
    database: Option<String>,
    /// Keep modules (and share compiled artifacts) in this S3 bucket
    /// (`s3://BUCKET`) instead of the data directory; credentials from
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
    #[arg(long, env = "KILN_BLOBS", value_name = "s3://BUCKET", value_parser = parse_bucket)]
    blobs: Option<String>,
    /// The S3-compatible server's URL [default: AWS]
    #[arg(long, env = "KILN_S3_ENDPOINT", value_name = "URL", requires = "blobs")]
    s3_endpoint: Option<String>,
    /// A PEM file of certificate authorities to trust for an https:// S3
    /// endpoint signed by a private CA [default: the web's roots only]
    #[arg(
        long,
        env = "KILN_S3_CA_CERT",
        value_name = "FILE",
        requires = "s3_endpoint"
    )]
    s3_ca_cert: Option<PathBuf>,
    /// Base URL printed for functions [default: http:// then the listen address]
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Largest module a deploy accepts
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "512MiB")]
    max_module_size: u64,
    /// Instances that may run at once (the pre-reserved instance pool)
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_instances: u32,
    /// How long a request waits for a free instance when all are busy, before a 503
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    instance_wait: Duration,
    /// Cores the tenants' shares of CPU divide when the machine is saturated
    /// (each tenant with work gets its weighted share; see `kiln quota
    /// --cpu-weight`) [default: the cores this process may use]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    cpu_cores: Option<u32>,
    /// Largest memory limit a function may be given (the size of each pool slot)
    #[arg(long, value_name = "SIZE", value_parser = parse_max_memory, default_value = "4GiB")]
    max_memory: u64,
    /// Dirty memory of a finished instance reset in place for the next one in
    /// its slot, instead of handed back to the kernel and faulted in again
    /// (each slot used may keep this much resident)
    #[arg(long, value_name = "SIZE", value_parser = parse_keep_resident, default_value = "2MiB")]
    keep_resident: u64,
    /// Functions kept loaded in memory; the least recently used is unloaded past it
    /// (and loaded again from its compiled artifact on its next request)
    #[arg(long, value_name = "N", default_value = "1024")]
    max_loaded_functions: NonZeroUsize,
    /// Bytes of compiled code (and snapshot data) the loaded functions may keep
    /// in memory; past it the least recently used is unloaded too. A loaded
    /// artifact is a private copy the kernel cannot page out: a Python
    /// function's is ~36 MiB [default: a quarter of the machine's memory]
    #[arg(long, value_name = "SIZE", value_parser = parse_loaded_code)]
    max_loaded_code: Option<u64>,
    /// Price list (TOML) for usage and spending caps [default: built-in prices,
    /// see the README]
    #[arg(long, env = "KILN_PRICES", value_name = "FILE")]
    prices: Option<PathBuf>,
    /// Meter every invocation (usage, bills, request and cost quotas)
    #[arg(long, value_enum, default_value = "on")]
    metering: Switch,
    /// How often metered usage is written to the store: the most a crash can lose
    #[arg(long, value_name = "DURATION", value_parser = parse_flush_interval, default_value = "1s")]
    usage_flush: Duration,
    /// How often each tenant's stored key-value data is sampled for its bill
    /// (an hour is billed for the most seen in it)
    #[arg(long, value_name = "DURATION", value_parser = parse_storage_meter, default_value = "1m")]
    storage_meter: Duration,
    /// Invocation log entries queued for writing at most; past it, entries are
    /// dropped and counted per function (`kiln logs` shows how many)
    #[arg(long, value_name = "N", default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    log_buffer: u32,
    /// A network outbound requests may reach although it is not public
    /// (loopback, private, link-local...), e.g. 10.1.0.0/16 or 127.0.0.1;
    /// repeatable [default: public addresses only]
    #[arg(long, value_name = "CIDR", value_parser = parse_network)]
    outbound_allow_net: Vec<ipnet::IpNet>,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); reloaded
    /// when the file changes or on SIGHUP
    #[arg(long, env = "KILN_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM)
    #[arg(long, env = "KILN_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// With HTTPS: also listen for plain HTTP here, redirecting every request
    /// to HTTPS (e.g. 0.0.0.0:80)
    #[arg(long, value_name = "ADDR", requires = "tls_cert")]
    http_redirect: Option<SocketAddr>,
    /// Serve Prometheus metrics without a token on this address (else at
    /// /metrics on the main address, to the admin token)
    #[arg(long, env = "KILN_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Client connections open at once; past it a new one gets a 503
    #[arg(long, value_name = "N", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Time a client has to send a request head (also closes idle keep-alive
    /// connections)
    #[arg(long, value_name = "DURATION", value_parser = parse_client_timeout, default_value = "10s")]
    header_timeout: Duration,
    /// Longest pause in a request body before the request fails with 408
    #[arg(long, value_name = "DURATION", value_parser = parse_client_timeout, default_value = "30s")]
    body_timeout: Duration,
    /// Longest a response may wait for its client to read before the connection
    /// is closed
    #[arg(long, value_name = "DURATION", value_parser = parse_client_timeout, default_value = "60s")]
    send_timeout: Duration,
    /// Largest request head (request line and headers); larger is a 431
    #[arg(long, value_name = "SIZE", value_parser = parse_max_header_size, default_value = "64KiB")]
    max_header_size: u64,
    /// Longest a deploy may spend compiling its module, before what its size adds
    /// (--compile-time-per-mib); past it the deploy fails with a 422 and nothing
    /// is stored
    #[arg(long, value_name = "DURATION", value_parser = parse_client_timeout, default_value = "60s")]
    compile_timeout: Duration,
    /// What each MiB of a module adds to its compile-time limit (a 66 MiB program
    /// gets 60s + 66s by default)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    compile_time_per_mib: Duration,
    /// Modules of at least this size are served at once on baseline code (Winch,
    /// compiled in seconds) while their optimized code (Cranelift) is compiled
    /// in the background; `off` compiles every module optimized at deploy
    #[arg(long, value_name = "SIZE|off", value_parser = parse_baseline_above, default_value = "4MiB")]
    baseline_above: BaselineAbove,
    /// Elements one table of an instance may hold (C and C++ programs need one
    /// per address-taken function); reserved as address space in every pool slot
    #[arg(long, value_name = "N", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    max_table_elements: u32,
    /// Tables one module may define
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    max_tables: u32,
    /// Linear memories one module may define (multi-memory)
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=16))]
    max_memories: u32,
    /// Bytes of one instance's own state (globals, function references)
    #[arg(long, value_name = "SIZE", value_parser = parse_instance_size, default_value = "4MiB")]
    max_instance_size: u64,
    /// Largest file bundle (the tar archive of a `kiln deploy --dir`)
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "1GiB")]
    max_bundle_size: u64,
    /// Most files and directories in one bundle
    #[arg(long, value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_bundle_files: u64,
    /// Bytes all invocations' scratch directories (and writable copies) may
    /// hold at once on this machine; past it, an invocation waits, then gets a 503
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "4GiB")]
    scratch_total: u64,
    /// Where invocations' scratch directories and writable copies are made
    /// [default: scratch in the data directory]; a tmpfs (e.g. under /dev/shm)
    /// makes them much cheaper than a disk
    #[arg(long, value_name = "DIR")]
    scratch_dir: Option<PathBuf>,
    /// Writable copies (--dir ...:copy) as copy-on-write overlays, mounted by
    /// a helper process in a user namespace of its own; off: every copy is a
    /// whole copy of its tree
    #[arg(long, value_enum, default_value = "on")]
    copy_on_write: Switch,
    /// Where the language runtimes are (python.wasm, js.wasm and python/, built by
    /// scripts/runtimes into target/runtimes): `kiln deploy app.py` and `app.js`
    /// need them
    #[arg(long, value_name = "DIR", env = "KILN_RUNTIMES")]
    runtimes: Option<PathBuf>,
    /// Where compiled functions are cached one by one, so that binaries sharing
    /// code (every snapshot of a language runtime) compile it once [default:
    /// compile-cache in the data directory with --runtimes, else none]; servers
    /// of one machine may share it
    #[arg(long, value_name = "DIR")]
    compile_cache: Option<PathBuf>,
    /// Most files and directories one invocation's scratch directory may hold
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    scratch_files: u64,
    /// Longest key of the key-value store, in bytes
    #[arg(long, value_name = "SIZE", default_value = "1KiB", value_parser = parse_size)]
    kv_max_key: u64,
    /// Largest value of the key-value store
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_size)]
    kv_max_value: u64,
    /// Keys a tenant may store in all its buckets, unless its quota says
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    kv_keys: u64,
    /// The key that seals secrets: a file of 64 hex digits (`openssl rand -hex
    /// 32`); or the KILN_SECRET_KEY variable. Without either, a server on its
    /// embedded store makes one (secret.key in the data directory); every node
    /// of a cluster needs the same one
    #[arg(long, value_name = "FILE")]
    secret_key_file: Option<PathBuf>,
    /// Bytes of keys and values a tenant may store, unless its quota says
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    kv_bytes: u64,
    /// How long a module, bundle or compiled artifact must have been
    /// unreferenced (its function deleted, its versions replaced... ) before
    /// the collector deletes it
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    gc_grace: Duration,
    /// How often the collector runs on its own (0: only `kiln admin gc`)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    gc_interval: Duration,
    /// The shortest interval between two ticks a schedule may have: a deploy
    /// with a more frequent one is refused
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1m")]
    schedule_min_interval: Duration,
    /// How long a console session lasts (signing out, or revoking its token,
    /// ends it sooner)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "12h")]
    session_ttl: Duration,
    /// Serve the web console at /console. On, `/fn` answers carry a sandbox
    /// Content-Security-Policy, since a function's page shares the console's
    /// origin (web apps that need their own origin belong on a custom domain)
    #[arg(long, value_enum, value_name = "on|off", default_value = "on")]
    console: Switch,
    /// Whether visitors may create a tenant from the console
    #[arg(long, value_enum, value_name = "closed|open", default_value = "closed")]
    signup: Signup,
    /// With `--signup open`: tenants one client address may create per hour
    /// (the node allows ten times as many)
    #[arg(long, value_name = "N", default_value_t = 3)]
    signups_per_hour: u32,
    /// Run without the seccomp filter (an allow-list of the system calls Kiln
    /// makes, installed once the server has started): for debugging only
    #[arg(long)]
    no_seccomp: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Signup {
    Closed,
    Open,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Switch {
    On,
    Off,
}

/// `s3://BUCKET`: the bucket's name.
fn parse_bucket(text: &str) -> Result<String, String> {
    match text.strip_prefix("s3://") {
        Some(bucket) if !bucket.is_empty() && !bucket.contains('/') => Ok(bucket.to_owned()),
        _ => Err("expected s3://BUCKET".into()),
    }
}

/// A `postgres://` or `postgresql://` URL.
fn parse_database_url(text: &str) -> Result<String, String> {
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        Ok(text.to_owned())
    } else {
        Err("expected a postgres:// URL".into())
    }
}

/// A flush interval between 10 ms and 1 minute.
fn parse_flush_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_duration(text).map_err(|e| e.to_string())?;
    if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&interval) {
        return Err("must be between 10ms and 60s".into());
    }
    Ok(interval)
}

/// A network (`10.0.0.0/8`) or one address (`127.0.0.1`, `::1`).
fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("expected a network such as 10.0.0.0/8 or an address, not {text:?}"))
}

/// A storage sampling interval: at least once an hour (every hour is billed).
fn parse_storage_meter(text: &str) -> Result<Duration, String> {
    let interval = parse_duration(text).map_err(|e| e.to_string())?;
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&interval) {
        return Err("must be between 100ms and 1h".into());
    }
    Ok(interval)
}

/// A client or compile timeout between 100 ms and 1 hour.
fn parse_client_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_duration(text).map_err(|e| e.to_string())?;
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&timeout) {
        return Err("must be between 100ms and 1h".into());
    }
    Ok(timeout)
}

/// A request head limit between 8 KiB and 1 MiB.
fn parse_max_header_size(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text).map_err(|e| e.to_string())?;
    if !(8 * KIB..=1024 * KIB).contains(&bytes) {
        return Err("must be between 8KiB and 1MiB".into());
    }
    Ok(bytes)
}

/// An instance state size between 64 KiB and 1 GiB.
fn parse_instance_size(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text).map_err(|e| e.to_string())?;
    if !(64 * KIB..=GIB).contains(&bytes) {
        return Err("must be between 64KiB and 1GiB".into());
    }
    Ok(bytes)
}

/// A memory size between one WebAssembly page (64 KiB) and the 32-bit address space.
fn parse_max_memory(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text).map_err(|e| e.to_string())?;
    if !(64 * KIB..=4 * GIB).contains(&bytes) {
        return Err("must be between 64KiB and 4GiB".into());
    }
    Ok(bytes)
}

/// Loaded code: at least 1 MiB (the function a request needs is loaded
/// whatever its size; the bound unloads the others).
fn parse_loaded_code(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text).map_err(|e| e.to_string())?;
    if bytes < MIB {
        return Err("must be at least 1MiB".into());
    }
    Ok(bytes)
}

/// Memory kept resident per slot: at most 1 GiB (0 hands everything back).
fn parse_keep_resident(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text).map_err(|e| e.to_string())?;
    if bytes > GIB {
        return Err("must be at most 1GiB".into());
    }
    Ok(bytes)
}

pub(crate) fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir)
        .join("kiln")
}

pub(crate) fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    // rustls warns about what a client sends (an IP address as SNI, ...):
    // once per handshake, a line any client could flood the log with. Its
    // errors only, unless KILN_LOG names it. wasmtime-wasi opens an info-level
    // span for every WASI call a guest makes (`#[instrument]`), which would
    // cost every request a span per call for nothing Kiln prints: its
    // warnings only, unless KILN_LOG names it.
    let mut directives = std::env::var("KILN_LOG").unwrap_or_else(|_| "info".into());
    for (target, level) in [("rustls", "error"), ("wasmtime_wasi", "warn")] {
        if !directives.contains(target) {
            directives = format!("{directives},{target}={level}");
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(directives))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    raise_open_file_limit();
    crate::privileges::private_files();
    let low_port = std::iter::once(args.listen)
        .chain(args.metrics_listen)
        .chain(args.http_redirect)
        .any(|addr| (1..1024).contains(&addr.port()));
    // Before the capabilities go: the helper maps this user into its own
    // namespaces, which for root needs them (`kiln_runtime::Overlays`).
    let copy_on_write = args.copy_on_write == Switch::On;
    let overlays = copy_on_write
        .then(|| {
            kiln_runtime::Overlays::start()
                .map_err(|e| tracing::info!("no copy-on-write overlays: {e}"))
                .ok()
        })
        .flatten()
        .map(std::sync::Arc::new);
    if let Err(e) = crate::privileges::drop_privileges(low_port) {
        tracing::warn!("cannot drop privileges: {e}");
    }
    let data = args.data.unwrap_or_else(default_data_dir);
    let no_seccomp = args.no_seccomp;
    let mut config = ServerConfig::new(args.listen, &data);
    config.public_url = args.public_url;
    config.database = args.database;
    config.s3 = args.blobs.map(|bucket| kiln_server::S3Config {
        bucket,
        endpoint: args.s3_endpoint,
        credentials: None,
        ca_cert: args.s3_ca_cert,
    });
    config.max_module_bytes = args.max_module_size;
    config.engine.max_instances = args.max_instances;
    config.engine.instance_wait = args.instance_wait;
    if let Some(cores) = args.cpu_cores {
        config.engine.cpu_cores = cores as usize;
    }
    config.engine.max_memory_bytes = args.max_memory;
    config.engine.keep_resident_bytes = usize::try_from(args.keep_resident)?;
    config.default_limits.memory_bytes = config.default_limits.memory_bytes.min(args.max_memory);
    config.max_loaded_functions = args.max_loaded_functions;
    if let Some(bytes) = args.max_loaded_code {
        config.max_loaded_code_bytes = bytes;
    }
    if let Some(path) = &args.prices {
        config.prices = kiln_server::read_price_list(path)?;
    }
    config.metering = args.metering == Switch::On;
    config.usage_flush_interval = args.usage_flush;
    config.storage_meter_interval = args.storage_meter;
    config.log_buffer = args.log_buffer as usize;
    config.gc_grace = args.gc_grace;
    config.gc_interval = (!args.gc_interval.is_zero()).then_some(args.gc_interval);
    config.schedule_min_interval = args.schedule_min_interval;
    config.session_ttl = args.session_ttl;
    config.console = kiln_server::ConsoleConfig {
        enabled: args.console == Switch::On,
        open_signup: args.signup == Signup::Open,
        signups_per_hour: args.signups_per_hour,
    };
    config.egress = kiln_runtime::EgressPolicy {
        allowed_nets: args.outbound_allow_net,
    };
    config.metrics_listen = args.metrics_listen;
    config.tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(kiln_server::TlsFiles { cert, key }),
        _ => None,
    };
    config.http_redirect = args.http_redirect;
    config.compile_timeout = args.compile_timeout;
    config.compile_time_per_mib = args.compile_time_per_mib;
    config.baseline_above = args.baseline_above.0;
    config.bundle_limits = kiln_server::BundleLimits {
        max_bytes: args.max_bundle_size,
        max_files: args.max_bundle_files,
    };
    config.scratch_total_bytes = args.scratch_total;
    config.scratch_files = args.scratch_files;
    config.kv_limits = kiln_api::KvLimits {
        max_key_bytes: args.kv_max_key,
        max_value_bytes: args.kv_max_value,
        ..kiln_api::KvLimits::default()
    };
    config.secret_key_file = args.secret_key_file;
    config.secret_key = std::env::var(kiln_server::SECRET_KEY_ENV).ok();
    config.kv_caps = kiln_api::KvCaps {
        keys: args.kv_keys,
        bytes: args.kv_bytes,
    };
    config.scratch_dir = args.scratch_dir;
    config.overlays = overlays;
    config.copy_on_write = copy_on_write;
    config.runtimes = args.runtimes;
    config.compile_cache = args.compile_cache;
    config.engine.slot = kiln_runtime::SlotLimits {
        table_elements: args.max_table_elements as usize,
        tables_per_module: args.max_tables,
        memories_per_module: args.max_memories,
        core_instance_bytes: usize::try_from(args.max_instance_size)
            .context("--max-instance-size does not fit this machine")?,
    };
    config.connections = kiln_server::ConnectionLimits {
        max_connections: args.max_connections as usize,
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        send_timeout: args.send_timeout,
        max_header_bytes: args.max_header_size as usize,
    };

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    tokio.block_on(async {
        let (server, initial) = Server::open(config).await?;
        // Start-up is done (the store opened, the listener bound): from here on
        // the server makes only the calls of serving.
        if no_seccomp {
            tracing::warn!("running without the seccomp filter (--no-seccomp)");
        } else {
            crate::seccomp::install()?;
        }
        let url = server.url().to_owned();
        if let Some(initial) = initial {
            let path = credentials::save(&Credentials {
                url: url.clone(),
                tenant: initial.tenant.clone(),
                token: initial.tenant_token,
                admin_token: initial.admin_token,
            })?;
            eprintln!(
                "kiln: new data directory {}: created tenant {:?} and its token, and an admin token",
                data.display(),
                initial.tenant
            );
            eprintln!("kiln: credentials written to {} (the CLI uses them)", path.display());
        }
        println!("kiln listening on {url} (data in {})", data.display());
        if let Some(addr) = server.metrics_addr() {
            println!("kiln metrics on http://{addr}/metrics");
        }
        println!("kiln console on {url}/console (sign in with an API token)");
        server.run(shutdown_signal()).await
    })?;
    eprintln!("kiln: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Each loaded function keeps its artifact file open (its memory image is mapped
/// from it), and each connection is a socket: lift the soft limit on open files to
/// the hard limit, as servers do, rather than fail at 1024 on a default system.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!("cannot raise the open-file limit");
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for shutdown signals");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// `--baseline-above`: a size, or `off`.
#[derive(Debug, Clone, Copy)]
struct BaselineAbove(Option<u64>);

fn parse_baseline_above(text: &str) -> Result<BaselineAbove, String> {
    match text {
        "off" => Ok(BaselineAbove(None)),
        _ => parse_size(text)
            .map(|bytes| BaselineAbove(Some(bytes)))
            .map_err(|e| format!("{e} (or `off`)")),
    }
}
