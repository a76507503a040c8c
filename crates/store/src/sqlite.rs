//! The embedded metadata store: one SQLite file in WAL mode with synchronous
//! commits (a transaction that returned is on disk; invocation log batches
//! alone skip the fsync), schema migrations by `PRAGMA user_version`.

mod domains;
mod gc;
mod kv;
mod nodes;
mod readers;
mod schedules;
mod schema;
mod sessions;
mod tenants;
mod usage;
mod versions;

use crate::error::{StoreError, StoreResult};
use crate::metadata::{LOGS_KEPT, MetadataStore};
use crate::model::{Deployment, NewLogEntry, NewVersion, Principal, TokenHash, now};
use crate::usage::{UsageDelta, UsageQuery, UsageRow};
use async_trait::async_trait;
use kiln_api::{
    BundleInfo, Digest, FunctionDetail, FunctionSummary, LogEntry, Quota, SecretInfo, Tenant,
    TenantId, TokenInfo, UsageTotals, Version,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::path::Path;
use std::sync::{Arc, Mutex};
use versions::{read_version, version};

/// Metadata in a SQLite file. Cheap to clone; queries run on the blocking pool.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// The key-value writer thread's queue ([`kv`]).
    kv_writer: std::sync::mpsc::Sender<kv::Job>,
    /// Read-only connections for the hot-path reads: key-value gets and the
    /// deployment lookup of a function's first request ([`readers`]).
    readers: readers::Readers,
    /// Every blob's lock for the collector and deploys' pins (`sqlite/gc.rs`).
    gc_lock: Arc<tokio::sync::Mutex<()>>,
}

impl SqliteStore {
    /// Opens (creating) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        let mut conn = Connection::open(path).map_err(internal)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(internal)?;
        schema::migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            kv_writer: kv::start_writer(path)?,
            readers: readers::Readers::open(path)?,
            gc_lock: Arc::default(),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::internal("SQLite worker", e))?
    }
}

fn internal(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => StoreError::full("SQLite", e),
        _ => StoreError::internal("SQLite", e),
    }
}

fn not_found(function: &str) -> StoreError {
    StoreError::NotFound(format!("no function named {function:?}"))
}

fn function_id(tx: &Transaction<'_>, tenant: TenantId, name: &str) -> StoreResult<Option<i64>> {
    tx.query_row(
        "SELECT id FROM functions WHERE tenant_id = ?1 AND name = ?2",
        params![tenant, name],
        |r| r.get(0),
    )
    .optional()
    .map_err(internal)
}

