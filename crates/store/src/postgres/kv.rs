//! Key-value buckets in PostgreSQL, shared by every node of a cluster. Each
//! write is one transaction: row locks make increments exact across nodes, and
//! the tenant's `kv_usage` row, updated last, keeps its quota exact. A
//! transaction chosen as a deadlock's victim (two batches locking the same keys
//! in opposite orders) is retried.

use super::{PostgresStore, big, pg, unsigned};
use crate::error::StoreResult;
use crate::kv::{KvStore, KvWrite, check_caps, counter_sum, counter_value};
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use kiln_api::{KvBucket, KvCaps, KvKeys, KvUsage, TenantId, stored_bytes};
use tokio_postgres::error::SqlState;

/// Attempts of a write that keeps losing deadlocks.
pub(super) const ATTEMPTS: usize = 5;

/// Whether PostgreSQL aborted a transaction to break a deadlock or a
/// serialization failure: running it again may succeed.
pub(super) fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(&SqlState::T_R_DEADLOCK_DETECTED) | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
    )
}

/// Runs `$body` (an expression using the transaction `$tx`, evaluating to
/// `Result<StoreResult<T>, tokio_postgres::Error>`) in a transaction of
/// `$client`: committed when it succeeds, rolled back when the store refuses
/// it, run again (up to [`ATTEMPTS`] times) when PostgreSQL aborts it.
macro_rules! in_transaction {
    ($client:expr, |$tx:ident| $body:expr) => {{
        let mut attempt = 0;
        loop {
            attempt += 1;
            let $tx = $client.transaction().await.map_err(pg)?;
            let outcome = match $body.await {
                Ok(Ok(value)) => $tx.commit().await.map(|()| Ok(value)),
                Ok(Err(refused)) => $tx.rollback().await.map(|()| Err(refused)),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(result) => break result,
                Err(e) if attempt < ATTEMPTS && retryable(&e) => {}
                Err(e) => break Err(pg(e)),
            }
        }
    }};
}

/// Adds to the tenant's stored keys and bytes; a growth past `caps` is refused.
async fn account(
    tx: &impl GenericClient,
    tenant: TenantId,
    keys: i64,
    bytes: i64,
    caps: KvCaps,
) -> Result<StoreResult<()>, tokio_postgres::Error> {
    if keys == 0 && bytes == 0 {
        return Ok(Ok(()));
    }
    let row = tx
        .query_one(
            "INSERT INTO kv_usage (tenant_id, keys, bytes) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id) DO UPDATE
                 SET keys = kv_usage.keys + excluded.keys, bytes = kv_usage.bytes + excluded.bytes
             RETURNING keys, bytes",
            &[&tenant, &keys, &bytes],
        )
        .await?;
    let used = KvUsage {
        keys: unsigned(row.get(0)),
        bytes: unsigned(row.get(1)),
    };
    // Shrinking is always allowed, even past a quota lowered since.
    let caps = KvCaps {
        keys: if keys > 0 { caps.keys } else { u64::MAX },
        bytes: if bytes > 0 { caps.bytes } else { u64::MAX },
    };
    Ok(check_caps(used, caps))
}

/// Applies `writes` in `tx` and accounts for them.
async fn write(
    tx: &impl GenericClient,
    tenant: TenantId,
    bucket: &str,
    writes: &[KvWrite],
    caps: KvCaps,
) -> Result<StoreResult<()>, tokio_postgres::Error> {
    let (mut keys, mut bytes) = (0i64, 0i64);
    for w in writes {
        match w {
            KvWrite::Set { key, value } => {
                let new = big(stored_bytes(key, value.len()));
                let inserted = tx
                    .query_opt(
                        "INSERT INTO kv (tenant_id, bucket, key, value) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (tenant_id, bucket, key) DO NOTHING RETURNING id",
                        &[&tenant, &bucket, key, value],
                    )
                    .await?;
                if inserted.is_some() {
                    keys += 1;
                    bytes += new;
                    continue;
                }
                let before = tx
                    .query_one(
                        "SELECT octet_length(key) + octet_length(value) FROM kv
                         WHERE tenant_id = $1 AND bucket = $2 AND key = $3 FOR UPDATE",
                        &[&tenant, &bucket, key],
                    )
                    .await?;
                tx.execute(
                    "UPDATE kv SET value = $4 WHERE tenant_id = $1 AND bucket = $2 AND key = $3",
                    &[&tenant, &bucket, key, value],
                )
                .await?;
                bytes += new - i64::from(before.get::<_, i32>(0));
            }
            KvWrite::Delete { key } => {
                let deleted = tx
                    .query_opt(
                        "DELETE FROM kv WHERE tenant_id = $1 AND bucket = $2 AND key = $3
                         RETURNING octet_length(key) + octet_length(value)",
                        &[&tenant, &bucket, key],
                    )
                    .await?;
                if let Some(row) = deleted {
                    keys -= 1;
                    bytes -= i64::from(row.get::<_, i32>(0));
                }
            }
        }
    }
    account(tx, tenant, keys, bytes, caps).await
}

