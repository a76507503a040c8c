//! Key-value buckets in SQLite. Reads go to the read-only connections of
//! [`super::readers`] (a `get` on the calling thread); writes
//! go to one writer thread with a connection of its own, which takes every
//! write queued while it was committing into the next transaction, each write
//! in a savepoint of its own: one fsync serves many writers (group commit), and
//! a write that fails (a quota, a value that is not a number) is rolled back
//! alone.

use super::{SqliteStore, internal};
use crate::error::{StoreError, StoreResult};
use crate::kv::{KvStore, KvWrite, check_caps, counter_sum, counter_value};
use async_trait::async_trait;
use kiln_api::{KvBucket, KvCaps, KvKeys, KvUsage, TenantId, stored_bytes};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::path::Path;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Writes one transaction takes at most.
const GROUP: usize = 256;

/// A write waiting for the writer thread.
pub(super) enum Job {
    Write {
        tenant: TenantId,
        bucket: String,
        writes: Vec<KvWrite>,
        caps: KvCaps,
        done: oneshot::Sender<StoreResult<()>>,
    },
    Increment {
        tenant: TenantId,
        bucket: String,
        key: String,
        delta: u64,
        caps: KvCaps,
        done: oneshot::Sender<StoreResult<u64>>,
    },
    DeleteBucket {
        tenant: TenantId,
        bucket: String,
        done: oneshot::Sender<StoreResult<bool>>,
    },
}

/// Starts the writer thread on its own connection to `path`; it ends when
/// every sender is dropped.
pub(super) fn start_writer(path: &Path) -> StoreResult<mpsc::Sender<Job>> {
    let mut conn = Connection::open(path).map_err(internal)?;
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;",
    )
    .map_err(internal)?;
    let (jobs, queue) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("kiln-kv-writer".into())
        .spawn(move || {
            while let Ok(first) = queue.recv() {
                let mut group = vec![first];
                while group.len() < GROUP {
                    match queue.try_recv() {
                        Ok(job) => group.push(job),
                        Err(_) => break,
                    }
                }
                commit_group(&mut conn, group);
            }
        })
        .map_err(|e| StoreError::internal("starting the key-value writer", e))?;
    Ok(jobs)
}

/// What one job answers, kept until the group's commit says whether it holds.
enum Answer {
    Write(oneshot::Sender<StoreResult<()>>, StoreResult<()>),
    Increment(oneshot::Sender<StoreResult<u64>>, StoreResult<u64>),
    DeleteBucket(oneshot::Sender<StoreResult<bool>>, StoreResult<bool>),
}

fn commit_group(conn: &mut Connection, group: Vec<Job>) {
    let mut answers = Vec::with_capacity(group.len());
    let committed = (|| -> StoreResult<()> {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(internal)?;
        for job in group {
            answers.push(match job {
                Job::Write {
                    tenant,
                    bucket,
                    writes,
                    caps,
                    done,
                } => Answer::Write(
                    done,
                    alone(&tx, |tx| write(tx, tenant, &bucket, &writes, caps)),
                ),
                Job::Increment {
                    tenant,
                    bucket,
                    key,
                    delta,
                    caps,
                    done,
                } => Answer::Increment(
                    done,
                    alone(&tx, |tx| increment(tx, tenant, &bucket, &key, delta, caps)),
                ),
                Job::DeleteBucket {
                    tenant,
                    bucket,
                    done,
                } => {
                    Answer::DeleteBucket(done, alone(&tx, |tx| delete_bucket(tx, tenant, &bucket)))
                }
            });
        }
        tx.commit().map_err(internal)
    })();
    for answer in answers {
        match answer {
            Answer::Write(done, result) => settle(done, result, &committed),
            Answer::Increment(done, result) => settle(done, result, &committed),
            Answer::DeleteBucket(done, result) => settle(done, result, &committed),
        }
    }
}

