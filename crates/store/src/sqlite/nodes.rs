//! Node reports in SQLite (the contract is in `nodes.rs`).

use super::{SqliteStore, internal};
use crate::error::{StoreError, StoreResult};
use crate::nodes::{NODES_KEPT_SECONDS, NodeStore};
use async_trait::async_trait;
use kiln_api::NodeSeen;
use rusqlite::params;

#[async_trait]
impl NodeStore for SqliteStore {
    async fn report_node(&self, report: &NodeSeen) -> StoreResult<()> {
        let status = serde_json::to_string(&report.status)
            .map_err(|e| StoreError::internal("node status", e))?;
        let report = report.clone();
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO nodes (name, started_at, seen_at, stopped, status)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at,
                     seen_at = excluded.seen_at, stopped = excluded.stopped,
                     status = excluded.status",
                params![
                    report.node,
                    report.started_at,
                    report.seen_at,
                    report.stopped,
                    status
                ],
            )
            .map_err(internal)?;
            conn.execute(
                "DELETE FROM nodes WHERE seen_at < ?1",
                params![report.seen_at - NODES_KEPT_SECONDS],
            )
            .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn nodes(&self) -> StoreResult<Vec<NodeSeen>> {
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT name, started_at, seen_at, stopped, status FROM nodes ORDER BY name",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })
                .map_err(internal)?;
            let mut nodes = Vec::new();
            for row in rows {
                let (node, started_at, seen_at, stopped, status) = row.map_err(internal)?;
                nodes.push(NodeSeen {
                    node,
                    started_at,
                    seen_at,
                    stopped,
                    status: serde_json::from_str(&status)
                        .map_err(|e| StoreError::internal("stored node status", e))?,
                });
            }
            Ok(nodes)
        })
        .await
    }
}