/// Adds `delta` to `key`'s number, under its row lock.
async fn increment(
    tx: &impl GenericClient,
    tenant: TenantId,
    bucket: &str,
    key: &str,
    delta: u64,
    caps: KvCaps,
) -> Result<StoreResult<u64>, tokio_postgres::Error> {
    loop {
        let current = tx
            .query_opt(
                "SELECT value FROM kv WHERE tenant_id = $1 AND bucket = $2 AND key = $3 FOR UPDATE",
                &[&tenant, &bucket, &key],
            )
            .await?;
        let current: Option<Vec<u8>> = current.map(|row| row.get(0));
        let sum = match counter_value(current.as_deref()).and_then(|n| counter_sum(n, delta)) {
            Ok(sum) => sum,
            Err(refused) => return Ok(Err(refused)),
        };
        let value = sum.to_string().into_bytes();
        let new = big(stored_bytes(key, value.len()));
        let Some(before) = current else {
            let inserted = tx
                .query_opt(
                    "INSERT INTO kv (tenant_id, bucket, key, value) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (tenant_id, bucket, key) DO NOTHING RETURNING id",
                    &[&tenant, &bucket, &key, &value],
                )
                .await?;
            match inserted {
                Some(_) => return Ok(account(tx, tenant, 1, new, caps).await?.map(|()| sum)),
                // Another node set it meanwhile: read it again, under its lock.
                None => continue,
            }
        };
        tx.execute(
            "UPDATE kv SET value = $4 WHERE tenant_id = $1 AND bucket = $2 AND key = $3",
            &[&tenant, &bucket, &key, &value],
        )
        .await?;
        let old = big(stored_bytes(key, before.len()));
        return Ok(account(tx, tenant, 0, new - old, caps).await?.map(|()| sum));
    }
}

/// Deletes every key of `bucket` and accounts for them.
async fn delete_bucket(
    tx: &impl GenericClient,
    tenant: TenantId,
    bucket: &str,
) -> Result<StoreResult<bool>, tokio_postgres::Error> {
    let row = tx
        .query_one(
            "WITH gone AS (DELETE FROM kv WHERE tenant_id = $1 AND bucket = $2
                           RETURNING octet_length(key) + octet_length(value) AS size)
             SELECT count(*), coalesce(sum(size), 0)::BIGINT FROM gone",
            &[&tenant, &bucket],
        )
        .await?;
    let (keys, bytes): (i64, i64) = (row.get(0), row.get(1));
    if keys == 0 {
        return Ok(Ok(false));
    }
    Ok(account(tx, tenant, -keys, -bytes, KvCaps::default())
        .await?
        .map(|()| true))
}

async fn get_many(
    client: &impl GenericClient,
    tenant: TenantId,
    bucket: &str,
    keys: &[String],
) -> StoreResult<Vec<Option<Vec<u8>>>> {
    let rows = client
        .query(
            "SELECT key, value FROM kv WHERE tenant_id = $1 AND bucket = $2 AND key = ANY($3)",
            &[&tenant, &bucket, &keys],
        )
        .await
        .map_err(pg)?;
    let found: std::collections::HashMap<String, Vec<u8>> =
        rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(keys.iter().map(|key| found.get(key).cloned()).collect())
}

async fn list(
    client: &impl GenericClient,
    tenant: TenantId,
    bucket: &str,
    cursor: Option<u64>,
    limit: u32,
) -> StoreResult<KvKeys> {
    let mut rows: Vec<(i64, String)> = client
        .query(
            "SELECT id, key FROM kv WHERE tenant_id = $1 AND bucket = $2 AND id > $3
             ORDER BY id LIMIT $4",
            &[
                &tenant,
                &bucket,
                &big(cursor.unwrap_or(0)),
                &(i64::from(limit) + 1),
            ],
        )
        .await
        .map_err(pg)?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok(KvKeys {
        cursor: match more {
            true => rows.last().map(|(id, _)| unsigned(*id)),
            false => None,
        },
        keys: rows.into_iter().map(|(_, key)| key).collect(),
    })
}

