//! The SQLite store's schema: its migrations, applied in order at open and
//! counted by `PRAGMA user_version`.

use super::internal;
use crate::error::{StoreResult, check_schema};
use rusqlite::Connection;

/// Schema migrations, applied in order; `user_version` counts those applied.
/// Append only: never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY,
    tenant_id INTEGER REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE functions (
    id INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    current_version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE TABLE versions (
    function_id INTEGER NOT NULL REFERENCES functions(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    config TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (function_id, number)
);
CREATE TABLE logs (
    id INTEGER PRIMARY KEY,
    function_id INTEGER NOT NULL REFERENCES functions(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    at INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER NOT NULL,
    wall_us INTEGER NOT NULL,
    stderr TEXT NOT NULL
);
CREATE INDEX logs_by_function ON logs (function_id, id);
"#,
    r#"
ALTER TABLE logs ADD COLUMN cpu_us INTEGER NOT NULL DEFAULT 0;
ALTER TABLE logs ADD COLUMN instantiation_us INTEGER NOT NULL DEFAULT 0;
ALTER TABLE logs ADD COLUMN peak_memory_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE logs ADD COLUMN bytes_in INTEGER NOT NULL DEFAULT 0;
ALTER TABLE logs ADD COLUMN bytes_out INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN quota TEXT NOT NULL DEFAULT '{}';
-- Keyed by the function's name, not its id: usage outlives a deleted function.
CREATE TABLE usage (
    tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    hour INTEGER NOT NULL,
    function TEXT NOT NULL,
    requests INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    wall_us INTEGER NOT NULL,
    cpu_us INTEGER NOT NULL,
    instantiation_us INTEGER NOT NULL,
    memory_kib_us INTEGER NOT NULL,
    peak_memory_bytes INTEGER NOT NULL,
    bytes_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, hour, function)
);
CREATE INDEX usage_by_hour ON usage (hour);
"#,
    r#"
ALTER TABLE logs ADD COLUMN stdout TEXT NOT NULL DEFAULT '';
CREATE TABLE bundles (
    tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    files INTEGER NOT NULL,
    file_bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, digest)
);
"#,
    r#"
-- AUTOINCREMENT: ids are never reused, so a listing's cursor stays valid.
CREATE TABLE kv (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    UNIQUE (tenant_id, bucket, key)
);
CREATE INDEX kv_in_order ON kv (tenant_id, bucket, id);
CREATE TABLE kv_usage (
    tenant_id INTEGER PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    keys INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
"#,
    r#"
CREATE TABLE secrets (
    tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    sealed BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
ALTER TABLE usage ADD COLUMN kv_reads INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN kv_writes INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
ALTER TABLE usage ADD COLUMN kv_byte_hours INTEGER NOT NULL DEFAULT 0;
-- Ids of deleted tenants: never given to a new one (tenants.id is a rowid,
-- which SQLite would otherwise reuse after the highest is deleted), so
-- nothing still holding an old id can reach a new tenant's data.
CREATE TABLE retired_tenants (id INTEGER PRIMARY KEY);
"#,
    r#"
-- The sha256 of each compiled artifact a node shared, by its key in the
-- bucket: what a node downloading it checks the bytes against.
CREATE TABLE shared_artifacts (key TEXT PRIMARY KEY, sha256 TEXT NOT NULL);
"#,
    r#"
-- The blob collector's bookkeeping (crates/store/src/gc.rs): since when each
-- blob no version refers to has been so, and the pins of deploys and uploads
-- in progress.
CREATE TABLE unreferenced_blobs (
    kind TEXT NOT NULL,
    digest TEXT NOT NULL,
    since INTEGER NOT NULL,
    PRIMARY KEY (kind, digest)
);
CREATE TABLE blob_pins (
    pin INTEGER NOT NULL,
    kind TEXT NOT NULL,
    digest TEXT NOT NULL,
    until INTEGER NOT NULL,
    -- Taken by an upload (released when a version mounts the bundle), not by
    -- a deploy (released by its pin id).
    upload BOOLEAN NOT NULL
);
CREATE INDEX blob_pins_by_blob ON blob_pins (kind, digest);
CREATE INDEX blob_pins_by_pin ON blob_pins (pin);
CREATE INDEX versions_by_digest ON versions (digest);
"#,
    r#"
-- Custom domains (crates/store/src/domains.rs): granted to one tenant each,
-- their routes by path prefix, their own certificates (the key sealed).
CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
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
    key_sealed BLOB NOT NULL,
    names TEXT NOT NULL,
    not_after INTEGER NOT NULL,
    source TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
-- Scheduled runs (crates/store/src/schedules.rs): one row per tick claimed.
CREATE TABLE schedule_runs (
    function_id INTEGER NOT NULL REFERENCES functions(id) ON DELETE CASCADE,
    tick INTEGER NOT NULL,
    version INTEGER NOT NULL,
    node TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    lease_until INTEGER NOT NULL,
    finished_at INTEGER,
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
    hash BLOB PRIMARY KEY,
    token_id INTEGER NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
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
    started_at INTEGER NOT NULL,
    seen_at INTEGER NOT NULL,
    stopped INTEGER NOT NULL,
    status TEXT NOT NULL
);
"#,
];

pub(super) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let applied: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(internal)?;
    check_schema(applied, MIGRATIONS.len())?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction().map_err(internal)?;
        tx.execute_batch(sql).map_err(internal)?;
        tx.pragma_update(None, "user_version", i + 1)
            .map_err(internal)?;
        tx.commit().map_err(internal)?;
    }
    Ok(())
}
