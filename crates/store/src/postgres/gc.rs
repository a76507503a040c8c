//! The blob collector's bookkeeping in PostgreSQL (the protocol is in `gc.rs`).
//! A blob's lock is a transaction-scoped advisory lock (`lock_key`): a node
//! pinning a blob waits while another node deletes it, and the other way round.
//! Pins take their blobs' locks in order, so two never wait for each other.

use super::{PostgresStore, pg};
use crate::blobs::{BlobKind, BlobRef};
use crate::error::StoreResult;
use crate::gc::{
    BlobCollection, BlobDeletion, Pin, PinHolder, bundle_needle, lock_key, may_go, read_blob,
};
use async_trait::async_trait;
use kiln_api::Digest;
use std::collections::HashMap;

#[async_trait]
impl BlobCollection for PostgresStore {
    async fn referenced_bundles(&self) -> StoreResult<Vec<Digest>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT DISTINCT config FROM versions WHERE strpos(config, '\"mounts\"') > 0",
                &[],
            )
            .await
            .map_err(pg)?;
        crate::gc::mounted_bundles(rows.iter().map(|r| r.get::<_, String>(0)))
    }

    async fn pin_blobs(
        &self,
        mut blobs: Vec<BlobRef>,
        until: i64,
        holder: PinHolder,
    ) -> StoreResult<Pin> {
        let upload = holder == PinHolder::Upload;
        blobs.sort_by_key(lock_key);
        blobs.dedup();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let pin: i64 = tx
            .query_one("SELECT nextval('blob_pin_ids')", &[])
            .await
            .map_err(pg)?
            .get(0);
        for blob in &blobs {
            let (kind, digest) = (blob.kind.name(), blob.digest.to_hex());
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(blob)])
                .await
                .map_err(pg)?;
            tx.execute(
                "INSERT INTO blob_pins (pin, kind, digest, until, upload)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&pin, &kind, &digest, &until, &upload],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                "DELETE FROM unreferenced_blobs WHERE kind = $1 AND digest = $2",
                &[&kind, &digest],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(Pin(pin))
    }

    async fn unpin_blobs(&self, pin: Pin) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM blob_pins WHERE pin = $1", &[&pin.0])
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn release_upload_pins(&self, blobs: Vec<BlobRef>) -> StoreResult<()> {
        let kinds: Vec<&str> = blobs.iter().map(|b| b.kind.name()).collect();
        let digests: Vec<String> = blobs.iter().map(|b| b.digest.to_hex()).collect();
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM blob_pins p WHERE upload AND EXISTS (
                     SELECT 1 FROM unnest($1::text[], $2::text[]) AS u (kind, digest)
                     WHERE u.kind = p.kind AND u.digest = p.digest)",
                &[&kinds, &digests],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn pinned_blobs(&self, now: i64) -> StoreResult<Vec<BlobRef>> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM blob_pins WHERE until <= $1", &[&now])
            .await
            .map_err(pg)?;
        let rows = client
            .query("SELECT DISTINCT kind, digest FROM blob_pins", &[])
            .await
            .map_err(pg)?;
        rows.iter().map(|r| read_blob(r.get(0), r.get(1))).collect()
    }

    async fn note_unreferenced(
        &self,
        unreferenced: Vec<BlobRef>,
        now: i64,
    ) -> StoreResult<Vec<(BlobRef, i64)>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // One statement for the whole list: insert the new ones, keep the
        // times of those noted before.
        let kinds: Vec<&str> = unreferenced.iter().map(|b| b.kind.name()).collect();
        let digests: Vec<String> = unreferenced.iter().map(|b| b.digest.to_hex()).collect();
        tx.execute(
            "INSERT INTO unreferenced_blobs (kind, digest, since)
             SELECT kind, digest, $3 FROM unnest($1::text[], $2::text[]) AS u (kind, digest)
             ON CONFLICT DO NOTHING",
            &[&kinds, &digests, &now],
        )
        .await
        .map_err(pg)?;
        // Referenced again, or gone: forgotten.
        tx.execute(
            "DELETE FROM unreferenced_blobs n WHERE NOT EXISTS (
                 SELECT 1 FROM unnest($1::text[], $2::text[]) AS u (kind, digest)
                 WHERE u.kind = n.kind AND u.digest = n.digest)",
            &[&kinds, &digests],
        )
        .await
        .map_err(pg)?;
        let rows = tx
            .query("SELECT kind, digest, since FROM unreferenced_blobs", &[])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        let mut noted = HashMap::new();
        for row in &rows {
            noted.insert(read_blob(row.get(0), row.get(1))?, row.get::<_, i64>(2));
        }
        Ok(unreferenced
            .into_iter()
            .filter_map(|blob| Some((blob, *noted.get(&blob)?)))
            .collect())
    }

    async fn collect_blob(
        &self,
        blob: BlobRef,
        cutoff: i64,
        now: i64,
        delete: BlobDeletion,
    ) -> StoreResult<bool> {
        let (kind, digest) = (blob.kind.name(), blob.digest.to_hex());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(&blob)])
            .await
            .map_err(pg)?;
        let referenced = match blob.kind {
            BlobKind::Module => "SELECT EXISTS (SELECT 1 FROM versions WHERE digest = $1)",
            BlobKind::Bundle => {
                "SELECT EXISTS (SELECT 1 FROM versions WHERE strpos(config, $1) > 0)"
            }
        };
        let needle = match blob.kind {
            BlobKind::Module => digest.clone(),
            BlobKind::Bundle => bundle_needle(&blob),
        };
        let referenced: bool = tx
            .query_one(referenced, &[&needle])
            .await
            .map_err(pg)?
            .get(0);
        let pinned: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM blob_pins
                                WHERE kind = $1 AND digest = $2 AND until > $3)",
                &[&kind, &digest, &now],
            )
            .await
            .map_err(pg)?
            .get(0);
        let since: Option<i64> = tx
            .query_opt(
                "SELECT since FROM unreferenced_blobs WHERE kind = $1 AND digest = $2",
                &[&kind, &digest],
            )
            .await
            .map_err(pg)?
            .map(|r| r.get(0));
        if !may_go(referenced, pinned, since, cutoff) {
            return Ok(false);
        }
        // The lock is held until the commit: a pin of this blob waits for the
        // deletion to end.
        delete.await?;
        tx.execute(
            "DELETE FROM unreferenced_blobs WHERE kind = $1 AND digest = $2",
            &[&kind, &digest],
        )
        .await
        .map_err(pg)?;
        if blob.kind == BlobKind::Bundle {
            tx.execute("DELETE FROM bundles WHERE digest = $1", &[&digest])
                .await
                .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(true)
    }
}
