//! What the blob collector and deploys agree on through the metadata store, so
//! that a blob is deleted only when nothing refers to it, nothing is about to,
//! and it has been so for a grace period.
//!
//! - A deploy or an upload **pins** the blobs it is about to store or refer to
//!   ([`BlobCollection::pin_blobs`]) before it
//!   looks whether they are stored, and unpins them once its version refers to
//!   them or it has failed (a pin also expires, should its node die). An
//!   upload pins what it stored for the deploy that follows, until a version
//!   mounts it.
//! - The collector lists the stored blobs, and notes since when each that no
//!   version refers to has been so
//!   ([`BlobCollection::note_unreferenced`]).
//! - It deletes one ([`BlobCollection::collect_blob`]) only
//!   holding that blob's lock — a PostgreSQL advisory lock, or the SQLite
//!   store's own — and only if, under the lock, no version refers to it, no pin
//!   holds it, and it was noted unreferenced before the grace period. Pinning
//!   takes the same lock, so a deploy racing the collector either pins first
//!   (and the collector keeps the blob) or waits for the deletion to end (and
//!   then finds the blob gone, and stores it again).

use crate::{BlobKind, BlobRef, StoreError, StoreResult};
use async_trait::async_trait;
use futures_util::future::BoxFuture;
use kiln_api::{Digest, FunctionConfig};
use std::collections::BTreeSet;

/// The deletion the collector runs under a blob's lock.
pub type BlobDeletion = BoxFuture<'static, StoreResult<()>>;

/// A deploy's or an upload's hold on blobs, from
/// [`BlobCollection::pin_blobs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin(pub i64);

/// Who takes a pin: a deploy releases its own when it ends; an upload's (and
/// an answer that a bundle is stored) lasts until a version mounts the bundle
/// ([`BlobCollection::release_upload_pins`])
/// or it expires, since the deploy that follows is another request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinHolder {
    /// A deploy in progress.
    Deploy,
    /// An upload, for the deploy that follows it.
    Upload,
}

/// What the collector and deploys ask of the metadata store (a part of every
/// [`MetadataStore`](crate::MetadataStore)).
#[async_trait]
pub trait BlobCollection: Send + Sync + 'static {
    /// Every bundle some version mounts.
    async fn referenced_bundles(&self) -> StoreResult<Vec<Digest>>;

    /// Pins `blobs` until `until` (seconds) or [`BlobCollection::unpin_blobs`]:
    /// the collector keeps a pinned blob. Waits for a collection of any of them
    /// in progress to end, so that once it returns each is either stored or
    /// gone for good (to be stored again).
    async fn pin_blobs(
        &self,
        blobs: Vec<BlobRef>,
        until: i64,
        holder: PinHolder,
    ) -> StoreResult<Pin>;
    /// Releases a pin (its blobs are referenced by then, or not wanted).
    async fn unpin_blobs(&self, pin: Pin) -> StoreResult<()>;
    /// Releases the pins uploads took on `blobs`: a version refers to them.
    async fn release_upload_pins(&self, blobs: Vec<BlobRef>) -> StoreResult<()>;
    /// The blobs pinned at `now` (expired pins are dropped).
    async fn pinned_blobs(&self, now: i64) -> StoreResult<Vec<BlobRef>>;
    /// Notes that the collector found `unreferenced` unreferenced at `now`,
    /// keeping an earlier time for one already noted and forgetting those no
    /// longer in the list; returns since when each of them has been.
    async fn note_unreferenced(
        &self,
        unreferenced: Vec<BlobRef>,
        now: i64,
    ) -> StoreResult<Vec<(BlobRef, i64)>>;
    /// Runs `delete` if, holding `blob`'s lock, no version refers to it, no
    /// pin holds it at `now`, and it was noted unreferenced at `cutoff` or
    /// before; keeps the lock until `delete` ends, then forgets the blob (its
    /// note and, for a bundle, every tenant's record of it). Whether it ran.
    async fn collect_blob(
        &self,
        blob: BlobRef,
        cutoff: i64,
        now: i64,
        delete: BlobDeletion,
    ) -> StoreResult<bool>;
}

/// The key of a blob's PostgreSQL advisory lock: its digest's first eight
/// bytes, told apart by kind. Two blobs sharing a key only wait for each other.
pub(crate) fn lock_key(blob: &BlobRef) -> i64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&blob.digest.as_bytes()[..8]);
    i64::from_be_bytes(first) ^ blob.kind as i64
}

/// What a referenced-check looks for in `versions.config` (the JSON of a
/// version's configuration): a bundle's digest appears there only as a mount.
pub(crate) fn bundle_needle(blob: &BlobRef) -> String {
    blob.digest.to_hex()
}

/// The collector's rule, under the blob's lock: no version refers to it, no
/// pin holds it, and it was noted unreferenced at `cutoff` or before.
pub(crate) fn may_go(referenced: bool, pinned: bool, noted: Option<i64>, cutoff: i64) -> bool {
    !referenced && !pinned && noted.is_some_and(|since| since <= cutoff)
}

/// A blob as the store's two columns hold it.
pub(crate) fn read_blob(kind: &str, digest: &str) -> StoreResult<BlobRef> {
    let kind = BlobKind::from_name(kind)
        .ok_or_else(|| StoreError::inconsistent(format!("unknown blob kind {kind:?}")))?;
    let digest = digest
        .parse()
        .map_err(|e| StoreError::internal("stored digest", e))?;
    Ok(BlobRef { kind, digest })
}

/// The bundles mounted by versions of these configurations (as stored: JSON).
pub(crate) fn mounted_bundles(
    configs: impl IntoIterator<Item = String>,
) -> StoreResult<Vec<Digest>> {
    let mut bundles = BTreeSet::new();
    for config in configs {
        let config: FunctionConfig = serde_json::from_str(&config)
            .map_err(|e| StoreError::internal("stored function configuration", e))?;
        bundles.extend(config.mounts.iter().map(|mount| mount.bundle));
    }
    Ok(bundles.into_iter().collect())
}
