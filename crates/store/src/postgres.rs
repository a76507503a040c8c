//! The cluster metadata store: PostgreSQL, shared by every Kiln node. A pool of
//! connections (tokio-postgres through deadpool); schema migrations numbered in a
//! table of their own and applied under an advisory lock, so that nodes starting
//! together migrate once. Same tables and semantics as the SQLite store.
//!
//! Deploys, rollbacks and deletes `NOTIFY kiln_changes` with `tenant/function` in
//! the transaction that makes them (delivered when it commits); [`watch`]
//! `LISTEN`s on a connection of its own and reconnects when it is lost.
//!
//! [`watch`]: MetadataStore::watch

// `kv` first: its macros serve the code after it.
#[macro_use]
mod kv;
mod domains;
mod gc;
mod grants;
mod nodes;
mod schedules;
mod sessions;
mod tls;
mod usage;

use crate::error::{StoreError, StoreResult, check_schema};
use crate::metadata::{Change, LOGS_KEPT, MetadataStore};
use crate::model::{Deployment, NewLogEntry, NewVersion, Principal, TokenHash, now};
use crate::usage::{UsageDelta, UsageQuery, UsageRow};
use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use kiln_api::{
    BinaryKind, BundleInfo, Digest, FunctionDetail, FunctionSummary, LogEntry, Quota, SecretInfo,
    Tenant, TenantId, TokenInfo, UsageTotals, Version,
};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, NoTls, Row};

/// Schema migrations, applied in order. Append only.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    quota TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE tokens (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    hash BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE functions (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    current_version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE TABLE versions (
    function_id BIGINT NOT NULL REFERENCES functions(id) ON DELETE CASCADE,
    number BIGINT NOT NULL,
    digest TEXT NOT NULL,
    size BIGINT NOT NULL,
    config TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (function_id, number)
);
CREATE TABLE logs (
    id BIGSERIAL PRIMARY KEY,
    function_id BIGINT NOT NULL REFERENCES functions(id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER NOT NULL,
    wall_us BIGINT NOT NULL,
    stderr TEXT NOT NULL,
    cpu_us BIGINT NOT NULL,
    instantiation_us BIGINT NOT NULL,
    peak_memory_bytes BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL
);
CREATE INDEX logs_by_function ON logs (function_id, id);
-- Keyed by the function's name, not its id: usage outlives a deleted function.
CREATE TABLE usage (
    tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    hour BIGINT NOT NULL,
    function TEXT NOT NULL,
    requests BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    wall_us BIGINT NOT NULL,
    cpu_us BIGINT NOT NULL,
    instantiation_us BIGINT NOT NULL,
    memory_kib_us BIGINT NOT NULL,
    peak_memory_bytes BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, hour, function)
);
CREATE INDEX usage_by_hour ON usage (hour);
"#,
    r#"
ALTER TABLE logs ADD COLUMN stdout TEXT NOT NULL DEFAULT '';
CREATE TABLE bundles (
    tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    size BIGINT NOT NULL,
    files BIGINT NOT NULL,
    file_bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, digest)
);
"#,
    r#"
CREATE TABLE kv (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    value BYTEA NOT NULL,
    UNIQUE (tenant_id, bucket, key)
);
CREATE INDEX kv_in_order ON kv (tenant_id, bucket, id);
CREATE TABLE kv_usage (
    tenant_id BIGINT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    keys BIGINT NOT NULL,
    bytes BIGINT NOT NULL
);
"#,
    r#"
