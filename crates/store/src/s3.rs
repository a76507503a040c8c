//! Blobs in an S3-compatible object store, shared by every node of a cluster:
//! `modules/<sha256>.wasm` and `bundles/<sha256>.tar` in one bucket, through the
//! `object_store` crate. Uploads are staged in a local directory first (hashed
//! as they arrive, like [`LocalBlobs`](crate::LocalBlobs)), validated by the
//! caller, then streamed from the staging file to the bucket (multipart past
//! [`PART_BYTES`]): an object exists only once it is complete, so metadata never
//! refers to a partial one, and no blob is ever held whole in memory. Compiled artifacts are shared in
//! the same bucket, under `artifacts/<engine key>/<sha256>.cwasm`: the first node
//! to compile a module puts its artifact there and the others download it. The
//! bucket must be writable by Kiln nodes only: artifacts are native code.

use crate::blobs::io_error;
use crate::{
    BlobKind, BlobRef, BlobStore, LocalBlob, SharedArtifact, StagedBlob, StoreError, StoreResult,
    StoredBlob,
};
use async_trait::async_trait;
use futures_util::StreamExt;
use kiln_api::Digest;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Blobs up to this size are put in one request; larger ones in parts of it.
pub const PART_BYTES: usize = 8 << 20;

/// Where a cluster's objects are.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// The bucket's name.
    pub bucket: String,
    /// The server's URL (`http://127.0.0.1:9000`); `None`: AWS itself.
    pub endpoint: Option<String>,
    /// Access key id and secret; `None`: from `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`.
    pub credentials: Option<(String, String)>,
    /// A PEM file of certificate authorities to trust for an `https://`
    /// endpoint besides the web's (a private CA); `None`: the web's only.
    pub ca_cert: Option<PathBuf>,
}

/// Blobs in a bucket. Credentials and region come from the usual `AWS_*`
/// environment variables.
#[derive(Clone)]
pub struct S3Blobs {
    store: Arc<dyn ObjectStore>,
    staging: PathBuf,
}

impl S3Blobs {
    /// Blobs in `config`'s bucket, staged in `staging` (a local directory,
    /// cleared of what a crash left there).
    pub fn open(config: &S3Config, staging: impl Into<PathBuf>) -> StoreResult<S3Blobs> {
        let staging = staging.into();
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)
            .map_err(|e| StoreError::internal(staging.display().to_string(), e))?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&config.bucket);
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
            if std::env::var_os("AWS_REGION").is_none() {
                builder = builder.with_region("us-east-1");
            }
        }
        if let Some(path) = &config.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                StoreError::Invalid(format!(
                    "cannot read the S3 CA certificate {}: {e}",
                    path.display()
                ))
            })?;
            let certificates = object_store::Certificate::from_pem_bundle(&pem).map_err(|e| {
                StoreError::Invalid(format!("no certificate in {}: {e}", path.display()))
            })?;
            let options = certificates
                .into_iter()
                .fold(object_store::ClientOptions::new(), |o, c| {
                    o.with_root_certificate(c)
                });
            builder = builder.with_client_options(options);
        }
        if let Some((id, secret)) = &config.credentials {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let store = builder
            .build()
            .map_err(|e| StoreError::internal(format!("S3 bucket {}", config.bucket), e))?;
        Ok(S3Blobs {
            store: Arc::new(store),
            staging,
        })
    }

    fn key(kind: BlobKind, digest: &Digest) -> ObjectPath {
        ObjectPath::from(format!(
            "{}/{digest}.{}",
            Self::folder(kind),
            kind.extension()
        ))
    }

    fn folder(kind: BlobKind) -> &'static str {
        match kind {
            BlobKind::Module => "modules",
            BlobKind::Bundle => "bundles",
        }
    }

    /// Every object under `prefix/`: its path and size.
    async fn list_under(&self, prefix: &str) -> StoreResult<Vec<(ObjectPath, u64)>> {
        let mut listing = self.store.list(Some(&ObjectPath::from(prefix)));
        let mut objects = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(s3)?;
            objects.push((meta.location, meta.size));
        }
        Ok(objects)
    }

    async fn delete_object(&self, path: &ObjectPath) -> StoreResult<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3(e)),
        }
    }
}

