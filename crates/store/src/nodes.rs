//! The nodes that serve on a store: each reports its counters every few
//! seconds under its name, so that an operator (`GET /v1/admin/nodes`, the
//! console's cluster page) sees every node of a cluster from any of them, and
//! when each was last heard from.

use crate::error::StoreResult;
use async_trait::async_trait;
use kiln_api::NodeSeen;

/// How long a node that stopped reporting is still listed (a day).
pub const NODES_KEPT_SECONDS: i64 = 24 * 3600;

/// Node reports. A supertrait of [`crate::MetadataStore`].
#[async_trait]
pub trait NodeStore: Send + Sync {
    /// Records what a node reports of itself (replacing its last report), and
    /// forgets nodes silent for longer than [`NODES_KEPT_SECONDS`].
    async fn report_node(&self, report: &NodeSeen) -> StoreResult<()>;
    /// Every node listed, by name.
    async fn nodes(&self) -> StoreResult<Vec<NodeSeen>>;
}