CREATE TABLE secrets (
    tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    sealed BYTEA NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
ALTER TABLE usage ADD COLUMN kv_reads BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN kv_writes BIGINT NOT NULL DEFAULT 0;
"#,
    r#"
ALTER TABLE usage ADD COLUMN kv_byte_hours BIGINT NOT NULL DEFAULT 0;
"#,
    r#"
CREATE TABLE shared_artifacts (key TEXT PRIMARY KEY, sha256 TEXT NOT NULL);
"#,
    r#"
CREATE TABLE unreferenced_blobs (
    kind TEXT NOT NULL,
    digest TEXT NOT NULL,
    since BIGINT NOT NULL,
    PRIMARY KEY (kind, digest)
);
CREATE SEQUENCE blob_pin_ids;
CREATE TABLE blob_pins (
    pin BIGINT NOT NULL,
    kind TEXT NOT NULL,
    digest TEXT NOT NULL,
    until BIGINT NOT NULL,
    upload BOOLEAN NOT NULL
);
CREATE INDEX blob_pins_by_blob ON blob_pins (kind, digest);
CREATE INDEX blob_pins_by_pin ON blob_pins (pin);
CREATE INDEX versions_by_digest ON versions (digest);
"#,
    r#"
-- Quotas across the cluster (crates/store/src/grants.rs): requests granted to
-- nodes per tenant and calendar month, and per tenant and second.
CREATE TABLE request_grants (
    tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    month BIGINT NOT NULL,
    granted BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, month)
);
CREATE TABLE rate_grants (
    tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    second BIGINT NOT NULL,
    granted BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, second)
);
"#,
    r#"
-- Custom domains (crates/store/src/domains.rs): granted to one tenant each,
-- their routes by path prefix, their own certificates (the key sealed).
CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL
);
CREATE TABLE domain_routes (
    domain TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
    prefix TEXT NOT NULL,
    function TEXT NOT NULL,
    PRIMARY KEY (domain, prefix)
);
CREATE TABLE domain_certificates (
    domain TEXT PRIMARY KEY REFERENCES domains(name) ON DELETE CASCADE,
    chain_pem TEXT NOT NULL,
    key_sealed BYTEA NOT NULL,
    names TEXT NOT NULL,
    not_after BIGINT NOT NULL,
    source TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- Scheduled runs (crates/store/src/schedules.rs): one row per tick claimed.
CREATE TABLE schedule_runs (
    function_id BIGINT NOT NULL REFERENCES functions(id) ON DELETE CASCADE,
    tick BIGINT NOT NULL,
    version BIGINT NOT NULL,
    node TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    finished_at BIGINT,
    outcome TEXT,
    status INTEGER,
    PRIMARY KEY (function_id, tick)
);
CREATE INDEX schedule_runs_unfinished ON schedule_runs (lease_until) WHERE finished_at IS NULL;
"#,
    r#"
-- Console sessions (crates/store/src/sessions.rs): the sha256 of a session's
-- id, the token it speaks for (revoking it ends the session), its expiry.
CREATE TABLE sessions (
    hash BYTEA PRIMARY KEY,
    token_id BIGINT NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
"#,
    r#"
-- What kind of binary a version is (module, component, http-component), as
-- the deploy detected it; NULL for versions deployed before it was kept.
ALTER TABLE versions ADD COLUMN kind TEXT;
"#,
    r#"
-- The nodes that serve on this store (crates/store/src/nodes.rs): what each
-- last reported of itself, as JSON.
CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    started_at BIGINT NOT NULL,
    seen_at BIGINT NOT NULL,
    stopped BOOLEAN NOT NULL,
    status TEXT NOT NULL
);
"#,
];

/// Serializes migrations across nodes (`pg_advisory_xact_lock` key).
const MIGRATION_LOCK: i64 = 0x6b69_6c6e;

/// How long a query waits for a connection, or a connection to be made, before
/// the store is reported unavailable.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Connections a node keeps to PostgreSQL at most.
const POOL_SIZE: usize = 16;

/// The channel deployment changes are notified on.
const CHANGES: &str = "kiln_changes";

/// The payload of a change to custom domains (a tenant/function payload
/// always has a `/`).
const DOMAINS_CHANGED: &str = "!domains";

