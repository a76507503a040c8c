//! Usage totals and quotas in PostgreSQL: upserts that add (saturating at the
//! largest BIGINT), and the reads behind bills and quota checks.

use super::{big, pg, unsigned};
use crate::error::{StoreError, StoreResult};
use crate::usage::{UsageDelta, UsageQuery, UsageRow};
use deadpool_postgres::GenericClient;
use kiln_api::{Quota, TenantId, UsageTotals};
use tokio_postgres::Row;

/// The summed columns, in [`UsageTotals`] order.
const TOTALS: &str = "requests, failures, wall_us, cpu_us, instantiation_us, memory_kib_us, \
                      peak_memory_bytes, bytes_in, bytes_out, kv_reads, kv_writes, \
                      kv_byte_hours";

/// `column + excluded.column`, kept at the largest BIGINT instead of overflowing.
fn sum(column: &str) -> String {
    format!(
        "{column} = LEAST(usage.{column}::NUMERIC + excluded.{column}::NUMERIC, {max})::BIGINT",
        max = i64::MAX
    )
}

fn read_totals(r: &Row, first: usize) -> UsageTotals {
    let at = |i: usize| unsigned(r.get::<_, i64>(first + i));
    UsageTotals {
        requests: at(0),
        failures: at(1),
        wall_us: at(2),
        cpu_us: at(3),
        instantiation_us: at(4),
        memory_kib_us: at(5),
        peak_memory_bytes: at(6),
        bytes_in: at(7),
        bytes_out: at(8),
        kv_reads: at(9),
        kv_writes: at(10),
        kv_byte_hours: at(11),
    }
}

pub(super) async fn add(
    client: &mut deadpool_postgres::Client,
    deltas: &[UsageDelta],
) -> StoreResult<()> {
    let tx = client.transaction().await.map_err(pg)?;
    let sums: Vec<String> = [
        "requests",
        "failures",
        "wall_us",
        "cpu_us",
        "instantiation_us",
        "memory_kib_us",
        "bytes_in",
        "bytes_out",
        "kv_reads",
        "kv_writes",
        "kv_byte_hours",
    ]
    .iter()
    .map(|c| sum(c))
    .collect();
    let upsert = tx
        .prepare(&format!(
            "INSERT INTO usage (tenant_id, hour, function, {TOTALS})
             SELECT $1::BIGINT, $2::BIGINT, $3::TEXT, $4::BIGINT, $5::BIGINT, $6::BIGINT,
               $7::BIGINT, $8::BIGINT, $9::BIGINT, $10::BIGINT, $11::BIGINT, $12::BIGINT,
               $13::BIGINT, $14::BIGINT, $15::BIGINT
             -- A tenant deleted since the invocations ran: nothing to add to.
             WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1)
             ON CONFLICT (tenant_id, hour, function) DO UPDATE SET {},
               peak_memory_bytes = GREATEST(usage.peak_memory_bytes, excluded.peak_memory_bytes)",
            sums.join(", ")
        ))
        .await
        .map_err(pg)?;
    for d in deltas {
        let t = &d.totals;
        tx.execute(
            &upsert,
            &[
                &d.tenant_id,
                &d.hour,
                &d.function,
                &big(t.requests),
                &big(t.failures),
                &big(t.wall_us),
                &big(t.cpu_us),
                &big(t.instantiation_us),
                &big(t.memory_kib_us),
                &big(t.peak_memory_bytes),
                &big(t.bytes_in),
                &big(t.bytes_out),
                &big(t.kv_reads),
                &big(t.kv_writes),
                &big(t.kv_byte_hours),
            ],
        )
        .await
        .map_err(pg)?;
    }
    tx.commit().await.map_err(pg)
}

pub(super) async fn rows(
    client: &impl GenericClient,
    query: &UsageQuery,
) -> StoreResult<Vec<UsageRow>> {
    let rows = client
        .query(
            &format!(
                "SELECT t.name, u.function, u.hour, {TOTALS} FROM usage u
                 JOIN tenants t ON t.id = u.tenant_id
                 WHERE u.hour >= $1 AND u.hour < $2
                   AND ($3::BIGINT IS NULL OR u.tenant_id = $3)
                   AND ($4::TEXT IS NULL OR u.function = $4)
                 ORDER BY t.name, u.function, u.hour"
            ),
            &[&query.since, &query.until, &query.tenant, &query.function],
        )
        .await
        .map_err(pg)?;
    Ok(rows
        .iter()
        .map(|r| UsageRow {
            tenant: r.get(0),
            function: r.get(1),
            hour: r.get(2),
            totals: read_totals(r, 3),
        })
        .collect())
}

pub(super) async fn by_tenant(
    client: &impl GenericClient,
    since: i64,
) -> StoreResult<Vec<(TenantId, UsageTotals)>> {
    // SUM of BIGINT is NUMERIC: kept at the largest BIGINT, cast back.
    let capped = |c: &str| format!("LEAST(SUM({c}), {})::BIGINT", i64::MAX);
    let rows = client
        .query(
            &format!(
                "SELECT tenant_id, {}, {}, {}, {}, {}, {}, MAX(peak_memory_bytes), {}, {}, {}, {}, {}
                 FROM usage WHERE hour >= $1 GROUP BY tenant_id ORDER BY tenant_id",
                capped("requests"),
                capped("failures"),
                capped("wall_us"),
                capped("cpu_us"),
                capped("instantiation_us"),
                capped("memory_kib_us"),
                capped("bytes_in"),
                capped("bytes_out"),
                capped("kv_reads"),
                capped("kv_writes"),
                capped("kv_byte_hours"),
            ),
            &[&since],
        )
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(|r| (r.get(0), read_totals(r, 1))).collect())
}

pub(super) async fn quotas(client: &impl GenericClient) -> StoreResult<Vec<(TenantId, Quota)>> {
    let rows = client
        .query("SELECT id, quota FROM tenants ORDER BY id", &[])
        .await
        .map_err(pg)?;
    rows.iter()
        .map(|r| {
            let id: i64 = r.get(0);
            let json: String = r.get(1);
            let quota = serde_json::from_str(&json)
                .map_err(|e| StoreError::internal(format!("quota of tenant {id}"), e))?;
            Ok((id, quota))
        })
        .collect()
}

pub(super) async fn set_quota(
    client: &impl GenericClient,
    tenant: TenantId,
    quota: &Quota,
) -> StoreResult<()> {
    let json = serde_json::to_string(quota).map_err(|e| StoreError::internal("quota", e))?;
    let changed = client
        .execute(
            "UPDATE tenants SET quota = $2 WHERE id = $1",
            &[&tenant, &json],
        )
        .await
        .map_err(pg)?;
    match changed {
        0 => Err(StoreError::NotFound(format!("no tenant with id {tenant}"))),
        _ => Ok(()),
    }
}

/// Records, for `hour`, every tenant's stored key-value bytes, keeping the
/// most seen in the hour: [`crate::KvStore::kv_meter_storage`].
pub(super) async fn meter_storage(client: &impl GenericClient, hour: i64) -> StoreResult<u64> {
    client
        .execute(
            &format!(
                "INSERT INTO usage (tenant_id, hour, function, {TOTALS})
             SELECT tenant_id, $1::BIGINT, $2::TEXT, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, bytes
             FROM kv_usage WHERE bytes > 0
             ON CONFLICT (tenant_id, hour, function) DO UPDATE SET
               kv_byte_hours = GREATEST(usage.kv_byte_hours, excluded.kv_byte_hours)"
            ),
            &[&hour, &kiln_api::STORAGE],
        )
        .await
        .map_err(pg)
}