fn read_tenant(row: &rusqlite::Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: row.get(0)?,
        name: row.get(1)?,
        created_at: row.get(2)?,
    })
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn authenticate(&self, hash: TokenHash) -> StoreResult<Option<Principal>> {
        self.with(move |conn| {
            let row: Option<(Option<i64>, Option<String>, Option<i64>)> = conn
                .query_row(
                    "SELECT t.tenant_id, n.name, n.created_at FROM tokens t
                     LEFT JOIN tenants n ON n.id = t.tenant_id
                     WHERE t.hash = ?1 AND t.revoked_at IS NULL",
                    params![&hash[..]],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(internal)?;
            Ok(row.map(|(tenant, name, created)| Principal::of_token(tenant, name, created)))
        })
        .await
    }

    async fn has_admin(&self) -> StoreResult<bool> {
        self.with(|conn| {
            conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM tokens WHERE tenant_id IS NULL AND revoked_at IS NULL)",
                [],
                |r| r.get(0),
            )
            .map_err(internal)
        })
        .await
    }

    async fn create_tenant(&self, name: &str) -> StoreResult<Tenant> {
        let name = name.to_owned();
        self.with(move |conn| tenants::create(conn, name)).await
    }

    async fn delete_tenant(&self, name: &str) -> StoreResult<Option<Vec<String>>> {
        let name = name.to_owned();
        self.with(move |conn| tenants::delete(conn, &name)).await
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare("SELECT id, name, created_at FROM tenants ORDER BY name")
                .map_err(internal)?;
            let rows = stmt.query_map([], read_tenant).map_err(internal)?;
            rows.collect::<Result<_, _>>().map_err(internal)
        })
        .await
    }

    async fn tenant(&self, name: &str) -> StoreResult<Option<Tenant>> {
        let name = name.to_owned();
        self.with(move |conn| {
            conn.query_row(
                "SELECT id, name, created_at FROM tenants WHERE name = ?1",
                params![name],
                read_tenant,
            )
            .optional()
            .map_err(internal)
        })
        .await
    }

    async fn create_token(
        &self,
        tenant: Option<TenantId>,
        name: &str,
        hash: TokenHash,
    ) -> StoreResult<TokenInfo> {
        let name = name.to_owned();
        self.with(move |conn| {
            let created_at = now();
            conn.execute(
                "INSERT INTO tokens (tenant_id, name, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![tenant, name, &hash[..], created_at],
            )
            .map_err(internal)?;
            Ok(TokenInfo {
                id: conn.last_insert_rowid(),
                name,
                created_at,
                revoked: false,
            })
        })
        .await
    }

    async fn list_tokens(&self, tenant: Option<TenantId>) -> StoreResult<Vec<TokenInfo>> {
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT id, name, created_at, revoked_at IS NOT NULL FROM tokens
                     WHERE tenant_id IS ?1 ORDER BY id",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![tenant], |r| {
                    Ok(TokenInfo {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        created_at: r.get(2)?,
                        revoked: r.get(3)?,
                    })
                })
                .map_err(internal)?;
            rows.collect::<Result<_, _>>().map_err(internal)
        })
        .await
    }

    async fn revoke_token(&self, tenant: Option<TenantId>, id: i64) -> StoreResult<bool> {
        self.with(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE tokens SET revoked_at = ?1
                     WHERE id = ?2 AND tenant_id IS ?3 AND revoked_at IS NULL",
                    params![now(), id, tenant],
                )
                .map_err(internal)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn deploy(
        &self,
        tenant: TenantId,
        function: &str,
        new: NewVersion,
    ) -> StoreResult<Version> {
        let function = function.to_owned();
        let config = serde_json::to_string(&new.config)
            .map_err(|e| StoreError::internal("function configuration", e))?;
        self.with(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let at = now();
            let (id, number) = match function_id(&tx, tenant, &function)? {
                Some(id) => {
                    let last: u32 = tx
                        .query_row(
                            "SELECT COALESCE(MAX(number), 0) FROM versions WHERE function_id = ?1",
                            params![id],
                            |r| r.get(0),
                        )
                        .map_err(internal)?;
                    (id, last + 1)
                }
                None => {
                    tx.execute(
                        "INSERT INTO functions (tenant_id, name, current_version, created_at, updated_at)
                         VALUES (?1, ?2, 0, ?3, ?3)",
                        params![tenant, function, at],
                    )
                    .map_err(internal)?;
                    (tx.last_insert_rowid(), 1)
                }
            };
            tx.execute(
                "INSERT INTO versions (function_id, number, digest, size, config, created_at, kind)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, number, new.digest.to_hex(), new.size, config, at, new.kind.as_str()],
            )
            .map_err(internal)?;
            tx.execute(
                "UPDATE functions SET current_version = ?1, updated_at = ?2 WHERE id = ?3",
                params![number, at, id],
            )
            .map_err(internal)?;
            let version = version(&tx, id, number)?
                .ok_or_else(|| StoreError::inconsistent("version vanished"))?;
            tx.commit().map_err(internal)?;
            Ok(version)
        })
        .await
    }

    async fn resolve(&self, tenant: &str, function: &str) -> StoreResult<Option<Deployment>> {
        let (tenant, function) = (tenant.to_owned(), function.to_owned());
        // On the invoke path (a function's first request on this node): a
        // point read, answered on the calling thread by a read-only connection.
        self.readers
            .read(move |conn| {
                let row = conn
                    .prepare_cached(
                        "SELECT f.id, v.number, v.digest, v.config, t.id FROM functions f
                     JOIN tenants t ON t.id = f.tenant_id
                     JOIN versions v ON v.function_id = f.id AND v.number = f.current_version
                     WHERE t.name = ?1 AND f.name = ?2",
                    )
                    .map_err(internal)?
                    .query_row(params![tenant, function], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, u32>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, i64>(4)?,
                        ))
                    })
                    .optional()
                    .map_err(internal)?;
                let Some((function_id, version, digest, config, tenant_id)) = row else {
                    return Ok(None);
                };
                Ok(Some(Deployment {
                    function_id,
                    tenant_id,
                    tenant,
                    function,
                    version,
                    digest: digest
                        .parse()
                        .map_err(|e| StoreError::internal("stored digest", e))?,
                    config: serde_json::from_str(&config)
                        .map_err(|e| StoreError::internal("function configuration", e))?,
                }))
            })
            .await
    }

    async fn list_functions(&self, tenant: TenantId) -> StoreResult<Vec<FunctionSummary>> {
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT f.name, f.created_at, f.updated_at,
                            (SELECT COUNT(*) FROM versions c WHERE c.function_id = f.id),
                            v.number, v.digest, v.size, v.config, v.created_at, v.kind
                     FROM functions f
                     JOIN versions v ON v.function_id = f.id AND v.number = f.current_version
                     WHERE f.tenant_id = ?1 ORDER BY f.name",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![tenant], |r| {
                    Ok(FunctionSummary {
                        name: r.get(0)?,
                        created_at: r.get(1)?,
                        updated_at: r.get(2)?,
                        versions: r.get(3)?,
                        current: read_version(r, 4)?,
                    })
                })
                .map_err(internal)?;
            rows.collect::<Result<_, _>>().map_err(internal)
        })
        .await
    }

    async fn function(&self, tenant: TenantId, name: &str) -> StoreResult<Option<FunctionDetail>> {
        let name = name.to_owned();
        self.with(move |conn| {
            let row = conn
                .query_row(
                    "SELECT id, current_version, created_at, updated_at FROM functions
                     WHERE tenant_id = ?1 AND name = ?2",
                    params![tenant, name],
                    |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(internal)?;
            let Some((id, current_version, created_at, updated_at)) = row else {
                return Ok(None);
            };
            let mut stmt = conn
                .prepare(
                    "SELECT number, digest, size, config, created_at, kind FROM versions
                     WHERE function_id = ?1 ORDER BY number DESC",
                )
                .map_err(internal)?;
            let versions = stmt
                .query_map(params![id], |r| read_version(r, 0))
                .map_err(internal)?
                .collect::<Result<_, _>>()
                .map_err(internal)?;
            Ok(Some(FunctionDetail {
                name,
                current_version,
                versions,
                created_at,
                updated_at,
                tier: None,
            }))
        })
        .await
    }

    async fn rollback(
        &self,
        tenant: TenantId,
        function: &str,
        to: Option<u32>,
    ) -> StoreResult<Version> {
        let function = function.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let id = function_id(&tx, tenant, &function)?.ok_or_else(|| not_found(&function))?;
            let current: u32 = tx
                .query_row(
                    "SELECT current_version FROM functions WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .map_err(internal)?;
            let target = match to {
                Some(number) => number,
                None => tx
                    .query_row(
                        "SELECT MAX(number) FROM versions WHERE function_id = ?1 AND number < ?2",
                        params![id, current],
                        |r| r.get::<_, Option<u32>>(0),
                    )
                    .map_err(internal)?
                    .ok_or_else(|| {
                        StoreError::Conflict(format!(
                            "{function} is at its first version ({current}): nothing to roll back to"
                        ))
                    })?,
            };
            let version = version(&tx, id, target)?.ok_or_else(|| {
                StoreError::NotFound(format!("{function} has no version {target}"))
            })?;
            tx.execute(
                "UPDATE functions SET current_version = ?1, updated_at = ?2 WHERE id = ?3",
                params![target, now(), id],
            )
            .map_err(internal)?;
            tx.commit().map_err(internal)?;
            Ok(version)
        })
        .await
    }

    async fn delete_function(&self, tenant: TenantId, function: &str) -> StoreResult<bool> {
        let function = function.to_owned();
        self.with(move |conn| {
            let deleted = conn
                .execute(
                    "DELETE FROM functions WHERE tenant_id = ?1 AND name = ?2",
                    params![tenant, function],
                )
                .map_err(internal)?;
            Ok(deleted == 1)
        })
        .await
    }

    async fn record_artifact(&self, key: &str, sha256: Digest) -> StoreResult<()> {
        let key = key.to_owned();
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO shared_artifacts (key, sha256) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET sha256 = excluded.sha256",
                params![key, sha256.to_string()],
            )
            .map(drop)
            .map_err(internal)
        })
        .await
    }

    async fn artifact_sha256(&self, key: &str) -> StoreResult<Option<Digest>> {
        let key = key.to_owned();
        self.with(move |conn| {
            let text: Option<String> = conn
                .query_row(
                    "SELECT sha256 FROM shared_artifacts WHERE key = ?1",
                    [&key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(internal)?;
            text.map(|t| {
                t.parse()
                    .map_err(|e| StoreError::internal("stored artifact digest", e))
            })
            .transpose()
        })
        .await
    }

    async fn referenced_digests(&self) -> StoreResult<Vec<Digest>> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare("SELECT DISTINCT digest FROM versions")
                .map_err(internal)?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(internal)?;
            let mut digests = Vec::new();
            for row in rows {
                let text = row.map_err(internal)?;
                digests.push(
                    text.parse()
                        .map_err(|e| StoreError::internal("stored digest", e))?,
                );
            }
            Ok(digests)
        })
        .await
    }

    async fn append_logs(&self, entries: Vec<NewLogEntry>) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.with(move |conn| {
            // Log batches are written after their requests answered (and are
            // sampled under overload): they skip the fsync of a synchronous
            // commit. The next synchronous commit or checkpoint makes them
            // durable; a crash of the process loses none, a power cut at most
            // the last batches, and neither corrupts the database.
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(internal)?;
            let written = insert_logs(conn, &entries);
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(internal)?;
            written
        })
        .await
    }

    async fn logs(
        &self,
        tenant: TenantId,
        function: &str,
        after: Option<i64>,
        limit: u32,
    ) -> StoreResult<Option<Vec<LogEntry>>> {
        let function = function.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let Some(id) = function_id(&tx, tenant, &function)? else {
                return Ok(None);
            };
            let read = |r: &rusqlite::Row<'_>| {
                Ok(LogEntry {
                    id: r.get(0)?,
                    version: r.get(1)?,
                    at: r.get(2)?,
                    outcome: r.get(3)?,
                    status: r.get(4)?,
                    wall_us: r.get(5)?,
                    stderr: r.get(6)?,
                    cpu_us: r.get(7)?,
                    instantiation_us: r.get(8)?,
                    peak_memory_bytes: r.get(9)?,
                    bytes_in: r.get(10)?,
                    bytes_out: r.get(11)?,
                    stdout: r.get(12)?,
                })
            };
            let columns = "id, version, at, outcome, status, wall_us, stderr, \
                           cpu_us, instantiation_us, peak_memory_bytes, bytes_in, bytes_out, stdout";
            let mut entries: Vec<LogEntry> = match after {
                Some(after) => {
                    let mut stmt = tx
                        .prepare(&format!(
                            "SELECT {columns} FROM logs WHERE function_id = ?1 AND id > ?2
                             ORDER BY id LIMIT ?3"
                        ))
                        .map_err(internal)?;
                    stmt.query_map(params![id, after, limit], read)
                        .map_err(internal)?
                        .collect::<Result<_, _>>()
                        .map_err(internal)?
                }
                None => {
                    let mut stmt = tx
                        .prepare(&format!(
                            "SELECT {columns} FROM logs WHERE function_id = ?1
                             ORDER BY id DESC LIMIT ?2"
                        ))
                        .map_err(internal)?;
                    let mut newest: Vec<LogEntry> = stmt
                        .query_map(params![id, limit], read)
                        .map_err(internal)?
                        .collect::<Result<_, _>>()
                        .map_err(internal)?;
                    newest.reverse();
                    newest
                }
            };
            entries.truncate(limit as usize);
            Ok(Some(entries))
        })
        .await
    }

    async fn add_usage(&self, deltas: Vec<UsageDelta>) -> StoreResult<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        self.with(move |conn| usage::add(conn, &deltas)).await
    }

    async fn usage(&self, query: UsageQuery) -> StoreResult<Vec<UsageRow>> {
        self.with(move |conn| usage::rows(conn, &query)).await
    }

    async fn usage_by_tenant(&self, since: i64) -> StoreResult<Vec<(TenantId, UsageTotals)>> {
        self.with(move |conn| usage::by_tenant(conn, since)).await
    }

    async fn put_secret(&self, tenant: TenantId, name: &str, sealed: Vec<u8>) -> StoreResult<()> {
        let name = name.to_owned();
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO secrets (tenant_id, name, sealed, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant_id, name) DO UPDATE
                     SET sealed = excluded.sealed, updated_at = excluded.updated_at",
                params![tenant, name, sealed, now()],
            )
            .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn secrets(
        &self,
        tenant: TenantId,
        names: Vec<String>,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT sealed FROM secrets WHERE tenant_id = ?1 AND name = ?2")
                .map_err(internal)?;
            let mut found = Vec::new();
            for name in names {
                let sealed: Option<Vec<u8>> = stmt
                    .query_row(params![tenant, name], |r| r.get(0))
                    .optional()
                    .map_err(internal)?;
                if let Some(sealed) = sealed {
                    found.push((name, sealed));
                }
            }
            Ok(found)
        })
        .await
    }

    async fn list_secrets(&self, tenant: TenantId) -> StoreResult<Vec<SecretInfo>> {
        self.with(move |conn| {
            let mut stmt = conn
                .prepare("SELECT name, updated_at FROM secrets WHERE tenant_id = ?1 ORDER BY name")
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![tenant], |r| {
                    Ok(SecretInfo {
                        name: r.get(0)?,
                        updated_at: r.get(1)?,
                    })
                })
                .map_err(internal)?;
            rows.collect::<Result<_, _>>().map_err(internal)
        })
        .await
    }

    async fn delete_secret(&self, tenant: TenantId, name: &str) -> StoreResult<bool> {
        let name = name.to_owned();
        self.with(move |conn| {
            conn.execute(
                "DELETE FROM secrets WHERE tenant_id = ?1 AND name = ?2",
                params![tenant, name],
            )
            .map(|n| n > 0)
            .map_err(internal)
        })
        .await
    }

    async fn quotas(&self) -> StoreResult<Vec<(TenantId, Quota)>> {
        self.with(usage::quotas).await
    }

    async fn set_quota(&self, tenant: TenantId, quota: Quota) -> StoreResult<()> {
        self.with(move |conn| usage::set_quota(conn, tenant, &quota))
            .await
    }

    async fn add_bundle(&self, tenant: TenantId, bundle: &BundleInfo) -> StoreResult<()> {
        let bundle = bundle.clone();
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO bundles (tenant_id, digest, size, files, file_bytes, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                params![
                    tenant,
                    bundle.digest.to_hex(),
                    bundle.size,
                    bundle.files,
                    bundle.file_bytes,
                    now()
                ],
            )
            .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn bundle(&self, tenant: TenantId, digest: &Digest) -> StoreResult<Option<BundleInfo>> {
        let digest = *digest;
        self.with(move |conn| {
            conn.query_row(
                "SELECT size, files, file_bytes FROM bundles WHERE tenant_id = ?1 AND digest = ?2",
                params![tenant, digest.to_hex()],
                |r| {
                    Ok(BundleInfo {
                        digest,
                        size: r.get(0)?,
                        files: r.get(1)?,
                        file_bytes: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(internal)
        })
        .await
    }
}

/// Appends `entries` in one transaction, keeping the newest [`LOGS_KEPT`] of
/// each function.
fn insert_logs(conn: &mut Connection, entries: &[NewLogEntry]) -> StoreResult<()> {
    let tx = conn.transaction().map_err(internal)?;
    {
        // A plain single-row insert per entry (no statement journal,
        // unlike an `INSERT … SELECT`). Entries of a function deleted
        // while they were queued are skipped: whether a function
        // still exists is looked up once per batch, not per entry.
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO logs (function_id, version, at, outcome, status, wall_us, stderr,
                   cpu_us, instantiation_us, peak_memory_bytes, bytes_in, bytes_out, stdout)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )
            .map_err(internal)?;
        let mut exists = tx
            .prepare_cached("SELECT 1 FROM functions WHERE id = ?1")
            .map_err(internal)?;
        let mut prune = tx
            .prepare_cached(
                "DELETE FROM logs WHERE function_id = ?1 AND id <= (
                   SELECT id FROM logs WHERE function_id = ?1
                   ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            )
            .map_err(internal)?;
        let mut touched = std::collections::BTreeMap::new();
        for e in entries {
            let live = match touched.get(&e.function_id) {
                Some(live) => *live,
                None => {
                    let live = exists.exists(params![e.function_id]).map_err(internal)?;
                    touched.insert(e.function_id, live);
                    live
                }
            };
            if !live {
                continue;
            }
            insert
                .execute(params![
                    e.function_id,
                    e.version,
                    e.at,
                    e.outcome,
                    e.status,
                    e.wall_us,
                    e.stderr,
                    e.cpu_us,
                    e.instantiation_us,
                    e.peak_memory_bytes,
                    e.bytes_in,
                    e.bytes_out,
                    e.stdout
                ])
                .map_err(internal)?;
        }
        for (id, _) in touched.into_iter().filter(|(_, live)| *live) {
            prune.execute(params![id, LOGS_KEPT]).map_err(internal)?;
        }
    }
    tx.commit().map_err(internal)
}
