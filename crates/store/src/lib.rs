//! Kiln's storage, behind two narrow traits so that the server never knows which
//! engine holds its data:
//!
//! - [`MetadataStore`]: tenants, hashed API tokens, functions, their immutable
//!   versions with a current-version pointer, and recent invocation logs.
//! - [`KvStore`]: tenants' key-value buckets, beside the metadata.
//! - [`BlobStore`]: module bytes, content-addressed by sha256.
//! - [`DomainStore`] and [`ScheduleStore`] (supertraits of [`MetadataStore`]):
//!   custom domains with their routes and certificates; scheduled runs.
//!
//! The embedded default is [`SqliteStore`] (one SQLite file, WAL, synchronous commits)
//! and [`LocalBlobs`] (a directory, files written atomically). A cluster of nodes
//! shares [`PostgresStore`] for metadata and [`S3Blobs`] for modules.

#![warn(missing_docs)]

mod blobs;
mod domains;
mod error;
mod gc;
mod grants;
mod kv;
mod metadata;
mod model;
mod nodes;
mod postgres;
mod s3;
mod schedules;
mod sessions;
mod sqlite;
mod usage;

pub use blobs::{
    BlobKind, BlobRef, BlobStore, LocalBlob, LocalBlobs, SharedArtifact, StagedBlob, StoredBlob,
};
pub use domains::{DomainStore, StoredCertificate, StoredDomain, longest_first};
pub use error::{BoxError, StoreError, StoreResult, is_full};
pub use gc::{BlobCollection, BlobDeletion, Pin, PinHolder};
pub use grants::QuotaGrants;
pub use kv::{KvStore, KvWrite};
pub use metadata::{Change, LOGS_KEPT, MetadataStore};
pub use model::{Deployment, NewLogEntry, NewVersion, Principal, TokenHash, now};
pub use nodes::{NODES_KEPT_SECONDS, NodeStore};
pub use postgres::PostgresStore;
pub use s3::{PART_BYTES, S3Blobs, S3Config};
pub use schedules::{LostRun, RUNS_KEPT, ScheduleStore, ScheduledFunction, TickClaim};
pub use sessions::SessionStore;
pub use sqlite::SqliteStore;
pub use usage::{UsageDelta, UsageQuery, UsageRow};
