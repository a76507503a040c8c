//! The blob collector's bookkeeping in SQLite (the protocol is in `gc.rs`).
//! A SQLite store has one node, so a blob's lock is the store's own async
//! mutex: one collection or pin at a time, which is short (a deletion of one
//! local file).

use super::{SqliteStore, internal};
use crate::blobs::{BlobKind, BlobRef};
use crate::error::StoreResult;
use crate::gc::{BlobCollection, BlobDeletion, Pin, PinHolder, bundle_needle, may_go, read_blob};
use async_trait::async_trait;
use kiln_api::Digest;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;

#[async_trait]
impl BlobCollection for SqliteStore {
    async fn referenced_bundles(&self) -> StoreResult<Vec<Digest>> {
        let configs = self
            .with(|conn| {
                let mut statement = conn
                    .prepare(
                        "SELECT DISTINCT config FROM versions WHERE instr(config, '\"mounts\"') > 0",
                    )
                    .map_err(internal)?;
                let rows = statement
                    .query_map([], |r| r.get::<_, String>(0))
                    .map_err(internal)?;
                rows.map(|row| row.map_err(internal)).collect::<StoreResult<Vec<_>>>()
            })
            .await?;
        crate::gc::mounted_bundles(configs)
    }

    async fn pin_blobs(
        &self,
        blobs: Vec<BlobRef>,
        until: i64,
        holder: PinHolder,
    ) -> StoreResult<Pin> {
        let upload = holder == PinHolder::Upload;
        let _lock = self.gc_lock.lock().await;
        self.with(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let pin: i64 = tx
                .query_row("SELECT COALESCE(MAX(pin), 0) + 1 FROM blob_pins", [], |r| {
                    r.get(0)
                })
                .map_err(internal)?;
            for blob in &blobs {
                tx.execute(
                    "INSERT INTO blob_pins (pin, kind, digest, until, upload)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![pin, blob.kind.name(), blob.digest.to_hex(), until, upload],
                )
                .map_err(internal)?;
                // Wanted again: the grace period starts over when it is not.
                tx.execute(
                    "DELETE FROM unreferenced_blobs WHERE kind = ?1 AND digest = ?2",
                    params![blob.kind.name(), blob.digest.to_hex()],
                )
                .map_err(internal)?;
            }
            tx.commit().map_err(internal)?;
            Ok(Pin(pin))
        })
        .await
    }

    async fn unpin_blobs(&self, pin: Pin) -> StoreResult<()> {
        self.with(move |conn| {
            conn.execute("DELETE FROM blob_pins WHERE pin = ?1", [pin.0])
                .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn release_upload_pins(&self, blobs: Vec<BlobRef>) -> StoreResult<()> {
        self.with(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            for blob in &blobs {
                tx.execute(
                    "DELETE FROM blob_pins WHERE upload AND kind = ?1 AND digest = ?2",
                    params![blob.kind.name(), blob.digest.to_hex()],
                )
                .map_err(internal)?;
            }
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn pinned_blobs(&self, now: i64) -> StoreResult<Vec<BlobRef>> {
        self.with(move |conn| {
            conn.execute("DELETE FROM blob_pins WHERE until <= ?1", [now])
                .map_err(internal)?;
            let mut statement = conn
                .prepare("SELECT DISTINCT kind, digest FROM blob_pins")
                .map_err(internal)?;
            let rows = statement
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(internal)?;
            rows.map(|row| {
                let (kind, digest) = row.map_err(internal)?;
                read_blob(&kind, &digest)
            })
            .collect()
        })
        .await
    }

    async fn note_unreferenced(
        &self,
        unreferenced: Vec<BlobRef>,
        now: i64,
    ) -> StoreResult<Vec<(BlobRef, i64)>> {
        self.with(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let mut noted = HashMap::new();
            {
                let mut statement = tx
                    .prepare("SELECT kind, digest, since FROM unreferenced_blobs")
                    .map_err(internal)?;
                let rows = statement
                    .query_map([], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
                    })
                    .map_err(internal)?;
                for row in rows {
                    let (kind, digest, since): (String, String, i64) = row.map_err(internal)?;
                    noted.insert(read_blob(&kind, &digest)?, since);
                }
            }
            let mut answer = Vec::with_capacity(unreferenced.len());
            for blob in unreferenced {
                let since = match noted.remove(&blob) {
                    Some(since) => since,
                    None => {
                        tx.execute(
                            "INSERT INTO unreferenced_blobs (kind, digest, since)
                             VALUES (?1, ?2, ?3)",
                            params![blob.kind.name(), blob.digest.to_hex(), now],
                        )
                        .map_err(internal)?;
                        now
                    }
                };
                answer.push((blob, since));
            }
            // Referenced again, or gone: forgotten.
            for blob in noted.into_keys() {
                forget(&tx, &blob)?;
            }
            tx.commit().map_err(internal)?;
            Ok(answer)
        })
        .await
    }

    async fn collect_blob(
        &self,
        blob: BlobRef,
        cutoff: i64,
        now: i64,
        delete: BlobDeletion,
    ) -> StoreResult<bool> {
        let _lock = self.gc_lock.lock().await;
        let collectable = self
            .with(move |conn| collectable(conn, &blob, cutoff, now))
            .await?;
        if !collectable {
            return Ok(false);
        }
        delete.await?;
        self.with(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            forget(&tx, &blob)?;
            if blob.kind == BlobKind::Bundle {
                tx.execute(
                    "DELETE FROM bundles WHERE digest = ?1",
                    [blob.digest.to_hex()],
                )
                .map_err(internal)?;
            }
            tx.commit().map_err(internal)
        })
        .await?;
        Ok(true)
    }
}

/// Whether `blob` may go: unreferenced, unpinned, noted at `cutoff` or before.
fn collectable(conn: &Connection, blob: &BlobRef, cutoff: i64, now: i64) -> StoreResult<bool> {
    let (kind, digest) = (blob.kind.name(), blob.digest.to_hex());
    let referenced: bool = match blob.kind {
        BlobKind::Module => conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM versions WHERE digest = ?1)",
            [&digest],
            |r| r.get(0),
        ),
        BlobKind::Bundle => conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM versions WHERE instr(config, ?1) > 0)",
            [bundle_needle(blob)],
            |r| r.get(0),
        ),
    }
    .map_err(internal)?;
    let pinned: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM blob_pins
                            WHERE kind = ?1 AND digest = ?2 AND until > ?3)",
            params![kind, digest, now],
            |r| r.get(0),
        )
        .map_err(internal)?;
    let since: Option<i64> = conn
        .query_row(
            "SELECT since FROM unreferenced_blobs WHERE kind = ?1 AND digest = ?2",
            params![kind, digest],
            |r| r.get(0),
        )
        .optional()
        .map_err(internal)?;
    Ok(may_go(referenced, pinned, since, cutoff))
}

fn forget(conn: &Connection, blob: &BlobRef) -> StoreResult<()> {
    conn.execute(
        "DELETE FROM unreferenced_blobs WHERE kind = ?1 AND digest = ?2",
        params![blob.kind.name(), blob.digest.to_hex()],
    )
    .map_err(internal)?;
    Ok(())
}