async fn buckets(client: &impl GenericClient, tenant: TenantId) -> StoreResult<Vec<KvBucket>> {
    let rows = client
        .query(
            "SELECT bucket, count(*), sum(octet_length(key) + octet_length(value))::BIGINT FROM kv
             WHERE tenant_id = $1 GROUP BY bucket ORDER BY bucket",
            &[&tenant],
        )
        .await
        .map_err(pg)?;
    Ok(rows
        .into_iter()
        .map(|r| KvBucket {
            name: r.get(0),
            keys: unsigned(r.get(1)),
            bytes: unsigned(r.get(2)),
        })
        .collect())
}

async fn usage(client: &impl GenericClient, tenant: TenantId) -> StoreResult<KvUsage> {
    let row = client
        .query_opt(
            "SELECT keys, bytes FROM kv_usage WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .map_err(pg)?;
    Ok(row
        .map(|r| KvUsage {
            keys: unsigned(r.get(0)),
            bytes: unsigned(r.get(1)),
        })
        .unwrap_or_default())
}

#[async_trait]
impl KvStore for PostgresStore {
    async fn kv_get(
        &self,
        tenant: TenantId,
        bucket: &str,
        key: &str,
    ) -> StoreResult<Option<Vec<u8>>> {
        let client = self.client().await?;
        // Prepared once per pooled connection: one round trip per read.
        let statement = client
            .prepare_cached(
                "SELECT value FROM kv WHERE tenant_id = $1 AND bucket = $2 AND key = $3",
            )
            .await
            .map_err(pg)?;
        let row = client
            .query_opt(&statement, &[&tenant, &bucket, &key])
            .await
            .map_err(pg)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn kv_get_many(
        &self,
        tenant: TenantId,
        bucket: &str,
        keys: Vec<String>,
    ) -> StoreResult<Vec<Option<Vec<u8>>>> {
        let client = self.client().await?;
        get_many(&client, tenant, bucket, &keys).await
    }

    async fn kv_exists(&self, tenant: TenantId, bucket: &str, key: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM kv WHERE tenant_id = $1 AND bucket = $2 AND key = $3)",
            )
            .await
            .map_err(pg)?;
        let row = client
            .query_one(&statement, &[&tenant, &bucket, &key])
            .await
            .map_err(pg)?;
        Ok(row.get(0))
    }

    async fn kv_write(
        &self,
        tenant: TenantId,
        bucket: &str,
        writes: Vec<KvWrite>,
        caps: KvCaps,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        in_transaction!(client, |tx| write(&tx, tenant, bucket, &writes, caps))
    }

    async fn kv_increment(
        &self,
        tenant: TenantId,
        bucket: &str,
        key: &str,
        delta: u64,
        caps: KvCaps,
    ) -> StoreResult<u64> {
        let mut client = self.client().await?;
        in_transaction!(client, |tx| increment(
            &tx, tenant, bucket, key, delta, caps
        ))
    }

    async fn kv_list(
        &self,
        tenant: TenantId,
        bucket: &str,
        cursor: Option<u64>,
        limit: u32,
    ) -> StoreResult<KvKeys> {
        let client = self.client().await?;
        list(&client, tenant, bucket, cursor, limit).await
    }

    async fn kv_buckets(&self, tenant: TenantId) -> StoreResult<Vec<KvBucket>> {
        let client = self.client().await?;
        buckets(&client, tenant).await
    }

    async fn kv_usage(&self, tenant: TenantId) -> StoreResult<KvUsage> {
        let client = self.client().await?;
        usage(&client, tenant).await
    }

    async fn kv_meter_storage(&self, hour: i64) -> StoreResult<u64> {
        let client = self.client().await?;
        super::usage::meter_storage(&client, hour).await
    }

    async fn kv_delete_bucket(&self, tenant: TenantId, bucket: &str) -> StoreResult<bool> {
        let mut client = self.client().await?;
        in_transaction!(client, |tx| delete_bucket(&tx, tenant, bucket))
    }
}
