//! Node reports in PostgreSQL (the contract is in `nodes.rs`): every node of a
//! cluster reports here, so any of them lists them all.

use super::{PostgresStore, internal, pg};
use crate::error::StoreResult;
use crate::nodes::{NODES_KEPT_SECONDS, NodeStore};
use async_trait::async_trait;
use kiln_api::NodeSeen;

#[async_trait]
impl NodeStore for PostgresStore {
    async fn report_node(&self, report: &NodeSeen) -> StoreResult<()> {
        let status = serde_json::to_string(&report.status).map_err(internal)?;
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO nodes (name, started_at, seen_at, stopped, status)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at,
                     seen_at = excluded.seen_at, stopped = excluded.stopped,
                     status = excluded.status",
                &[
                    &report.node,
                    &report.started_at,
                    &report.seen_at,
                    &report.stopped,
                    &status,
                ],
            )
            .await
            .map_err(pg)?;
        client
            .execute(
                "DELETE FROM nodes WHERE seen_at < $1",
                &[&(report.seen_at - NODES_KEPT_SECONDS)],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn nodes(&self) -> StoreResult<Vec<NodeSeen>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name, started_at, seen_at, stopped, status FROM nodes ORDER BY name",
                &[],
            )
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|r| {
                Ok(NodeSeen {
                    node: r.get(0),
                    started_at: r.get(1),
                    seen_at: r.get(2),
                    stopped: r.get(3),
                    status: serde_json::from_str(r.get(4)).map_err(internal)?,
                })
            })
            .collect()
    }
}
