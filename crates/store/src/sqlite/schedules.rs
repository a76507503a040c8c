//! Scheduled runs in SQLite (the contract is in `schedules.rs`). One node, one
//! writer: a claim's check and insert share a transaction.

use super::{SqliteStore, internal};
use crate::error::{StoreError, StoreResult};
use crate::model::Deployment;
use crate::schedules::{LostRun, RUNS_KEPT, ScheduleStore, ScheduledFunction, TickClaim};
use async_trait::async_trait;
use kiln_api::{FunctionConfig, ScheduledRun, TenantId};
use rusqlite::{TransactionBehavior, params};

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn scheduled_functions(&self) -> StoreResult<Vec<ScheduledFunction>> {
        self.with(|conn| {
            let mut statement = conn
                .prepare(
                    "SELECT f.id, t.id, t.name, f.name, v.number, v.digest, v.config, f.updated_at
                     FROM functions f JOIN tenants t ON t.id = f.tenant_id
                     JOIN versions v ON v.function_id = f.id AND v.number = f.current_version
                     WHERE instr(v.config, '\"schedule\"') > 0",
                )
                .map_err(internal)?;
            let rows = statement
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, TenantId>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, u32>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, i64>(7)?,
                    ))
                })
                .map_err(internal)?;
            let mut scheduled = Vec::new();
            for row in rows {
                let (function_id, tenant_id, tenant, function, version, digest, config, since) =
                    row.map_err(internal)?;
                let config: FunctionConfig = serde_json::from_str(&config)
                    .map_err(|e| StoreError::internal("a version's configuration", e))?;
                if config.schedule.is_none() {
                    continue;
                }
                scheduled.push(ScheduledFunction {
                    deployment: Deployment {
                        function_id,
                        tenant_id,
                        tenant,
                        function,
                        version,
                        digest: digest
                            .parse()
                            .map_err(|e| StoreError::internal("a version's digest", e))?,
                        config,
                    },
                    since,
                });
            }
            Ok(scheduled)
        })
        .await
    }

    async fn claim_tick(&self, claim: TickClaim) -> StoreResult<bool> {
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let taken: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM schedule_runs WHERE function_id = ?1 AND tick >= ?2)",
                    params![claim.function_id, claim.tick],
                    |r| r.get(0),
                )
                .map_err(internal)?;
            if taken {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO schedule_runs (function_id, tick, version, node, started_at, lease_until)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    claim.function_id,
                    claim.tick,
                    claim.version,
                    claim.node,
                    claim.started_at,
                    claim.lease_until
                ],
            )
            .map_err(internal)?;
            tx.execute(
                "DELETE FROM schedule_runs WHERE function_id = ?1 AND tick <= (
                     SELECT tick FROM schedule_runs WHERE function_id = ?1
                     ORDER BY tick DESC LIMIT 1 OFFSET ?2)",
                params![claim.function_id, RUNS_KEPT],
            )
            .map_err(internal)?;
            tx.commit().map_err(internal)?;
            Ok(true)
        })
        .await
    }

    async fn finish_run(
        &self,
        function_id: i64,
        tick: i64,
        finished_at: i64,
        outcome: &str,
        status: u16,
    ) -> StoreResult<()> {
        let outcome = outcome.to_owned();
        self.with(move |conn| {
            conn.execute(
                "UPDATE schedule_runs SET finished_at = ?3, outcome = ?4, status = ?5
                 WHERE function_id = ?1 AND tick = ?2",
                params![function_id, tick, finished_at, outcome, status],
            )
            .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn reap_lost_runs(&self, now: i64) -> StoreResult<Vec<LostRun>> {
        self.with(move |conn| {
            let mut statement = conn
                .prepare(
                    "UPDATE schedule_runs SET finished_at = ?1, outcome = ?2
                     WHERE finished_at IS NULL AND lease_until < ?1
                     RETURNING function_id, version, tick, node",
                )
                .map_err(internal)?;
            let rows = statement
                .query_map(params![now, kiln_api::NODE_LOST], |r| {
                    Ok(LostRun {
                        function_id: r.get(0)?,
                        version: r.get(1)?,
                        tick: r.get(2)?,
                        node: r.get(3)?,
                    })
                })
                .map_err(internal)?;
            rows.collect::<Result<_, _>>().map_err(internal)
        })
        .await
    }

    async fn runs(
        &self,
        tenant: TenantId,
        function: &str,
        limit: u32,
    ) -> StoreResult<Vec<ScheduledRun>> {
        let function = function.to_owned();
        self.with(move |conn| {
            let mut statement = conn
                .prepare(
                    "SELECT r.tick, r.version, r.node, r.started_at, r.finished_at, r.outcome, r.status
                     FROM schedule_runs r JOIN functions f ON f.id = r.function_id
                     WHERE f.tenant_id = ?1 AND f.name = ?2 ORDER BY r.tick DESC LIMIT ?3",
                )
                .map_err(internal)?;
            let rows = statement
                .query_map(params![tenant, function, limit], |r| {
                    Ok(ScheduledRun {
                        tick: r.get(0)?,
                        version: r.get(1)?,
                        node: r.get(2)?,
                        started_at: r.get(3)?,
                        finished_at: r.get(4)?,
                        outcome: r.get(5)?,
                        status: r.get(6)?,
                    })
                })
                .map_err(internal)?;
            rows.collect::<Result<_, _>>().map_err(internal)
        })
        .await
    }
}
