//! The blob collector: deletes the modules and file bundles no version of any
//! function refers to any more, once they have been so for a grace period
//! (`--gc-grace`, an hour by default), with what was derived from them — this
//! node's compiled artifacts and unpacked bundles, and the artifacts shared in
//! the cluster's bucket. It runs on every node every `--gc-interval`, and on
//! demand (`POST /v1/admin/gc`, `kiln admin gc [--dry-run]`).
//!
//! Safety against deploys racing it is the store's protocol (`kiln_store`'s
//! `gc.rs`): a deploy pins what it is about to store or refer to before it
//! looks whether it is stored, and the collector deletes a blob only under
//! that blob's lock, having checked again that nothing refers to it or pins
//! it. Derived copies go only once their blob is gone and nothing pins or
//! refers to it, so a deploy compiling a module (pinned) keeps its artifact.
//! Nodes collecting at the same time are harmless: each deletion is under the
//! lock, and deleting what is gone is not an error.

use crate::sync::lock;
use kiln_api::{Digest, GcItem, GcItemKind, GcReport, GcSummary};
use kiln_runtime::Runtime;
use kiln_store::{BlobKind, BlobRef, BlobStore, MetadataStore, Pin, PinHolder, StoreResult, now};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a deploy's pin lasts should its node die before releasing it:
/// past any deploy's compile-time limit.
const DEPLOY_PIN: Duration = Duration::from_secs(3 * 3600);
/// How long an uploaded bundle is kept for the deploy that mounts it, even
/// with a shorter grace period.
const UPLOAD_PIN: Duration = Duration::from_secs(3600);

/// What a collection pass may touch, and what the last one found.
pub(crate) struct Collector {
    store: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    runtime: Arc<Runtime>,
    /// This node's unpacked bundles (`bundles.rs`).
    unpacked: PathBuf,
    grace: Duration,
    last: Mutex<Option<GcSummary>>,
    /// One pass at a time on this node.
    running: tokio::sync::Mutex<()>,
}

/// The digests of everything some version refers to, and of everything pinned.
struct Wanted {
    modules: HashSet<Digest>,
    bundles: HashSet<Digest>,
    pinned: HashSet<BlobRef>,
}

impl Wanted {
    fn wants(&self, blob: &BlobRef) -> bool {
        let referenced = match blob.kind {
            BlobKind::Module => &self.modules,
            BlobKind::Bundle => &self.bundles,
        };
        referenced.contains(&blob.digest) || self.pinned.contains(blob)
    }
}

