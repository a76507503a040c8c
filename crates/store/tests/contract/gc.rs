//! The blob collector's protocol (`gc.rs` of the store crate) against every
//! metadata store: what may be collected, and a pin racing a collection.

use super::Backend;
use kiln_api::{BundleInfo, Digest, FunctionConfig, Mount, MountMode};
use kiln_store::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A deletion that only records that it ran.
fn deletion(ran: &Arc<AtomicBool>) -> BlobDeletion {
    let ran = ran.clone();
    Box::pin(async move {
        ran.store(true, Ordering::SeqCst);
        Ok(())
    })
}

/// Whether `collect_blob` ran its deletion (and said so).
async fn collects(store: &dyn MetadataStore, blob: BlobRef, cutoff: i64, now: i64) -> bool {
    let ran = Arc::new(AtomicBool::new(false));
    let collected = store
        .collect_blob(blob, cutoff, now, deletion(&ran))
        .await
        .expect("collect_blob");
    assert_eq!(collected, ran.load(Ordering::SeqCst));
    collected
}

const T0: i64 = 1_900_000_000;

pub(crate) async fn blobs_go_only_unreferenced_unpinned_and_past_their_grace(backend: Backend) {
    let store = backend.open().await;
    let acme = store.create_tenant("acme").await.unwrap();
    let used = BlobRef::module(Digest::of(b"used"));
    let mounted = BlobRef::bundle(Digest::of(b"tree"));
    let spare = BlobRef::module(Digest::of(b"spare"));
    let config = FunctionConfig {
        mounts: vec![Mount {
            bundle: mounted.digest,
            guest: "/assets".into(),
            mode: MountMode::ReadOnly,
        }],
        ..FunctionConfig::default()
    };
    let new = NewVersion {
        digest: used.digest,
        size: 4,
        config,
        kind: kiln_api::BinaryKind::Component,
    };
    store.deploy(acme.id, "f", new).await.unwrap();
    assert_eq!(
        store.referenced_bundles().await.unwrap(),
        vec![mounted.digest]
    );

    // Noted at first sight, and that time kept.
    assert_eq!(
        store.note_unreferenced(vec![spare], T0).await.unwrap(),
        vec![(spare, T0)]
    );
    assert_eq!(
        store.note_unreferenced(vec![spare], T0 + 50).await.unwrap(),
        vec![(spare, T0)]
    );
    // Within its grace period: kept.
    assert!(!collects(&*store, spare, T0 - 1, T0 + 50).await);
    // Referenced: kept whatever the collector noted (its listing was stale).
    store
        .note_unreferenced(vec![spare, used, mounted], T0 + 60)
        .await
        .unwrap();
    assert!(!collects(&*store, used, T0 + 100, T0 + 100).await);
    assert!(!collects(&*store, mounted, T0 + 100, T0 + 100).await);

    // Pinned: kept, and the pin forgets its note (its grace starts over).
    let pin = store
        .pin_blobs(vec![spare], T0 + 1000, PinHolder::Deploy)
        .await
        .unwrap();
    assert_eq!(store.pinned_blobs(T0 + 200).await.unwrap(), vec![spare]);
    assert!(!collects(&*store, spare, T0 + 100, T0 + 200).await);
    store.unpin_blobs(pin).await.unwrap();
    assert_eq!(store.pinned_blobs(T0 + 200).await.unwrap(), vec![]);
    assert!(!collects(&*store, spare, T0 + 100, T0 + 200).await);
    assert_eq!(
        store
            .note_unreferenced(vec![spare], T0 + 300)
            .await
            .unwrap(),
        vec![(spare, T0 + 300)]
    );
    // A pin whose deploy died expires.
    store
        .pin_blobs(vec![spare], T0 + 400, PinHolder::Deploy)
        .await
        .unwrap();
    store
        .note_unreferenced(vec![spare], T0 + 300)
        .await
        .unwrap();
    assert!(!collects(&*store, spare, T0 + 300, T0 + 399).await);
    assert!(collects(&*store, spare, T0 + 300, T0 + 400).await);
    assert_eq!(store.pinned_blobs(T0 + 400).await.unwrap(), vec![]);
    // Collected, it is forgotten: no note is left to collect it by again.
    assert!(!collects(&*store, spare, T0 + 300, T0 + 400).await);

    // A blob the collector no longer lists (referenced again) loses its note.
    store.note_unreferenced(vec![], T0 + 500).await.unwrap();
    store.delete_function(acme.id, "f").await.unwrap();
    assert_eq!(
        store.note_unreferenced(vec![used], T0 + 600).await.unwrap(),
        vec![(used, T0 + 600)]
    );
    assert!(collects(&*store, used, T0 + 600, T0 + 600).await);

    // An upload's pin lasts until a version mounts the bundle; a deploy's
    // until it is released.
    let uploaded = BlobRef::bundle(Digest::of(b"uploaded"));
    let deploy = store
        .pin_blobs(vec![uploaded], T0 + 5000, PinHolder::Deploy)
        .await
        .unwrap();
    store
        .pin_blobs(vec![uploaded], T0 + 5000, PinHolder::Upload)
        .await
        .unwrap();
    store.release_upload_pins(vec![uploaded]).await.unwrap();
    assert_eq!(store.pinned_blobs(T0 + 700).await.unwrap(), vec![uploaded]);
    store
        .pin_blobs(vec![uploaded], T0 + 5000, PinHolder::Upload)
        .await
        .unwrap();
    store.unpin_blobs(deploy).await.unwrap();
    assert_eq!(store.pinned_blobs(T0 + 700).await.unwrap(), vec![uploaded]);
    store.release_upload_pins(vec![uploaded]).await.unwrap();
    assert_eq!(store.pinned_blobs(T0 + 700).await.unwrap(), vec![]);

    // A collected bundle is forgotten by every tenant that uploaded it.
    let info = BundleInfo {
        digest: mounted.digest,
        size: 10240,
        files: 1,
        file_bytes: 5,
    };
    store.add_bundle(acme.id, &info).await.unwrap();
    store
        .note_unreferenced(vec![mounted], T0 + 700)
        .await
        .unwrap();
    assert!(collects(&*store, mounted, T0 + 700, T0 + 700).await);
    assert_eq!(store.bundle(acme.id, &mounted.digest).await.unwrap(), None);
}

