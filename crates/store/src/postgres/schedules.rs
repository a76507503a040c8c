//! Scheduled runs in PostgreSQL (the contract is in `schedules.rs`). A claim
//! locks its function's row, so two nodes claiming ticks of one function take
//! turns: one inserts, the other sees the tick (or a later one) taken.

use super::{PostgresStore, number, parse_digest, pg};
use crate::error::{StoreError, StoreResult};
use crate::model::Deployment;
use crate::schedules::{LostRun, RUNS_KEPT, ScheduleStore, ScheduledFunction, TickClaim};
use async_trait::async_trait;
use kiln_api::{FunctionConfig, ScheduledRun, TenantId};

#[async_trait]
impl ScheduleStore for PostgresStore {
    async fn scheduled_functions(&self) -> StoreResult<Vec<ScheduledFunction>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT f.id, t.id, t.name, f.name, v.number, v.digest, v.config, f.updated_at
                 FROM functions f JOIN tenants t ON t.id = f.tenant_id
                 JOIN versions v ON v.function_id = f.id AND v.number = f.current_version
                 WHERE strpos(v.config, '\"schedule\"') > 0",
                &[],
            )
            .await
            .map_err(pg)?;
        let mut scheduled = Vec::new();
        for row in rows {
            let config: String = row.get(6);
            let config: FunctionConfig = serde_json::from_str(&config)
                .map_err(|e| StoreError::internal("a version's configuration", e))?;
            if config.schedule.is_none() {
                continue;
            }
            let digest: String = row.get(5);
            scheduled.push(ScheduledFunction {
                deployment: Deployment {
                    function_id: row.get(0),
                    tenant_id: row.get(1),
                    tenant: row.get(2),
                    function: row.get(3),
                    version: number(row.get(4)),
                    digest: parse_digest(&digest)?,
                    config,
                },
                since: row.get(7),
            });
        }
        Ok(scheduled)
    }

    async fn claim_tick(&self, claim: TickClaim) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let exists = tx
            .query_opt(
                "SELECT 1 FROM functions WHERE id = $1 FOR UPDATE",
                &[&claim.function_id],
            )
            .await
            .map_err(pg)?;
        if exists.is_none() {
            return Ok(false);
        }
        let taken: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM schedule_runs WHERE function_id = $1 AND tick >= $2)",
                &[&claim.function_id, &claim.tick],
            )
            .await
            .map_err(pg)?
            .get(0);
        if taken {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO schedule_runs (function_id, tick, version, node, started_at, lease_until)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &claim.function_id,
                &claim.tick,
                &i64::from(claim.version),
                &claim.node,
                &claim.started_at,
                &claim.lease_until,
            ],
        )
        .await
        .map_err(pg)?;
        tx.execute(
            "DELETE FROM schedule_runs WHERE function_id = $1 AND tick <= (
                 SELECT tick FROM schedule_runs WHERE function_id = $1
                 ORDER BY tick DESC LIMIT 1 OFFSET $2)",
            &[&claim.function_id, &RUNS_KEPT],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(true)
    }

    async fn finish_run(
        &self,
        function_id: i64,
        tick: i64,
        finished_at: i64,
        outcome: &str,
        status: u16,
    ) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE schedule_runs SET finished_at = $3, outcome = $4, status = $5
                 WHERE function_id = $1 AND tick = $2",
                &[
                    &function_id,
                    &tick,
                    &finished_at,
                    &outcome,
                    &i32::from(status),
                ],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn reap_lost_runs(&self, now: i64) -> StoreResult<Vec<LostRun>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "UPDATE schedule_runs SET finished_at = $1, outcome = $2
                 WHERE finished_at IS NULL AND lease_until < $1
                 RETURNING function_id, version, tick, node",
                &[&now, &kiln_api::NODE_LOST],
            )
            .await
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| LostRun {
                function_id: r.get(0),
                version: number(r.get(1)),
                tick: r.get(2),
                node: r.get(3),
            })
            .collect())
    }

    async fn runs(
        &self,
        tenant: TenantId,
        function: &str,
        limit: u32,
    ) -> StoreResult<Vec<ScheduledRun>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT r.tick, r.version, r.node, r.started_at, r.finished_at, r.outcome, r.status
                 FROM schedule_runs r JOIN functions f ON f.id = r.function_id
                 WHERE f.tenant_id = $1 AND f.name = $2 ORDER BY r.tick DESC LIMIT $3",
                &[&tenant, &function, &i64::from(limit)],
            )
            .await
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| ScheduledRun {
                tick: r.get(0),
                version: number(r.get(1)),
                node: r.get(2),
                started_at: r.get(3),
                finished_at: r.get(4),
                outcome: r.get(5),
                status: r
                    .get::<_, Option<i32>>(6)
                    .and_then(|s| u16::try_from(s).ok()),
            })
            .collect())
    }
}