impl Collector {
    pub(crate) fn new(
        store: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        runtime: Arc<Runtime>,
        unpacked: PathBuf,
        grace: Duration,
    ) -> Collector {
        Collector {
            store,
            blobs,
            runtime,
            unpacked,
            grace,
            last: Mutex::default(),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// The totals of the last pass, for `/v1/status`.
    pub(crate) fn last(&self) -> Option<GcSummary> {
        *lock(&self.last)
    }

    /// Pins `blobs` for a deploy in progress (released by [`Collector::unpin`]).
    pub(crate) async fn pin_for_deploy(&self, blobs: Vec<BlobRef>) -> StoreResult<Pin> {
        let until = now() + DEPLOY_PIN.as_secs() as i64;
        self.store.pin_blobs(blobs, until, PinHolder::Deploy).await
    }

    /// Pins an uploaded (or found) bundle for the deploy that follows, until a
    /// version mounts it ([`Collector::mounted`]) or [`UPLOAD_PIN`] passes.
    pub(crate) async fn pin_for_upload(&self, bundle: Digest) -> StoreResult<()> {
        let until = now() + UPLOAD_PIN.as_secs() as i64;
        let blobs = vec![BlobRef::bundle(bundle)];
        self.store
            .pin_blobs(blobs, until, PinHolder::Upload)
            .await?;
        Ok(())
    }

    /// A version mounts `bundles` now: their uploads' pins are released.
    pub(crate) async fn mounted(&self, bundles: Vec<BlobRef>) {
        if let Err(e) = self.store.release_upload_pins(bundles).await {
            tracing::warn!(error = %e, "cannot release uploads' pins; they expire within the hour");
        }
    }

    /// Releases a deploy's pin; a failure only keeps the blobs until the pin
    /// expires.
    pub(crate) async fn unpin(&self, pin: Pin) {
        if let Err(e) = self.store.unpin_blobs(pin).await {
            tracing::warn!(error = %e, "cannot release a deploy's pin on its blobs");
        }
    }

    /// One pass: finds everything unreferenced, and deletes (unless `dry_run`)
    /// what has been so for the grace period.
    pub(crate) async fn pass(&self, dry_run: bool) -> StoreResult<GcReport> {
        let _one = self.running.lock().await;
        let now = now();
        let cutoff = now - self.grace.as_secs() as i64;
        // The order matters. Derived copies are listed before the pins are
        // read: a copy a deploy made is listed only if the deploy had pinned
        // its blob before. Pins are read before references: a deploy releases
        // its pin only once its version refers to the blob. (Blobs themselves
        // are checked again under their lock before they go.)
        // Both tiers' artifacts (baseline code of a big module, and its
        // optimized code).
        let artifacts: Vec<_> = std::iter::once(self.runtime.artifacts())
            .chain(self.runtime.baseline_artifacts())
            .cloned()
            .collect();
        let (local, unpacked) = tokio::task::spawn_blocking({
            let dir = self.unpacked.clone();
            move || {
                let mut local = Vec::new();
                for cache in &artifacts {
                    local.extend(cache.list()?);
                }
                Ok::<_, std::io::Error>((local, crate::bundles::unpacked(&dir)?))
            }
        })
        .await
        .map_err(|e| kiln_store::StoreError::internal("collector", e))?
        .map_err(|e| kiln_store::StoreError::internal("listing this node's caches", e))?;
        let shared = self.blobs.shared_artifacts().await?;
        let stored = self.blobs.list().await?;
        let pinned = self.store.pinned_blobs(now).await?.into_iter().collect();
        let wanted = Wanted {
            modules: self.store.referenced_digests().await?.into_iter().collect(),
            bundles: self.store.referenced_bundles().await?.into_iter().collect(),
            pinned,
        };
        let unreferenced: Vec<_> = stored.iter().filter(|s| !wanted.wants(&s.blob)).collect();
        let bytes: HashMap<BlobRef, u64> = unreferenced.iter().map(|s| (s.blob, s.bytes)).collect();
        let noted = self
            .store
            .note_unreferenced(unreferenced.iter().map(|s| s.blob).collect(), now)
            .await?;
        let mut items = Vec::new();
        // What is no longer stored after this pass (would not be, dry).
        let mut gone: HashSet<BlobRef> = HashSet::new();
        for (blob, since) in noted {
            let mut deleted = false;
            if since <= cutoff {
                deleted = dry_run || self.collect(blob, cutoff, now).await?;
            }
            if deleted {
                gone.insert(blob);
            }
            items.push(GcItem {
                kind: match blob.kind {
                    BlobKind::Module => GcItemKind::Module,
                    BlobKind::Bundle => GcItemKind::Bundle,
                },
                digest: blob.digest,
                bytes: bytes.get(&blob).copied().unwrap_or(0),
                unreferenced_since: Some(since),
                deleted,
            });
        }
        let still_stored: HashSet<BlobRef> = stored
            .iter()
            .map(|s| s.blob)
            .filter(|b| !gone.contains(b))
            .collect();
        let since: HashMap<BlobRef, i64> = items
            .iter()
            .filter_map(|i| {
                let blob = match i.kind {
                    GcItemKind::Module => BlobRef::module(i.digest),
                    _ => BlobRef::bundle(i.digest),
                };
                Some((blob, i.unreferenced_since?))
            })
            .collect();
        // Copies derived from a blob: unreferenced ones are reclaimable, and
        // go once the blob itself is gone.
        let derived = |blob: BlobRef, kind: GcItemKind, bytes: u64| {
            (!wanted.wants(&blob)).then(|| GcItem {
                kind,
                digest: blob.digest,
                bytes,
                unreferenced_since: since.get(&blob).copied(),
                deleted: !still_stored.contains(&blob),
            })
        };
        for (digest, bytes) in local {
            if let Some(item) = derived(BlobRef::module(digest), GcItemKind::Artifact, bytes) {
                if item.deleted && !dry_run {
                    self.runtime
                        .remove_artifacts(&digest)
                        .map_err(|e| kiln_store::StoreError::internal("artifact cache", e))?;
                }
                items.push(item);
            }
        }
        for shared in shared {
            let module = BlobRef::module(shared.module);
            if let Some(item) = derived(module, GcItemKind::SharedArtifact, shared.bytes) {
                if item.deleted && !dry_run {
                    self.blobs.delete_shared_artifact(&shared.key).await?;
                }
                items.push(item);
            }
        }
        for (digest, bytes) in unpacked {
            let bundle = BlobRef::bundle(digest);
            if let Some(item) = derived(bundle, GcItemKind::UnpackedBundle, bytes) {
                if item.deleted && !dry_run {
                    let dir = self.unpacked.clone();
                    tokio::task::spawn_blocking(move || crate::bundles::remove(&dir, &digest))
                        .await
                        .map_err(|e| kiln_store::StoreError::internal("collector", e))?
                        .map_err(|e| kiln_store::StoreError::internal("unpacked bundles", e))?;
                }
                items.push(item);
            }
        }
        let unreferenced_bytes: u64 = items.iter().map(|i| i.bytes).sum();
        let deleted_bytes = items.iter().filter(|i| i.deleted).map(|i| i.bytes).sum();
        let summary = GcSummary {
            at: now,
            dry_run,
            reclaimable_bytes: match dry_run {
                true => unreferenced_bytes,
                false => unreferenced_bytes - deleted_bytes,
            },
            deleted_bytes,
        };
        *lock(&self.last) = Some(summary);
        if summary.deleted_bytes > 0 && !dry_run {
            tracing::info!(
                deleted_bytes = summary.deleted_bytes,
                reclaimable_bytes = summary.reclaimable_bytes,
                "collected unreferenced blobs"
            );
        }
        Ok(GcReport {
            dry_run,
            grace_seconds: self.grace.as_secs(),
            items,
            summary,
        })
    }

    /// Deletes one blob under its lock, if it may still go.
    async fn collect(&self, blob: BlobRef, cutoff: i64, now: i64) -> StoreResult<bool> {
        let blobs = self.blobs.clone();
        let delete = Box::pin(async move { blobs.delete(blob).await });
        self.store.collect_blob(blob, cutoff, now, delete).await
    }

    /// Runs a pass every `interval`, the first soon after start-up.
    pub(crate) fn start(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(e) = self.pass(false).await {
                    tracing::warn!(error = %e, "blob collection failed; trying again next time");
                }
            }
        })
    }
}