/// Tells a writer its write's own result if the group committed, else the
/// commit's failure. A receiver gone (its request ended) loses nothing: the
/// write stands.
fn settle<T>(
    done: oneshot::Sender<StoreResult<T>>,
    result: StoreResult<T>,
    committed: &StoreResult<()>,
) {
    let _ = done.send(match committed {
        Ok(()) => result,
        Err(e) => Err(copy(e)),
    });
}

/// A commit failure, told to each writer of the group.
fn copy(e: &StoreError) -> StoreError {
    match e {
        StoreError::Full { context, .. } => StoreError::Full {
            context: context.clone(),
            source: Some(e.to_string().into()),
        },
        _ => StoreError::internal("committing key-value writes", e.to_string()),
    }
}

/// Runs `f` in a savepoint: its changes are kept if it succeeds, undone if not.
fn alone<T>(
    tx: &Transaction<'_>,
    f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>,
) -> StoreResult<T> {
    tx.execute_batch("SAVEPOINT job").map_err(internal)?;
    let result = f(tx);
    let end = match result {
        Ok(_) => "RELEASE job",
        Err(_) => "ROLLBACK TO job; RELEASE job",
    };
    tx.execute_batch(end).map_err(internal)?;
    result
}

/// SQLite integers are i64.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn stored_len(
    tx: &Transaction<'_>,
    tenant: TenantId,
    bucket: &str,
    key: &str,
) -> StoreResult<Option<u64>> {
    tx.query_row(
        "SELECT length(value) FROM kv WHERE tenant_id = ?1 AND bucket = ?2 AND key = ?3",
        params![tenant, bucket, key],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map_err(internal)
    .map(|len| len.map(|l| stored_bytes(key, usize::try_from(l).unwrap_or(0))))
}

/// Adds to the tenant's stored keys and bytes; a growth past `caps` fails.
fn account(
    tx: &Transaction<'_>,
    tenant: TenantId,
    keys: i64,
    bytes: i64,
    caps: KvCaps,
) -> StoreResult<()> {
    if keys == 0 && bytes == 0 {
        return Ok(());
    }
    let (now_keys, now_bytes): (i64, i64) = tx
        .query_row(
            "INSERT INTO kv_usage (tenant_id, keys, bytes) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant_id) DO UPDATE
                 SET keys = keys + excluded.keys, bytes = bytes + excluded.bytes
             RETURNING keys, bytes",
            params![tenant, keys, bytes],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(internal)?;
    let used = KvUsage {
        keys: u64::try_from(now_keys).unwrap_or(0),
        bytes: u64::try_from(now_bytes).unwrap_or(0),
    };
    // Shrinking is always allowed, even past a quota lowered since.
    let caps = KvCaps {
        keys: if keys > 0 { caps.keys } else { u64::MAX },
        bytes: if bytes > 0 { caps.bytes } else { u64::MAX },
    };
    check_caps(used, caps)
}

fn write(
    tx: &Transaction<'_>,
    tenant: TenantId,
    bucket: &str,
    writes: &[KvWrite],
    caps: KvCaps,
) -> StoreResult<()> {
    let (mut keys, mut bytes) = (0i64, 0i64);
    for w in writes {
        match w {
            KvWrite::Set { key, value } => {
                let before = stored_len(tx, tenant, bucket, key)?;
                tx.execute(
                    "INSERT INTO kv (tenant_id, bucket, key, value) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (tenant_id, bucket, key) DO UPDATE SET value = excluded.value",
                    params![tenant, bucket, key, value],
                )
                .map_err(internal)?;
                keys += i64::from(before.is_none());
                bytes += int(stored_bytes(key, value.len())) - int(before.unwrap_or(0));
            }
            KvWrite::Delete { key } => {
                if let Some(before) = stored_len(tx, tenant, bucket, key)? {
                    tx.execute(
                        "DELETE FROM kv WHERE tenant_id = ?1 AND bucket = ?2 AND key = ?3",
                        params![tenant, bucket, key],
                    )
                    .map_err(internal)?;
                    keys -= 1;
                    bytes -= int(before);
                }
            }
        }
    }
    account(tx, tenant, keys, bytes, caps)
}

fn increment(
    tx: &Transaction<'_>,
    tenant: TenantId,
    bucket: &str,
    key: &str,
    delta: u64,
    caps: KvCaps,
) -> StoreResult<u64> {
    let current: Option<Vec<u8>> = tx
        .query_row(
            "SELECT value FROM kv WHERE tenant_id = ?1 AND bucket = ?2 AND key = ?3",
            params![tenant, bucket, key],
            |r| r.get(0),
        )
        .optional()
        .map_err(internal)?;
    let sum = counter_sum(counter_value(current.as_deref())?, delta)?;
    let value = sum.to_string().into_bytes();
    write(
        tx,
        tenant,
        bucket,
        &[KvWrite::Set {
            key: key.to_owned(),
            value,
        }],
        caps,
    )?;
    Ok(sum)
}

fn delete_bucket(tx: &Transaction<'_>, tenant: TenantId, bucket: &str) -> StoreResult<bool> {
    let (keys, bytes): (i64, i64) = tx
        .query_row(
            "SELECT count(*), coalesce(sum(length(key) + length(value)), 0) FROM kv
             WHERE tenant_id = ?1 AND bucket = ?2",
            params![tenant, bucket],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(internal)?;
    if keys == 0 {
        return Ok(false);
    }
    tx.execute(
        "DELETE FROM kv WHERE tenant_id = ?1 AND bucket = ?2",
        params![tenant, bucket],
    )
    .map_err(internal)?;
    account(tx, tenant, -keys, -bytes, KvCaps::default())?;
    Ok(true)
}

pub(super) fn get_many(
    conn: &Connection,
    tenant: TenantId,
    bucket: &str,
    keys: &[String],
) -> StoreResult<Vec<Option<Vec<u8>>>> {
    let mut statement = conn
        .prepare_cached("SELECT value FROM kv WHERE tenant_id = ?1 AND bucket = ?2 AND key = ?3")
        .map_err(internal)?;
    keys.iter()
        .map(|key| {
            statement
                .query_row(params![tenant, bucket, key], |r| r.get(0))
                .optional()
                .map_err(internal)
        })
        .collect()
}

pub(super) fn list(
    conn: &Connection,
    tenant: TenantId,
    bucket: &str,
    cursor: Option<u64>,
    limit: u32,
) -> StoreResult<KvKeys> {
    let mut statement = conn
        .prepare_cached(
            "SELECT id, key FROM kv WHERE tenant_id = ?1 AND bucket = ?2 AND id > ?3
             ORDER BY id LIMIT ?4",
        )
        .map_err(internal)?;
    let mut rows: Vec<(i64, String)> = statement
        .query_map(
            params![
                tenant,
                bucket,
                int(cursor.unwrap_or(0)),
                i64::from(limit) + 1
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(internal)?
        .collect::<Result<_, _>>()
        .map_err(internal)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok(KvKeys {
        cursor: match more {
            true => rows.last().map(|(id, _)| u64::try_from(*id).unwrap_or(0)),
            false => None,
        },
        keys: rows.into_iter().map(|(_, key)| key).collect(),
    })
}

pub(super) fn buckets(conn: &Connection, tenant: TenantId) -> StoreResult<Vec<KvBucket>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT bucket, count(*), sum(length(key) + length(value)) FROM kv
             WHERE tenant_id = ?1 GROUP BY bucket ORDER BY bucket",
        )
        .map_err(internal)?;
    statement
        .query_map(params![tenant], |r| {
            Ok(KvBucket {
                name: r.get(0)?,
                keys: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                bytes: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
            })
        })
        .map_err(internal)?
        .collect::<Result<_, _>>()
        .map_err(internal)
}

pub(super) fn usage(conn: &Connection, tenant: TenantId) -> StoreResult<KvUsage> {
    let row: Option<(i64, i64)> = conn
        .query_row(
            "SELECT keys, bytes FROM kv_usage WHERE tenant_id = ?1",
            params![tenant],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(internal)?;
    let (keys, bytes) = row.unwrap_or((0, 0));
    Ok(KvUsage {
        keys: u64::try_from(keys).unwrap_or(0),
        bytes: u64::try_from(bytes).unwrap_or(0),
    })
}

impl SqliteStore {
    /// Queues `job` for the key-value writer and waits for its answer.
    async fn kv_job<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<StoreResult<T>>) -> Job,
    ) -> StoreResult<T> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.kv_writer
            .send(job(done))
            .map_err(|_| StoreError::inconsistent("the key-value writer has stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::inconsistent("the key-value writer dropped a write"))?
    }
}

#[async_trait]
impl KvStore for SqliteStore {
    async fn kv_get(
        &self,
        tenant: TenantId,
        bucket: &str,
        key: &str,
    ) -> StoreResult<Option<Vec<u8>>> {
        let mut values = self
            .kv_get_many(tenant, bucket, vec![key.to_owned()])
            .await?;
        Ok(values.pop().flatten())
    }

    async fn kv_get_many(
        &self,
        tenant: TenantId,
        bucket: &str,
        keys: Vec<String>,
    ) -> StoreResult<Vec<Option<Vec<u8>>>> {
        let bucket = bucket.to_owned();
        self.readers
            .read(move |conn| match keys.len() {
                1 => get_many(conn, tenant, &bucket, &keys),
                // One snapshot for them all.
                _ => {
                    let tx = conn.transaction().map_err(internal)?;
                    get_many(&tx, tenant, &bucket, &keys)
                }
            })
            .await
    }

    async fn kv_exists(&self, tenant: TenantId, bucket: &str, key: &str) -> StoreResult<bool> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.readers
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM kv WHERE tenant_id = ?1 AND bucket = ?2 AND key = ?3)",
                )
                .and_then(|mut s| s.query_row(params![tenant, bucket, key], |r| r.get(0)))
                .map_err(internal)
            })
            .await
    }

    async fn kv_write(
        &self,
        tenant: TenantId,
        bucket: &str,
        writes: Vec<KvWrite>,
        caps: KvCaps,
    ) -> StoreResult<()> {
        let bucket = bucket.to_owned();
        self.kv_job(|done| Job::Write {
            tenant,
            bucket,
            writes,
            caps,
            done,
        })
        .await
    }

    async fn kv_increment(
        &self,
        tenant: TenantId,
        bucket: &str,
        key: &str,
        delta: u64,
        caps: KvCaps,
    ) -> StoreResult<u64> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.kv_job(|done| Job::Increment {
            tenant,
            bucket,
            key,
            delta,
            caps,
            done,
        })
        .await
    }

    async fn kv_list(
        &self,
        tenant: TenantId,
        bucket: &str,
        cursor: Option<u64>,
        limit: u32,
    ) -> StoreResult<KvKeys> {
        let bucket = bucket.to_owned();
        self.readers
            .read_blocking(move |conn| list(conn, tenant, &bucket, cursor, limit))
            .await
    }

    async fn kv_buckets(&self, tenant: TenantId) -> StoreResult<Vec<KvBucket>> {
        self.readers
            .read_blocking(move |conn| buckets(conn, tenant))
            .await
    }

    async fn kv_usage(&self, tenant: TenantId) -> StoreResult<KvUsage> {
        self.readers
            .read_blocking(move |conn| usage(conn, tenant))
            .await
    }

    async fn kv_meter_storage(&self, hour: i64) -> StoreResult<u64> {
        self.with(move |conn| super::usage::meter_storage(conn, hour))
            .await
    }

    async fn kv_delete_bucket(&self, tenant: TenantId, bucket: &str) -> StoreResult<bool> {
        let bucket = bucket.to_owned();
        self.kv_job(|done| Job::DeleteBucket {
            tenant,
            bucket,
            done,
        })
        .await
    }
}