/// An object store error as a store error: an unreachable server is
/// `Unavailable`, the rest `Internal`.
fn s3(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::Generic { .. } => StoreError::unavailable("S3", e),
        other => StoreError::internal("S3", other),
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn stage(&self) -> StoreResult<StagedBlob> {
        StagedBlob::create_in(&self.staging).await
    }

    async fn commit(&self, kind: BlobKind, mut staged: StagedBlob) -> StoreResult<Digest> {
        let digest = staged.finish().await?;
        if self.contains(kind, &digest).await? {
            return Ok(digest);
        }
        let mut file = tokio::fs::File::open(staged.path())
            .await
            .map_err(|e| io_error(staged.path(), e))?;
        let mut upload =
            BufWriter::with_capacity(self.store.clone(), Self::key(kind, &digest), PART_BYTES);
        let copied = tokio::io::copy(&mut file, &mut upload).await;
        match copied {
            Ok(_) => upload
                .shutdown()
                .await
                .map_err(|e| StoreError::unavailable("S3", e))?,
            Err(e) => {
                // Nothing is left behind: an aborted multipart upload is no object.
                let _ = upload.abort().await;
                return Err(StoreError::unavailable("S3", e));
            }
        }
        Ok(digest)
    }

    async fn local(&self, kind: BlobKind, digest: &Digest) -> StoreResult<LocalBlob> {
        let got = self.store.get(&Self::key(kind, digest)).await.map_err(s3)?;
        let mut staged = self.stage().await?;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            staged.write(&chunk.map_err(s3)?).await?;
        }
        if staged.finish().await? != *digest {
            return Err(StoreError::inconsistent(format!(
                "S3 object {} does not hash to its name",
                Self::key(kind, digest)
            )));
        }
        Ok(LocalBlob::downloaded(staged))
    }

    async fn contains(&self, kind: BlobKind, digest: &Digest) -> StoreResult<bool> {
        match self.store.head(&Self::key(kind, digest)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(s3(e)),
        }
    }

    async fn list(&self) -> StoreResult<Vec<StoredBlob>> {
        let mut blobs = Vec::new();
        for kind in [BlobKind::Module, BlobKind::Bundle] {
            for (path, bytes) in self.list_under(Self::folder(kind)).await? {
                // Objects whose names are not blobs are not Kiln's: left alone.
                if let Some(blob) = path.filename().and_then(BlobRef::from_file_name)
                    && blob.kind == kind
                {
                    blobs.push(StoredBlob { blob, bytes });
                }
            }
        }
        Ok(blobs)
    }

    async fn delete(&self, blob: BlobRef) -> StoreResult<()> {
        self.delete_object(&Self::key(blob.kind, &blob.digest))
            .await
    }

    async fn shared_artifacts(&self) -> StoreResult<Vec<SharedArtifact>> {
        let objects = self.list_under("artifacts").await?;
        Ok(objects
            .into_iter()
            .filter_map(|(path, bytes)| {
                let key = path.as_ref().strip_prefix("artifacts/")?.to_owned();
                let module = path.filename()?.strip_suffix(".cwasm")?.parse().ok()?;
                Some(SharedArtifact { key, module, bytes })
            })
            .collect())
    }

    async fn delete_shared_artifact(&self, key: &str) -> StoreResult<()> {
        self.delete_object(&ObjectPath::from(format!("artifacts/{key}")))
            .await
    }

    async fn shared_artifact(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let path = ObjectPath::from(format!("artifacts/{key}"));
        match self.store.get(&path).await {
            Ok(got) => Ok(Some(got.bytes().await.map_err(s3)?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3(e)),
        }
    }

    fn shares_artifacts(&self) -> bool {
        true
    }

    async fn share_artifact(&self, key: &str, artifact: Vec<u8>) -> StoreResult<()> {
        let path = ObjectPath::from(format!("artifacts/{key}"));
        self.store
            .put(&path, PutPayload::from(artifact))
            .await
            .map_err(s3)?;
        Ok(())
    }
}