/// Metadata in PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
    tls: tls::Tls,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`,
    /// with `?sslmode=require|verify-ca|verify-full&sslrootcert=FILE` for TLS,
    /// as `postgres/tls.rs` says) and brings its schema up to date.
    pub async fn connect(url: &str) -> StoreResult<PostgresStore> {
        let (mut config, tls) = tls::parse(url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(TIMEOUT);
        }
        let recycling = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            tls::Tls::Plain => Manager::from_config(config.clone(), NoTls, recycling()),
            tls::Tls::Rustls(connect) => {
                Manager::from_config(config.clone(), connect.clone(), recycling())
            }
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(TIMEOUT))
            .create_timeout(Some(TIMEOUT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::internal("PostgreSQL pool", e))?;
        let store = PostgresStore { pool, config, tls };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Client> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::unavailable("PostgreSQL", e))
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS kiln_migrations (number INTEGER PRIMARY KEY)")
            .await
            .map_err(pg)?;
        let applied: i64 = tx
            .query_one("SELECT COUNT(*) FROM kiln_migrations", &[])
            .await
            .map_err(pg)?
            .get(0);
        let applied = usize::try_from(applied).unwrap_or(0);
        check_schema(applied, MIGRATIONS.len())?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            tx.batch_execute(sql).await.map_err(pg)?;
            let number = i32::try_from(i + 1).unwrap_or(i32::MAX);
            tx.execute(
                "INSERT INTO kiln_migrations (number) VALUES ($1)",
                &[&number],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)
    }
}

/// A PostgreSQL error as a store error: a full disk is `Full`, a lost or refused
/// connection `Unavailable`, the rest `Internal`.
pub(crate) fn pg(e: tokio_postgres::Error) -> StoreError {
    let detailed = || match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {}", db.message()),
        None => "PostgreSQL".to_owned(),
    };
    match e.code() {
        Some(code) if *code == SqlState::DISK_FULL => StoreError::full(detailed(), e),
        Some(_) => StoreError::internal(detailed(), e),
        None if e.is_closed() || e.to_string().contains("connect") => {
            StoreError::unavailable("PostgreSQL", e)
        }
        None => StoreError::internal("PostgreSQL", e),
    }
}

/// BIGINT columns hold i64: a count past it is kept at the largest one.
pub(crate) fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored non-negative BIGINT read back as u64.
pub(crate) fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn number(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Tells every watching node that `function` changed, when `client`'s
/// transaction commits.
async fn notify(client: &impl GenericClient, tenant: TenantId, function: &str) -> StoreResult<()> {
    client
        .execute(
            "SELECT pg_notify($1, (SELECT name FROM tenants WHERE id = $2) || '/' || $3)",
            &[&CHANGES, &tenant, &function],
        )
        .await
        .map_err(pg)?;
    Ok(())
}

/// Listens for changes until `changes` is dropped, reconnecting (and saying
/// that changes may have been missed) whenever the connection is lost.
async fn listen<T>(config: tokio_postgres::Config, tls: T, changes: mpsc::UnboundedSender<Change>)
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Clone,
    T::Stream: Send + 'static,
{
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let listening = async { client.batch_execute(&format!("LISTEN {CHANGES}")).await };
                let mut listening = std::pin::pin!(listening);
                let mut subscribed = false;
                loop {
                    tokio::select! {
                        done = &mut listening, if !subscribed => {
                            if done.is_err() {
                                break;
                            }
                            subscribed = true;
                            // Whatever changed before this connection listened.
                            if changes.send(Change::Everything).is_err() {
                                return;
                            }
                        }
                        message = std::future::poll_fn(|cx| connection.poll_message(cx)) => {
                            match message {
                                Some(Ok(AsyncMessage::Notification(n))) => {
                                    let change = match n.payload().split_once('/') {
                                        _ if n.payload() == DOMAINS_CHANGED => Change::Domains,
                                        Some((tenant, function)) => Change::Function {
                                            tenant: tenant.to_owned(),
                                            function: function.to_owned(),
                                        },
                                        None => Change::Everything,
                                    };
                                    if changes.send(change).is_err() {
                                        return;
                                    }
                                }
                                Some(Ok(_)) => {}
                                Some(Err(_)) | None => break,
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for deployment changes; retrying"),
        }
        if changes.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn not_found(function: &str) -> StoreError {
    StoreError::NotFound(format!("no function named {function:?}"))
}

fn internal(message: impl std::fmt::Display) -> StoreError {
    StoreError::inconsistent(message.to_string())
}

fn read_tenant(row: &Row) -> Tenant {
    Tenant {
        id: row.get(0),
        name: row.get(1),
        created_at: row.get(2),
    }
}

fn read_version(row: &Row, first: usize) -> StoreResult<Version> {
    let config: String = row.get(first + 3);
    Ok(Version {
        number: number(row.get(first)),
        digest: parse_digest(row.get(first + 1))?,
        size: unsigned(row.get(first + 2)),
        config: serde_json::from_str(&config).map_err(internal)?,
        created_at: row.get(first + 4),
        kind: row
            .get::<_, Option<&str>>(first + 5)
            .and_then(BinaryKind::from_name),
    })
}

fn parse_digest(text: &str) -> StoreResult<Digest> {
    text.parse()
        .map_err(|e| StoreError::internal("stored digest", e))
}

async fn function_id(
    client: &impl GenericClient,
    tenant: TenantId,
    name: &str,
) -> StoreResult<Option<i64>> {
    Ok(client
        .query_opt(
            "SELECT id FROM functions WHERE tenant_id = $1 AND name = $2",
            &[&tenant, &name],
        )
        .await
        .map_err(pg)?
        .map(|r| r.get(0)))
}

async fn version(
    client: &impl GenericClient,
    function_id: i64,
    number: i64,
) -> StoreResult<Option<Version>> {
    client
        .query_opt(
            "SELECT number, digest, size, config, created_at, kind FROM versions
             WHERE function_id = $1 AND number = $2",
            &[&function_id, &number],
        )
        .await
        .map_err(pg)?
        .map(|r| read_version(&r, 0))
        .transpose()
}

#[async_trait]
impl MetadataStore for PostgresStore {
    async fn authenticate(&self, hash: TokenHash) -> StoreResult<Option<Principal>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT t.tenant_id, n.name, n.created_at FROM tokens t
                 LEFT JOIN tenants n ON n.id = t.tenant_id
                 WHERE t.hash = $1 AND t.revoked_at IS NULL",
                &[&&hash[..]],
            )
            .await
            .map_err(pg)?;
        Ok(row.map(|r| Principal::of_token(r.get(0), r.get(1), r.get(2))))
    }

    async fn has_admin(&self) -> StoreResult<bool> {
        let client = self.client().await?;
        Ok(client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM tokens WHERE tenant_id IS NULL AND revoked_at IS NULL)",
                &[],
            )
            .await
            .map_err(pg)?
            .get(0))
    }

    async fn create_tenant(&self, name: &str) -> StoreResult<Tenant> {
        let client = self.client().await?;
        let created_at = now();
        let row = client
            .query_opt(
                "INSERT INTO tenants (name, created_at) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING RETURNING id",
                &[&name, &created_at],
            )
            .await
            .map_err(pg)?;
        match row {
            None => Err(StoreError::Conflict(format!(
                "tenant {name:?} already exists"
            ))),
            Some(row) => Ok(Tenant {
                id: row.get(0),
                name: name.to_owned(),
                created_at,
            }),
        }
    }

    async fn delete_tenant(&self, name: &str) -> StoreResult<Option<Vec<String>>> {
        use kv::{ATTEMPTS, retryable};
        let mut client = self.client().await?;
        // A key-value write racing the cascade may deadlock with it: retried.
        in_transaction!(client, |tx| async {
            let Some(row) = tx
                .query_opt(
                    "SELECT id FROM tenants WHERE name = $1 FOR UPDATE",
                    &[&name],
                )
                .await?
            else {
                return Ok(Ok(None));
            };
            let id: TenantId = row.get(0);
            let functions: Vec<String> = tx
                .query("SELECT name FROM functions WHERE tenant_id = $1", &[&id])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            // Every node forgets the functions once this commits.
            for function in &functions {
                tx.execute(
                    "SELECT pg_notify($1, $2 || '/' || $3)",
                    &[&CHANGES, &name, function],
                )
                .await?;
            }
            // Every table refers to the tenant ON DELETE CASCADE.
            tx.execute("DELETE FROM tenants WHERE id = $1", &[&id])
                .await?;
            Ok(Ok(Some(functions)))
        })
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, name, created_at FROM tenants ORDER BY name",
                &[],
            )
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(read_tenant).collect())
    }

    async fn tenant(&self, name: &str) -> StoreResult<Option<Tenant>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id, name, created_at FROM tenants WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(pg)?;
        Ok(row.as_ref().map(read_tenant))
    }

    async fn create_token(
        &self,
        tenant: Option<TenantId>,
        name: &str,
        hash: TokenHash,
    ) -> StoreResult<TokenInfo> {
        let client = self.client().await?;
        let created_at = now();
        let row = client
            .query_one(
                "INSERT INTO tokens (tenant_id, name, hash, created_at) VALUES ($1, $2, $3, $4)
                 RETURNING id",
                &[&tenant, &name, &&hash[..], &created_at],
            )
            .await
            .map_err(pg)?;
        Ok(TokenInfo {
            id: row.get(0),
            name: name.to_owned(),
            created_at,
            revoked: false,
        })
    }

    async fn list_tokens(&self, tenant: Option<TenantId>) -> StoreResult<Vec<TokenInfo>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, name, created_at, revoked_at IS NOT NULL FROM tokens
                 WHERE tenant_id IS NOT DISTINCT FROM $1 ORDER BY id",
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| TokenInfo {
                id: r.get(0),
                name: r.get(1),
                created_at: r.get(2),
                revoked: r.get(3),
            })
            .collect())
    }

    async fn revoke_token(&self, tenant: Option<TenantId>, id: i64) -> StoreResult<bool> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE tokens SET revoked_at = $1
                 WHERE id = $2 AND tenant_id IS NOT DISTINCT FROM $3 AND revoked_at IS NULL",
                &[&now(), &id, &tenant],
            )
            .await
            .map_err(pg)?;
        Ok(changed == 1)
    }

    async fn deploy(
        &self,
        tenant: TenantId,
        function: &str,
        new: NewVersion,
    ) -> StoreResult<Version> {
        let config = serde_json::to_string(&new.config).map_err(internal)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let at = now();
        // Creates the function row if it is new, and locks it either way: two
        // deploys of one function take their version numbers one after the other.
        tx.execute(
            "INSERT INTO functions (tenant_id, name, current_version, created_at, updated_at)
             VALUES ($1, $2, 0, $3, $3) ON CONFLICT (tenant_id, name) DO NOTHING",
            &[&tenant, &function, &at],
        )
        .await
        .map_err(pg)?;
        let id: i64 = tx
            .query_one(
                "SELECT id FROM functions WHERE tenant_id = $1 AND name = $2 FOR UPDATE",
                &[&tenant, &function],
            )
            .await
            .map_err(pg)?
            .get(0);
        let last: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(number), 0) FROM versions WHERE function_id = $1",
                &[&id],
            )
            .await
            .map_err(pg)?
            .get(0);
        let number = last + 1;
        tx.execute(
            "INSERT INTO versions (function_id, number, digest, size, config, created_at, kind)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &id,
                &number,
                &new.digest.to_hex(),
                &big(new.size),
                &config,
                &at,
                &new.kind.as_str(),
            ],
        )
        .await
        .map_err(pg)?;
        tx.execute(
            "UPDATE functions SET current_version = $1, updated_at = $2 WHERE id = $3",
            &[&number, &at, &id],
        )
        .await
        .map_err(pg)?;
        let version = version(&tx, id, number)
            .await?
            .ok_or_else(|| internal("version vanished"))?;
        notify(&tx, tenant, function).await?;
        tx.commit().await.map_err(pg)?;
        Ok(version)
    }

    async fn resolve(&self, tenant: &str, function: &str) -> StoreResult<Option<Deployment>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT f.id, v.number, v.digest, v.config, t.id FROM functions f
                 JOIN tenants t ON t.id = f.tenant_id
                 JOIN versions v ON v.function_id = f.id AND v.number = f.current_version
                 WHERE t.name = $1 AND f.name = $2",
                &[&tenant, &function],
            )
            .await
            .map_err(pg)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let digest: String = row.get(2);
        let config: String = row.get(3);
        Ok(Some(Deployment {
            function_id: row.get(0),
            tenant_id: row.get(4),
            tenant: tenant.to_owned(),
            function: function.to_owned(),
            version: number(row.get(1)),
            digest: parse_digest(&digest)?,
            config: serde_json::from_str(&config).map_err(internal)?,
        }))
    }

    async fn list_functions(&self, tenant: TenantId) -> StoreResult<Vec<FunctionSummary>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT f.name, f.created_at, f.updated_at,
                        (SELECT COUNT(*) FROM versions c WHERE c.function_id = f.id),
                        v.number, v.digest, v.size, v.config, v.created_at, v.kind
                 FROM functions f
                 JOIN versions v ON v.function_id = f.id AND v.number = f.current_version
                 WHERE f.tenant_id = $1 ORDER BY f.name",
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|r| {
                Ok(FunctionSummary {
                    name: r.get(0),
                    created_at: r.get(1),
                    updated_at: r.get(2),
                    versions: number(r.get(3)),
                    current: read_version(r, 4)?,
                })
            })
            .collect()
    }

    async fn function(&self, tenant: TenantId, name: &str) -> StoreResult<Option<FunctionDetail>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id, current_version, created_at, updated_at FROM functions
                 WHERE tenant_id = $1 AND name = $2",
                &[&tenant, &name],
            )
            .await
            .map_err(pg)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: i64 = row.get(0);
        let versions = client
            .query(
                "SELECT number, digest, size, config, created_at, kind FROM versions
                 WHERE function_id = $1 ORDER BY number DESC",
                &[&id],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|r| read_version(r, 0))
            .collect::<StoreResult<_>>()?;
        Ok(Some(FunctionDetail {
            name: name.to_owned(),
            current_version: number(row.get(1)),
            versions,
            created_at: row.get(2),
            updated_at: row.get(3),
            tier: None,
        }))
    }

    async fn rollback(
        &self,
        tenant: TenantId,
        function: &str,
        to: Option<u32>,
    ) -> StoreResult<Version> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let row = tx
            .query_opt(
                "SELECT id, current_version FROM functions
                 WHERE tenant_id = $1 AND name = $2 FOR UPDATE",
                &[&tenant, &function],
            )
            .await
            .map_err(pg)?
            .ok_or_else(|| not_found(function))?;
        let (id, current): (i64, i64) = (row.get(0), row.get(1));
        let target = match to {
            Some(n) => i64::from(n),
            None => tx
                .query_one(
                    "SELECT MAX(number) FROM versions WHERE function_id = $1 AND number < $2",
                    &[&id, &current],
                )
                .await
                .map_err(pg)?
                .get::<_, Option<i64>>(0)
                .ok_or_else(|| {
                    StoreError::Conflict(format!(
                        "{function} is at its first version ({current}): nothing to roll back to"
                    ))
                })?,
        };
        let version = version(&tx, id, target)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("{function} has no version {target}")))?;
        tx.execute(
            "UPDATE functions SET current_version = $1, updated_at = $2 WHERE id = $3",
            &[&target, &now(), &id],
        )
        .await
        .map_err(pg)?;
        notify(&tx, tenant, function).await?;
        tx.commit().await.map_err(pg)?;
        Ok(version)
    }

    async fn delete_function(&self, tenant: TenantId, function: &str) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let deleted = tx
            .execute(
                "DELETE FROM functions WHERE tenant_id = $1 AND name = $2",
                &[&tenant, &function],
            )
            .await
            .map_err(pg)?;
        notify(&tx, tenant, function).await?;
        tx.commit().await.map_err(pg)?;
        Ok(deleted == 1)
    }

    async fn record_artifact(&self, key: &str, sha256: Digest) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO shared_artifacts (key, sha256) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET sha256 = excluded.sha256",
                &[&key, &sha256.to_string()],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn artifact_sha256(&self, key: &str) -> StoreResult<Option<Digest>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT sha256 FROM shared_artifacts WHERE key = $1",
                &[&key],
            )
            .await
            .map_err(pg)?;
        row.map(|r| parse_digest(&r.get::<_, String>(0)))
            .transpose()
    }

    async fn referenced_digests(&self) -> StoreResult<Vec<Digest>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT DISTINCT digest FROM versions", &[])
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|r| parse_digest(&r.get::<_, String>(0)))
            .collect()
    }

    async fn append_logs(&self, entries: Vec<NewLogEntry>) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // One statement for the whole batch (arrays, one element per entry):
        // a round trip per entry would cap a node at a few thousand a second.
        let column = |f: &dyn Fn(&NewLogEntry) -> i64| entries.iter().map(f).collect::<Vec<_>>();
        let function_ids = column(&|e| e.function_id);
        let versions = column(&|e| i64::from(e.version));
        let ats = column(&|e| e.at);
        let statuses = column(&|e| i64::from(e.status));
        let walls = column(&|e| big(e.wall_us));
        let cpus = column(&|e| big(e.cpu_us));
        let instantiations = column(&|e| big(e.instantiation_us));
        let peaks = column(&|e| big(e.peak_memory_bytes));
        let ins = column(&|e| big(e.bytes_in));
        let outs = column(&|e| big(e.bytes_out));
        let outcomes: Vec<&str> = entries.iter().map(|e| e.outcome.as_str()).collect();
        let stderrs: Vec<&str> = entries.iter().map(|e| e.stderr.as_str()).collect();
        let stdouts: Vec<&str> = entries.iter().map(|e| e.stdout.as_str()).collect();
        let touched: Vec<i64> = entries
            .iter()
            .map(|e| e.function_id)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute(
            // Ids in the batch's order (newest last): the semi-join may
            // reorder rows, so they are sorted back by their position.
            "INSERT INTO logs (function_id, version, at, outcome, status, wall_us, stderr,
               cpu_us, instantiation_us, peak_memory_bytes, bytes_in, bytes_out, stdout)
             SELECT e.function_id, e.version, e.at, e.outcome, e.status, e.wall_us,
                    e.stderr, e.cpu_us, e.instantiation_us, e.peak_memory_bytes,
                    e.bytes_in, e.bytes_out, e.stdout
             FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[],
               $5::BIGINT[], $6::BIGINT[], $7::TEXT[], $8::BIGINT[], $9::BIGINT[],
               $10::BIGINT[], $11::BIGINT[], $12::BIGINT[], $13::TEXT[])
               WITH ORDINALITY
               AS e(function_id, version, at, outcome, status, wall_us, stderr, cpu_us,
                    instantiation_us, peak_memory_bytes, bytes_in, bytes_out, stdout, n)
             WHERE EXISTS (SELECT 1 FROM functions f WHERE f.id = e.function_id)
             ORDER BY e.n",
            &[
                &function_ids,
                &versions,
                &ats,
                &outcomes,
                &statuses,
                &walls,
                &stderrs,
                &cpus,
                &instantiations,
                &peaks,
                &ins,
                &outs,
                &stdouts,
            ],
        )
        .await
        .map_err(pg)?;
        tx.execute(
            "DELETE FROM logs l USING UNNEST($1::BIGINT[]) AS t(function_id)
             WHERE l.function_id = t.function_id AND l.id <= (
               SELECT id FROM logs WHERE function_id = t.function_id
               ORDER BY id DESC LIMIT 1 OFFSET $2)",
            &[&touched, &i64::from(LOGS_KEPT)],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn logs(
        &self,
        tenant: TenantId,
        function: &str,
        after: Option<i64>,
        limit: u32,
    ) -> StoreResult<Option<Vec<LogEntry>>> {
        let client = self.client().await?;
        let Some(id) = function_id(&client, tenant, function).await? else {
            return Ok(None);
        };
        let columns = "id, version, at, outcome, status, wall_us, stderr, \
                       cpu_us, instantiation_us, peak_memory_bytes, bytes_in, bytes_out, stdout";
        let limit = i64::from(limit);
        let rows = match after {
            Some(after) => client
                .query(
                    &format!(
                        "SELECT {columns} FROM logs WHERE function_id = $1 AND id > $2
                         ORDER BY id LIMIT $3"
                    ),
                    &[&id, &after, &limit],
                )
                .await
                .map_err(pg)?,
            None => {
                let mut newest = client
                    .query(
                        &format!(
                            "SELECT {columns} FROM logs WHERE function_id = $1
                             ORDER BY id DESC LIMIT $2"
                        ),
                        &[&id, &limit],
                    )
                    .await
                    .map_err(pg)?;
                newest.reverse();
                newest
            }
        };
        Ok(Some(
            rows.iter()
                .map(|r| LogEntry {
                    id: r.get(0),
                    version: number(r.get(1)),
                    at: r.get(2),
                    outcome: r.get(3),
                    status: u16::try_from(r.get::<_, i32>(4)).unwrap_or(0),
                    wall_us: unsigned(r.get(5)),
                    stderr: r.get(6),
                    cpu_us: unsigned(r.get(7)),
                    instantiation_us: unsigned(r.get(8)),
                    peak_memory_bytes: unsigned(r.get(9)),
                    bytes_in: unsigned(r.get(10)),
                    bytes_out: unsigned(r.get(11)),
                    stdout: r.get(12),
                })
                .collect(),
        ))
    }

    async fn add_usage(&self, deltas: Vec<UsageDelta>) -> StoreResult<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        usage::add(&mut client, &deltas).await
    }

    async fn usage(&self, query: UsageQuery) -> StoreResult<Vec<UsageRow>> {
        let client = self.client().await?;
        usage::rows(&client, &query).await
    }

    async fn usage_by_tenant(&self, since: i64) -> StoreResult<Vec<(TenantId, UsageTotals)>> {
        let client = self.client().await?;
        usage::by_tenant(&client, since).await
    }

    async fn put_secret(&self, tenant: TenantId, name: &str, sealed: Vec<u8>) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO secrets (tenant_id, name, sealed, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant_id, name) DO UPDATE
                     SET sealed = excluded.sealed, updated_at = excluded.updated_at",
                &[&tenant, &name, &sealed, &now()],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn secrets(
        &self,
        tenant: TenantId,
        names: Vec<String>,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name, sealed FROM secrets WHERE tenant_id = $1 AND name = ANY($2)
                 ORDER BY name",
                &[&tenant, &names],
            )
            .await
            .map_err(pg)?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn list_secrets(&self, tenant: TenantId) -> StoreResult<Vec<SecretInfo>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name, updated_at FROM secrets WHERE tenant_id = $1 ORDER BY name",
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        Ok(rows
            .into_iter()
            .map(|r| SecretInfo {
                name: r.get(0),
                updated_at: r.get(1),
            })
            .collect())
    }

    async fn delete_secret(&self, tenant: TenantId, name: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        let deleted = client
            .execute(
                "DELETE FROM secrets WHERE tenant_id = $1 AND name = $2",
                &[&tenant, &name],
            )
            .await
            .map_err(pg)?;
        Ok(deleted > 0)
    }

    async fn quotas(&self) -> StoreResult<Vec<(TenantId, Quota)>> {
        let client = self.client().await?;
        usage::quotas(&client).await
    }

    async fn set_quota(&self, tenant: TenantId, quota: Quota) -> StoreResult<()> {
        let client = self.client().await?;
        usage::set_quota(&client, tenant, &quota).await
    }

    async fn add_bundle(&self, tenant: TenantId, bundle: &BundleInfo) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO bundles (tenant_id, digest, size, files, file_bytes, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                &[
                    &tenant,
                    &bundle.digest.to_hex(),
                    &big(bundle.size),
                    &big(bundle.files),
                    &big(bundle.file_bytes),
                    &now(),
                ],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn bundle(&self, tenant: TenantId, digest: &Digest) -> StoreResult<Option<BundleInfo>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT size, files, file_bytes FROM bundles WHERE tenant_id = $1 AND digest = $2",
                &[&tenant, &digest.to_hex()],
            )
            .await
            .map_err(pg)?;
        Ok(row.map(|r| BundleInfo {
            digest: *digest,
            size: unsigned(r.get(0)),
            files: unsigned(r.get(1)),
            file_bytes: unsigned(r.get(2)),
        }))
    }

    async fn watch(&self) -> StoreResult<Option<mpsc::UnboundedReceiver<Change>>> {
        let (sender, receiver) = mpsc::unbounded_channel();
        match &self.tls {
            tls::Tls::Plain => tokio::spawn(listen(self.config.clone(), NoTls, sender)),
            tls::Tls::Rustls(connect) => {
                tokio::spawn(listen(self.config.clone(), connect.clone(), sender))
            }
        };
        Ok(Some(receiver))
    }
}
