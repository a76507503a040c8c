//! This node's counters (`GET /v1/status`) and its reports of them to the
//! store every [`REPORT_EVERY`], under its name, so that any node of a cluster
//! lists every node and when each was last heard from (`GET /v1/admin/nodes`,
//! the console's cluster page). A node that stops cleanly says so in a last
//! report; one that dies just falls silent.

use crate::state::AppState;
use kiln_api::{NodeSeen, NodeStatus};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How often a node reports.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(10);

/// This node's counters now.
pub(crate) fn status(state: &AppState) -> NodeStatus {
    let counters = &state.counters;
    let cache = state.functions.stats();
    NodeStatus {
        in_flight: counters.in_flight.load(Ordering::Relaxed),
        connections: counters.connections.load(Ordering::Relaxed),
        active_instances: state.runtime.active_instances(),
        compiles: cache.compiles.load(Ordering::Relaxed),
        artifact_downloads: cache.downloads.load(Ordering::Relaxed),
        loaded_functions: state.functions.loaded(),
        rewarm_pending: counters.rewarm_pending.load(Ordering::Relaxed),
        function_cache_hits: cache.hits.load(Ordering::Relaxed),
        function_cache_misses: cache.misses.load(Ordering::Relaxed),
        function_cache_evictions: cache.evictions.load(Ordering::Relaxed),
        gc: state.collector.last(),
    }
}

/// Writes one report; a store that fails is logged and tried again next time.
pub(crate) async fn report(state: &AppState, node: &str, started_at: i64, stopped: bool) {
    let seen = NodeSeen {
        node: node.to_owned(),
        started_at,
        seen_at: kiln_store::now(),
        stopped,
        status: status(state),
    };
    if let Err(e) = state.store.report_node(&seen).await {
        tracing::warn!(error = %e, "cannot report this node's status to the store");
    }
}

/// Reports every [`REPORT_EVERY`] until aborted.
pub(crate) async fn keep_reporting(state: Arc<AppState>, node: String, started_at: i64) {
    let mut every = tokio::time::interval(REPORT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        report(&state, &node, started_at, false).await;
    }
}
