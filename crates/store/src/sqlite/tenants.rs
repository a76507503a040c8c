//! Creating and deleting tenants in SQLite. A tenant's id is a rowid, which
//! SQLite would give again after the highest is deleted; the ids of deleted
//! tenants are kept in `retired_tenants` and a new tenant gets one past every
//! id ever used, so nothing still holding an old id (usage in flight, a cached
//! quota) can reach a new tenant.

use super::internal;
use crate::error::{StoreError, StoreResult};
use crate::model::now;
use kiln_api::Tenant;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

pub(super) fn create(conn: &mut Connection, name: String) -> StoreResult<Tenant> {
    let created_at = now();
    let inserted = conn.execute(
        "INSERT INTO tenants (id, name, created_at)
         SELECT 1 + MAX(COALESCE((SELECT MAX(id) FROM tenants), 0),
                        COALESCE((SELECT MAX(id) FROM retired_tenants), 0)), ?1, ?2
         WHERE true -- (an upsert's SELECT needs a WHERE to parse)
         ON CONFLICT DO NOTHING",
        params![name, created_at],
    );
    match inserted.map_err(internal)? {
        0 => Err(StoreError::Conflict(format!(
            "tenant {name:?} already exists"
        ))),
        _ => Ok(Tenant {
            id: conn.last_insert_rowid(),
            name,
            created_at,
        }),
    }
}

/// Deletes the tenant `name` and, by the schema's cascades, all it owns;
/// answers its functions' names, or `None` if there is no such tenant.
pub(super) fn delete(conn: &mut Connection, name: &str) -> StoreResult<Option<Vec<String>>> {
    // IMMEDIATE: the write lock first, so the key-value writer's next commit
    // sees the tenant gone, not half of it.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(internal)?;
    let Some(id) = tx
        .query_row("SELECT id FROM tenants WHERE name = ?1", [name], |r| {
            r.get::<_, i64>(0)
        })
        .optional()
        .map_err(internal)?
    else {
        return Ok(None);
    };
    let functions = {
        let mut stmt = tx
            .prepare("SELECT name FROM functions WHERE tenant_id = ?1")
            .map_err(internal)?;
        stmt.query_map([id], |r| r.get::<_, String>(0))
            .map_err(internal)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(internal)?
    };
    tx.execute("DELETE FROM tenants WHERE id = ?1", [id])
        .map_err(internal)?;
    tx.execute(
        "INSERT OR IGNORE INTO retired_tenants (id) VALUES (?1)",
        [id],
    )
    .map_err(internal)?;
    tx.commit().map_err(internal)?;
    Ok(Some(functions))
}
