//! Every blob store against the one contract: the local directory, and S3 (the
//! project's throwaway S3-compatible server on loopback, started by
//! `scripts/services/s3`; a fresh bucket per test).

use kiln_api::Digest;
use kiln_store::*;

enum Backend {
    Local(tempfile::TempDir),
    S3(S3Config, tempfile::TempDir),
}

impl Backend {
    fn local() -> Backend {
        Backend::Local(tempfile::tempdir().expect("tempdir"))
    }

    /// A new, empty bucket on the test server.
    fn s3() -> Backend {
        let (endpoint, bucket) = kiln_guests::services::s3_bucket("kiln-test");
        let config = S3Config {
            bucket,
            endpoint: Some(endpoint),
            credentials: Some((
                kiln_guests::services::S3_ACCESS_KEY_ID.into(),
                kiln_guests::services::S3_SECRET_ACCESS_KEY.into(),
            )),
            ca_cert: None,
        };
        Backend::S3(config, tempfile::tempdir().expect("tempdir"))
    }

    /// The store; opening it again sees what was committed before.
    fn open(&self) -> Box<dyn BlobStore> {
        match self {
            Backend::Local(dir) => Box::new(LocalBlobs::open(dir.path()).expect("local blobs")),
            Backend::S3(config, staging) => {
                Box::new(S3Blobs::open(config, staging.path()).expect("S3 blobs"))
            }
        }
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Backend::local()).await
            })*
        }
        mod s3 {
            $(#[tokio::test]
            #[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
            async fn $name() {
                super::$name(super::Backend::s3()).await
            })*
        }
    };
}

contract!(
    a_committed_blob_is_read_back_under_its_digest,
    a_blob_over_one_part_is_stored_whole,
    an_abandoned_upload_leaves_nothing,
    committing_the_same_bytes_twice_keeps_one_blob,
);

async fn stage(blobs: &dyn BlobStore, bytes: &[u8]) -> StagedBlob {
    let mut staged = blobs.stage().await.expect("stage");
    for chunk in bytes.chunks(1000) {
        staged.write(chunk).await.expect("write");
    }
    staged
}

async fn a_committed_blob_is_read_back_under_its_digest(backend: Backend) {
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let blobs = backend.open();
    let digest = blobs
        .commit(BlobKind::Module, stage(&*blobs, &bytes).await)
        .await
        .expect("commit");
    assert_eq!(digest, Digest::of(&bytes));
    assert!(blobs.contains(BlobKind::Module, &digest).await.unwrap());
    // Kinds do not mix: the module is no bundle.
    assert!(!blobs.contains(BlobKind::Bundle, &digest).await.unwrap());
    // Another opening (another node, or after a restart) sees it.
    let again = backend.open();
    let local = again.local(BlobKind::Module, &digest).await.unwrap();
    assert_eq!(local.read().await.unwrap(), bytes);
    let never = Digest::of(b"never stored");
    assert!(!again.contains(BlobKind::Module, &never).await.unwrap());
    assert!(again.local(BlobKind::Module, &never).await.is_err());
}

/// Larger than one part: an S3 store uploads it in parts.
async fn a_blob_over_one_part_is_stored_whole(backend: Backend) {
    let bytes: Vec<u8> = (0..(kiln_store::PART_BYTES as u32 * 2 + 12345))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let blobs = backend.open();
    let digest = blobs
        .commit(BlobKind::Bundle, stage(&*blobs, &bytes).await)
        .await
        .expect("commit");
    let local = backend
        .open()
        .local(BlobKind::Bundle, &digest)
        .await
        .expect("local copy");
    assert_eq!(Digest::of(&local.read().await.unwrap()), digest);
}

async fn an_abandoned_upload_leaves_nothing(backend: Backend) {
    let blobs = backend.open();
    let staged = stage(&*blobs, b"half an upload").await;
    drop(staged);
    let half = Digest::of(b"half an upload");
    assert!(!blobs.contains(BlobKind::Module, &half).await.unwrap());
}

async fn committing_the_same_bytes_twice_keeps_one_blob(backend: Backend) {
    let blobs = backend.open();
    let first = blobs
        .commit(BlobKind::Module, stage(&*blobs, b"same").await)
        .await
        .unwrap();
    let second = blobs
        .commit(BlobKind::Module, stage(&*blobs, b"same").await)
        .await
        .unwrap();
    assert_eq!(first, second);
    let local = blobs.local(BlobKind::Module, &first).await.unwrap();
    assert_eq!(local.read().await.unwrap(), b"same");
}
