//! The contract between Kiln's CLI, server and store: the nouns they exchange,
//! defined once. Data and pure parsing only: no I/O, no async, no HTTP stack.
//!
//! - [`Digest`]: a module's sha256, the content address of everything compiled.
//! - [`units`]: sizes and durations as users type them, and [`ByteCount`] to print them.
//! - [`check_name`]: the alphabet of tenant and function names.
//! - [`FunctionConfig`] and its deploy-options codec ([`FunctionConfig::to_query`] /
//!   [`FunctionConfig::from_query`]), used by the CLI and the server alike.
//! - [`Mount`] and [`Scratch`]: the file trees and scratch directory a function sees.
//! - [`KvLimits`], [`check_bucket`] and the `/v1/kv` bodies: key-value state.
//! - [`check_secret_name`] and [`SecretInfo`]: secrets, granted to functions by name.
//! - [`Kind`]: every `Kiln-Outcome` of the invoke path, with [`Kind::ALL`].
//! - [`usage`]: usage totals, quotas, prices and the usage reports.
//! - [`Schedule`]: cron schedules of scheduled functions, and their runs.
//! - [`check_domain`], [`check_prefix`]: custom domains and their routes.
//! - [`wire`]: the JSON bodies of `/v1`, including [`ErrorBody`] and its [`ErrorCode`].

#![warn(missing_docs)]

mod digest;
mod domains;
mod files;
mod function;
mod kv;
mod names;
mod outcome;
mod schedule;
mod script;
mod secrets;
pub mod units;
pub mod usage;
pub mod wire;

pub use digest::{Digest, ParseDigestError};
pub use domains::{
    BadDomain, CertificateInfo, CertificateUpload, DomainGrant, DomainInfo, MAX_DOMAIN, MAX_PREFIX,
    MAX_ROUTES, Route, RouteRequest, check_domain, check_prefix, prefix_matches,
};
pub use files::{
    BadFilesOption, BundleInfo, DEFAULT_SCRATCH_PATH, MAX_GUEST_PATH, MAX_MOUNTS, Mount, MountMode,
    Scratch, check_guest_path, check_mounts,
};
pub use function::{
    DEPLOY_OPTIONS, DeployOptionError, FunctionConfig, MAX_BUCKETS, MAX_EXIT_CODE, MAX_SECRETS,
    MAX_TIMEOUT_MS, parse_env_pair,
};
pub use kv::{
    BadKv, KvBucket, KvCaps, KvKeys, KvLimits, KvOverview, KvUsage, KvWrite, check_bucket,
    stored_bytes,
};
pub use names::{InvalidName, NameKind, check_name};
pub use outcome::{
    CPU_HEADER, EXIT_CODE_HEADER, Kind, OUTCOME_HEADER, PEAK_MEMORY_HEADER, UnknownKind,
    WALL_HEADER,
};
pub use schedule::{
    BadSchedule, NODE_LOST, SCHEDULED_TIME_HEADER, Schedule, ScheduleInfo, ScheduledRun, rfc3339,
};
pub use script::{APP_DIR, Language, Script};
pub use secrets::{InvalidSecretName, MAX_SECRET_BYTES, SecretInfo, check_secret_name};
pub use units::{ByteCount, GIB, KIB, MIB, ParseLimitError, parse_duration, parse_size};
pub use usage::{
    Cost, DEFAULT_CPU_WEIGHT, HOUR, MAX_CPU_WEIGHT, PriceList, Quota, QuotaStatus, STORAGE, Units,
    UsageGrouping, UsageLine, UsageReport, UsageTotals, hour_of,
};
pub use wire::{
    BinaryKind, CreatedTenant, CreatedToken, Deployed, ErrorBody, ErrorCode, FunctionDetail,
    FunctionSummary, GcItem, GcItemKind, GcReport, GcSummary, LogEntry, NewNamed, NodeSeen,
    NodeStatus, RollbackRequest, Tenant, TenantId, Tier, TokenInfo, Version, WhoAmI,
};
