//! Usage totals and quotas in SQLite: upserts that add, and the reads behind bills
//! and quota checks.

use super::internal;
use crate::error::{StoreError, StoreResult};
use crate::usage::{UsageDelta, UsageQuery, UsageRow};
use kiln_api::{Quota, TenantId, UsageTotals};
use rusqlite::{Connection, params};

/// SQLite integers are i64: a total past it is kept at the largest one.
fn stored(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The summed columns, in [`UsageTotals`] order.
const TOTALS: &str = "requests, failures, wall_us, cpu_us, instantiation_us, memory_kib_us, \
                      peak_memory_bytes, bytes_in, bytes_out, kv_reads, kv_writes, \
                      kv_byte_hours";

fn read_totals(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<UsageTotals> {
    let at = |i: usize| -> rusqlite::Result<u64> {
        let v: i64 = r.get(first + i)?;
        Ok(u64::try_from(v).unwrap_or(0))
    };
    Ok(UsageTotals {
        requests: at(0)?,
        failures: at(1)?,
        wall_us: at(2)?,
        cpu_us: at(3)?,
        instantiation_us: at(4)?,
        memory_kib_us: at(5)?,
        peak_memory_bytes: at(6)?,
        bytes_in: at(7)?,
        bytes_out: at(8)?,
        kv_reads: at(9)?,
        kv_writes: at(10)?,
        kv_byte_hours: at(11)?,
    })
}

pub(super) fn add(conn: &mut Connection, deltas: &[UsageDelta]) -> StoreResult<()> {
    let tx = conn.transaction().map_err(internal)?;
    {
        // `MIN(.., i64::MAX)`: an overflowing sum turns REAL in SQLite; keep it an integer.
        let mut upsert = tx
            .prepare_cached(&format!(
                "INSERT INTO usage (tenant_id, hour, function, {TOTALS})
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15
                 -- A tenant deleted since the invocations ran: nothing to add to.
                 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = ?1)
                 ON CONFLICT (tenant_id, hour, function) DO UPDATE SET
                   requests = MIN(requests + excluded.requests, {max}),
                   failures = MIN(failures + excluded.failures, {max}),
                   wall_us = MIN(wall_us + excluded.wall_us, {max}),
                   cpu_us = MIN(cpu_us + excluded.cpu_us, {max}),
                   instantiation_us = MIN(instantiation_us + excluded.instantiation_us, {max}),
                   memory_kib_us = MIN(memory_kib_us + excluded.memory_kib_us, {max}),
                   peak_memory_bytes = MAX(peak_memory_bytes, excluded.peak_memory_bytes),
                   bytes_in = MIN(bytes_in + excluded.bytes_in, {max}),
                   bytes_out = MIN(bytes_out + excluded.bytes_out, {max}),
                   kv_reads = MIN(kv_reads + excluded.kv_reads, {max}),
                   kv_writes = MIN(kv_writes + excluded.kv_writes, {max}),
                   kv_byte_hours = MIN(kv_byte_hours + excluded.kv_byte_hours, {max})",
                max = i64::MAX
            ))
            .map_err(internal)?;
        for d in deltas {
            let t = &d.totals;
            upsert
                .execute(params![
                    d.tenant_id,
                    d.hour,
                    d.function,
                    stored(t.requests),
                    stored(t.failures),
                    stored(t.wall_us),
                    stored(t.cpu_us),
                    stored(t.instantiation_us),
                    stored(t.memory_kib_us),
                    stored(t.peak_memory_bytes),
                    stored(t.bytes_in),
                    stored(t.bytes_out),
                    stored(t.kv_reads),
                    stored(t.kv_writes),
                    stored(t.kv_byte_hours),
                ])
                .map_err(internal)?;
        }
    }
    tx.commit().map_err(internal)
}

pub(super) fn rows(conn: &mut Connection, query: &UsageQuery) -> StoreResult<Vec<UsageRow>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT t.name, u.function, u.hour, {TOTALS} FROM usage u
             JOIN tenants t ON t.id = u.tenant_id
             WHERE u.hour >= ?1 AND u.hour < ?2
               AND (?3 IS NULL OR u.tenant_id = ?3)
               AND (?4 IS NULL OR u.function = ?4)
             ORDER BY t.name, u.function, u.hour"
        ))
        .map_err(internal)?;
    let rows = stmt
        .query_map(
            params![query.since, query.until, query.tenant, query.function],
            |r| {
                Ok(UsageRow {
                    tenant: r.get(0)?,
                    function: r.get(1)?,
                    hour: r.get(2)?,
                    totals: read_totals(r, 3)?,
                })
            },
        )
        .map_err(internal)?;
    rows.collect::<Result<_, _>>().map_err(internal)
}

pub(super) fn by_tenant(
    conn: &mut Connection,
    since: i64,
) -> StoreResult<Vec<(TenantId, UsageTotals)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT tenant_id, SUM(requests), SUM(failures), SUM(wall_us), SUM(cpu_us),
               SUM(instantiation_us), SUM(memory_kib_us), MAX(peak_memory_bytes),
               SUM(bytes_in), SUM(bytes_out), SUM(kv_reads), SUM(kv_writes),
               SUM(kv_byte_hours)
             FROM usage WHERE hour >= ?1 GROUP BY tenant_id",
        )
        .map_err(internal)?;
    let rows = stmt
        .query_map(params![since], |r| Ok((r.get(0)?, read_totals(r, 1)?)))
        .map_err(internal)?;
    rows.collect::<Result<_, _>>().map_err(internal)
}

pub(super) fn quotas(conn: &mut Connection) -> StoreResult<Vec<(TenantId, Quota)>> {
    let mut stmt = conn
        .prepare_cached("SELECT id, quota FROM tenants ORDER BY id")
        .map_err(internal)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .map_err(internal)?;
    let mut quotas = Vec::new();
    for row in rows {
        let (id, json) = row.map_err(internal)?;
        let quota = serde_json::from_str(&json)
            .map_err(|e| StoreError::internal(format!("quota of tenant {id}"), e))?;
        quotas.push((id, quota));
    }
    Ok(quotas)
}

pub(super) fn set_quota(conn: &mut Connection, tenant: TenantId, quota: &Quota) -> StoreResult<()> {
    let json = serde_json::to_string(quota).map_err(|e| StoreError::internal("quota", e))?;
    let changed = conn
        .execute(
            "UPDATE tenants SET quota = ?2 WHERE id = ?1",
            params![tenant, json],
        )
        .map_err(internal)?;
    match changed {
        0 => Err(StoreError::NotFound(format!("no tenant with id {tenant}"))),
        _ => Ok(()),
    }
}

/// Records, for `hour`, every tenant's stored key-value bytes, keeping the
/// most seen in the hour: [`crate::KvStore::kv_meter_storage`].
pub(super) fn meter_storage(conn: &mut Connection, hour: i64) -> StoreResult<u64> {
    let rows = conn
        .prepare_cached(&format!(
            "INSERT INTO usage (tenant_id, hour, function, {TOTALS})
             SELECT tenant_id, ?1, ?2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, bytes
             FROM kv_usage WHERE bytes > 0
             ON CONFLICT (tenant_id, hour, function) DO UPDATE SET
               kv_byte_hours = MAX(kv_byte_hours, excluded.kv_byte_hours)"
        ))
        .and_then(|mut s| s.execute(params![hour, kiln_api::STORAGE]))
        .map_err(internal)?;
    Ok(rows as u64)
}