pub(crate) async fn a_pin_waits_for_a_collection_in_progress_and_then_keeps_the_blob(
    backend: Backend,
) {
    let store: Arc<dyn MetadataStore> = Arc::from(backend.open().await);
    let blob = BlobRef::module(Digest::of(b"raced"));
    store.note_unreferenced(vec![blob], T0).await.unwrap();
    let (entered, deleting) = tokio::sync::oneshot::channel();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let delete: BlobDeletion = Box::pin(async move {
        let _ = entered.send(());
        let _ = released.await;
        Ok(())
    });
    let collecting = tokio::spawn({
        let store = store.clone();
        async move { store.collect_blob(blob, T0, T0, delete).await }
    });
    deleting.await.expect("the collection started deleting");
    // A deploy pins the blob while the collector deletes it: the pin waits
    // (were it taken now, the deploy would find the blob stored, then lose it).
    let mut pinning = tokio::spawn({
        let store = store.clone();
        async move {
            let holder = PinHolder::Deploy;
            store.pin_blobs(vec![blob], i64::MAX, holder).await
        }
    });
    let early = tokio::time::timeout(Duration::from_millis(300), &mut pinning).await;
    assert!(early.is_err(), "a pin was taken during the deletion");
    release.send(()).expect("release the deletion");
    assert!(collecting.await.unwrap().unwrap());
    pinning
        .await
        .unwrap()
        .expect("the pin, once the deletion ended");
    // The deploy stores the blob again; the collector now keeps it.
    store.note_unreferenced(vec![blob], T0).await.unwrap();
    assert!(!collects(&*store, blob, T0, T0 + 1).await);
}
